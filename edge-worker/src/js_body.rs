//! Object bodies that can leave the Worker without passing through wasm.
//!
//! A blob read from R2 or the Cache API is a JavaScript `ReadableStream`. Core
//! sees it as its own chunk stream (it must, to read manifests and records),
//! but a blob GET only hands that stream back to the shell for the response.
//! Copying every byte into wasm memory and out again would cost CPU time on
//! every pull and halve throughput, so the shell takes the JavaScript stream
//! back untouched when core has not started reading it.
//!
//! Core's stream type (`Pin<Box<dyn Stream>>`) cannot be downcast, so bodies
//! made here are recorded by the address of the boxed stream, which is pinned
//! and stable until the stream is dropped (the record goes with it).
//! A `ByteStream` able to carry a platform handle in core would make this
//! table unnecessary.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use pier_core::store::{ByteStream, StoreError};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStream, Response};

/// The JavaScript stream and the length its source declared.
type Handoff = Rc<RefCell<Option<(ReadableStream, u64)>>>;

thread_local! {
    /// Bodies not yet read, by the address of their boxed stream.
    static UNREAD_JS_BODIES: RefCell<HashMap<usize, Handoff>> = RefCell::new(HashMap::new());
}

/// Bodies up to this length that core reads are read in one piece: one copy
/// into wasm instead of a promise and a copy per small chunk of the runtime's.
const WHOLE_READ_MAX_BYTES: u64 = 8 << 20;

/// Core's stream over a JavaScript body of `length` bytes; `describe` names
/// it in read errors.
pub fn js_body(readable: ReadableStream, length: u64, describe: String) -> ByteStream {
    let handoff: Handoff = Rc::new(RefCell::new(Some((readable, length))));
    let stream: ByteStream = Box::pin(JsBody {
        handoff: handoff.clone(),
        reading: None,
        whole: length <= WHOLE_READ_MAX_BYTES,
        describe,
    });
    UNREAD_JS_BODIES.with(|bodies| bodies.borrow_mut().insert(address_of(&stream), handoff));
    stream
}

/// The JavaScript stream behind `stream` and the length its source declared,
/// if it is one made by [`js_body`] that nobody has read from; the caller then
/// drops `stream`.
pub fn take_js_body(stream: &ByteStream) -> Option<(ReadableStream, u64)> {
    let handoff = UNREAD_JS_BODIES.with(|bodies| bodies.borrow_mut().remove(&address_of(stream)))?;
    let readable = handoff.borrow_mut().take();
    readable
}

fn address_of(stream: &ByteStream) -> usize {
    let object: &dyn Stream<Item = Result<Bytes, StoreError>> = &**stream;
    object as *const dyn Stream<Item = Result<Bytes, StoreError>> as *const () as usize
}

struct JsBody {
    /// The JavaScript stream until it is read here or taken by the shell.
    handoff: Handoff,
    reading: Option<Reading>,
    /// Read in one piece (a small body).
    whole: bool,
    describe: String,
}

enum Reading {
    Chunks(worker::ByteStream),
    Whole(JsFuture),
    Done,
}

impl Stream for JsBody {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.reading.is_none() {
            let address = &*self as *const JsBody as usize;
            UNREAD_JS_BODIES.with(|bodies| bodies.borrow_mut().remove(&address));
            let Some((readable, _)) = self.handoff.borrow_mut().take() else {
                return Poll::Ready(Some(Err(StoreError::Unavailable(format!(
                    "{}: body already handed to the response",
                    self.describe
                )))));
            };
            let whole = match self.whole {
                true => Response::new_with_opt_readable_stream(Some(&readable))
                    .and_then(|response| response.array_buffer())
                    .ok(),
                false => None,
            };
            self.reading = Some(match whole {
                Some(promise) => Reading::Whole(JsFuture::from(promise)),
                None => Reading::Chunks(worker::ByteStream::from(readable)),
            });
        }
        let this = &mut *self;
        let describe = &this.describe;
        let unavailable = |err: String| StoreError::Unavailable(format!("{describe}: {err}"));
        let polled = match this.reading.as_mut() {
            None | Some(Reading::Done) => return Poll::Ready(None),
            Some(Reading::Chunks(chunks)) => match chunks.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => return Poll::Ready(Some(Ok(Bytes::from(chunk)))),
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(unavailable(err.to_string())))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            },
            Some(Reading::Whole(reading)) => match reading.poll_unpin(cx) {
                Poll::Ready(Ok(buffer)) => {
                    let bytes = Uint8Array::new(&buffer).to_vec();
                    (!bytes.is_empty()).then(|| Ok(Bytes::from(bytes)))
                }
                Poll::Ready(Err(err)) => Some(Err(unavailable(format!("{err:?}")))),
                Poll::Pending => return Poll::Pending,
            },
        };
        this.reading = Some(Reading::Done);
        Poll::Ready(polled)
    }
}

impl Drop for JsBody {
    fn drop(&mut self) {
        let address = self as *const JsBody as usize;
        UNREAD_JS_BODIES.with(|bodies| bodies.borrow_mut().remove(&address));
    }
}
