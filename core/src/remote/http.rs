//! The HTTP client port: how core reaches other registries without knowing
//! which HTTP stack the platform has (reqwest on native, the Worker's `fetch`
//! at the edge). Like the storage port it is an async trait that is `Send` on
//! native and not on wasm32, with bodies that stream both ways, so a blob
//! passes through in bounded memory whatever its size.

use bytes::Bytes;

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
/// Implementations follow redirects (registries send blob GETs to storage
/// URLs) without carrying `Authorization` to another host, and return every
/// answer, whatever its status; `Err` is only for transport failures.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait HttpClient: MaybeSend + MaybeSync {
    async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, HttpError>;
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

/// A client whose every request fails, for unit tests of what is built
/// around one without sending anything.
#[cfg(test)]
pub(crate) struct NoNetwork;

#[cfg(test)]
#[async_trait::async_trait]
impl HttpClient for NoNetwork {
    async fn send(&self, _: OutgoingRequest) -> Result<IncomingResponse, HttpError> {
        Err(HttpError("no network in unit tests".into()))
    }
}
