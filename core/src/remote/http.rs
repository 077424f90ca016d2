//! The HTTP client port: how core reaches other registries without knowing
//! which HTTP stack the platform has (reqwest on native, the Worker's `fetch`
//! at the edge). Like the storage port it is an async trait that is `Send` on
//! native and not on wasm32, with bodies that stream both ways, so a blob
//! passes through in bounded memory whatever its size.
//!
//! Redirects are core's decision, not the platform's: a port returns them as
//! they are and [`send`] follows those its caller's [`Redirects`] allows, so
//! both shells carry a credential or a configured header only where core
//! says (never to another host, never from `https` down to `http`).

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE, USER_AGENT,
};
use http::{Method, StatusCode};

use crate::platform::{BoxStream, MaybeSend, MaybeSync};

/// A transport failure: no answer (refused, reset, timed out, bad TLS), or
/// a body that broke off. An answer with an error status is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// A body arriving or leaving as a stream of chunks.
pub type HttpBody = BoxStream<'static, HttpError>;

/// What a request sends.
pub enum OutgoingBody {
    Empty,
    Full(Bytes),
    /// Sent as it is read; give the request a `Content-Length` when the
    /// length is known (registries refuse chunked transfer on some routes).
    Stream(HttpBody),
}

impl OutgoingBody {
    /// A copy to send the request again with; `None` for a stream, used up once sent.
    pub fn try_clone(&self) -> Option<OutgoingBody> {
        match self {
            OutgoingBody::Empty => Some(OutgoingBody::Empty),
            OutgoingBody::Full(bytes) => Some(OutgoingBody::Full(bytes.clone())),
            OutgoingBody::Stream(_) => None,
        }
    }
}

pub type OutgoingRequest = http::Request<OutgoingBody>;
pub type IncomingResponse = http::Response<HttpBody>;

/// Sends requests to absolute `http(s)://` URIs.
///
/// Implementations never follow redirects: a 3xx comes back as it is, with
/// its `Location` ([`send`] decides which to follow, and with what headers).
/// They return every answer, whatever its status; `Err` is only for
/// transport failures.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait HttpClient: MaybeSend + MaybeSync {
    async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, HttpError>;
}

/// Which redirects a request may follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirects {
    /// None: a 3xx is the answer (webhook deliveries: the receiver is
    /// the configured URL, and its headers are for it alone).
    Never,
    /// Within the request's origin (scheme, host and port) only: API
    /// calls and token requests, which carry credentials.
    SameOrigin,
    /// To any `http(s)` origin, but never from `https` to `http`, and
    /// without `Authorization` or any header but the protocol's own once
    /// the origin changed: blob reads, which registries send to storage
    /// URLs and whose bytes are checked against their digest.
    AnyOrigin,
}

/// The most redirects one request follows.
pub const MAX_REDIRECTS: usize = 10;

/// The headers a request keeps when a redirect leads to another origin:
/// what the protocol needs to read the same thing there. Everything else
/// (`Authorization`, `Cookie`, configured secrets) stays behind.
const CROSS_ORIGIN_HEADERS: [HeaderName; 4] = [ACCEPT, RANGE, USER_AGENT, ACCEPT_ENCODING];

/// Sends `request`, following the redirects `redirects` allows. A redirect
/// it may not follow is an error naming both ends; one it cannot (a
/// streamed body, already sent) is returned as the answer.
pub async fn send(
    http: &dyn HttpClient,
    request: OutgoingRequest,
    redirects: Redirects,
) -> Result<IncomingResponse, HttpError> {
    let (mut parts, mut body) = request.into_parts();
    for _ in 0..=MAX_REDIRECTS {
        let replay = body.try_clone();
        let request = http::Request::from_parts(parts.clone(), body);
        let response = http.send(request).await?;
        if redirects == Redirects::Never || !response.status().is_redirection() {
            return Ok(response);
        }
        let Some(location) = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
            return Ok(response);
        };
        let from = url::Url::parse(&parts.uri.to_string()).map_err(|e| HttpError(format!("{}: {e}", parts.uri)))?;
        let to = from
            .join(location)
            .map_err(|e| HttpError(format!("{from}: bad redirect Location {location:?}: {e}")))?;
        follows(&from, &to, redirects)
            .map_err(|why| HttpError(format!("{} {from}: redirect to {to} not followed: {why}", parts.method)))?;
        let status = response.status();
        let becomes_get = status == StatusCode::SEE_OTHER
            || (parts.method == Method::POST && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND));
        body = if becomes_get {
            parts.method = Method::GET;
            parts.headers.remove(CONTENT_TYPE);
            parts.headers.remove(CONTENT_LENGTH);
            OutgoingBody::Empty
        } else {
            match replay {
                Some(body) => body,
                None => return Ok(response),
            }
        };
        if from.origin() != to.origin() {
            let kept: Vec<(HeaderName, HeaderValue)> = parts
                .headers
                .iter()
                .filter(|(name, _)| {
                    CROSS_ORIGIN_HEADERS.contains(name) || *name == CONTENT_TYPE || *name == CONTENT_LENGTH
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            parts.headers.clear();
            for (name, value) in kept {
                parts.headers.append(name, value);
            }
        }
        parts.uri = to
            .as_str()
            .parse()
            .map_err(|e| HttpError(format!("redirect to {to}: {e}")))?;
    }
    Err(HttpError(format!("more than {MAX_REDIRECTS} redirects")))
}

/// Whether a redirect from `from` to `to` may be followed under `redirects`.
fn follows(from: &url::Url, to: &url::Url, redirects: Redirects) -> Result<(), &'static str> {
    if !matches!(to.scheme(), "http" | "https") || to.host_str().is_none() {
        return Err("only http(s) URLs with a host are followed");
    }
    if from.scheme() == "https" && to.scheme() == "http" {
        return Err("never from https down to http");
    }
    match redirects {
        Redirects::Never => Err("this request follows no redirect"),
        Redirects::SameOrigin if from.origin() != to.origin() => {
            Err("this request follows redirects within its origin only")
        }
        Redirects::SameOrigin | Redirects::AnyOrigin => Ok(()),
    }
}

/// Reads a whole response body of at most `limit` bytes; `None` if longer.
pub async fn read_body(mut body: HttpBody, limit: usize) -> Result<Option<Bytes>, HttpError> {
    use futures::StreamExt;
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out.freeze()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http::header::AUTHORIZATION;

    use super::*;

    /// Answers from a script keyed by URL, recording every request's URL
    /// and headers; unknown URLs answer 200.
    struct Scripted {
        redirects: Vec<(&'static str, u16, &'static str)>,
        seen: Mutex<Vec<(String, http::HeaderMap)>>,
    }

    #[async_trait::async_trait]
    impl HttpClient for Scripted {
        async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, HttpError> {
            let url = request.uri().to_string();
            self.seen.lock().unwrap().push((url.clone(), request.headers().clone()));
            let mut answer = http::Response::builder().status(200);
            if let Some((_, status, location)) = self.redirects.iter().find(|(from, _, _)| *from == url) {
                answer = answer.status(*status).header(LOCATION, *location);
            }
            Ok(answer
                .body(crate::platform::box_stream(futures::stream::empty()))
                .unwrap())
        }
    }

    fn scripted(redirects: Vec<(&'static str, u16, &'static str)>) -> Scripted {
        Scripted {
            redirects,
            seen: Mutex::new(Vec::new()),
        }
    }

    fn get(url: &str) -> OutgoingRequest {
        http::Request::get(url)
            .header(AUTHORIZATION, "Bearer secret")
            .header("x-hook-secret", "s3cr3t")
            .header(ACCEPT, "application/json")
            .header(RANGE, "bytes=0-9")
            .body(OutgoingBody::Empty)
            .unwrap()
    }

    fn run(client: &Scripted, request: OutgoingRequest, redirects: Redirects) -> Result<u16, HttpError> {
        futures::executor::block_on(send(client, request, redirects)).map(|r| r.status().as_u16())
    }

    #[test]
    fn another_origin_gets_neither_credentials_nor_configured_headers() {
        let client = scripted(vec![
            ("https://reg.test/v2/a/blobs/x", 307, "https://storage.test/x?sig=1"),
            ("https://storage.test/x?sig=1", 302, "https://reg.test/back"),
        ]);
        assert_eq!(
            run(&client, get("https://reg.test/v2/a/blobs/x"), Redirects::AnyOrigin),
            Ok(200)
        );
        let seen = client.seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen[0].1.contains_key(AUTHORIZATION));
        for (url, headers) in &seen[1..] {
            assert!(!headers.contains_key(AUTHORIZATION), "{url}");
            assert!(!headers.contains_key("x-hook-secret"), "{url}");
            assert_eq!(headers[RANGE], "bytes=0-9", "{url}: what the read needs stays");
        }
        // Once left behind, credentials do not come back with a return to the origin.
        assert_eq!(seen[2].0, "https://reg.test/back");
    }

    #[test]
    fn the_same_origin_keeps_headers() {
        let client = scripted(vec![("https://reg.test/a", 308, "/b")]);
        assert_eq!(run(&client, get("https://reg.test/a"), Redirects::SameOrigin), Ok(200));
        let seen = client.seen.lock().unwrap();
        assert_eq!(seen[1].0, "https://reg.test/b");
        assert_eq!(seen[1].1[AUTHORIZATION], "Bearer secret");
    }

    #[test]
    fn refused_redirects_send_nothing_there() {
        for (redirects, location) in [
            (Redirects::AnyOrigin, "http://reg.test/plain"),
            (Redirects::AnyOrigin, "file:///etc/passwd"),
            (Redirects::SameOrigin, "https://elsewhere.test/a"),
            (Redirects::SameOrigin, "https://reg.test:8443/a"),
        ] {
            let client = scripted(vec![("https://reg.test/a", 302, location)]);
            let error = run(&client, get("https://reg.test/a"), redirects).unwrap_err();
            assert!(error.0.contains("not followed"), "{location}: {error}");
            assert_eq!(client.seen.lock().unwrap().len(), 1, "{location}");
        }
    }

    #[test]
    fn never_returns_the_redirect_and_loops_end() {
        let client = scripted(vec![("https://hook.test/", 307, "https://collector.test/")]);
        assert_eq!(run(&client, get("https://hook.test/"), Redirects::Never), Ok(307));
        assert_eq!(client.seen.lock().unwrap().len(), 1);
        let client = scripted(vec![("https://reg.test/loop", 302, "/loop")]);
        let error = run(&client, get("https://reg.test/loop"), Redirects::SameOrigin).unwrap_err();
        assert!(error.0.contains("more than"), "{error}");
        assert_eq!(client.seen.lock().unwrap().len(), MAX_REDIRECTS + 1);
    }
}
