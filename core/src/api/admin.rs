//! pier's own endpoints for operators, beside the distribution API:
//! `GET /_pier/gc/report`, the report of the last garbage collection, so an
//! operator of the edge Worker (which has no command line) can see what its
//! cron collections did; and who may read the native server's `/metrics`
//! (which the shell renders). With auth on, only admins may read the report,
//! and admins and `metrics_readers` the metrics; without auth both are open
//! like every other endpoint.

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{Method, StatusCode};

use super::{guard, json_response, HttpResponse, Refusal};
use crate::auth::Auth;
use crate::error::{ErrorCode, RegistryError};
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
    let mut response = json_response(StatusCode::OK, Bytes::from(body));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    if parts.method == Method::HEAD {
        *response.body_mut() = super::Body::Empty;
    }
    Ok(response)
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
