//! Prometheus metrics for `/metrics`: what operators of N instances behind a
//! load balancer watch (requests by route class and status, latency, bytes in
//! and out, uploads in flight, storage latency and failures).
//!
//! Built on the `metrics` facade with `metrics-exporter-prometheus` as the
//! recorder: the instrumentation is plain macros that cost an atomic add once
//! a handle is held, nothing is registered up front, and the exporter renders
//! the text format into our own axum route (no second listener).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "pier_http_requests_total";
pub const REQUEST_SECONDS: &str = "pier_http_request_duration_seconds";
pub const BYTES_IN: &str = "pier_http_request_body_bytes_total";
pub const BYTES_OUT: &str = "pier_http_response_body_bytes_total";
pub const UPLOADS_IN_FLIGHT: &str = "pier_uploads_in_flight";
pub const STORAGE_SECONDS: &str = "pier_storage_operation_duration_seconds";
pub const STORAGE_ERRORS: &str = "pier_storage_errors_total";
pub const QUOTA_USED: &str = "pier_quota_used_bytes";
pub const QUOTA_MAX: &str = "pier_quota_max_bytes";

/// Latency buckets in seconds: from a cached manifest GET to a large push.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// Installs the process-wide recorder and keeps its histograms drained.
/// Must be called inside the tokio runtime, once per process.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|builder| builder.install_recorder())
        .map_err(|e| format!("metrics: {e}"))?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "Registry API requests answered, by route class and status.");
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time to the response head, by route class."
    );
    metrics::describe_counter!(BYTES_IN, metrics::Unit::Bytes, "Request body bytes received.");
    metrics::describe_counter!(BYTES_OUT, metrics::Unit::Bytes, "Response body bytes sent.");
    metrics::describe_gauge!(
        UPLOADS_IN_FLIGHT,
        "Upload requests (POST, PATCH, PUT) being received now."
    );
    metrics::describe_histogram!(STORAGE_SECONDS, metrics::Unit::Seconds, "Storage calls, by operation.");
    metrics::describe_counter!(
        STORAGE_ERRORS,
        "Storage calls that failed as unavailable (answered 503), by operation."
    );
    metrics::describe_gauge!(
        QUOTA_USED,
        metrics::Unit::Bytes,
        "Bytes a namespace quota counts, as read from the store at the scrape."
    );
    metrics::describe_gauge!(QUOTA_MAX, metrics::Unit::Bytes, "Bytes a namespace quota allows.");
}

/// Reads each namespace quota's usage into its gauges, before a scrape is
/// rendered (one store read per quota; the counts live in the store, shared
/// by every instance). A failed read leaves the last value and is logged.
pub async fn set_quota_usage(registry: &pier_core::registry::Registry) {
    match registry.quota_usage().await {
        Ok(quotas) => {
            for quota in quotas {
                let namespace = quota.namespace;
                metrics::gauge!(QUOTA_USED, "namespace" => namespace.clone()).set(quota.used_bytes as f64);
                metrics::gauge!(QUOTA_MAX, "namespace" => namespace).set(quota.max_bytes as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e.message, "metrics: reading quota usage"),
    }
}

/// One route class's meters, looked up in the recorder once per process
/// rather than once per request (a lookup hashes the name and labels: a few
/// percent of a manifest GET's CPU).
struct RouteMeters {
    bytes_in: Counter,
    bytes_out: Counter,
    duration: Histogram,
    answered: Mutex<HashMap<u16, Counter>>,
}

impl RouteMeters {
    fn of(route: &'static str) -> Arc<RouteMeters> {
        static ROUTES: OnceLock<Mutex<HashMap<&'static str, Arc<RouteMeters>>>> = OnceLock::new();
        let mut routes = ROUTES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        routes
            .entry(route)
            .or_insert_with(|| {
                Arc::new(RouteMeters {
                    bytes_in: metrics::counter!(BYTES_IN, "route" => route),
                    bytes_out: metrics::counter!(BYTES_OUT, "route" => route),
                    duration: metrics::histogram!(REQUEST_SECONDS, "route" => route),
                    answered: Mutex::default(),
                })
            })
            .clone()
    }

    fn answered(&self, route: &'static str, status: u16) -> Counter {
        let mut answered = self.answered.lock().unwrap_or_else(PoisonError::into_inner);
        answered
            .entry(status)
            .or_insert_with(|| metrics::counter!(REQUESTS, "route" => route, "status" => status.to_string()))
            .clone()
    }
}

/// The meters of one request, taken once so that counting each body chunk
/// is an atomic add.
pub struct RequestMeters {
    route: &'static str,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    meters: Arc<RouteMeters>,
    _upload: Option<InFlight>,
}

impl RequestMeters {
    pub fn start(route: &'static str) -> RequestMeters {
        let meters = RouteMeters::of(route);
        RequestMeters {
            route,
            bytes_in: meters.bytes_in.clone(),
            bytes_out: meters.bytes_out.clone(),
            meters,
            _upload: pier_core::api::is_upload(route).then(|| InFlight::enter(metrics::gauge!(UPLOADS_IN_FLIGHT))),
        }
    }

    /// Counts the answer; the upload (if any) is no longer in flight.
    pub fn finish(self, status: u16, elapsed: Duration) {
        self.meters.answered(self.route, status).increment(1);
        self.meters.duration.record(elapsed.as_secs_f64());
    }
}

/// Holds a gauge up for as long as it lives, so a request dropped midway
/// (client gone) still leaves the gauge right.
struct InFlight(Gauge);

impl InFlight {
    fn enter(gauge: Gauge) -> InFlight {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
