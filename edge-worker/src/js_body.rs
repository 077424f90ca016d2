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
use futures::{Stream, StreamExt};
use pier_core::store::{ByteStream, StoreError};
use worker::web_sys::ReadableStream;

type Handoff = Rc<RefCell<Option<ReadableStream>>>;

thread_local! {
    /// Bodies not yet read, by the address of their boxed stream.
    static UNREAD_JS_BODIES: RefCell<HashMap<usize, Handoff>> = RefCell::new(HashMap::new());
}

/// Core's stream over a JavaScript body; `describe` names it in read errors.
pub fn js_body(readable: ReadableStream, describe: String) -> ByteStream {
    let handoff: Handoff = Rc::new(RefCell::new(Some(readable)));
    let stream: ByteStream = Box::pin(JsBody {
        handoff: handoff.clone(),
        reading: None,
        describe,
    });
    UNREAD_JS_BODIES.with(|bodies| bodies.borrow_mut().insert(address_of(&stream), handoff));
    stream
}

/// The JavaScript stream behind `stream`, if it is one made by [`js_body`]
/// that nobody has read from; the caller then drops `stream`.
pub fn take_js_body(stream: &ByteStream) -> Option<ReadableStream> {
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
    reading: Option<worker::ByteStream>,
    describe: String,
}

impl Stream for JsBody {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.reading.is_none() {
            let address = &*self as *const JsBody as usize;
            UNREAD_JS_BODIES.with(|bodies| bodies.borrow_mut().remove(&address));
            let Some(readable) = self.handoff.borrow_mut().take() else {
                return Poll::Ready(Some(Err(StoreError::Unavailable(format!(
                    "{}: body already handed to the response",
                    self.describe
                )))));
            };
            self.reading = Some(worker::ByteStream::from(readable));
        }
        let reading = self.reading.as_mut().expect("set above");
        match reading.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(Bytes::from(chunk)))),
            Poll::Ready(Some(Err(err))) => {
                Poll::Ready(Some(Err(StoreError::Unavailable(format!("{}: {err}", self.describe)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for JsBody {
    fn drop(&mut self) {
        let address = self as *const JsBody as usize;
        UNREAD_JS_BODIES.with(|bodies| bodies.borrow_mut().remove(&address));
    }
}
