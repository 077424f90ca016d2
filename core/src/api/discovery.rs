//! Listing: tags, the catalog and referrers, with `n`/`last` pagination. Every
//! page is bounded ([`MAX_PAGE`] entries whatever `n` asks); a `Link` header
//! leads to the next one.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LINK};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use super::{header_value, json_response, parse_digest, HttpResponse, Req};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::manifest::OCI_INDEX;
use crate::names::RepoName;
use crate::registry::{Registry, MAX_PAGE};

/// `n` from the query: a non-negative integer, capped at [`MAX_PAGE`]
/// (larger values get a full page and a `Link` to the next); absent, a
/// full page.
pub(super) fn page_size(req: &Req<'_>) -> Result<usize> {
    match req.query.get("n") {
        None | Some("") => Ok(MAX_PAGE),
        Some(text) => match text.parse::<u64>() {
            Ok(n) => Ok(usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE)),
            Err(_) => Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!("invalid n={text:?}: a non-negative integer is expected"),
            )
            .with_status(StatusCode::BAD_REQUEST)),
        },
    }
}

pub(super) fn last_param<'a>(req: &'a Req<'_>) -> Option<&'a str> {
    req.query.get("last").filter(|l| !l.is_empty())
}

/// The JSON response, with a `Link` to the next page when there is one.
pub(super) fn paged(
    body: &serde_json::Value,
    next: Option<&str>,
    n: usize,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<HttpResponse> {
    let mut response = json_response(StatusCode::OK, Bytes::from(body.to_string()));
    if let Some(last) = next {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("n", &n.to_string()).append_pair("last", last);
        for (key, value) in extra {
            query.append_pair(key, value);
        }
        let link = format!("<{path}?{}>; rel=\"next\"", query.finish());
        response.headers_mut().insert(LINK, header_value(&link)?);
    }
    Ok(response)
}

pub(super) async fn tags(registry: &Registry, req: &Req<'_>, repo: &RepoName) -> Result<HttpResponse> {
    let n = page_size(req)?;
    let page = registry.tags(repo, n, last_param(req)).await?;
    let body = json!({ "name": repo.as_str(), "tags": page.names });
    paged(&body, page.next.as_deref(), n, &format!("/v2/{repo}/tags/list"), &[])
}

/// The repositories the caller may pull.
pub(super) async fn catalog(registry: &Registry, req: &Req<'_>) -> Result<HttpResponse> {
    let n = page_size(req)?;
    let page = registry
        .catalog(n, last_param(req), |name| req.access.lists(name))
        .await?;
    let body = json!({ "repositories": page.names });
    paged(&body, page.next.as_deref(), n, "/v2/_catalog", &[])
}

pub(super) async fn referrers(
    registry: &Registry,
    req: &Req<'_>,
    repo: &RepoName,
    digest: &str,
) -> Result<HttpResponse> {
    let subject = parse_digest(digest)?;
    let n = page_size(req)?;
    let after = last_param(req).map(parse_digest).transpose()?;
    let artifact_type = req.query.get("artifactType").filter(|t| !t.is_empty());
    let page = registry
        .referrers_page(repo, &subject, artifact_type, after.as_ref(), n)
        .await?;
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": page.manifests });
    let filter: Vec<(&str, &str)> = artifact_type.map(|t| ("artifactType", t)).into_iter().collect();
    let next = page.next.as_ref().map(|d| d.as_str());
    let mut response = paged(&body, next, n, &format!("/v2/{repo}/referrers/{subject}"), &filter)?;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if artifact_type.is_some() {
        headers.insert(
            HeaderName::from_static("oci-filters-applied"),
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
