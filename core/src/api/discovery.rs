//! Listing: tags, the catalog and referrers, with `n`/`last` pagination.

use bytes::Bytes;
use http::header::LINK;
use http::{HeaderName, StatusCode};
use serde_json::json;

use super::{header_value, json_response, parse_digest, HttpResponse, Req};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::manifest::OCI_INDEX;
use crate::names::RepoName;
use crate::registry::{NamePage, Registry};

/// `n` and `last` from the query.
fn page_params(req: &Req<'_>) -> Result<(Option<usize>, Option<String>)> {
    let n = match req.query.get("n") {
        None | Some("") => None,
        Some(text) => Some(text.parse::<usize>().map_err(|_| {
            RegistryError::new(ErrorCode::Unsupported, format!("invalid n={text}")).with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    Ok((n, req.query.get("last").filter(|l| !l.is_empty()).map(str::to_string)))
}

/// The JSON response, with a `Link` to the next page when there is one.
fn paged(body: serde_json::Value, page: &NamePage, n: Option<usize>, path: &str) -> HttpResponse {
    let mut response = json_response(StatusCode::OK, Bytes::from(serde_json::to_vec(&body).expect("json")));
    if let (true, Some(n), Some(last)) = (page.more, n, page.names.last()) {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &n.to_string())
            .append_pair("last", last)
            .finish();
        response
            .headers_mut()
            .insert(LINK, header_value(&format!("<{path}?{query}>; rel=\"next\"")));
    }
    response
}

pub(super) async fn tags(registry: &Registry, req: &Req<'_>, repo: &RepoName) -> Result<HttpResponse> {
    let (n, last) = page_params(req)?;
    let page = registry.tags(repo, n, last.as_deref()).await?;
    let body = json!({ "name": repo.as_str(), "tags": page.names });
    Ok(paged(body, &page, n, &format!("/v2/{repo}/tags/list")))
}

/// The repositories the caller may pull, paged after filtering.
pub(super) async fn catalog(registry: &Registry, req: &Req<'_>) -> Result<HttpResponse> {
    let (n, last) = page_params(req)?;
    let mut page = registry.catalog(None, last.as_deref()).await?;
    page.names.retain(|name| req.access.lists(name));
    let limit = n.unwrap_or(usize::MAX);
    page.more = page.names.len() > limit;
    page.names.truncate(limit);
    let body = json!({ "repositories": page.names });
    Ok(paged(body, &page, n, "/v2/_catalog"))
}

pub(super) async fn referrers(
    registry: &Registry,
    req: &Req<'_>,
    repo: &RepoName,
    digest: &str,
) -> Result<HttpResponse> {
    let subject = parse_digest(digest)?;
    let artifact_type = req.query.get("artifactType").filter(|t| !t.is_empty());
    let manifests = registry.referrers(repo, &subject, artifact_type).await?;
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut response = json_response(StatusCode::OK, Bytes::from(serde_json::to_vec(&body).expect("json")));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, header_value(OCI_INDEX));
    if artifact_type.is_some() {
        response.headers_mut().insert(
            HeaderName::from_static("oci-filters-applied"),
            header_value("artifactType"),
        );
    }
    Ok(response)
}
