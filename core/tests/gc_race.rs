//! The race that matters: a client finds an old, unreferenced blob already
//! stored, skips its upload and pushes a manifest referencing it while a
//! collection sweeps. Both sides run over stores that stop after a given
//! number of storage operations, so one side can be frozen at every point of
//! its work while the other runs to the end, in both orders. In no
//! interleaving may a stored manifest reference a missing blob.

mod gc_support;

use std::future::Future;
use std::ops::Range;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::executor::block_on;
use gc_support::*;
use pier_core::error::ErrorCode;
use pier_core::gc::Gc;
use pier_core::store::memory::MemoryStore;
use pier_core::store::{GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreResult};

/// A store that lets through only `allowed` more operations, then waits.
struct Gate {
    inner: Arc<MemoryStore>,
    allowed: AtomicUsize,
}

impl Gate {
    fn new(inner: Arc<MemoryStore>) -> Arc<Gate> {
        Arc::new(Gate {
            inner,
            allowed: AtomicUsize::new(usize::MAX),
        })
    }

    async fn pass(&self) {
        futures::future::poll_fn(|_| {
            match self
                .allowed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            {
                Ok(_) => Poll::Ready(()),
                Err(_) => Poll::Pending,
            }
        })
        .await
    }
}

#[async_trait::async_trait]
impl Store for Gate {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.pass().await;
        self.inner.head(key).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        self.pass().await;
        self.inner.get(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.pass().await;
        self.inner.put(key, data, mode).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.pass().await;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        self.pass().await;
        self.inner.list(prefix, start_after, limit).await
    }
    fn part_size(&self) -> usize {
        self.inner.part_size()
    }
    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        self.pass().await;
        self.inner.create_multipart(key).await
    }
    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        self.pass().await;
        self.inner.put_part(key, upload_id, number, data).await
    }
    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        self.pass().await;
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.pass().await;
        self.inner.abort_multipart(key, upload_id).await
    }
}

/// Polls `first` until it has made `ops` storage operations (or ended), runs
/// `second` to its end, then lets `first` finish. Returns whether `first`
/// ended before the freeze point.
fn interleave<A: Future, B: Future>(gate: &Gate, ops: usize, first: A, second: B) -> (bool, A::Output, B::Output) {
    let mut first = pin!(first);
    gate.allowed.store(ops, Ordering::SeqCst);
    let waker = futures::task::noop_waker();
    let early = match first.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    };
    gate.allowed.store(usize::MAX, Ordering::SeqCst);
    let second_out = block_on(second);
    match early {
        Some(out) => (true, out, second_out),
        None => (false, block_on(first), second_out),
    }
}

#[derive(Default, Debug)]
struct Tally {
    pushed: usize,
    refused: usize,
    blob_collected: usize,
}

/// One interleaving: the blob is old and unreferenced; `gc_first` says which
/// side is frozen after `ops` operations. Returns whether the frozen side
/// ended before its freeze point (no later point exists).
fn run(gc_first: bool, ops: usize, tally: &mut Tally) -> bool {
    let memory = Arc::new(MemoryStore::new(8));
    let env = TestEnv::new();
    let (gc_gate, push_gate) = (Gate::new(memory.clone()), Gate::new(memory.clone()));
    let setup = registry(memory.clone(), env.clone(), Vec::new());
    let app = repo("app");
    let (config, old) = block_on(async {
        let old = push_blob(&setup, &app, b"old layer").await;
        env.advance(2 * HOUR_MS);
        (push_blob(&setup, &app, b"fresh config").await, old)
    });
    let pusher = registry(push_gate.clone(), env.clone(), Vec::new());
    let manifest = image(&config, &[&old]);
    let body = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = pier_core::digest::Digest::of(pier_core::digest::Algorithm::Sha256, &body);
    let v1 = tag("v1");
    let push = pusher.put_manifest(&app, &v1, Some(pier_core::manifest::OCI_MANIFEST), body.into(), &[]);
    let mut gc = Gc::new(gc_gate.clone(), env.clone(), config_for_race(), false);
    let collect = gc.run_to_end();

    let (ended_early, pushed) = if gc_first {
        let (early, report, pushed) = interleave(&gc_gate, ops, collect, push);
        report.unwrap();
        (early, pushed)
    } else {
        let (early, pushed, report) = interleave(&push_gate, ops, push, collect);
        report.unwrap();
        (early, pushed)
    };
    let push_ok = pushed.is_ok();
    match pushed {
        Ok(_) => tally.pushed += 1,
        Err(e) => {
            assert!(
                matches!(e.code, ErrorCode::Unavailable | ErrorCode::ManifestBlobUnknown),
                "unexpected refusal {e:?}"
            );
            tally.refused += 1;
        }
    }
    block_on(async {
        if !blob_stored(memory.as_ref(), &old).await {
            tally.blob_collected += 1;
        }
        assert_every_manifest_complete(memory.as_ref()).await;
        // A refused push leaves nothing behind, a successful one its manifest.
        let descriptor = serde_json::json!({ "digest": manifest_digest.as_str() });
        assert_eq!(manifest_stored(memory.as_ref(), &app, &descriptor).await, push_ok);
    });
    ended_early
}

fn config_for_race() -> pier_core::gc::GcConfig {
    pier_core::gc::GcConfig {
        page_size: 2,
        ..config(Vec::new())
    }
}

fn every_point(gc_first: bool) -> Tally {
    let mut tally = Tally::default();
    let mut ops = 0;
    while !run(gc_first, ops, &mut tally) {
        ops += 1;
    }
    assert!(
        ops > 10,
        "only {ops} freeze points: the sides did not really interleave"
    );
    tally
}

#[test]
fn a_push_frozen_at_every_point_of_a_collection_never_loses_its_blob() {
    let tally = every_point(true);
    assert!(tally.pushed > 0 && tally.blob_collected > 0, "{tally:?}");
}

#[test]
fn a_collection_frozen_at_every_point_of_a_push_never_loses_its_blob() {
    let tally = every_point(false);
    assert!(tally.pushed > 0, "{tally:?}");
}
