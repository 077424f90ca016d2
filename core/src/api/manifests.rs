//! Manifests by tag or digest: GET/HEAD, PUT (with `?tag=`), DELETE.

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{HeaderName, StatusCode};

use super::{
    digest_header, empty, finish, parse_reference, parse_tag, read_body, response, with_location, Body, BodySlot,
    HttpResponse, Req, Service, IMMUTABLE_CACHE_CONTROL,
};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::{Action, Event, Subject};
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::names::{RepoName, Tag};
use crate::records::Reference;

const SUBJECT_HEADER: &str = "oci-subject";
const TAG_HEADER: &str = "oci-tag";

pub(super) async fn get(
    service: &Service<'_>,
    req: &Req<'_>,
    repo: &RepoName,
    reference: &str,
) -> Result<HttpResponse> {
    let registry = service.registry;
    let reference = parse_reference(reference)?;
    let manifest = match service.mirror.and_then(|m| m.upstream_for(repo)) {
        Some((upstream, remote)) => crate::mirror::manifest(registry, upstream, &remote, repo, &reference).await?,
        None if req.access.identity_may_push(repo) => registry.manifest(repo, &reference).await?,
        None => registry.manifest_for_puller(repo, &reference).await?,
    };
    if let Some(signatures) = service.signatures {
        signatures.check_pull(registry, repo, &manifest).await?;
    }
    let builder = digest_header(response(StatusCode::OK), &manifest.digest)
        .header(CONTENT_TYPE, manifest.media_type.as_str())
        .header(CONTENT_LENGTH, manifest.bytes.len())
        .header(ETAG, format!("\"{}\"", manifest.digest));
    // By tag the answer changes when the tag moves: only by digest is it immutable.
    let builder = match reference {
        Reference::Digest(_) => builder.header(CACHE_CONTROL, IMMUTABLE_CACHE_CONTROL),
        Reference::Tag(_) => builder,
    };
    let body = if req.is_head() {
        Body::Empty
    } else {
        let subject = Subject {
            repo,
            digest: &manifest.digest,
            media_type: &manifest.media_type,
            size: manifest.bytes.len() as u64,
        };
        report(service, req, Action::Pull, &[reference.tag()], &subject).await?;
        registry.note_pull(repo, &manifest.digest).await;
        Body::Full(manifest.bytes)
    };
    finish(builder, body)
}

pub(super) async fn put(
    service: &Service<'_>,
    req: &Req<'_>,
    repo: &RepoName,
    reference: &str,
    body: &mut BodySlot,
) -> Result<HttpResponse> {
    let reference = parse_reference(reference)?;
    let extra_tags = req.query.all("tag").map(parse_tag).collect::<Result<Vec<_>>>()?;
    let too_large = || {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("manifests are limited to {MAX_MANIFEST_BYTES} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if req.content_length()?.is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = read_body(body.take(), MAX_MANIFEST_BYTES)
        .await?
        .ok_or_else(too_large)?;
    let pushed = service
        .registry
        .put_manifest(repo, &reference, req.header(CONTENT_TYPE), bytes, &extra_tags)
        .await?;
    let tags: Vec<Option<&Tag>> = match &reference {
        Reference::Tag(tag) => std::iter::once(tag).chain(&extra_tags).map(Some).collect(),
        Reference::Digest(_) if extra_tags.is_empty() => vec![None],
        Reference::Digest(_) => extra_tags.iter().map(Some).collect(),
    };
    let subject = Subject {
        repo,
        digest: &pushed.digest,
        media_type: &pushed.media_type,
        size: pushed.size,
    };
    report(service, req, Action::Push, &tags, &subject).await?;
    let mut builder = digest_header(
        with_location(
            response(StatusCode::CREATED),
            &format!("/v2/{repo}/manifests/{}", pushed.digest),
        ),
        &pushed.digest,
    );
    if let Some(subject) = &pushed.subject {
        builder = builder.header(HeaderName::from_static(SUBJECT_HEADER), subject.as_str());
    }
    for tag in &extra_tags {
        builder = builder.header(HeaderName::from_static(TAG_HEADER), tag.as_str());
    }
    empty(builder)
}

pub(super) async fn delete(
    service: &Service<'_>,
    req: &Req<'_>,
    repo: &RepoName,
    reference: &str,
) -> Result<HttpResponse> {
    let reference = parse_reference(reference)?;
    let deleted = service.registry.delete_manifest(repo, &reference).await?;
    let subject = Subject {
        repo,
        digest: &deleted.digest,
        media_type: &deleted.media_type,
        size: deleted.size,
    };
    report(service, req, Action::Delete, &[reference.tag()], &subject).await?;
    empty(response(StatusCode::ACCEPTED))
}

/// Tells the registry's webhooks and replication rules about a manifest
/// request that succeeded: one event per tag it concerned (`None`: by
/// digest), recorded in the outbox before the request is answered. A push
/// or delete whose event could not be recorded is answered 503, so the
/// client does it again and the event is recorded then (the manifest is
/// stored, or deleted, all the same); a pull is served anyway.
async fn report(
    service: &Service<'_>,
    req: &Req<'_>,
    action: Action,
    tags: &[Option<&Tag>],
    subject: &Subject<'_>,
) -> Result<()> {
    let Some(sink) = service.events.filter(|sink| sink.wants(action, subject.repo)) else {
        return Ok(());
    };
    for tag in tags {
        let event = Event::new(service.registry.env(), action, subject, *tag, req.access.actor());
        if let Err(err) = sink.emit(&event).await {
            let what = format!(
                "the {} of {} is done, but its event could not be recorded",
                action.as_str(),
                subject.repo
            );
            if action == Action::Pull {
                sink.report(true, &format!("{what}: {err}"));
                continue;
            }
            return Err(RegistryError::new(
                ErrorCode::Unavailable,
                format!("{what} ({err}): do it again"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::{Request, StatusCode};

    use crate::body::{empty_body, full_body};
    use crate::testing::{memory_registry, send};

    /// A manifest whose `mediaType` holds a line break was stored, and every
    /// GET of it then panicked building its Content-Type header. It is
    /// refused at the push now.
    #[test]
    fn a_media_type_that_cannot_be_a_header_is_refused_at_the_push() {
        let registry = memory_registry();
        let send = |request| send(&registry, request);
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/x\nInjected: yes"}"#;
        let push = Request::put("/v2/a/manifests/v1")
            .body(full_body(&manifest[..]))
            .unwrap();
        assert_eq!(send(push).status(), StatusCode::BAD_REQUEST);
        let get = Request::get("/v2/a/manifests/v1").body(empty_body()).unwrap();
        assert_eq!(send(get).status(), StatusCode::NOT_FOUND);
    }

    /// A manifest whose kind only its Content-Type told (no `mediaType`,
    /// no `config`, `layers` or `manifests`) is listed as a referrer of its
    /// subject; deleting it must take it out of the listing.
    #[test]
    fn deleting_a_referrer_pushed_by_content_type_alone_unlists_it() {
        let registry = memory_registry();
        let send = |request| send(&registry, request);
        let subject = crate::digest::Digest::of(crate::digest::Algorithm::Sha256, b"subject");
        let manifest = serde_json::to_vec(&serde_json::json!({
            "subject": {"mediaType": crate::manifest::OCI_MANIFEST, "digest": subject.as_str(), "size": 7}
        }))
        .unwrap();
        let digest = crate::digest::Digest::of(crate::digest::Algorithm::Sha256, &manifest);
        let push = Request::put(format!("/v2/a/manifests/{digest}"))
            .header("content-type", "application/vnd.example.note+json")
            .body(full_body(manifest))
            .unwrap();
        assert_eq!(send(push).status(), StatusCode::CREATED);
        let delete = Request::delete(format!("/v2/a/manifests/{digest}"))
            .body(empty_body())
            .unwrap();
        assert_eq!(send(delete).status(), StatusCode::ACCEPTED);
        let listing = Request::get(format!("/v2/a/referrers/{subject}"))
            .body(empty_body())
            .unwrap();
        let (_, body) = send(listing).into_parts();
        let crate::api::Body::Full(body) = body else {
            panic!("a listing has a body")
        };
        let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            index["manifests"],
            serde_json::json!([]),
            "the deleted manifest is still listed"
        );
    }
}
