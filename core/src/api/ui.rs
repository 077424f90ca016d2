//! The web UI's files (`core/ui/`), compiled into core so that both shells
//! serve the same bytes at `/ui/` with nothing to deploy beside the binary or
//! the Worker, and nothing fetched from another host (air-gapped sites).
//! Hand-written HTML, CSS and JavaScript modules: no build step, so the
//! files in the repository are what browsers run.
//!
//! Every answer carries a strong ETag (a hash of the file) and is
//! revalidated (`no-cache`: the file names carry no version), so a browser
//! asks with `If-None-Match` and gets a 304 until pier is upgraded. The
//! content security policy allows only this origin's scripts, styles and
//! requests, and no framing.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Method, StatusCode};

use super::{empty, finish, response, Body, HttpResponse};
use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, RegistryError, Result};

/// Where the UI lives; `/` and `/ui` lead here.
const UI_ROOT: &str = "/ui/";

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file of the UI: its name under `/ui/` (`""` for the page itself).
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/api.js"),
    },
    Asset {
        name: "views.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/views.js"),
    },
    Asset {
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/charts.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../ui/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../ui/icon.svg"),
    },
];

/// Whether `path` is the UI's (or one of the paths that lead to it).
pub(super) fn is_ui_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with(UI_ROOT)
}

/// The ETags of [`ASSETS`], in order, hashed once per process.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| format!("\"{}\"", Digest::of(Algorithm::Sha256, asset.bytes).hex()))
            .collect()
    })
}

pub(super) fn serve(method: &Method, headers: &http::HeaderMap, path: &str) -> Result<HttpResponse> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported on {path}; GET it"),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let Some(name) = path.strip_prefix(UI_ROOT) else {
        return empty(response(StatusCode::FOUND).header(LOCATION, UI_ROOT));
    };
    let found = ASSETS.iter().zip(etags()).find(|(asset, _)| asset.name == name);
    let Some((asset, etag)) = found else {
        return Err(
            RegistryError::new(ErrorCode::Unsupported, format!("no such file: {path}"))
                .with_status(StatusCode::NOT_FOUND),
        );
    };
    let builder = response(StatusCode::OK)
        .header(ETAG, etag.as_str())
        .header(CACHE_CONTROL, "no-cache")
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header("content-security-policy", CONTENT_SECURITY_POLICY)
        .header("referrer-policy", "no-referrer");
    if matches_etag(headers, etag) {
        return empty(builder.status(StatusCode::NOT_MODIFIED));
    }
    let builder = builder
        .header(CONTENT_TYPE, asset.content_type)
        .header(CONTENT_LENGTH, HeaderValue::from(asset.bytes.len()));
    let body = match *method {
        Method::HEAD => Body::Empty,
        _ => Body::Full(Bytes::from_static(asset.bytes)),
    };
    finish(builder, body)
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn matches_etag(headers: &http::HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim().trim_start_matches("W/"))
        .any(|candidate| candidate == etag || candidate == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UI's size budget: every file together, uncompressed, under
    /// 120 KiB (so well under 150 KB gzipped), since the Worker carries it
    /// in its wasm.
    const BUDGET_BYTES: usize = 120 << 10;

    fn get(path: &str, if_none_match: Option<&str>) -> HttpResponse {
        let mut headers = http::HeaderMap::new();
        if let Some(etag) = if_none_match {
            headers.insert(IF_NONE_MATCH, HeaderValue::from_str(etag).unwrap());
        }
        serve(&Method::GET, &headers, path).unwrap_or_else(|e| super::super::error_response(&e))
    }

    #[test]
    fn the_ui_stays_within_its_budget() {
        let total: usize = ASSETS.iter().map(|asset| asset.bytes.len()).sum();
        assert!(
            total < BUDGET_BYTES,
            "the UI is {total} bytes, over its {BUDGET_BYTES}-byte budget"
        );
    }

    #[test]
    fn files_come_with_their_type_policy_and_etag() {
        let page = get("/ui/", None);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert_eq!(page.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let script = get("/ui/app.js", None);
        assert_eq!(script.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
        let etag = script.headers()[ETAG].to_str().unwrap().to_string();
        assert_eq!(get("/ui/app.js", Some(&etag)).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get("/ui/app.js", Some("\"other\", W/\"x\"")).status(), StatusCode::OK);
        assert_eq!(get("/ui/style.css", Some(&etag)).status(), StatusCode::OK);
    }

    #[test]
    fn the_root_leads_to_the_ui_and_unknown_files_are_not_found() {
        assert_eq!(get("/", None).headers()[LOCATION], "/ui/");
        assert_eq!(get("/ui", None).headers()[LOCATION], "/ui/");
        assert_eq!(get("/ui/nothing.js", None).status(), StatusCode::NOT_FOUND);
        assert_eq!(get("/ui/app.js/", None).status(), StatusCode::NOT_FOUND);
        let post = serve(&Method::POST, &http::HeaderMap::new(), "/ui/");
        assert_eq!(post.err().map(|e| e.status), Some(StatusCode::METHOD_NOT_ALLOWED));
    }

    #[test]
    fn every_script_the_page_loads_is_served() {
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        for asset in &ASSETS[1..] {
            let referenced = page.contains(asset.name)
                || ASSETS.iter().any(|other| {
                    std::str::from_utf8(other.bytes)
                        .unwrap()
                        .contains(&format!("./{}", asset.name))
                });
            assert!(referenced, "{} is served but nothing loads it", asset.name);
        }
    }
}
