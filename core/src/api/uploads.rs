//! Upload sessions: POST (with mount and monolithic forms), PATCH, PUT, GET, DELETE.

use http::header::{CONTENT_RANGE, RANGE};
use http::{HeaderName, StatusCode};

use super::{digest_header, empty, parse_digest, response, with_location, BodySlot, HttpResponse, Req};
use crate::auth::policy::Action;
use crate::body::{limit_body, BodyError, RequestBody};
use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::names::RepoName;
use crate::registry::{Registry, SessionRef};
use crate::upload::{ChunkRange, UploadStatus};

const UPLOAD_UUID: &str = "docker-upload-uuid";
const CHUNK_MIN_LENGTH: &str = "oci-chunk-min-length";

/// The session's URL. It names the session's newest state, so the next
/// request reads that state without listing the session's keys; clients
/// must use the Location of the last response (the spec says so).
fn upload_location(repo: &RepoName, status: &UploadStatus) -> String {
    match status.state {
        Some(state) => format!("/v2/{repo}/blobs/uploads/{}?state={state}", status.id),
        None => format!("/v2/{repo}/blobs/uploads/{}", status.id),
    }
}

/// The session a request names (`?state=` is a hint: anything else than
/// a number is ignored).
fn session<'a>(req: &'a Req<'_>, id: &'a str) -> SessionRef<'a> {
    SessionRef {
        id,
        state: req.query.get("state").and_then(|state| state.parse().ok()),
    }
}

/// 202 with where the upload stands.
fn in_progress(
    registry: &Registry,
    repo: &RepoName,
    status: &UploadStatus,
    status_code: StatusCode,
) -> Result<HttpResponse> {
    let end = status.offset.saturating_sub(1);
    let builder = with_location(response(status_code), &upload_location(repo, status))
        .header(RANGE, format!("0-{end}"))
        .header(HeaderName::from_static(UPLOAD_UUID), status.id.as_str())
        .header(HeaderName::from_static(CHUNK_MIN_LENGTH), registry.chunk_min_length());
    empty(builder)
}

fn created(repo: &RepoName, digest: &Digest) -> Result<HttpResponse> {
    empty(digest_header(
        with_location(response(StatusCode::CREATED), &format!("/v2/{repo}/blobs/{digest}")),
        digest,
    ))
}

/// The body of an upload request, held to the deployment's body limit.
fn upload_body(registry: &Registry, req: &Req<'_>, body: &mut BodySlot) -> Result<RequestBody> {
    let Some(limit) = registry.options().max_body_bytes else {
        return Ok(body.take());
    };
    if req.content_length()?.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge(limit).into_registry_error());
    }
    Ok(limit_body(body.take(), limit))
}

pub(super) async fn start(
    registry: &Registry,
    req: &Req<'_>,
    repo: &RepoName,
    body: &mut BodySlot,
) -> Result<HttpResponse> {
    if let Some(mount) = req.query.get("mount") {
        let digest = parse_digest(mount)?;
        let from = match req.query.get("from") {
            // A malformed source, or one the caller may not pull, cannot
            // give the blob: fall back to an upload.
            Some(from) => RepoName::parse(from)
                .filter(|from| req.access.allows(from, Action::Pull))
                .map(Some),
            None => req.access.pulls_everywhere().then_some(None),
        };
        if let Some(from) = from {
            if registry.mount_blob(repo, &digest, from.as_ref()).await? {
                return created(repo, &digest);
            }
        }
    } else if let Some(digest) = req.query.get("digest") {
        let digest = parse_digest(digest)?;
        registry
            .upload_whole(repo, &digest, upload_body(registry, req, body)?)
            .await?;
        return created(repo, &digest);
    }
    let status = registry.start_upload(repo).await?;
    in_progress(registry, repo, &status, StatusCode::ACCEPTED)
}

pub(super) async fn status(registry: &Registry, req: &Req<'_>, repo: &RepoName, id: &str) -> Result<HttpResponse> {
    let status = registry.upload_status(repo, session(req, id)).await?;
    in_progress(registry, repo, &status, StatusCode::NO_CONTENT)
}

/// `Content-Range` of a chunk; a chunk that names its range must say its length.
fn chunk_range(req: &Req<'_>) -> Result<Option<ChunkRange>> {
    let Some(text) = req.header(CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || RegistryError::new(ErrorCode::RangeInvalid, format!("invalid Content-Range {text:?}"));
    // The spec's form only: `^[0-9]+-[0-9]+$`.
    let number = |s: &str| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let range = ChunkRange {
        start: number(start).ok_or_else(invalid)?,
        end: number(end).ok_or_else(invalid)?,
    };
    // Computed without overflow: `0-18446744073709551615` covers more bytes
    // than any length can say.
    let Some(range_length) = range.length() else {
        return Err(invalid());
    };
    match req.content_length()? {
        None => Err(RegistryError::new(
            ErrorCode::SizeInvalid,
            "a chunk with Content-Range needs a Content-Length",
        )
        .with_status(StatusCode::LENGTH_REQUIRED)),
        Some(length) if length != range_length => Err(RegistryError::new(
            ErrorCode::RangeInvalid,
            format!("Content-Range {text:?} does not match Content-Length {length}"),
        )),
        Some(_) => Ok(Some(range)),
    }
}

pub(super) async fn chunk(
    registry: &Registry,
    req: &Req<'_>,
    repo: &RepoName,
    id: &str,
    body: &mut BodySlot,
) -> Result<HttpResponse> {
    let range = chunk_range(req)?;
    let status = registry
        .upload_chunk(repo, session(req, id), range, upload_body(registry, req, body)?)
        .await?;
    in_progress(registry, repo, &status, StatusCode::ACCEPTED)
}

pub(super) async fn finish(
    registry: &Registry,
    req: &Req<'_>,
    repo: &RepoName,
    id: &str,
    body: &mut BodySlot,
) -> Result<HttpResponse> {
    let digest = req.query.get("digest").ok_or_else(|| {
        RegistryError::new(
            ErrorCode::DigestInvalid,
            "the digest query parameter is required to finish an upload",
        )
    })?;
    let digest = parse_digest(digest)?;
    let range = chunk_range(req)?;
    registry
        .finish_upload(
            repo,
            session(req, id),
            &digest,
            range,
            upload_body(registry, req, body)?,
        )
        .await?;
    created(repo, &digest)
}

pub(super) async fn cancel(registry: &Registry, req: &Req<'_>, repo: &RepoName, id: &str) -> Result<HttpResponse> {
    registry.cancel_upload(repo, session(req, id)).await?;
    empty(response(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use http::{Request, StatusCode};

    use crate::body::empty_body;
    use crate::testing::{memory_registry, send};

    /// Found by the `ranges` fuzz target: a chunk claiming `0-<u64::MAX>`
    /// made its length overflow (a panic where overflow checks are on; a
    /// length of 0 elsewhere, so an empty chunk was taken for that range).
    #[test]
    fn a_content_range_whose_length_overflows_is_refused() {
        let registry = memory_registry();
        let start = Request::post("/v2/a/blobs/uploads/").body(empty_body()).unwrap();
        let started = send(&registry, start);
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let location = started.headers()["location"].to_str().unwrap().to_string();
        for length in ["0", "1"] {
            let chunk = Request::patch(location.as_str())
                .header("content-range", format!("0-{}", u64::MAX))
                .header("content-length", length)
                .body(empty_body())
                .unwrap();
            assert_eq!(send(&registry, chunk).status(), StatusCode::RANGE_NOT_SATISFIABLE);
        }
    }
}
