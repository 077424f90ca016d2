//! The axum shell: turns axum requests into core requests and back, plus the
//! endpoints that belong to the process rather than the registry (health).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::{StreamExt, TryStreamExt};
use pier_core::api::{self, Body};
use pier_core::platform::{box_stream, BodyError};
use pier_core::Registry;

/// The application: `/healthz` and everything else to the registry core.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(registry_handler)
        .with_state(registry)
}

async fn registry_handler(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let stream = body.into_data_stream().map_err(|e| BodyError::Read(e.to_string()));
    let core_request = http::Request::from_parts(parts, box_stream(stream));
    let (method, path) = (core_request.method().clone(), core_request.uri().path().to_string());
    let response = api::handle(&registry, core_request).await;
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request failed");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    }
    let (parts, body) = response.into_parts();
    let body = match body {
        Body::Empty => AxumBody::empty(),
        Body::Full(bytes) => AxumBody::from(bytes),
        Body::Stream { stream, .. } => {
            AxumBody::from_stream(stream.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string()))))
        }
    };
    Response::from_parts(parts, body)
}
