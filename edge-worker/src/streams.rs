//! Byte streams across the Rust/JavaScript boundary, holding a whole body
//! only when it is small: JavaScript `ReadableStream`s become core's chunk streams, and
//! core's streams become `ReadableStream`s of a declared length, so the runtime
//! sends `Content-Length` and never re-chunks or re-encodes them.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use pier_core::body::{BodyError, RequestBody};
use pier_core::platform::box_stream;
use pier_core::store::ByteStream;
use worker::js_sys::{BigInt, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, ReadableStream};
use worker::worker_sys::FixedLengthStream;

use crate::js_body::take_js_body;

/// A `ReadableStream` of exactly `length` bytes with what `stream` yields: the
/// JavaScript stream behind it when it has one nobody read from (the bytes
/// never enter wasm), else the chunks copied out of wasm. The runtime knows
/// the length up front, so it sends Content-Length and fails the body if the
/// stream ends early or runs long: a stream from R2, the Cache API or a
/// buffer carries the length its source declared, any other goes through a
/// `FixedLengthStream` (a pipe through which every chunk passes: it doubled
/// the time a 1 MiB blob took to leave the Worker).
pub fn readable_of_length(stream: ByteStream, length: u64) -> worker::Result<ReadableStream> {
    if let Some((readable, declared)) = take_js_body(&stream) {
        return match declared == length {
            true => Ok(readable),
            false => of_length(readable, length),
        };
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

/// Request bodies up to this length are read in one piece when core first
/// asks for them: one copy into wasm instead of a promise, a microtask and a
/// copy for each of the runtime's small chunks (hundreds per MiB, which cost
/// a 1 MiB push more CPU than hashing it). Longer bodies stream, so memory
/// stays within a few parts per upload.
const WHOLE_BODY_MAX_BYTES: u64 = 8 << 20;

/// A request body for core, and the handle the shell keeps to read out what
/// core leaves unread. workerd (unlike hyper under the native server) drops the
/// connection when a Worker answers before the request body is consumed, so a
/// client still sending loses the answer; the shell reads the rest of the body
/// before it answers. `length` is the request's Content-Length, if any.
pub fn request_body(
    request: web_sys::Request,
    readable: ReadableStream,
    length: Option<u64>,
) -> (RequestBody, UnreadBody) {
    let unread = match length {
        Some(length) if length <= WHOLE_BODY_MAX_BYTES => Unread::Whole(request),
        _ => Unread::Streaming(worker::ByteStream::from(readable)),
    };
    let shared = Rc::new(RefCell::new(Some(unread)));
    (box_stream(SharedBody(shared.clone())), UnreadBody(shared))
}

/// What of a request body is still to be read.
enum Unread {
    /// Chunk by chunk, as the runtime hands them over.
    Streaming(worker::ByteStream),
    /// In one piece, not asked for yet.
    Whole(web_sys::Request),
    /// In one piece, under way.
    Reading(JsFuture),
}

struct SharedBody(Rc<RefCell<Option<Unread>>>);

impl Stream for SharedBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let mut slot = self.0.borrow_mut();
        let read_error = |err: JsValue| BodyError::Read(format!("{err:?}"));
        loop {
            let polled = match slot.as_mut() {
                None => return Poll::Ready(None),
                Some(Unread::Streaming(readable)) => match readable.poll_next_unpin(cx) {
                    Poll::Ready(None) => None,
                    Poll::Ready(Some(chunk)) => {
                        Some(chunk.map(Bytes::from).map_err(|err| BodyError::Read(err.to_string())))
                    }
                    Poll::Pending => return Poll::Pending,
                },
                Some(Unread::Whole(request)) => match request.array_buffer() {
                    Ok(promise) => {
                        *slot = Some(Unread::Reading(JsFuture::from(promise)));
                        continue;
                    }
                    Err(err) => Some(Err(read_error(err))),
                },
                Some(Unread::Reading(reading)) => match reading.poll_unpin(cx) {
                    Poll::Ready(read) => {
                        *slot = None;
                        return Poll::Ready(match read {
                            Ok(buffer) => {
                                let bytes = Uint8Array::new(&buffer).to_vec();
                                (!bytes.is_empty()).then(|| Ok(Bytes::from(bytes)))
                            }
                            Err(err) => Some(Err(read_error(err))),
                        });
                    }
                    Poll::Pending => return Poll::Pending,
                },
            };
            if polled.is_none() {
                *slot = None;
            }
            return Poll::Ready(polled);
        }
    }
}

/// What remains of a request body after core answered.
pub struct UnreadBody(Rc<RefCell<Option<Unread>>>);

impl UnreadBody {
    /// Reads and drops the rest of the body, up to `limit` bytes (past that the
    /// client is cut off: it sent more than any request may carry).
    pub async fn drain(self, limit: u64) {
        let unread = self.0.borrow_mut().take();
        let mut readable = match unread {
            None => return,
            Some(Unread::Streaming(readable)) => readable,
            Some(Unread::Reading(reading)) => {
                let _ = reading.await;
                return;
            }
            Some(Unread::Whole(request)) => match request.body() {
                Some(readable) => worker::ByteStream::from(readable),
                None => return,
            },
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
