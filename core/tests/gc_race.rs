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
use pier_core::store::{Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreResult};

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
    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.pass().await;
        self.inner.put_volatile(key, data, mode).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.pass().await;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        self.pass().await;
        self.inner.list(prefix, start_after, limit).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
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
    async fn signed_url(&self, key: &str, expires: std::time::Duration) -> StoreResult<Option<String>> {
        self.inner.signed_url(key, expires).await
    }
    async fn forget(&self, key: &str) {
        self.inner.forget(key).await
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
    succeeded: usize,
    refused: usize,
    blob_collected: usize,
}

/// What the client does with the old blob while the collection runs.
#[derive(Clone, Copy, Debug)]
enum Reuse {
    /// Pushes a manifest referencing it without uploading it (a HEAD found it).
    ManifestPush,
    /// Uploads the same bytes again (deduplicated against the stored copy).
    Upload,
    /// Mounts it into another repository.
    Mount,
}

/// One interleaving: the blob is old and unreferenced; `gc_first` says which
/// side is frozen after `ops` operations. Returns whether the frozen side
/// ended before its freeze point (no later point exists).
fn run(reuse: Reuse, gc_first: bool, ops: usize, tally: &mut Tally) -> bool {
    let memory = Arc::new(MemoryStore::new(8));
    let env = test_env();
    let (gc_gate, client_gate) = (Gate::new(memory.clone()), Gate::new(memory.clone()));
    let setup = registry(memory.clone(), env.clone(), Vec::new());
    let (app, other) = (repo("app"), repo("other"));
    let (config, old) = block_on(async {
        let old = push_blob(&setup, &app, b"old layer").await;
        env.advance_millis(2 * HOUR_MS);
        (push_blob(&setup, &app, b"fresh config").await, old)
    });
    let client = registry(client_gate.clone(), env.clone(), Vec::new());
    let manifest = image(&config, &[&old]);
    let body = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = pier_core::digest::Digest::of(pier_core::digest::Algorithm::Sha256, &body);
    let old_digest = digest_of(&old);
    let (v1, client_ref) = (tag("v1"), &client);
    let act = async move {
        match reuse {
            Reuse::ManifestPush => client_ref
                .put_manifest(&app, &v1, Some(pier_core::manifest::OCI_MANIFEST), body.into(), &[])
                .await
                .map(|_| ()),
            Reuse::Upload => {
                client_ref
                    .upload_whole(&other, &old_digest, pier_core::body::full_body(b"old layer".to_vec()))
                    .await
            }
            Reuse::Mount => match client_ref.mount_blob(&other, &old_digest, Some(&app)).await {
                Ok(true) => Ok(()),
                // Not mountable: the client uploads instead, which is a refusal here.
                Ok(false) => Err(pier_core::error::RegistryError::new(
                    ErrorCode::BlobUnknown,
                    "not mounted",
                )),
                Err(e) => Err(e),
            },
        }
    };
    let mut gc = Gc::new(gc_gate.clone(), env.clone(), config_for_race(), false);
    let collect = gc.run_to_end();

    let (ended_early, acted) = if gc_first {
        let (early, report, acted) = interleave(&gc_gate, ops, collect, act);
        report.unwrap();
        (early, acted)
    } else {
        let (early, acted, report) = interleave(&client_gate, ops, act, collect);
        report.unwrap();
        (early, acted)
    };
    let succeeded = acted.is_ok();
    match acted {
        Ok(()) => tally.succeeded += 1,
        Err(e) => {
            assert!(
                matches!(
                    e.code,
                    ErrorCode::Unavailable | ErrorCode::ManifestBlobUnknown | ErrorCode::BlobUnknown
                ),
                "{reuse:?}: unexpected refusal {e:?}"
            );
            tally.refused += 1;
        }
    }
    block_on(async {
        let stored = blob_stored(memory.as_ref(), &old).await;
        if !stored {
            tally.blob_collected += 1;
        }
        assert_every_manifest_complete(memory.as_ref()).await;
        match reuse {
            // A refused push leaves nothing behind, a successful one its manifest.
            Reuse::ManifestPush => {
                let descriptor = serde_json::json!({ "digest": manifest_digest.as_str() });
                assert_eq!(
                    manifest_stored(memory.as_ref(), &repo("app"), &descriptor).await,
                    succeeded
                );
            }
            // An upload or mount answered with success must leave the blob
            // readable where the client put it.
            Reuse::Upload | Reuse::Mount if succeeded => {
                assert!(stored, "{reuse:?} succeeded at {ops} but the blob is gone");
                assert!(
                    setup.blob(&repo("other"), &digest_of(&old)).await.is_ok(),
                    "{reuse:?} succeeded at {ops} but other/ cannot read the blob"
                );
            }
            Reuse::Upload | Reuse::Mount => {}
        }
    });
    ended_early
}

fn config_for_race() -> pier_core::gc::GcConfig {
    pier_core::gc::GcConfig {
        page_size: 2,
        ..config(Vec::new())
    }
}

fn every_point(reuse: Reuse, gc_first: bool) -> Tally {
    let mut tally = Tally::default();
    let mut ops = 0;
    while !run(reuse, gc_first, ops, &mut tally) {
        ops += 1;
    }
    // A mount or an upload of a small blob takes only a few store operations.
    let least = if gc_first || matches!(reuse, Reuse::ManifestPush) {
        10
    } else {
        3
    };
    assert!(
        ops > least,
        "only {ops} freeze points: the sides did not really interleave"
    );
    tally
}

#[test]
fn a_push_frozen_at_every_point_of_a_collection_never_loses_its_blob() {
    let tally = every_point(Reuse::ManifestPush, true);
    assert!(tally.succeeded > 0 && tally.blob_collected > 0, "{tally:?}");
}

#[test]
fn a_collection_frozen_at_every_point_of_a_push_never_loses_its_blob() {
    let tally = every_point(Reuse::ManifestPush, false);
    assert!(tally.succeeded > 0, "{tally:?}");
}

#[test]
fn an_upload_of_the_same_bytes_at_every_point_of_a_collection_is_never_lost() {
    for gc_first in [true, false] {
        let tally = every_point(Reuse::Upload, gc_first);
        assert!(tally.succeeded > 0, "{tally:?}");
    }
}

#[test]
fn a_mount_at_every_point_of_a_collection_is_never_lost() {
    for gc_first in [true, false] {
        let tally = every_point(Reuse::Mount, gc_first);
        assert!(tally.succeeded > 0, "{tally:?}");
    }
}

/// Two collectors on one store (two instances): one is paused in the middle
/// of a sweep step while the other finishes the run and removes its marks.
/// The paused one must not then take the missing marks for unreferenced
/// blobs, at any point of its step.
#[test]
fn a_collector_paused_mid_sweep_behind_a_finished_run_deletes_nothing_in_use() {
    let mut ops = 0;
    loop {
        let memory = Arc::new(MemoryStore::new(8));
        let env = test_env();
        let gate = Gate::new(memory.clone());
        let setup = registry(memory.clone(), env.clone(), Vec::new());
        let app = repo("app");
        let kept = block_on(async {
            let config = push_blob(&setup, &app, b"config").await;
            let layer = push_blob(&setup, &app, b"layer").await;
            push_blob(&setup, &app, b"unreferenced").await;
            push_manifest(&setup, &app, tag("v1"), &image(&config, &[&layer])).await;
            env.advance_millis(2 * HOUR_MS);
            layer
        });
        let mut paused = Gc::new(gate.clone(), env.clone(), config_for_race(), false);
        block_on(async { while paused.step().await.unwrap().phase != pier_core::gc::Phase::Sweep {} });
        let mut other = Gc::new(memory.clone(), env.clone(), config_for_race(), false);
        let (ended_early, stepped, report) = interleave(&gate, ops, paused.step(), other.run_to_end());
        stepped.unwrap();
        report.unwrap();
        block_on(async {
            assert!(
                blob_stored(memory.as_ref(), &kept).await,
                "freeze at {ops}: a kept layer was deleted"
            );
            assert_every_manifest_complete(memory.as_ref()).await;
        });
        if ended_early {
            break;
        }
        ops += 1;
    }
    assert!(ops > 3, "only {ops} freeze points");
}
