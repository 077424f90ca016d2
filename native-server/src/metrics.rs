//! Prometheus metrics for `/metrics`: what operators of N instances behind a
//! load balancer watch (requests by route class and status, latency, bytes in
//! and out, uploads in flight, storage latency and failures).
//!
//! Built on the `metrics` facade with `metrics-exporter-prometheus` as the
//! recorder: the instrumentation is plain macros that cost an atomic add once
//! a handle is held, nothing is registered up front, and the exporter renders
//! the text format into our own axum route (no second listener).

use std::time::Duration;

use http::Method;
use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "pier_http_requests_total";
pub const REQUEST_SECONDS: &str = "pier_http_request_duration_seconds";
pub const BYTES_IN: &str = "pier_http_request_body_bytes_total";
pub const BYTES_OUT: &str = "pier_http_response_body_bytes_total";
pub const UPLOADS_IN_FLIGHT: &str = "pier_uploads_in_flight";
pub const STORAGE_SECONDS: &str = "pier_storage_operation_duration_seconds";
pub const STORAGE_ERRORS: &str = "pier_storage_errors_total";

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
}

/// The class of a registry request, for labels: the kind of resource and
/// what is done to it (`blob_get`, `manifest_put`, `upload_patch`...). The
/// set is fixed, so label cardinality stays bounded whatever clients send.
pub fn route_class(method: &Method, path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix("/v2") else {
        return "other";
    };
    let resource = if rest.is_empty() || rest == "/" {
        "ping"
    } else if rest == "/_catalog" {
        "catalog"
    } else if rest.ends_with("/tags/list") {
        "tags"
    } else if rest.ends_with("/blobs/uploads") || rest.ends_with("/blobs/uploads/") {
        "uploads"
    } else {
        match rest.rsplit_once('/').map(|(head, _)| head) {
            Some(head) if head.ends_with("/blobs/uploads") => "upload",
            Some(head) if head.ends_with("/blobs") => "blob",
            Some(head) if head.ends_with("/manifests") => "manifest",
            Some(head) if head.ends_with("/referrers") => "referrers",
            _ => "other",
        }
    };
    match (resource, method.as_str()) {
        ("ping", _) => "ping",
        ("catalog", _) => "catalog",
        ("tags", _) => "tags_list",
        ("referrers", _) => "referrers",
        ("uploads", "POST") => "upload_start",
        ("upload", "GET") => "upload_status",
        ("upload", "PATCH") => "upload_patch",
        ("upload", "PUT") => "upload_put",
        ("upload", "DELETE") => "upload_cancel",
        ("blob", "GET") => "blob_get",
        ("blob", "HEAD") => "blob_head",
        ("blob", "DELETE") => "blob_delete",
        ("manifest", "GET") => "manifest_get",
        ("manifest", "HEAD") => "manifest_head",
        ("manifest", "PUT") => "manifest_put",
        ("manifest", "DELETE") => "manifest_delete",
        _ => "other",
    }
}

/// Whether a route class receives blob bytes.
fn is_upload(route: &str) -> bool {
    matches!(route, "upload_start" | "upload_patch" | "upload_put")
}

/// The meters of one request, taken once so that counting each body chunk
/// is an atomic add.
pub struct RequestMeters {
    pub route: &'static str,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    _upload: Option<InFlight>,
}

impl RequestMeters {
    pub fn start(route: &'static str) -> RequestMeters {
        RequestMeters {
            route,
            bytes_in: metrics::counter!(BYTES_IN, "route" => route),
            bytes_out: metrics::counter!(BYTES_OUT, "route" => route),
            _upload: is_upload(route).then(|| InFlight::enter(metrics::gauge!(UPLOADS_IN_FLIGHT))),
        }
    }

    /// Counts the answer; the upload (if any) is no longer in flight.
    pub fn finish(self, status: u16, elapsed: Duration) {
        metrics::counter!(REQUESTS, "route" => self.route, "status" => status.to_string()).increment(1);
        metrics::histogram!(REQUEST_SECONDS, "route" => self.route).record(elapsed.as_secs_f64());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_routes() {
        let cases = [
            (Method::GET, "/v2/", "ping"),
            (Method::GET, "/v2", "ping"),
            (Method::GET, "/v2/_catalog", "catalog"),
            (Method::GET, "/v2/a/b/tags/list", "tags_list"),
            (Method::POST, "/v2/a/blobs/uploads/", "upload_start"),
            (Method::PATCH, "/v2/a/blobs/uploads/0f3c", "upload_patch"),
            (Method::PUT, "/v2/a/blobs/uploads/0f3c", "upload_put"),
            (Method::GET, "/v2/a/blobs/uploads/0f3c", "upload_status"),
            (Method::DELETE, "/v2/a/blobs/uploads/0f3c", "upload_cancel"),
            (Method::GET, "/v2/blobs/blobs/sha256:1", "blob_get"),
            (Method::HEAD, "/v2/a/blobs/sha256:1", "blob_head"),
            (Method::PUT, "/v2/a/manifests/latest", "manifest_put"),
            (Method::GET, "/v2/manifests/manifests/latest", "manifest_get"),
            (Method::GET, "/v2/a/referrers/sha256:1", "referrers"),
            (Method::POST, "/v2/a/manifests/latest", "other"),
            (Method::GET, "/v3/x", "other"),
            (Method::GET, "/v2/a/unknown/x", "other"),
        ];
        for (method, path, class) in cases {
            assert_eq!(route_class(&method, path), class, "{method} {path}");
        }
    }
}
