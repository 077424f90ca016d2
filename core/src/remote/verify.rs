//! Checking a blob's bytes against its digest while they stream past. The
//! last chunk is held back until the whole stream is hashed: a wrong digest
//! or size ends the stream with an error instead of its last bytes, so no
//! consumer (an upload, a client, a file) ever sees a complete wrong blob.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::http::{HttpBody, HttpError};
use crate::digest::{Digest, Hasher};
use crate::platform::box_stream;

struct Verified {
    inner: HttpBody,
    expected: Digest,
    size: Option<u64>,
    hasher: Option<Hasher>,
    seen: u64,
    held: Option<Bytes>,
    ended: bool,
}

/// `body` checked against `digest` and, when known, `size`.
pub fn verified(body: HttpBody, digest: &Digest, size: Option<u64>) -> HttpBody {
    box_stream(Verified {
        inner: body,
        hasher: Some(Hasher::new(digest.algorithm())),
        expected: digest.clone(),
        size,
        seen: 0,
        held: None,
        ended: false,
    })
}

impl Verified {
    fn fail(&mut self, why: String) -> Poll<Option<Result<Bytes, HttpError>>> {
        self.ended = true;
        self.held = None;
        Poll::Ready(Some(Err(HttpError(why))))
    }
}

impl Stream for Verified {
    type Item = Result<Bytes, HttpError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(this.held.take().map(Ok));
        }
        loop {
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return this.fail(e.0),
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    this.seen += chunk.len() as u64;
                    if let Some(size) = this.size.filter(|&size| this.seen > size) {
                        return this.fail(format!("blob {} is longer than its {size} bytes", this.expected));
                    }
                    if let Some(hasher) = this.hasher.as_mut() {
                        hasher.update(&chunk);
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(None) => {
                    if let Some(size) = this.size.filter(|&size| this.seen != size) {
                        let seen = this.seen;
                        return this.fail(format!("blob {} ended after {seen} of {size} bytes", this.expected));
                    }
                    let Some(hasher) = this.hasher.take() else {
                        return this.fail(format!("blob {} was read past its end", this.expected));
                    };
                    let actual = hasher.finish();
                    if actual != this.expected {
                        let why = format!("blob {} arrived with digest {actual}", this.expected);
                        return this.fail(why);
                    }
                    this.ended = true;
                    return Poll::Ready(this.held.take().map(Ok));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn body(chunks: &[&'static [u8]]) -> HttpBody {
        box_stream(futures::stream::iter(
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect::<Vec<_>>(),
        ))
    }

    fn run(stream: HttpBody) -> Vec<Result<Bytes, HttpError>> {
        futures::executor::block_on(stream.collect())
    }

    #[test]
    fn passes_the_right_bytes_through() {
        let digest = Digest::of(Algorithm::Sha256, b"hello world");
        let out = run(verified(body(&[b"hello", b" ", b"world"]), &digest, Some(11)));
        let joined: Vec<u8> = out.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(joined, b"hello world");
        let empty = Digest::of(Algorithm::Sha512, b"");
        assert!(run(verified(body(&[]), &empty, Some(0))).is_empty());
    }

    #[test]
    fn holds_back_the_last_chunk_of_wrong_bytes() {
        let digest = Digest::of(Algorithm::Sha256, b"hello world");
        let out = run(verified(body(&[b"hello", b" ", b"WORLD"]), &digest, None));
        assert_eq!(out.len(), 3);
        assert!(out[..2].iter().all(Result::is_ok));
        assert!(out[2].as_ref().unwrap_err().0.contains("arrived with digest"));
    }

    #[test]
    fn sizes_are_checked_both_ways() {
        let digest = Digest::of(Algorithm::Sha256, b"abc");
        let long = run(verified(body(&[b"ab", b"cd"]), &digest, Some(3)));
        assert!(long.last().unwrap().as_ref().unwrap_err().0.contains("longer"));
        let short = run(verified(body(&[b"ab"]), &digest, Some(3)));
        assert!(short
            .last()
            .unwrap()
            .as_ref()
            .unwrap_err()
            .0
            .contains("ended after 2 of 3"));
    }
}
