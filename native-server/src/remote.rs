//! The HTTP client port on native: core's requests to other registries
//! (`pier copy`, the pull-through cache) sent with reqwest over rustls,
//! bodies streamed both ways. Redirects are returned, not followed: core
//! follows those its policy allows (`pier_core::remote::http::send`).

use std::time::Duration;

use futures::TryStreamExt;
use pier_core::platform::box_stream;
use pier_core::remote::http::{HttpClient, HttpError, IncomingResponse, OutgoingBody, OutgoingRequest};

/// How long connecting may take, and the longest silence inside an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The client, or why it could not be built: a host without CA
/// certificates (an air-gapped site, a bare container) still serves its own
/// registry, and only requests to other registries fail, saying why.
pub struct ReqwestClient(Result<reqwest::Client, String>);

impl ReqwestClient {
    pub fn open() -> ReqwestClient {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                format!(
                    "HTTP client: {} (requests to other registries need CA certificates: install them or set SSL_CERT_FILE)",
                    error_chain(&e)
                )
            });
        ReqwestClient(client)
    }

    /// Why requests to other registries cannot be made, if they cannot.
    pub fn unusable(&self) -> Option<&str> {
        self.0.as_ref().err().map(String::as_str)
    }
}

/// An error with its causes, which is where reqwest says what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait::async_trait]
impl HttpClient for ReqwestClient {
    async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, HttpError> {
        let client = self.0.as_ref().map_err(|why| HttpError(why.clone()))?;
        let (parts, body) = request.into_parts();
        let mut builder = client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers);
        builder = match body {
            OutgoingBody::Empty => builder,
            OutgoingBody::Full(bytes) => builder.body(bytes),
            OutgoingBody::Stream(stream) => builder.body(reqwest::Body::wrap_stream(stream)),
        };
        let response = builder.send().await.map_err(|e| HttpError(error_chain(&e)))?;
        let mut answer = http::Response::builder().status(response.status());
        if let Some(headers) = answer.headers_mut() {
            *headers = response.headers().clone();
        }
        let body = box_stream(response.bytes_stream().map_err(|e| HttpError(error_chain(&e))));
        answer.body(body).map_err(|e| HttpError(e.to_string()))
    }
}
