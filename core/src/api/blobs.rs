//! Blob reads (GET/HEAD with Range) and deletes.

use std::ops::Range;
use std::time::Duration;

use http::header::{ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE};
use http::StatusCode;

use super::{
    digest_header, empty, finish, parse_digest, response, with_location, Body, HttpResponse, Req, Service,
    IMMUTABLE_CACHE_CONTROL,
};
use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::mirror;
use crate::names::RepoName;
use crate::records::BlobRecord;
use crate::registry::Registry;

/// How long a signed URL handed out by a blob redirect stays valid: long
/// enough for a client to follow it, short enough that a leaked one soon dies.
const SIGNED_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);

pub(super) async fn get(service: &Service<'_>, req: &Req<'_>, repo: &RepoName, digest: &str) -> Result<HttpResponse> {
    let registry = service.registry;
    let digest = parse_digest(digest)?;
    let record = match registry.blob(repo, &digest).await {
        Err(e) if e.code == ErrorCode::BlobUnknown => match service.mirror.and_then(|m| m.upstream_for(repo)) {
            None => return Err(e),
            Some((upstream, remote)) => {
                let fetched = mirror::blob(upstream, &remote, registry, repo, &digest, req.is_head()).await?;
                return from_upstream(&digest, fetched.length, fetched.body);
            }
        },
        other => other?,
    };
    local(registry, req, &digest, record).await
}

/// A blob's headers, however it is served.
fn blob_headers(status: StatusCode, digest: &Digest) -> http::response::Builder {
    digest_header(response(status), digest)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(ETAG, format!("\"{digest}\""))
        .header(CACHE_CONTROL, IMMUTABLE_CACHE_CONTROL)
}

/// A blob of a pull-through cache on its way from upstream: whole (a Range
/// is answered once it is cached).
fn from_upstream(digest: &Digest, length: u64, body: Option<crate::store::ByteStream>) -> Result<HttpResponse> {
    let builder = blob_headers(StatusCode::OK, digest).header(CONTENT_LENGTH, length);
    let body = match body {
        Some(stream) if length > 0 => Body::Stream { stream, length },
        _ => Body::Empty,
    };
    finish(builder, body)
}

async fn local(registry: &Registry, req: &Req<'_>, digest: &Digest, record: BlobRecord) -> Result<HttpResponse> {
    let digest = digest.clone();
    let range = match req.header(RANGE) {
        Some(text) => parse_range(text, record.size)?,
        None => None,
    };
    if registry.options().redirect_blobs && !req.is_head() && record.size > 0 && !record.archived {
        // The client repeats its Range header on the redirected request.
        if let Some(url) = registry.store().signed_url(&record.object, SIGNED_URL_LIFETIME).await? {
            let builder = digest_header(response(StatusCode::TEMPORARY_REDIRECT), &digest);
            return empty(with_location(builder, &url));
        }
    }
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let builder = blob_headers(status, &digest).header(ACCEPT_RANGES, "bytes");
    let builder = match &range {
        Some(r) => builder.header(
            CONTENT_RANGE,
            format!("bytes {}-{}/{}", r.start, r.end - 1, record.size),
        ),
        None => builder,
    };
    let length = range.as_ref().map_or(record.size, |r| r.end - r.start);
    let builder = builder.header(CONTENT_LENGTH, length);
    if req.is_head() || length == 0 {
        return finish(builder, Body::Empty);
    }
    let object = registry.open_blob(&digest, &record, range).await?;
    finish(
        builder,
        Body::Stream {
            stream: object.body,
            length,
        },
    )
}

/// One `bytes=` range resolved against `size`; `None` for forms we serve whole
/// (several ranges). Unsatisfiable ranges are 416.
fn parse_range(text: &str, size: u64) -> Result<Option<Range<u64>>> {
    let invalid = || {
        RegistryError::new(
            ErrorCode::RangeInvalid,
            format!("range {text:?} is not satisfiable for {size} bytes"),
        )
        .with_detail(serde_json::json!({ "size": size }))
    };
    let spec = text.trim().strip_prefix("bytes=").ok_or_else(invalid)?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or_else(invalid)?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let suffix: u64 = end.parse().map_err(|_| invalid())?;
        // An empty blob has no last bytes: a suffix of it is unsatisfiable
        // (RFC 9110), not the empty range `0..0`.
        if suffix == 0 || size == 0 {
            return Err(invalid());
        }
        size.saturating_sub(suffix)..size
    } else {
        let start: u64 = start.parse().map_err(|_| invalid())?;
        let end: u64 = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse().map_err(|_| invalid())?
        };
        if start > end || start >= size {
            return Err(invalid());
        }
        start..end.min(size - 1) + 1
    };
    Ok(Some(range))
}

pub(super) async fn delete(registry: &Registry, repo: &RepoName, digest: &str) -> Result<HttpResponse> {
    let digest = parse_digest(digest)?;
    registry.delete_blob(repo, &digest).await?;
    empty(response(StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some(90..100));
        assert_eq!(parse_range("bytes=-1000", 100).unwrap(), Some(0..100));
        assert_eq!(parse_range("bytes=50-1000", 100).unwrap(), Some(50..100));
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        for bad in [
            "bytes=100-",
            "bytes=10-5",
            "bytes=-0",
            "bytes=a-b",
            "items=0-1",
            "bytes=5",
        ] {
            assert!(parse_range(bad, 100).is_err(), "{bad}");
        }
        assert!(parse_range("bytes=0-", 0).is_err());
    }

    /// Found by the `ranges` fuzz target (`Range: bytes=-8446711` on an
    /// empty blob): the suffix resolved to the empty range `0..0`, whose
    /// `Content-Range` end (`end - 1`) underflowed.
    #[test]
    fn a_suffix_of_an_empty_blob_is_unsatisfiable() {
        for suffix in ["bytes=-1", "bytes=-8446711"] {
            assert!(parse_range(suffix, 0).is_err(), "{suffix}");
        }
        assert_eq!(parse_range("bytes=-1", 1).unwrap(), Some(0..1));
    }
}
