//! Request and response translation between the Workers runtime and core's
//! `http` types: the edge counterpart of the native server's axum shell. No
//! registry decision is made here.

use http::header::{HeaderName, HeaderValue};
use pier_core::api::Body;
use pier_core::auth::{ClientAddress, RequestOrigin};
use pier_core::body::{empty_body, RequestBody};
use worker::{EncodeBody, Headers, Response, ResponseBuilder};

use crate::streams::{readable_of_length, request_body, UnreadBody};

/// The address of the client, set by Cloudflare on every request.
const CLIENT_IP_HEADER: &str = "cf-connecting-ip";

/// The core request for a Worker request, its body streaming from the client,
/// and what core may leave unread of that body (see [`request_body`]).
pub fn core_request(mut request: worker::Request) -> worker::Result<(http::Request<RequestBody>, Option<UnreadBody>)> {
    let url = request.url()?;
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let mut builder = http::Request::builder()
        .method(request.inner().method().as_str())
        .uri(path_and_query);
    if let Some(headers) = builder.headers_mut() {
        copy_request_headers(request.headers(), headers);
    }
    let client = request.headers().get(CLIENT_IP_HEADER)?;
    let (body, unread) = if request.inner().body().is_some() {
        let (body, unread) = request_body(request.stream()?);
        (body, Some(unread))
    } else {
        (empty_body(), None)
    };
    let mut request = builder
        .body(body)
        .map_err(|err| worker::Error::RustError(err.to_string()))?;
    // What auth needs to know of the client: who it is, for the failed-login
    // counts, and the URL it used, for the token realm of challenges.
    if let Some(client) = client {
        request.extensions_mut().insert(ClientAddress(client));
    }
    request
        .extensions_mut()
        .insert(RequestOrigin(url.origin().ascii_serialization()));
    Ok((request, unread))
}

/// Headers a client sent, minus any the `http` crate cannot represent (a
/// registry never reads such headers; refusing the request over one would be
/// a worse answer than ignoring it).
fn copy_request_headers(from: &Headers, to: &mut http::HeaderMap) {
    for (name, value) in from.entries() {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            to.append(name, value);
        }
    }
}

/// The Worker response for a core response. Bodies are sent exactly as core
/// produced them (`encodeBody: "manual"`): digest-addressed content must not be
/// compressed on the fly, which would drop Content-Length and change the bytes
/// on the wire.
pub fn worker_response(response: http::Response<Body>) -> worker::Result<Response> {
    let (parts, body) = response.into_parts();
    let headers = Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    let builder = ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(headers)
        .with_encode_body(EncodeBody::Manual);
    Ok(match body {
        Body::Empty => builder.empty(),
        Body::Full(bytes) => builder.fixed(bytes.to_vec()),
        Body::Stream { stream, length } => builder.stream(readable_of_length(stream, length)?),
    })
}
