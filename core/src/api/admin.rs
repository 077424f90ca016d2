//! pier's own endpoints for operators, beside the distribution API:
//! `GET /_pier/gc/report`, the report of the last garbage collection, so an
//! operator of the edge Worker (which has no command line) can see what its
//! cron collections did; the events outbox under `/_pier/events` (what
//! waits, what was given up, retry, a rule's backfill), the same on both
//! deployments; `/_pier/quotas`, each namespace quota's usage;
//! `/_pier/archive`, the archive tier's state, check, passes and moves; and who may read the native server's `/metrics`
//! (which the shell renders). With auth on, only admins may read the report,
//! and admins and `metrics_readers` the metrics; without auth both are open
//! like every other endpoint.

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{Method, StatusCode};

use super::{guard, json_response, HttpResponse, Query, Refusal};
use crate::archive::Archiver;
use crate::auth::Auth;
use crate::error::{ErrorCode, RegistryError};
use crate::events::EventSink;
use crate::registry::Registry;

/// The report of the last collection.
pub(super) const GC_REPORT_PATH: &str = "/_pier/gc/report";

pub(super) async fn gc_report(
    registry: &Registry,
    auth: Option<&Auth>,
    parts: &http::request::Parts,
) -> Result<HttpResponse, Refusal> {
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!("{} is not supported here; GET the report", parts.method),
        )
        .into());
    }
    if let Some(auth) = auth {
        guard::check_operator(auth, parts, guard::Operator::Admin).await?;
    }
    let report = crate::gc::last_report(registry.store())
        .await?
        .ok_or_else(|| RegistryError::new(ErrorCode::GcReportUnknown, "no garbage collection has finished yet"))?;
    let body = serde_json::to_vec_pretty(&report).map_err(|e| RegistryError::unserializable("the report", e))?;
    let mut response = answer(body);
    if parts.method == Method::HEAD {
        *response.body_mut() = super::Body::Empty;
    }
    Ok(response)
}

/// Each namespace quota with its usage.
pub(super) const QUOTAS_PATH: &str = "/_pier/quotas";

/// `GET /_pier/quotas`: every `[[quota]]` with the bytes its namespace holds
/// (as counted since the last collection recounted it). Admins only when
/// auth is on.
pub(super) async fn quotas(
    registry: &Registry,
    auth: Option<&Auth>,
    parts: &http::request::Parts,
) -> Result<HttpResponse, Refusal> {
    if parts.method != Method::GET {
        return Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!("{} is not supported on {QUOTAS_PATH}; GET it", parts.method),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .into());
    }
    if let Some(auth) = auth {
        guard::check_operator(auth, parts, guard::Operator::Admin).await?;
    }
    let usage = registry.quota_usage().await?;
    let body = serde_json::to_vec_pretty(&usage).map_err(|e| RegistryError::unserializable("the quotas", e))?;
    Ok(answer(body))
}

/// The archive tier: `GET` what it holds, `GET .../verify` a check of every
/// blob, `POST .../run` a pass, `POST .../move|restore?image=` one image.
const ARCHIVE_PATH: &str = "/_pier/archive";
const ARCHIVE_VERIFY_PATH: &str = "/_pier/archive/verify";
const ARCHIVE_RUN_PATH: &str = "/_pier/archive/run";
const ARCHIVE_MOVE_PATH: &str = "/_pier/archive/move";
const ARCHIVE_RESTORE_PATH: &str = "/_pier/archive/restore";

pub(super) fn is_archive_path(path: &str) -> bool {
    matches!(
        path,
        ARCHIVE_PATH | ARCHIVE_VERIFY_PATH | ARCHIVE_RUN_PATH | ARCHIVE_MOVE_PATH | ARCHIVE_RESTORE_PATH
    )
}

/// The archive's endpoints (the Worker has no `pier archive`; the native
/// server answers them too). Admins only when auth is on. `POST
/// /_pier/archive/run[?dry_run=true]` runs a pass to its end within the
/// request; `move` and `restore` take `?image=REPO:TAG`.
pub(super) async fn archive(
    archiver: Option<&Archiver>,
    auth: Option<&Auth>,
    parts: &http::request::Parts,
    query: &Query,
) -> Result<HttpResponse, Refusal> {
    if let Some(auth) = auth {
        guard::check_operator(auth, parts, guard::Operator::Admin).await?;
    }
    let archiver = archiver.ok_or_else(|| not_configured("no [archive] is configured: there is no archive tier"))?;
    let path = parts.uri.path();
    let wanted = match path {
        ARCHIVE_PATH | ARCHIVE_VERIFY_PATH => Method::GET,
        _ => Method::POST,
    };
    if parts.method != wanted {
        return Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!("{} is not supported on {path}; {wanted} it", parts.method),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .into());
    }
    let body = match path {
        ARCHIVE_PATH => {
            let status = archiver.status().await?;
            let images: Vec<serde_json::Value> = archiver
                .archived_images()
                .await?
                .into_iter()
                .map(|(image, archived, blobs)| serde_json::json!({"image": image, "archived_blobs": archived, "blobs": blobs}))
                .collect();
            serde_json::json!({ "status": status, "images": images })
        }
        ARCHIVE_VERIFY_PATH => serde_json::to_value(archiver.verify().await?)
            .map_err(|e| RegistryError::unserializable("the archive check", e))?,
        ARCHIVE_RUN_PATH => {
            let dry_run = query.get("dry_run") == Some("true");
            serde_json::to_value(archiver.run(u64::MAX, dry_run).await?)
                .map_err(|e| RegistryError::unserializable("the archive pass", e))?
        }
        _ => {
            let direction = match path {
                ARCHIVE_MOVE_PATH => crate::archive::Direction::Out,
                _ => crate::archive::Direction::In,
            };
            let image = query.get("image").unwrap_or_default();
            let (repo, tag) = image
                .rsplit_once(':')
                .and_then(|(repo, tag)| Some((crate::names::RepoName::parse(repo)?, tag)))
                .ok_or_else(|| {
                    RegistryError::new(
                        ErrorCode::NameInvalid,
                        format!("image={image:?}: say which image, ?image=REPO:TAG"),
                    )
                    .with_status(StatusCode::BAD_REQUEST)
                })?;
            let (blobs, bytes) = archiver.move_image(&repo, tag, direction).await?;
            serde_json::json!({ "image": image, "moved_blobs": blobs, "moved_bytes": bytes })
        }
    };
    let body = serde_json::to_vec_pretty(&body).map_err(|e| RegistryError::unserializable("the archive", e))?;
    Ok(answer(body))
}

/// The outbox: `GET` lists, `POST .../retry` and `POST .../backfill` act.
pub(super) const EVENTS_PATH: &str = "/_pier/events";
const EVENTS_RETRY_PATH: &str = "/_pier/events/retry";
const EVENTS_BACKFILL_PATH: &str = "/_pier/events/backfill";
/// Deliveries `GET /_pier/events` lists without `?limit=`, and at most.
const DEFAULT_EVENTS_LISTED: usize = 1000;
const MAX_EVENTS_LISTED: usize = 10_000;

/// Whether `path` is one of the outbox's endpoints.
pub(super) fn is_events_path(path: &str) -> bool {
    matches!(path, EVENTS_PATH | EVENTS_RETRY_PATH | EVENTS_BACKFILL_PATH)
}

/// `GET /_pier/events[?dead=true][&limit=N]`: the deliveries waiting (and
/// given up), as JSON, the first 1000 (or N, at most 10,000); `POST /_pier/events/retry[?id=ID...]`: dead deliveries back in
/// their lanes (all without ids); `POST /_pier/events/backfill?rule=ID`: a
/// push event queued for every existing tag the rule matches. Admins only
/// when auth is on.
pub(super) async fn events(
    events: Option<&EventSink>,
    auth: Option<&Auth>,
    parts: &http::request::Parts,
    query: &Query,
) -> Result<HttpResponse, Refusal> {
    if let Some(auth) = auth {
        guard::check_operator(auth, parts, guard::Operator::Admin).await?;
    }
    let events =
        events.ok_or_else(|| not_configured("no webhook or replication rule is configured: there is no outbox"))?;
    let wrong_method = |wanted: &str| {
        RegistryError::new(
            ErrorCode::Unsupported,
            format!("{} is not supported on {}; {wanted}", parts.method, parts.uri.path()),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
    };
    let body = match parts.uri.path() {
        EVENTS_PATH if parts.method == Method::GET => {
            let dead = query.get("dead") == Some("true");
            let limit = match query.get("limit") {
                None => DEFAULT_EVENTS_LISTED,
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_EVENTS_LISTED).contains(n))
                    .ok_or_else(|| {
                        RegistryError::new(
                            ErrorCode::Unsupported,
                            format!("limit={text:?}: say how many deliveries to list, 1 to {MAX_EVENTS_LISTED}"),
                        )
                        .with_status(StatusCode::BAD_REQUEST)
                    })?,
            };
            let listed = events.outbox().list(dead, limit).await.map_err(RegistryError::from)?;
            serde_json::to_vec_pretty(&listed).map_err(|e| RegistryError::unserializable("the outbox", e))?
        }
        EVENTS_PATH => return Err(wrong_method("GET it").into()),
        _ if parts.method != Method::POST => return Err(wrong_method("POST to it").into()),
        EVENTS_RETRY_PATH => {
            let ids: Vec<String> = query.all("id").map(String::from).collect();
            let lanes = events.retry_dead(&ids).await.map_err(RegistryError::from)?;
            format!("{{\"lanes\":{lanes}}}").into_bytes()
        }
        _ => {
            let rule = query.get("rule").ok_or_else(|| {
                RegistryError::new(
                    ErrorCode::Unsupported,
                    "say which rule: ?rule=ID (its id is in the server's log)",
                )
                .with_status(StatusCode::BAD_REQUEST)
            })?;
            let queued = events.backfill(rule).await?;
            format!("{{\"queued\":{queued}}}").into_bytes()
        }
    };
    Ok(answer(body))
}

/// Whether the caller of a `/metrics` request may read the metrics (the
/// native server renders them; the Worker has none): `Ok` when auth is off
/// or the caller is an admin or a `metrics_readers` subject, else the
/// refusal to send (401 with a challenge, 403, or 429).
pub async fn authorize_metrics(auth: Option<&Auth>, parts: &http::request::Parts) -> Result<(), HttpResponse> {
    let Some(auth) = auth else {
        return Ok(());
    };
    guard::check_operator(auth, parts, guard::Operator::MetricsReader)
        .await
        .map_err(Refusal::into_response)
}

/// An operator's JSON answer, never cached (it says how things stand now).
fn answer(body: Vec<u8>) -> HttpResponse {
    let mut response = json_response(StatusCode::OK, Bytes::from(body));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

/// 404 for an endpoint of a part the deployment is not configured with.
fn not_configured(why: &str) -> RegistryError {
    RegistryError::new(ErrorCode::NameUnknown, why.to_string()).with_status(StatusCode::NOT_FOUND)
}
