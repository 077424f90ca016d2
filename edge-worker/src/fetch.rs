//! The HTTP client port on the Worker: core's requests to upstream
//! registries (the pull-through cache) sent with the runtime's `fetch`.
//! Bodies stay streams both ways: a request body of known length goes out
//! as a `FixedLengthStream` (so the runtime sends `Content-Length`), a
//! response body comes back as the runtime's stream. Redirects come back
//! as they are (`redirect: "manual"`): core follows those its policy allows
//! (`pier_core::remote::http::send`), without the runtime carrying
//! credentials or configured headers anywhere.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::CONTENT_LENGTH;
use pier_core::platform::box_stream;
use pier_core::remote::http::{HttpClient, HttpError, IncomingResponse, OutgoingBody, OutgoingRequest};
use pier_core::store::StoreError;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, RequestInit, RequestRedirect};

use crate::streams::readable_of_length;

pub struct FetchClient;

fn failed(what: &str, error: impl std::fmt::Display) -> HttpError {
    HttpError(format!("{what}: {error}"))
}

#[async_trait::async_trait(?Send)]
impl HttpClient for FetchClient {
    async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let headers = Headers::new();
        for (name, value) in &parts.headers {
            // The runtime sets Content-Length from the body itself.
            if name == CONTENT_LENGTH {
                continue;
            }
            if let Ok(value) = value.to_str() {
                headers.append(name.as_str(), value).map_err(|e| failed(&url, e))?;
            }
        }
        let length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.trim().parse::<u64>().ok());
        let mut init = RequestInit::new();
        init.with_method(Method::from(parts.method.as_str().to_string()))
            .with_headers(headers)
            .with_redirect(RequestRedirect::Manual);
        init.body = match body {
            OutgoingBody::Empty => None,
            OutgoingBody::Full(bytes) => Some(JsValue::from(Uint8Array::from(&bytes[..]))),
            OutgoingBody::Stream(stream) => {
                let length = length.ok_or_else(|| failed(&url, "a streamed request body needs a Content-Length"))?;
                let stream = box_stream(stream.map_err(|e| StoreError::Unavailable(e.0)));
                Some(JsValue::from(
                    readable_of_length(stream, length).map_err(|e| failed(&url, e))?,
                ))
            }
        };
        let request = worker::Request::new_with_init(&url, &init).map_err(|e| failed(&url, e))?;
        let mut response = Fetch::Request(request).send().await.map_err(|e| failed(&url, e))?;
        let mut answer = http::Response::builder().status(response.status_code());
        for (name, value) in response.headers().entries() {
            answer = answer.header(name, value);
        }
        let body = match response.stream() {
            Ok(stream) => {
                box_stream(stream.map(move |chunk| chunk.map(Bytes::from).map_err(|e| HttpError(e.to_string()))))
            }
            // No body (HEAD, 204, 304).
            Err(_) => box_stream(futures::stream::empty()),
        };
        answer.body(body).map_err(|e| failed(&url, e))
    }
}
