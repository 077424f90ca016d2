//! What differs between the two shells at the type level, solved once.
//!
//! The Worker's JavaScript handles are `!Send`, while axum needs `Send` futures.
//! Core code is written against the aliases here: they carry `Send` on native
//! targets and drop it on wasm32, so one trait definition serves both.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::digest::{Algorithm, Digest};

#[cfg(not(target_arch = "wasm32"))]
mod send {
    /// `Send` on native targets, nothing on wasm32.
    pub trait MaybeSend: Send {}
    impl<T: Send + ?Sized> MaybeSend for T {}
    /// `Sync` on native targets, nothing on wasm32.
    pub trait MaybeSync: Sync {}
    impl<T: Sync + ?Sized> MaybeSync for T {}
}
#[cfg(target_arch = "wasm32")]
mod send {
    pub trait MaybeSend {}
    impl<T: ?Sized> MaybeSend for T {}
    pub trait MaybeSync {}
    impl<T: ?Sized> MaybeSync for T {}
}
pub use send::{MaybeSend, MaybeSync};

/// A boxed future, `Send` where the platform allows it.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// A boxed stream of byte chunks, `Send` where the platform allows it.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxStream<'a, E> = Pin<Box<dyn Stream<Item = Result<Bytes, E>> + Send + 'a>>;
#[cfg(target_arch = "wasm32")]
pub type BoxStream<'a, E> = Pin<Box<dyn Stream<Item = Result<Bytes, E>> + 'a>>;

/// Boxes a stream into [`BoxStream`].
pub fn box_stream<'a, E, S>(stream: S) -> BoxStream<'a, E>
where
    S: Stream<Item = Result<Bytes, E>> + MaybeSend + 'a,
{
    Box::pin(stream)
}

/// Services the core needs from its host but cannot get portably: wasm32 has no
/// clock and no entropy source of its own.
pub trait Env: MaybeSend + MaybeSync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill_random(&self, buf: &mut [u8]);

    /// A random identifier: 32 lowercase hex characters (128 bits).
    fn random_id(&self) -> String {
        let mut raw = [0u8; 16];
        self.fill_random(&mut raw);
        crate::digest::hex(&raw)
    }

    /// Runs CPU-heavy work (a password hash: tens of milliseconds) where it
    /// does not hold up other requests, completing when the work has run.
    /// The native server runs it on a bounded set of blocking threads, so
    /// its request threads stay free; this default runs it in place, which
    /// is right where a request has its own isolate (the Worker) and in
    /// tests.
    fn run_heavy(&self, work: HeavyWork) -> BoxFuture<'static, ()> {
        work();
        Box::pin(std::future::ready(()))
    }

    /// The digest of `bytes` as the platform computes it, where that is
    /// faster than core's own hashing: the Worker's native `crypto.subtle`
    /// hashes several times as fast as SHA-256 compiled to wasm. `None`
    /// (the default) where core hashes as fast itself; a future yielding
    /// `None` when the platform failed, and core hashes after all.
    fn digest_of(&self, algorithm: Algorithm, bytes: Bytes) -> Option<BoxFuture<'static, Option<Digest>>> {
        let _ = (algorithm, bytes);
        None
    }
}

/// Work for [`Env::run_heavy`]: owns what it needs, so it may run on
/// another thread.
pub type HeavyWork = Box<dyn FnOnce() + Send + 'static>;

/// Work the platform runs after a response, so the client never waits for
/// it: webhook deliveries and replication copies (`crate::events`). Native
/// spawns a tokio task; the Worker hands the future to `waitUntil`, which
/// keeps the isolate alive until it ends (up to the platform's limit).
/// Core cannot do this itself: it has no runtime and no clock to sleep on.
pub trait Background: MaybeSend + MaybeSync {
    /// Runs `task` to its end, detached from the request that started it.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// A future that completes after `duration` (backoff between retries,
    /// timeouts of deliveries).
    fn sleep(&self, duration: std::time::Duration) -> BoxFuture<'static, ()>;
    /// Tells the operator about background work that failed or finished,
    /// since no client is there to see it (a log line).
    fn report(&self, failed: bool, message: &str);
}

/// What one location of the platform remembers for a while, shared by its
/// processes: the Worker's Cache API, which every isolate in a Cloudflare
/// location sees. It lets the isolates of a location agree that one of them
/// has done a periodic write (a manifest's last-pull time), so a pull does
/// not become a write in each of them. Native processes need none: their
/// memory is the instance.
pub trait LocalMarks: MaybeSend + MaybeSync {
    /// Marks `key` here for `ttl_secs`; `false` when a mark was already
    /// there (someone here did the work in the period).
    fn mark<'a>(&'a self, key: &'a str, ttl_secs: u64) -> BoxFuture<'a, bool>;
}
