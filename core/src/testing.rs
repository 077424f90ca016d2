//! The one host for tests (core's own, the shells' and the fuzz targets'),
//! behind the `test-support` feature: a clock the test moves, entropy that
//! is deterministic yet differs on every draw (SHA-256 of a counter), and,
//! when a test asks, heavy work held back until it says to run it; and an
//! HTTP client port for tests that send nothing; and an open registry in
//! memory that tests call through the API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::oneshot;
use sha2::{Digest as _, Sha256};

use crate::api::{HttpResponse, Service};
use crate::body::RequestBody;
use crate::platform::{BoxFuture, Env, HeavyWork};
use crate::registry::{Registry, RegistryOptions};
use crate::remote::http::{HttpClient, HttpError, IncomingResponse, OutgoingRequest};
use crate::store::memory::MemoryStore;

/// 2023-11-14T22:13:20Z: late enough that nothing looks older than the epoch.
pub const DEFAULT_NOW_MS: u64 = 1_700_000_000_000;

pub struct TestEnv {
    millis: AtomicU64,
    draws: AtomicU64,
    /// Heavy work waits in `heavy_queue` until the test runs it (as it
    /// would wait for a free hashing thread), instead of running in place.
    defer_heavy: AtomicBool,
    heavy_queue: Mutex<Vec<(HeavyWork, oneshot::Sender<()>)>>,
}

impl Default for TestEnv {
    fn default() -> TestEnv {
        TestEnv::at(DEFAULT_NOW_MS)
    }
}

impl TestEnv {
    /// A host whose clock reads `millis` until the test moves it.
    pub fn at(millis: u64) -> TestEnv {
        TestEnv {
            millis: AtomicU64::new(millis),
            draws: AtomicU64::new(0),
            defer_heavy: AtomicBool::new(false),
            heavy_queue: Mutex::new(Vec::new()),
        }
    }

    /// The same host drawing from stream `stream` of entropy: hosts of
    /// several registries over one store draw distinct ids.
    pub fn with_stream(self, stream: u32) -> TestEnv {
        self.draws.store(u64::from(stream) << 32, Ordering::SeqCst);
        self
    }

    /// A host whose clock and entropy go on from where this one stands,
    /// so a replayed run draws what the original drew.
    pub fn fork(&self) -> TestEnv {
        TestEnv::at(self.now_millis()).continuing(self.draws.load(Ordering::SeqCst))
    }

    fn continuing(self, draws: u64) -> TestEnv {
        self.draws.store(draws, Ordering::SeqCst);
        self
    }

    pub fn advance_millis(&self, millis: u64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: u64) {
        self.advance_millis(secs * 1000);
    }

    /// Holds heavy work back until [`TestEnv::run_queued_heavy_work`]
    /// (`true`), or runs it in place (`false`, the default).
    pub fn defer_heavy_work(&self, defer: bool) {
        self.defer_heavy.store(defer, Ordering::SeqCst);
    }

    /// Runs the heavy work held back so far; returns how much there was.
    pub fn run_queued_heavy_work(&self) -> usize {
        let queued = std::mem::take(&mut *self.heavy_queue.lock().unwrap_or_else(PoisonError::into_inner));
        let count = queued.len();
        for (work, done) in queued {
            work();
            let _ = done.send(());
        }
        count
    }
}

impl Env for TestEnv {
    fn now_millis(&self) -> u64 {
        self.millis.load(Ordering::SeqCst)
    }

    fn fill_random(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(32) {
            let draw = self.draws.fetch_add(1, Ordering::SeqCst);
            let block = Sha256::digest(draw.to_be_bytes());
            for (byte, drawn) in chunk.iter_mut().zip(block.iter()) {
                *byte = *drawn;
            }
        }
    }

    fn run_heavy(&self, work: HeavyWork) -> BoxFuture<'static, ()> {
        if !self.defer_heavy.load(Ordering::SeqCst) {
            work();
            return Box::pin(std::future::ready(()));
        }
        let (done, ran) = oneshot::channel();
        self.heavy_queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((work, done));
        Box::pin(async move {
            let _ = ran.await;
        })
    }
}

/// An HTTP client whose every request fails, for tests of what is built
/// around one without sending anything.
pub struct NoNetwork;

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl HttpClient for NoNetwork {
    async fn send(&self, _: OutgoingRequest) -> Result<IncomingResponse, HttpError> {
        Err(HttpError("no network in tests".into()))
    }
}

/// An open registry over a memory store (64-byte parts), with its clock at 0.
pub fn memory_registry() -> Registry {
    Registry::new(
        Arc::new(MemoryStore::new(64)),
        Arc::new(TestEnv::at(0)),
        RegistryOptions::default(),
    )
}

/// `request` answered by the API of the open `registry`.
pub fn send(registry: &Registry, request: http::Request<RequestBody>) -> HttpResponse {
    futures::executor::block_on(crate::api::handle(Service::open(registry), request))
}
