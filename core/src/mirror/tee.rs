//! A blob fetched from upstream goes to the client and into storage at once:
//! the client does not wait for the whole download, and the blob is stored
//! through the ordinary upload path (written once, visible only after its
//! digest is verified).
//!
//! No task is spawned (core has no executor, and a Worker has only the
//! request's): the client's response stream drives the upload. Polling it
//! polls the upload, whose body pulls chunks from upstream and leaves a copy
//! of each in a queue the response hands out. The queue is bounded: once it
//! holds `QUEUE_LIMIT` bytes the upload waits until the client has taken
//! them, so memory stays bounded by that plus one storage part.
//!
//! The last bytes are handed out only once the upload has finished: an HTTP
//! server stops polling a body when it has sent its `Content-Length`, and
//! the blob must be stored by the time its first puller has it all.
//!
//! If storage fails, the client still gets every byte from upstream (the
//! blob is just not cached). If upstream fails, or its bytes do not match the
//! digest (the body is checked by `remote::verify`, which withholds the last
//! chunk of wrong content), the client gets an error and nothing becomes
//! visible. A client that goes away drops the upload half-done; the
//! abandoned session expires like any other.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::body::{BodyError, RequestBody};
use crate::digest::Digest;
use crate::names::RepoName;
use crate::platform::{box_stream, BoxFuture};
use crate::registry::Registry;
use crate::remote::http::HttpBody;
use crate::store::{ByteStream, StoreError};

/// The most bytes waiting for the client before the upload pauses.
const QUEUE_LIMIT: usize = 4 << 20;

struct Shared {
    upstream: HttpBody,
    /// Chunks the upload has taken and the client not yet.
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    /// Bytes taken from upstream so far, of `length`.
    received: u64,
    length: u64,
    /// Upstream has ended (or failed).
    ended: bool,
    /// Why upstream failed, until the client is told.
    failure: Option<String>,
}

impl Shared {
    /// The next queued chunk, unless it ends the blob and `hold_last`.
    fn pop(&mut self, given: u64, length: u64, hold_last: bool) -> Option<Bytes> {
        let next = self.queue.front()?;
        if hold_last && given + next.len() as u64 >= length {
            return None;
        }
        let chunk = self.queue.pop_front()?;
        self.queued_bytes -= chunk.len();
        Some(chunk)
    }

    /// The next chunk straight from upstream, once nothing is being cached.
    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        if let Some(why) = self.failure.take() {
            return Poll::Ready(Some(Err(StoreError::Unavailable(why))));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        match self.upstream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                Poll::Ready(Some(Err(StoreError::Unavailable(format!("upstream: {e}")))))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Streams `upstream` (already digest-checked, `length` bytes) to the caller
/// while storing it as blob `digest` of `repo`.
pub fn fill_while_streaming(
    registry: Registry,
    repo: RepoName,
    digest: Digest,
    length: u64,
    upstream: HttpBody,
) -> ByteStream {
    let shared = Arc::new(Mutex::new(Shared {
        upstream,
        queue: VecDeque::new(),
        queued_bytes: 0,
        received: 0,
        length,
        ended: false,
        failure: None,
    }));
    let body = upload_body(shared.clone());
    let upload: BoxFuture<'static, ()> = Box::pin(async move {
        // A failed fill only means the blob is not cached; the client is
        // served either way, and told of upstream failures by `Shared`.
        let _ = registry.upload_whole(&repo, &digest, body).await;
    });
    box_stream(Tee {
        shared,
        upload: Some(upload),
        given: 0,
        length,
    })
}

/// The upload's body: upstream's chunks, a copy of each queued for the client.
fn upload_body(shared: Arc<Mutex<Shared>>) -> RequestBody {
    box_stream(futures::stream::poll_fn(move |cx| {
        let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.ended {
            return Poll::Ready(None);
        }
        if shared.queued_bytes >= QUEUE_LIMIT && shared.received < shared.length {
            // The client is behind: `Tee` hands out the queue, then polls
            // the upload (and so this body) again. (Once every byte is in,
            // the end of the stream is read regardless: `Tee` holds the last
            // chunk back until the upload is done.)
            return Poll::Pending;
        }
        match shared.upstream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                shared.received += chunk.len() as u64;
                shared.queued_bytes += chunk.len();
                shared.queue.push_back(chunk.clone());
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                shared.ended = true;
                shared.failure = Some(format!("upstream: {e}"));
                Poll::Ready(Some(Err(BodyError::Read(e.0))))
            }
            Poll::Ready(None) => {
                shared.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }))
}

/// The client's side: queued chunks first; polling the upload for more;
/// straight from upstream once the upload is over.
struct Tee {
    shared: Arc<Mutex<Shared>>,
    upload: Option<BoxFuture<'static, ()>>,
    /// Bytes handed to the client so far, of `length`.
    given: u64,
    length: u64,
}

impl Stream for Tee {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let this = &mut *self;
            let uploading = this.upload.is_some();
            {
                let mut shared = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
                let next = match shared.pop(this.given, this.length, uploading) {
                    Some(chunk) => Poll::Ready(Some(Ok(chunk))),
                    None if !uploading => shared.poll_upstream(cx),
                    None => Poll::Pending,
                };
                if let Poll::Ready(next) = next {
                    if let Some(Ok(chunk)) = &next {
                        this.given += chunk.len() as u64;
                    }
                    return Poll::Ready(next);
                }
                if !uploading {
                    return Poll::Pending;
                }
            }
            // The lock is released: the upload's body takes it.
            let Some(upload) = this.upload.as_mut() else {
                return Poll::Pending;
            };
            match upload.as_mut().poll(cx) {
                Poll::Ready(()) => this.upload = None,
                Poll::Pending => {
                    let shared = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
                    let more = shared
                        .queue
                        .front()
                        .is_some_and(|next| this.given + (next.len() as u64) < this.length);
                    if !more {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}
