//! Byte streams across the Rust/JavaScript boundary, without ever holding a
//! whole body: JavaScript `ReadableStream`s become core's chunk streams, and
//! core's streams become `ReadableStream`s of a declared length, so the runtime
//! sends `Content-Length` and never re-chunks or re-encodes them.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use pier_core::body::{BodyError, RequestBody};
use pier_core::platform::box_stream;
use pier_core::store::ByteStream;
use worker::js_sys::{BigInt, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::web_sys::ReadableStream;
use worker::worker_sys::FixedLengthStream;

use crate::js_body::take_js_body;

/// A `ReadableStream` of exactly `length` bytes with what `stream` yields: the
/// JavaScript stream behind it when it has one nobody read from (the bytes
/// never enter wasm), else the chunks copied out of wasm. The runtime knows
/// the length up front (`FixedLengthStream`), so it sends Content-Length and
/// fails the body if the stream ends early or runs long.
pub fn readable_of_length(stream: ByteStream, length: u64) -> worker::Result<ReadableStream> {
    if let Some(readable) = take_js_body(&stream) {
        return of_length(readable, length);
    }
    let chunks = stream
        .map_ok(|chunk| JsValue::from(Uint8Array::from(&chunk[..])))
        .map_err(|err| JsValue::from(js_error(&err.to_string())));
    let source: ReadableStream = wasm_streams::ReadableStream::from_stream(chunks)
        .into_raw()
        .unchecked_into();
    of_length(source, length)
}

/// `readable` as a stream of declared `length`; the bytes stay in JavaScript.
fn of_length(readable: ReadableStream, length: u64) -> worker::Result<ReadableStream> {
    let fixed = if length <= u32::MAX as u64 {
        FixedLengthStream::new(length as u32)?
    } else {
        FixedLengthStream::new_big_int(BigInt::from(length))?
    };
    // The pipe runs on its own; a failure aborts the response body, which is
    // all a client can be told once the headers are out.
    let _ = readable.pipe_to(&fixed.writable());
    Ok(fixed.readable())
}

fn js_error(message: &str) -> worker::js_sys::Error {
    worker::js_sys::Error::new(message)
}

/// A request body for core, and the handle the shell keeps to read out what
/// core leaves unread. workerd (unlike hyper under the native server) drops the
/// connection when a Worker answers before the request body is consumed, so a
/// client still sending loses the answer; the shell reads the rest of the body
/// before it answers.
pub fn request_body(readable: worker::ByteStream) -> (RequestBody, UnreadBody) {
    let shared = Rc::new(RefCell::new(Some(readable)));
    (box_stream(SharedBody(shared.clone())), UnreadBody(shared))
}

struct SharedBody(Rc<RefCell<Option<worker::ByteStream>>>);

impl Stream for SharedBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let mut slot = self.0.borrow_mut();
        let Some(readable) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        match readable.poll_next_unpin(cx) {
            Poll::Ready(None) => {
                *slot = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(
                chunk.map(Bytes::from).map_err(|err| BodyError::Read(err.to_string())),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What remains of a request body after core answered.
pub struct UnreadBody(Rc<RefCell<Option<worker::ByteStream>>>);

impl UnreadBody {
    /// Reads and drops the rest of the body, up to `limit` bytes (past that the
    /// client is cut off: it sent more than any request may carry).
    pub async fn drain(self, limit: u64) {
        let Some(mut readable) = self.0.borrow_mut().take() else {
            return;
        };
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = readable.next().await {
            seen += chunk.len() as u64;
            if seen > limit {
                break;
            }
        }
    }
}
