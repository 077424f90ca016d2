//! A fixed name for every kind of request (`blob_get`, `manifest_put`,
//! `upload_patch`...), for the shells' metrics and logs. It comes from the
//! same routing the API uses, so a label always names what was served; the
//! set is closed, so label cardinality stays bounded whatever clients send.

use http::Method;

use super::{route, Route};

/// The class of a request to `path`; `other` for anything the API does not serve.
pub fn route_class(method: &Method, path: &str) -> &'static str {
    let Ok(Some(route)) = route(path) else {
        return "other";
    };
    match (route, method.as_str()) {
        (Route::Ping, _) => "ping",
        (Route::Catalog, _) => "catalog",
        (Route::Tags(_), _) => "tags_list",
        (Route::Referrers(..), _) => "referrers",
        (Route::Uploads(_), "POST") => "upload_start",
        (Route::Upload(..), "GET") => "upload_status",
        (Route::Upload(..), "PATCH") => "upload_patch",
        (Route::Upload(..), "PUT") => "upload_put",
        (Route::Upload(..), "DELETE") => "upload_cancel",
        (Route::Blob(..), "GET") => "blob_get",
        (Route::Blob(..), "HEAD") => "blob_head",
        (Route::Blob(..), "DELETE") => "blob_delete",
        (Route::Manifest(..), "GET") => "manifest_get",
        (Route::Manifest(..), "HEAD") => "manifest_head",
        (Route::Manifest(..), "PUT") => "manifest_put",
        (Route::Manifest(..), "DELETE") => "manifest_delete",
        _ => "other",
    }
}

/// Whether requests of a class carry blob bytes to the registry.
pub fn is_upload(class: &str) -> bool {
    matches!(class, "upload_start" | "upload_patch" | "upload_put")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_routes() {
        let cases = [
            (Method::GET, "/v2/", "ping"),
            (Method::GET, "/v2", "ping"),
            (Method::GET, "/v2/_catalog", "catalog"),
            (Method::GET, "/v2/a/b/tags/list", "tags_list"),
            (Method::POST, "/v2/a/blobs/uploads/", "upload_start"),
            (Method::PATCH, "/v2/a/blobs/uploads/0f3c", "upload_patch"),
            (Method::PUT, "/v2/a/blobs/uploads/0f3c", "upload_put"),
            (Method::GET, "/v2/a/blobs/uploads/0f3c", "upload_status"),
            (Method::DELETE, "/v2/a/blobs/uploads/0f3c", "upload_cancel"),
            (Method::GET, "/v2/blobs/blobs/sha256:1", "blob_get"),
            (Method::HEAD, "/v2/a/blobs/sha256:1", "blob_head"),
            (Method::DELETE, "/v2/a/blobs/sha256:1", "blob_delete"),
            (Method::PUT, "/v2/a/manifests/latest", "manifest_put"),
            (Method::GET, "/v2/manifests/manifests/latest", "manifest_get"),
            (Method::GET, "/v2/a/referrers/sha256:1", "referrers"),
            (Method::POST, "/v2/a/manifests/latest", "other"),
            (Method::GET, "/v2/Upper/manifests/latest", "other"),
            (Method::GET, "/v3/x", "other"),
            (Method::GET, "/v2/a/unknown/x", "other"),
            (Method::GET, "/token", "other"),
        ];
        for (method, path, class) in cases {
            assert_eq!(route_class(&method, path), class, "{method} {path}");
        }
    }
}
