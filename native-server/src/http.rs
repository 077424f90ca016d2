//! The axum shell: turns axum requests into core requests and back, plus the
//! endpoints that belong to the process rather than the registry: liveness
//! (`/healthz`, always open for probes), readiness (`/readyz`: ready or not,
//! the reason only in the log) and `/metrics` (with auth on, for whom core
//! says may read them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body as AxumBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{StreamExt, TryStreamExt};
use metrics::Counter;
use metrics_exporter_prometheus::PrometheusHandle;
use pier_core::api::{self, Body};
use pier_core::auth::ClientAddress;
use pier_core::body::BodyError;
use pier_core::deployment::{Deployment, Site};
use pier_core::platform::box_stream;
use pier_core::store::Store;

use crate::metrics::RequestMeters;
use pier_core::api::route_class;

/// A key that never exists: readiness reads it to prove the store answers.
const READINESS_PROBE_KEY: &str = "pier-readiness-probe";
/// How long the store may take to answer the readiness probe.
const READINESS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub deployment: Arc<Deployment>,
    /// Where the deployment serves: the registry over the store.
    pub site: Arc<Site>,
    /// The store as the registry sees it, for readiness.
    pub store: Arc<dyn Store>,
    pub metrics: PrometheusHandle,
}

/// The application: process endpoints, everything else to the registry core.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        .fallback(registry_handler)
        .with_state(state)
}

/// Ready when the store answers a read (a missing key is an answer). The
/// answer says no more than that: why not goes to the log, since anyone
/// may ask (storage errors name buckets, paths and endpoints).
async fn readiness(State(state): State<AppState>) -> Response {
    let failure = match tokio::time::timeout(READINESS_TIMEOUT, state.store.head(READINESS_PROBE_KEY)).await {
        Ok(Ok(_)) => return "ready".into_response(),
        Ok(Err(e)) => format!("storage: {e}"),
        Err(_) => format!("storage: no answer within {}s", READINESS_TIMEOUT.as_secs()),
    };
    tracing::warn!(%failure, "not ready");
    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
}

/// The Prometheus metrics, to whom core allows them.
async fn metrics(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = with_client_address(request).into_parts();
    match api::authorize_metrics(state.deployment.auth(), &parts).await {
        Ok(()) => {
            crate::metrics::set_quota_usage(state.site.registry()).await;
            state.metrics.render().into_response()
        }
        Err(refusal) => axum_response(refusal, None),
    }
}

/// Marks a request with its peer address: failed logins are counted per
/// client.
fn with_client_address<B>(mut request: http::Request<B>) -> http::Request<B> {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>() {
        let client = ClientAddress(peer.ip().to_string());
        request.extensions_mut().insert(client);
    }
    request
}

async fn registry_handler(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let meters = RequestMeters::start(route_class(&parts.method, parts.uri.path()));
    let bytes_in = meters.bytes_in.clone();
    let stream = body
        .into_data_stream()
        .map_err(|e| BodyError::Read(e.to_string()))
        .inspect_ok(move |chunk| bytes_in.increment(chunk.len() as u64));
    let core_request = with_client_address(http::Request::from_parts(parts, box_stream(stream)));
    // For the log line: a clone of each shares the request's bytes.
    let (method, uri) = (core_request.method().clone(), core_request.uri().clone());
    let response = state.deployment.handle(&state.site, core_request).await;
    let status = response.status();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if status.is_server_error() {
        tracing::warn!(%method, path = uri.path(), status = status.as_u16(), elapsed_ms, "request failed");
    } else {
        tracing::debug!(%method, path = uri.path(), status = status.as_u16(), elapsed_ms, "request");
    }
    let bytes_out = meters.bytes_out.clone();
    meters.finish(status.as_u16(), started.elapsed());
    axum_response(response, Some(bytes_out))
}

/// A core response as axum's, its body bytes counted on `bytes_out`.
fn axum_response(response: api::HttpResponse, bytes_out: Option<Counter>) -> Response {
    let count = move |n: usize| {
        if let Some(counter) = &bytes_out {
            counter.increment(n as u64);
        }
    };
    let (parts, body) = response.into_parts();
    let body = match body {
        Body::Empty => AxumBody::empty(),
        Body::Full(bytes) => {
            count(bytes.len());
            AxumBody::from(bytes)
        }
        Body::Stream { stream, .. } => AxumBody::from_stream(stream.map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
            count(chunk.len());
            Ok::<_, std::io::Error>(chunk)
        })),
    };
    Response::from_parts(parts, body)
}
