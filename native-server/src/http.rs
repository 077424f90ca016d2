//! The axum shell: turns axum requests into core requests and back, plus the
//! endpoints that belong to the process rather than the registry (liveness,
//! readiness, metrics).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body as AxumBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{StreamExt, TryStreamExt};
use metrics_exporter_prometheus::PrometheusHandle;
use pier_core::api::{self, Body};
use pier_core::auth::{Auth, ClientAddress};
use pier_core::platform::{box_stream, BodyError};
use pier_core::store::Store;
use pier_core::Registry;

use crate::metrics::RequestMeters;
use pier_core::api::route_class;

/// A key that never exists: readiness reads it to prove the store answers.
const READINESS_PROBE_KEY: &str = "pier-readiness-probe";
/// How long the store may take to answer the readiness probe.
const READINESS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// The store as the registry sees it, for readiness.
    pub store: Arc<dyn Store>,
    pub metrics: PrometheusHandle,
    /// Who may do what; `None` leaves the registry open.
    pub auth: Option<Arc<Auth>>,
}

/// The application: process endpoints, everything else to the registry core.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { state.metrics.render() }),
        )
        .fallback(registry_handler)
        .with_state(state)
}

/// Ready when the store answers a read (a missing key is an answer).
async fn readiness(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(READINESS_TIMEOUT, state.store.head(READINESS_PROBE_KEY)).await {
        Ok(Ok(_)) => "ready".into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}\n")).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage: no answer within {}s\n", READINESS_TIMEOUT.as_secs()),
        )
            .into_response(),
    }
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
    let mut core_request = http::Request::from_parts(parts, box_stream(stream));
    // Failed logins are counted per peer address.
    if let Some(ConnectInfo(peer)) = core_request.extensions().get::<ConnectInfo<std::net::SocketAddr>>() {
        let client = ClientAddress(peer.ip().to_string());
        core_request.extensions_mut().insert(client);
    }
    let (method, path) = (core_request.method().clone(), core_request.uri().path().to_string());
    let response = api::handle_with_auth(&state.registry, state.auth.as_deref(), core_request).await;
    let status = response.status();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), elapsed_ms, "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), elapsed_ms, "request");
    }
    let bytes_out = meters.bytes_out.clone();
    meters.finish(status.as_u16(), started.elapsed());
    let (parts, body) = response.into_parts();
    let body = match body {
        Body::Empty => AxumBody::empty(),
        Body::Full(bytes) => {
            bytes_out.increment(bytes.len() as u64);
            AxumBody::from(bytes)
        }
        Body::Stream { stream, .. } => AxumBody::from_stream(stream.map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
            bytes_out.increment(chunk.len() as u64);
            Ok::<_, std::io::Error>(chunk)
        })),
    };
    Response::from_parts(parts, body)
}
