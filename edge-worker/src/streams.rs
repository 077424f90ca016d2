//! Byte streams across the Rust/JavaScript boundary, without ever holding a
//! whole body: JavaScript `ReadableStream`s become core's chunk streams, and
//! core's streams become `ReadableStream`s of a declared length, so the runtime
//! sends `Content-Length` and never re-chunks or re-encodes them.

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use pier_core::platform::{box_stream, BoxStream};
use worker::js_sys::{BigInt, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::web_sys::ReadableStream;
use worker::worker_sys::FixedLengthStream;

/// Core's chunk stream reading a JavaScript stream; errors become `E`.
pub fn from_readable<E: 'static>(
    readable: worker::ByteStream,
    error: impl Fn(worker::Error) -> E + 'static,
) -> BoxStream<'static, E> {
    box_stream(readable.map_ok(Bytes::from).map_err(error))
}

/// A `ReadableStream` of exactly `length` bytes fed from `stream`. The runtime
/// knows the length up front (`FixedLengthStream`), so it sends Content-Length
/// and fails the response if the stream ends early or runs long.
pub fn readable_of_length<E: std::fmt::Display + 'static>(
    stream: impl Stream<Item = Result<Bytes, E>> + 'static,
    length: u64,
) -> worker::Result<ReadableStream> {
    let fixed = if length <= u32::MAX as u64 {
        FixedLengthStream::new(length as u32)?
    } else {
        FixedLengthStream::new_big_int(BigInt::from(length))?
    };
    let chunks = stream
        .map_ok(|chunk| JsValue::from(Uint8Array::from(&chunk[..])))
        .map_err(|err| JsValue::from(js_error(&err.to_string())));
    let source: ReadableStream = wasm_streams::ReadableStream::from_stream(chunks)
        .into_raw()
        .unchecked_into();
    // The pipe runs on its own; a failure aborts the response body, which is
    // all a client can be told once the headers are out.
    let _ = source.pipe_to(&fixed.writable());
    Ok(fixed.readable())
}

fn js_error(message: &str) -> worker::js_sys::Error {
    worker::js_sys::Error::new(message)
}
