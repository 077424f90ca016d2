//! Request bodies as the shells hand them to core: a stream of chunks that
//! may fail, with the deployment's size limit applied on the way in.

use bytes::Bytes;

use crate::platform::{box_stream, BoxStream};

/// A request body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The connection failed (client gone, reset).
    Read(String),
    /// The body went past the deployment's limit of this many bytes.
    TooLarge(u64),
}

impl BodyError {
    /// The registry error a failed body turns into.
    pub fn into_registry_error(self) -> crate::error::RegistryError {
        use crate::error::{ErrorCode, RegistryError};
        match self {
            BodyError::Read(msg) => RegistryError::new(ErrorCode::BlobUploadInvalid, format!("request body: {msg}")),
            BodyError::TooLarge(limit) => RegistryError::new(
                ErrorCode::SizeInvalid,
                format!(
                    "request bodies are limited to {limit} bytes here; push larger blobs in chunks \
                     (PATCH with Content-Range) of at most {limit} bytes each"
                ),
            )
            .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
            .with_detail(serde_json::json!({ "limit": limit })),
        }
    }
}

/// Ends `body` with [`BodyError::TooLarge`] once it passes `limit` bytes.
pub fn limit_body(body: RequestBody, limit: u64) -> RequestBody {
    use futures::StreamExt;
    let mut seen = 0u64;
    box_stream(body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > limit {
            Err(BodyError::TooLarge(limit))
        } else {
            Ok(chunk)
        }
    }))
}

/// A request body as the shells hand it to core: a stream of chunks.
pub type RequestBody = BoxStream<'static, BodyError>;

/// An empty request body.
pub fn empty_body() -> RequestBody {
    box_stream(futures::stream::empty())
}

/// A request body of one chunk.
pub fn full_body(bytes: impl Into<Bytes>) -> RequestBody {
    let bytes = bytes.into();
    box_stream(futures::stream::once(async move { Ok(bytes) }))
}
