//! Request and response translation between the Workers runtime and core's
//! `http` types: the edge counterpart of the native server's axum shell. No
//! registry decision is made here.

use http::header::{HeaderName, HeaderValue};
use pier_core::api::Body;
use pier_core::auth::{ClientAddress, RequestOrigin};
use pier_core::body::{empty_body, RequestBody};
use worker::{web_sys, EncodeBody, Headers, Response, ResponseBuilder};

use crate::streams::{readable_of_length, request_body, UnreadBody};

/// The address of the client, set by Cloudflare on every request.
const CLIENT_IP_HEADER: &str = "cf-connecting-ip";

/// The core request for a Worker request, its body streaming from the client,
/// and what core may leave unread of that body (see [`request_body`]). It
/// reads the runtime's request directly: `worker::Request` would also build
/// its `cf` object and parse its URL, work a registry request never uses.
pub fn core_request(request: web_sys::Request) -> worker::Result<(http::Request<RequestBody>, Option<UnreadBody>)> {
    let url = request.url();
    let (origin, path_and_query) = split_url(&url)?;
    let mut builder = http::Request::builder()
        .method(request.method().as_str())
        .uri(path_and_query);
    let headers = Headers(request.headers());
    if let Some(to) = builder.headers_mut() {
        copy_request_headers(&headers, to);
    }
    let client = headers.get(CLIENT_IP_HEADER)?;
    let length = headers.get("content-length")?.and_then(|length| length.parse().ok());
    let (body, unread) = match request.body() {
        Some(readable) => {
            let (body, unread) = request_body(request, readable, length);
            (body, Some(unread))
        }
        None => (empty_body(), None),
    };
    let mut request = builder
        .body(body)
        .map_err(|err| worker::Error::RustError(err.to_string()))?;
    // What auth needs to know of the client: who it is, for the failed-login
    // counts, and the URL it used, for the token realm of challenges.
    if let Some(client) = client {
        request.extensions_mut().insert(ClientAddress(client));
    }
    request.extensions_mut().insert(RequestOrigin(origin.to_string()));
    Ok((request, unread))
}

/// The origin (`https://host[:port]`) and the path with its query of a URL
/// as the runtime serializes it: absolute, with a path (`/` at least) and
/// the default port left out, so no parsing is needed to split it.
fn split_url(url: &str) -> worker::Result<(&str, &str)> {
    let malformed = || worker::Error::RustError(format!("request URL {url:?} is not absolute"));
    let host_start = url.find("://").ok_or_else(malformed)? + 3;
    let path_start = url[host_start..].find('/').map_or(url.len(), |at| host_start + at);
    let path_and_query = match &url[path_start..] {
        "" => "/",
        rest => rest.split('#').next().unwrap_or(rest),
    };
    Ok((&url[..path_start], path_and_query))
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
