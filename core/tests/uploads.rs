//! The upload state machine through the registry engine, over the in-memory
//! store with tiny parts so that every path (tails, part boundaries, resuming
//! on another instance, concurrent writers) is exercised with small data.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
use pier_core::body::full_body;
use pier_core::digest::{Algorithm, Digest};
use pier_core::error::ErrorCode;
use pier_core::error::RegistryError;
use pier_core::layout;
use pier_core::names::RepoName;
use pier_core::platform::Env;
use pier_core::records::BlobRecord;
use pier_core::registry::{RegistryOptions, SessionRef};
use pier_core::store::memory::MemoryStore;
use pier_core::store::read_small;
use pier_core::store::{
    list_all, Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreError, StoreResult,
};
use pier_core::testing::TestEnv;
use pier_core::upload::{load_state, ChunkRange, SavedState, Upload};
use pier_core::Registry;

const PART: usize = 8;

fn setup() -> (Arc<MemoryStore>, Registry) {
    let store = Arc::new(MemoryStore::new(PART));
    (store.clone(), registry_over(store, RegistryOptions::default()))
}

fn registry_over(store: Arc<MemoryStore>, options: RegistryOptions) -> Registry {
    // Registries over one store draw distinct upload ids.
    static STREAM: AtomicU32 = AtomicU32::new(1);
    let env = TestEnv::default().with_stream(STREAM.fetch_add(1, Ordering::Relaxed));
    Registry::new(store, Arc::new(env), options)
}

fn repo() -> RepoName {
    RepoName::parse("team/app").unwrap()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn read_blob(registry: &Registry, digest: &Digest) -> Vec<u8> {
    let record = registry.blob(&repo(), digest).await.expect("blob is visible");
    let result = registry.open_blob(digest, &record, None).await.unwrap();
    result.bytes().await.unwrap().to_vec()
}

async fn keys(store: &MemoryStore, prefix: &str) -> Vec<String> {
    list_all(store, prefix).await.unwrap()
}

/// Every session under `uploads/` has ended: only its states are left, the
/// newest a closed marker, kept until upload expiry so that no request with
/// an older view can bring the session back.
async fn assert_all_ended(store: &MemoryStore, why: &str) {
    let left = keys(store, "uploads/").await;
    assert!(
        left.iter().all(|key| key.contains("/s/")),
        "{why}: only states are left, not {left:?}"
    );
    let ids: BTreeSet<&str> = left.iter().filter_map(|key| key.split('/').nth(1)).collect();
    for id in ids {
        let newest = load_state(store, id).await.unwrap();
        assert!(
            matches!(newest, SavedState::Closed(Some(_))),
            "{why}: session {id} ended, not {newest:?}"
        );
    }
}

/// How many bytes the store holds besides the states of ended sessions
/// (checked to be all that is left under `uploads/`).
async fn stored_beside_ended_states(store: &MemoryStore) -> u64 {
    assert_all_ended(store, "stored").await;
    let mut total = 0;
    for key in keys(store, "").await {
        if !(key.starts_with("uploads/") && key.contains("/s/")) {
            total += store.head(&key).await.unwrap().map_or(0, |meta| meta.size);
        }
    }
    total
}

/// Pushes `content` in the given chunk sizes, alternating between `registries`.
async fn push_chunked(registries: &[&Registry], content: &[u8], sizes: &[usize]) -> Digest {
    let digest = Digest::of(Algorithm::Sha256, content);
    let id = registries[0].start_upload(&repo()).await.unwrap().id;
    let mut offset = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let chunk = content[offset..offset + size].to_vec();
        let range = (size > 0).then(|| ChunkRange {
            start: offset as u64,
            end: (offset + size) as u64 - 1,
        });
        let registry = registries[i % registries.len()];
        let status = registry
            .upload_chunk(&repo(), &id, range, full_body(chunk))
            .await
            .unwrap();
        offset += size;
        assert_eq!(status.offset, offset as u64);
    }
    let last = registries[sizes.len() % registries.len()];
    last.finish_upload(&repo(), &id, &digest, None, full_body(content[offset..].to_vec()))
        .await
        .unwrap();
    digest
}

#[test]
fn chunks_of_every_size_across_part_boundaries() {
    block_on(async {
        let (store, registry) = setup();
        for sizes in [
            vec![],
            vec![1],
            vec![3, 5, 8, 1],
            vec![7, 7, 7, 7],
            vec![16, 1, 15],
            vec![2; 13],
            vec![0, 9, 0, 23],
        ] {
            let total: usize = sizes.iter().sum::<usize>() + 5;
            let content = data(total);
            let digest = push_chunked(&[&registry], &content, &sizes).await;
            assert_eq!(read_blob(&registry, &digest).await, content, "sizes {sizes:?}");
        }
        assert_all_ended(&store, "finished uploads leave no session keys").await;
    });
}

#[test]
fn any_instance_takes_the_next_chunk() {
    block_on(async {
        let (store, first) = setup();
        let second = registry_over(store.clone(), RegistryOptions::default());
        let content = data(61);
        let digest = push_chunked(&[&first, &second], &content, &[5, 9, 3, 17, 8, 2]).await;
        assert_eq!(read_blob(&second, &digest).await, content);
        assert_eq!(read_blob(&first, &digest).await, content);
    });
}

#[test]
fn a_digest_mismatch_leaves_nothing_behind() {
    block_on(async {
        let (store, registry) = setup();
        let content = data(30);
        let wrong = Digest::of(Algorithm::Sha256, b"something else");
        let id = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &id, None, full_body(content[..20].to_vec()))
            .await
            .unwrap();
        let err = registry
            .finish_upload(&repo(), &id, &wrong, None, full_body(content[20..].to_vec()))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::DigestInvalid);
        assert_eq!(
            registry.blob(&repo(), &wrong).await.unwrap_err().code,
            ErrorCode::BlobUnknown
        );
        assert_all_ended(&store, "the session is gone").await;
        assert!(keys(&store, "data/").await.is_empty(), "no data object remains");
        assert!(keys(&store, "blobs/").await.is_empty(), "no blob record");
        assert_eq!(stored_beside_ended_states(&store).await, 0, "nothing at all is stored");
    });
}

/// The common push (POST, then a PUT with the whole blob) on its own path:
/// a wrong digest ends the session and keeps nothing, and a body that breaks
/// off leaves the session for a retry.
#[test]
fn a_put_right_after_the_post_keeps_nothing_of_a_wrong_digest() {
    block_on(async {
        let (store, registry) = setup();
        for size in [5, 3 * PART + 1] {
            let content = data(size);
            let wrong = Digest::of(Algorithm::Sha256, b"something else");
            let id = registry.start_upload(&repo()).await.unwrap().id;
            let err = registry
                .finish_upload(&repo(), &id, &wrong, None, full_body(content))
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::DigestInvalid, "{size} bytes");
            assert_eq!(
                registry.upload_status(&repo(), &id).await.unwrap_err().code,
                ErrorCode::BlobUploadUnknown,
                "the session ended"
            );
            assert_eq!(
                stored_beside_ended_states(&store).await,
                0,
                "nothing at all is stored ({size} bytes)"
            );
        }
        let content = data(3 * PART + 1);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let id = registry.start_upload(&repo()).await.unwrap().id;
        let broken: pier_core::body::RequestBody = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from(content[..PART + 2].to_vec())),
            Err(pier_core::body::BodyError::Read("the client went away".into())),
        ]));
        registry
            .finish_upload(&repo(), &id, &digest, None, broken)
            .await
            .unwrap_err();
        assert_eq!(
            registry.upload_status(&repo(), &id).await.unwrap().offset,
            0,
            "kept for a retry"
        );
        registry
            .finish_upload(&repo(), &id, &digest, None, full_body(content.clone()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_all_ended(&store, "the session ended").await;
    });
}

#[test]
fn out_of_order_chunks_are_refused_and_change_nothing() {
    block_on(async {
        let (_, registry) = setup();
        let content = data(24);
        let id = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(
                &repo(),
                &id,
                Some(ChunkRange { start: 0, end: 9 }),
                full_body(content[..10].to_vec()),
            )
            .await
            .unwrap();
        for (start, end) in [(0, 9), (5, 14), (11, 20)] {
            let chunk = content[start..=end].to_vec();
            let err = registry
                .upload_chunk(
                    &repo(),
                    &id,
                    Some(ChunkRange {
                        start: start as u64,
                        end: end as u64,
                    }),
                    full_body(chunk),
                )
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::RangeInvalid, "{start}-{end}");
            assert_eq!(
                registry.upload_status(&repo(), &id).await.unwrap().offset,
                10,
                "offset unchanged"
            );
        }
        // A range that disagrees with the body's length is refused too.
        let err = registry
            .upload_chunk(
                &repo(),
                &id,
                Some(ChunkRange { start: 10, end: 19 }),
                full_body(content[10..15].to_vec()),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::RangeInvalid);
        assert_eq!(registry.upload_status(&repo(), &id).await.unwrap().offset, 10);
        let digest = Digest::of(Algorithm::Sha256, &content);
        registry
            .finish_upload(
                &repo(),
                &id,
                &digest,
                Some(ChunkRange { start: 10, end: 23 }),
                full_body(content[10..].to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
    });
}

#[test]
fn concurrent_writers_to_one_session_cannot_both_win() {
    block_on(async {
        let (store, a) = setup();
        let b = registry_over(store.clone(), RegistryOptions::default());
        let id = a.start_upload(&repo()).await.unwrap().id;
        a.upload_chunk(&repo(), &id, None, full_body(data(3))).await.unwrap();
        // Both requests load the session at offset 3; only one may write.
        let (env_a, env_b) = (TestEnv::default().with_stream(9), TestEnv::default().with_stream(99));
        let mut first = pier_core::upload::Upload::open(a.store(), &env_a, &repo(), &id, None)
            .await
            .unwrap();
        let mut second = pier_core::upload::Upload::open(b.store(), &env_b, &repo(), &id, None)
            .await
            .unwrap();
        first.claim("a").await.unwrap();
        assert_eq!(
            second.claim("b").await.unwrap_err().status.as_u16(),
            409,
            "a stale view cannot claim"
        );
        let mut third = pier_core::upload::Upload::open(b.store(), &env_b, &repo(), &id, None)
            .await
            .unwrap();
        assert_eq!(
            third.claim("b").await.unwrap_err().status.as_u16(),
            409,
            "a live claim is respected"
        );
        first.append(None, full_body(vec![1u8; 4])).await.unwrap();
        first.commit().await.unwrap();
        assert_eq!(a.upload_status(&repo(), &id).await.unwrap().offset, 7);
        let mut expected = data(3);
        expected.extend_from_slice(&[1u8; 4]);
        let digest = Digest::of(Algorithm::Sha256, &expected);
        a.finish_upload(&repo(), &id, &digest, None, full_body(Vec::new()))
            .await
            .unwrap();
        assert_eq!(read_blob(&a, &digest).await, expected, "the winner's bytes, only");
    });
}

#[test]
fn sha512_digest_on_a_chunked_upload() {
    block_on(async {
        let (_, registry) = setup();
        let content = data(45);
        let digest = Digest::of(Algorithm::Sha512, &content);
        let id = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &id, None, full_body(content[..20].to_vec()))
            .await
            .unwrap();
        registry
            .finish_upload(&repo(), &id, &digest, None, full_body(content[20..].to_vec()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
        let wrong = Digest::of(Algorithm::Sha512, b"nope");
        let id = registry.start_upload(&repo()).await.unwrap().id;
        let err = registry
            .finish_upload(&repo(), &id, &wrong, None, full_body(content.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::DigestInvalid);
        assert!(registry.blob(&repo(), &wrong).await.is_err());
    });
}

#[test]
fn the_same_content_is_stored_once() {
    block_on(async {
        let (store, registry) = setup();
        let content = data(40);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let other = RepoName::parse("team/other").unwrap();
        registry
            .upload_whole(&repo(), &digest, full_body(content.clone()))
            .await
            .unwrap();
        registry
            .upload_whole(&other, &digest, full_body(content.clone()))
            .await
            .unwrap();
        push_chunked(&[&registry], &content, &[8, 8, 3]).await;
        assert_eq!(keys(&store, "data/").await.len(), 1, "one data object");
        assert_eq!(
            store.total_bytes() as usize,
            content.len() + store_overhead(&store).await
        );
    });
}

/// Bytes in everything but data objects (records, links).
async fn store_overhead(store: &MemoryStore) -> usize {
    let mut total = 0;
    for key in keys(store, "").await {
        if !key.starts_with("data/") {
            total += store.head(&key).await.unwrap().unwrap().size as usize;
        }
    }
    total
}

#[test]
fn blobs_are_readable_only_where_pushed_or_mounted() {
    block_on(async {
        let (_, registry) = setup();
        let content = data(10);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let other = RepoName::parse("team/other").unwrap();
        registry
            .upload_whole(&repo(), &digest, full_body(content.clone()))
            .await
            .unwrap();
        assert_eq!(
            registry.blob(&other, &digest).await.unwrap_err().code,
            ErrorCode::BlobUnknown
        );
        assert!(!registry
            .mount_blob(&other, &digest, Some(&RepoName::parse("nowhere").unwrap()))
            .await
            .unwrap());
        assert!(registry.mount_blob(&other, &digest, Some(&repo())).await.unwrap());
        assert!(registry.blob(&other, &digest).await.is_ok());
        registry.delete_blob(&repo(), &digest).await.unwrap();
        assert!(
            registry.blob(&repo(), &digest).await.is_err(),
            "unlinked from the first repository"
        );
        assert!(
            registry.blob(&other, &digest).await.is_ok(),
            "still linked in the second"
        );
    });
}

#[test]
fn bodies_over_the_limit_are_refused_whole() {
    block_on(async {
        let store = Arc::new(MemoryStore::new(PART));
        let registry = registry_over(
            store.clone(),
            RegistryOptions {
                max_body_bytes: Some(16),
                ..Default::default()
            },
        );
        let content = data(40);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let body = pier_core::body::limit_body(full_body(Bytes::from(content.clone())), 16);
        let err = registry.upload_whole(&repo(), &digest, body).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::SizeInvalid);
        assert_eq!(err.status.as_u16(), 413);
        assert!(
            err.message.contains("chunks"),
            "the error names the way out: {}",
            err.message
        );
        assert_eq!(store.total_bytes(), 0, "nothing is left behind");
    });
}

/// The memory store behind the faults of a real one: a blob record write
/// refused once (a bucket failing for a moment), and part writes that take
/// their time (a disk or a network), so the next bytes arrive meanwhile.
#[derive(Default)]
struct Faulty {
    inner: Arc<MemoryStore>,
    refuse_next_record: std::sync::atomic::AtomicBool,
    slow_parts: bool,
    /// Part writes begun and finished: a write dropped half way is lost data.
    parts_begun: AtomicU64,
    parts_done: AtomicU64,
    /// The epoch it reports: changed to play a restart of the machine.
    epoch: AtomicU64,
}

/// Pending once, then ready: a write that is not done at its first poll.
async fn not_at_once() {
    let mut polled = false;
    futures::future::poll_fn(|cx| {
        if polled {
            std::task::Poll::Ready(())
        } else {
            polled = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

#[async_trait::async_trait]
impl Store for Faulty {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str, range: Option<std::ops::Range<u64>>) -> StoreResult<Option<GetResult>> {
        self.inner.get(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        if key.starts_with("blobs/") && self.refuse_next_record.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the bucket is away".into()));
        }
        self.inner.put(key, data, mode).await
    }
    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.inner.put_volatile(key, data, mode).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        self.inner.list(prefix, start_after, limit).await
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            part_writes_in_flight: if self.slow_parts { 2 } else { 1 },
            unsynced_epoch: self.epoch.load(Ordering::SeqCst),
            ..self.inner.capabilities()
        }
    }
    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        self.inner.create_multipart(key).await
    }
    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        self.parts_begun.fetch_add(1, Ordering::SeqCst);
        if self.slow_parts {
            not_at_once().await;
        }
        let written = self.inner.put_part(key, upload_id, number, data).await;
        self.parts_done.fetch_add(1, Ordering::SeqCst);
        written
    }
    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn signed_url(&self, key: &str, expires: std::time::Duration) -> StoreResult<Option<String>> {
        self.inner.signed_url(key, expires).await
    }
    async fn forget(&self, key: &str) {
        self.inner.forget(key).await
    }
}

/// A registry whose store refuses the next blob record it is asked to write
/// (the bucket is away), over the memory store returned with it.
fn refusing_the_next_record(stream: u32) -> (Arc<MemoryStore>, Registry) {
    let memory = Arc::new(MemoryStore::new(PART));
    let store = Arc::new(Faulty {
        inner: memory.clone(),
        refuse_next_record: true.into(),
        ..Faulty::default()
    });
    let env = Arc::new(TestEnv::default().with_stream(stream));
    (memory, Registry::new(store, env, RegistryOptions::default()))
}

/// Parts are flushed only when an upload completes, so a session saved
/// before the machine restarted may name parts the disk lost: it is unknown
/// under the new epoch (the client starts the blob again), while a session
/// started after the restart goes on.
#[test]
fn an_upload_saved_before_the_machine_restarted_is_unknown() {
    block_on(async {
        let store = Arc::new(Faulty {
            inner: Arc::new(MemoryStore::new(PART)),
            epoch: 41.into(),
            ..Faulty::default()
        });
        let registry = Registry::new(
            store.clone(),
            Arc::new(TestEnv::default().with_stream(9)),
            RegistryOptions::default(),
        );
        let content = data(3 * PART + 5);
        let before = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &before, None, full_body(content[..2 * PART].to_vec()))
            .await
            .unwrap();

        store.epoch.store(42, Ordering::SeqCst);
        let refused = registry
            .upload_chunk(&repo(), &before, None, full_body(content[2 * PART..].to_vec()))
            .await
            .expect_err("a session from before the restart is not resumed");
        assert_eq!(refused.code, ErrorCode::BlobUploadUnknown);
        assert_eq!(
            registry.upload_status(&repo(), &before).await.err().map(|e| e.code),
            Some(ErrorCode::BlobUploadUnknown)
        );

        let digest = Digest::of(Algorithm::Sha256, &content);
        let after = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &after, None, full_body(content[..2 * PART].to_vec()))
            .await
            .unwrap();
        registry
            .finish_upload(&repo(), &after, &digest, None, full_body(content[2 * PART..].to_vec()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
    });
}

/// The final PUT fails after the parts were joined into the blob's object
/// but before its record was written; the client retries the same PUT, which
/// must find the joined object rather than write parts to a finished
/// multipart write.
#[test]
fn a_final_put_that_failed_after_joining_the_parts_succeeds_when_retried() {
    block_on(async {
        let (memory, registry) = refusing_the_next_record(7);
        let content = data(3 * PART + 5);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let id = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &id, None, full_body(content[..3 * PART].to_vec()))
            .await
            .unwrap();
        let tail = || full_body(content[3 * PART..].to_vec());
        let refused = registry
            .finish_upload(&repo(), &id, &digest, None, tail())
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unavailable);
        assert!(
            registry.blob(&repo(), &digest).await.is_err(),
            "nothing visible after the failure"
        );
        // The retry sends the same last chunk again.
        registry
            .finish_upload(&repo(), &id, &digest, None, tail())
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_all_ended(&memory, "the session ended").await;
    });
}

/// Part writes still under way when the next bytes arrive (as on disk, where
/// they run on another thread): parts are recorded in order whatever the
/// chunk sizes, and a body that breaks off with a write in flight keeps only
/// the progress committed before it.
#[test]
fn part_writes_overlap_the_next_bytes() {
    block_on(async {
        let memory = Arc::new(MemoryStore::new(PART));
        let store = Arc::new(Faulty {
            inner: memory.clone(),
            slow_parts: true,
            ..Faulty::default()
        });
        let registry = Registry::new(
            store.clone(),
            Arc::new(TestEnv::default().with_stream(11)),
            RegistryOptions::default(),
        );
        let content = data(7 * PART + 3);
        for sizes in [
            vec![content.len()],
            vec![1; content.len()],
            vec![PART + 1, 3, 2 * PART, 4 * PART - 1],
            // A request ending on a part boundary writes its last part as it ends.
            vec![PART, PART, 2 * PART + 3, 3 * PART],
        ] {
            let digest = push_chunked(&[&registry], &content, &sizes).await;
            assert_eq!(read_blob(&registry, &digest).await, content, "chunks {sizes:?}");
            assert_eq!(
                store.parts_begun.load(Ordering::SeqCst),
                store.parts_done.load(Ordering::SeqCst),
                "every part write finished (chunks {sizes:?})"
            );
        }
        let digest = Digest::of(Algorithm::Sha256, &content);
        let whole = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &whole, None, full_body(content[..PART].to_vec()))
            .await
            .unwrap();
        let broken: pier_core::body::RequestBody = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from(content[PART..4 * PART].to_vec())),
            Err(pier_core::body::BodyError::Read("the client went away".into())),
        ]));
        registry.upload_chunk(&repo(), &whole, None, broken).await.unwrap_err();
        assert_eq!(
            registry.upload_status(&repo(), &whole).await.unwrap().offset,
            PART as u64
        );
        registry
            .finish_upload(&repo(), &whole, &digest, None, full_body(content[PART..].to_vec()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_all_ended(&memory, "the session ended").await;
    });
}

/// One-byte PATCHes, many more than the tail pieces a session keeps: the
/// pieces are merged (never more than `MAX_TAIL_PIECES` objects or state
/// entries at any point), across part boundaries, and on another instance
/// halfway; the blob is whole.
#[test]
fn one_byte_chunks_keep_a_bounded_number_of_tail_pieces() {
    block_on(async {
        let store = Arc::new(MemoryStore::new(64));
        let (first, second) = (
            registry_over(store.clone(), RegistryOptions::default()),
            registry_over(store.clone(), RegistryOptions::default()),
        );
        let content = data(150);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let id = first.start_upload(&repo()).await.unwrap().id;
        let mut most = 0;
        for (offset, byte) in content.iter().enumerate() {
            let registry = if offset < 75 { &first } else { &second };
            let range = ChunkRange {
                start: offset as u64,
                end: offset as u64,
            };
            registry
                .upload_chunk(&repo(), &id, Some(range), full_body(vec![*byte]))
                .await
                .unwrap();
            let tails = keys(&store, &format!("uploads/{id}/t/")).await.len();
            most = most.max(tails);
            assert!(
                tails <= pier_core::upload::MAX_TAIL_PIECES,
                "{tails} tail pieces at {offset}"
            );
        }
        assert_eq!(most, pier_core::upload::MAX_TAIL_PIECES, "the bound was never reached");
        first
            .finish_upload(&repo(), &id, &digest, None, full_body(Vec::new()))
            .await
            .unwrap();
        assert_eq!(read_blob(&first, &digest).await, content);
        assert_all_ended(&store, "the session ended").await;
    });
}

/// Background work held until the test runs it, as a platform would run it
/// some time after the answer.
#[derive(Default)]
struct HeldBackground {
    tasks: std::sync::Mutex<Vec<pier_core::platform::BoxFuture<'static, ()>>>,
}

impl HeldBackground {
    async fn run(&self) -> usize {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        let count = tasks.len();
        futures::future::join_all(tasks).await;
        count
    }
}

impl pier_core::platform::Background for HeldBackground {
    fn spawn(&self, task: pier_core::platform::BoxFuture<'static, ()>) {
        self.tasks.lock().unwrap().push(task);
    }
    fn sleep(&self, _: std::time::Duration) -> pier_core::platform::BoxFuture<'static, ()> {
        Box::pin(futures::future::ready(()))
    }
    fn report(&self, _: bool, _: &str) {}
}

/// A docker push (POST, one PATCH with the blob, an empty PUT) on a
/// registry whose cleanups run after the answer: the session is unknown as
/// soon as the PUT answers, though its bytes are removed only later, and
/// stays unknown after; a PATCH or PUT on it then is refused and stores
/// nothing.
#[test]
fn a_finished_session_is_closed_before_its_bytes_are_removed() {
    block_on(async {
        let store = Arc::new(MemoryStore::new(PART));
        let background = Arc::new(HeldBackground::default());
        let registry = registry_over(store.clone(), RegistryOptions::default()).with_background(background.clone());
        let content = data(PART + 3);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let started = registry.start_upload(&repo()).await.unwrap();
        let patched = registry
            .upload_chunk(&repo(), &started.id, None, full_body(content.clone()))
            .await
            .unwrap();
        let session = SessionRef {
            id: &started.id,
            state: patched.state,
        };
        registry
            .finish_upload(&repo(), session, &digest, None, full_body(Vec::new()))
            .await
            .unwrap();
        let tail = keys(&store, &format!("uploads/{}/t/", started.id)).await;
        assert_eq!(tail.len(), 1, "removal waits for the background");
        for named in [session, SessionRef::from(&started.id)] {
            let status = registry.upload_status(&repo(), named).await;
            assert_eq!(status.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown));
            let patch = registry.upload_chunk(&repo(), named, None, full_body(vec![1])).await;
            assert_eq!(patch.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown));
            let put = registry
                .finish_upload(&repo(), named, &digest, None, full_body(Vec::new()))
                .await;
            assert_eq!(put.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown));
        }
        assert!(background.run().await > 0);
        assert_all_ended(&store, "the session's bytes are gone").await;
        let status = registry.upload_status(&repo(), session).await;
        assert_eq!(status.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown));
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_eq!(keys(&store, "data/").await.len(), 1, "one data object");
    });
}

/// A client that keeps naming an old state (the POST's Location, or one
/// from before a chunk it retried) is served the newest state all the same.
#[test]
fn a_stale_state_in_the_location_reads_the_newest() {
    block_on(async {
        let (store, registry) = setup();
        let content = data(5 * PART + 3);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let started = registry.start_upload(&repo()).await.unwrap();
        let stale = SessionRef {
            id: &started.id,
            state: started.state,
        };
        let mut offset = 0;
        for size in [3, PART + 1, 2 * PART] {
            let range = ChunkRange {
                start: offset as u64,
                end: (offset + size) as u64 - 1,
            };
            let status = registry
                .upload_chunk(
                    &repo(),
                    stale,
                    Some(range),
                    full_body(content[offset..offset + size].to_vec()),
                )
                .await
                .unwrap();
            offset += size;
            assert_eq!(status.offset, offset as u64);
            assert_eq!(
                registry.upload_status(&repo(), stale).await.unwrap().offset,
                offset as u64
            );
        }
        // Numbers no state has, and one far past them, are only hints too.
        for state in [Some(999), Some(u64::MAX)] {
            let named = SessionRef { id: &started.id, state };
            assert_eq!(
                registry.upload_status(&repo(), named).await.unwrap().offset,
                offset as u64
            );
        }
        registry
            .finish_upload(&repo(), stale, &digest, None, full_body(content[offset..].to_vec()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_all_ended(&store, "the session ended").await;
    });
}

/// Two chunks sent at once from the same offset, neither claiming the
/// session (they write no part): one wins, the other is refused with 409,
/// and the winner's bytes are never overwritten by the loser's (each tail
/// piece has a key of its own). Tried in both orders of commit.
#[test]
fn concurrent_small_chunks_cannot_mix_their_bytes() {
    block_on(async {
        for winner_first in [true, false] {
            let (store, registry) = setup();
            let id = registry.start_upload(&repo()).await.unwrap().id;
            registry
                .upload_chunk(&repo(), &id, None, full_body(data(3)))
                .await
                .unwrap();
            let (env_a, env_b) = (TestEnv::default().with_stream(7), TestEnv::default().with_stream(77));
            let app = repo();
            let open = |env| pier_core::upload::Upload::open(store.as_ref(), env, &app, &id, None);
            let (mut a, mut b) = (open(&env_a).await.unwrap(), open(&env_b).await.unwrap());
            a.writing_as("a").unwrap();
            b.writing_as("b").unwrap();
            a.append(None, full_body(vec![0xa; 4])).await.unwrap();
            b.append(None, full_body(vec![0xb; 4])).await.unwrap();
            let (first, second, winner) = match winner_first {
                true => (&mut a, &mut b, 0xa),
                false => (&mut b, &mut a, 0xb),
            };
            first.commit().await.unwrap();
            let lost = second.commit().await.unwrap_err();
            assert_eq!(lost.status.as_u16(), 409);
            second.take_leftovers().remove(store.as_ref()).await;
            first.take_leftovers().remove(store.as_ref()).await;
            let mut expected = data(3);
            expected.extend_from_slice(&[winner; 4]);
            let digest = Digest::of(Algorithm::Sha256, &expected);
            registry
                .finish_upload(&repo(), &id, &digest, None, full_body(Vec::new()))
                .await
                .unwrap();
            assert_eq!(read_blob(&registry, &digest).await, expected, "the winner's bytes only");
            assert_all_ended(&store, "the loser's piece is gone too").await;
        }
    });
}

/// Requests holding a view of the session from before two later requests
/// (a slow chunk racing two quick ones, as the security suite's eight
/// concurrent PATCHes make them): none can claim the session, and none can
/// commit and be told its bytes were taken, since state numbers are never
/// free again while the session lives. The session goes on unharmed.
#[test]
fn a_view_older_than_later_states_can_neither_claim_nor_commit() {
    block_on(async {
        let (store, registry) = setup();
        let content = data(3 * PART);
        let id = registry.start_upload(&repo()).await.unwrap().id;
        let env = TestEnv::default().with_stream(5);
        let app = repo();
        let open = || pier_core::upload::Upload::open(store.as_ref(), &env, &app, &id, None);
        let (mut claimer, mut committer) = (open().await.unwrap(), open().await.unwrap());
        registry
            .upload_chunk(&repo(), &id, None, full_body(content[..2].to_vec()))
            .await
            .unwrap();
        registry
            .upload_chunk(&repo(), &id, None, full_body(content[2..4].to_vec()))
            .await
            .unwrap();
        committer.writing_as("old").unwrap();
        committer.append(None, full_body(vec![9u8; 3])).await.unwrap();
        let refused = committer.commit().await.unwrap_err();
        assert_eq!(refused.status.as_u16(), 409, "the commit");
        committer.take_leftovers().remove(store.as_ref()).await;
        let refused = claimer.claim("old").await.unwrap_err();
        assert_eq!(refused.status.as_u16(), 409, "the claim");
        let digest = Digest::of(Algorithm::Sha256, &content);
        registry
            .finish_upload(&repo(), &id, &digest, None, full_body(content[4..].to_vec()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_all_ended(&store, "the refused piece is gone too").await;
    });
}

/// A session saved by an older build (tail pieces named by offset and
/// generation) is still finished correctly after an upgrade.
#[test]
fn a_session_of_an_older_build_still_finishes() {
    block_on(async {
        let (store, registry) = setup();
        let content = data(PART + 5);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let id = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &id, None, full_body(content[..3].to_vec()))
            .await
            .unwrap();
        // Rewritten as the older build wrote it: the piece at offset 0 of
        // generation 2, the state naming it by its offset alone.
        let state_key = keys(&store, &format!("uploads/{id}/s/")).await.pop().unwrap();
        let (bytes, _) = pier_core::store::read_small(store.as_ref(), &state_key)
            .await
            .unwrap()
            .unwrap();
        let mut state: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        state["tails"] = serde_json::json!([0]);
        state["tail_generation"] = serde_json::json!(2);
        for key in keys(&store, &format!("uploads/{id}/t/")).await {
            store.delete(&key).await.unwrap();
        }
        let legacy_tail = pier_core::layout::upload_tail(&id, 2, 0);
        store
            .put(&legacy_tail, Bytes::from(content[..3].to_vec()), PutMode::Overwrite)
            .await
            .unwrap();
        let state = Bytes::from(serde_json::to_vec(&state).unwrap());
        store.put(&state_key, state, PutMode::Overwrite).await.unwrap();
        registry
            .finish_upload(&repo(), &id, &digest, None, full_body(content[3..].to_vec()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_all_ended(&store, "the session ended").await;
    });
}

/// A session's first chunk, when it is less than a part, goes to the
/// session's own data object, and a final PUT that adds nothing makes that
/// object the blob: one data object, no copy, and no session key left.
#[test]
fn a_first_chunk_becomes_the_blob_without_a_copy() {
    block_on(async {
        let (store, registry) = setup();
        let content = data(PART - 1);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let id = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &id, None, full_body(content.clone()))
            .await
            .unwrap();
        let own = format!("data/{id}");
        assert_eq!(
            keys(&store, "data/").await,
            std::slice::from_ref(&own),
            "the chunk is in the session's object"
        );
        registry
            .finish_upload(&repo(), &id, &digest, None, full_body(Vec::new()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_eq!(
            registry.blob(&repo(), &digest).await.unwrap().object,
            own,
            "adopted, not copied"
        );
        assert_eq!(keys(&store, "data/").await, [own], "one data object");
        assert_all_ended(&store, "the session ended").await;
    });
}

/// Bad final requests on a session whose first chunk is in its own object:
/// a wrong digest, extra bytes in the PUT, the right digest with extra bytes,
/// another digest algorithm, and a second chunk first. Each stores exactly
/// what the digest names or nothing, and keeps one data object at most: the
/// session's own is removed when no record names it.
#[test]
fn a_first_chunk_in_its_own_object_is_checked_like_any_bytes() {
    block_on(async {
        let first = data(5);
        let more = vec![0x7e; 3];
        let mut both = first.clone();
        both.extend_from_slice(&more);
        let sha256_first = Digest::of(Algorithm::Sha256, &first);
        let sha512_first = Digest::of(Algorithm::Sha512, &first);
        let sha256_both = Digest::of(Algorithm::Sha256, &both);
        let wrong = Digest::of(Algorithm::Sha256, b"something else");
        struct FinalPut<'a> {
            digest: &'a Digest,
            body: &'a [u8],
            second_patch: bool,
            /// What is stored, if anything.
            stored: Option<&'a [u8]>,
        }
        let put = |digest, body, second_patch, stored| FinalPut {
            digest,
            body,
            second_patch,
            stored,
        };
        let cases = [
            put(&wrong, &[], false, None),
            put(&sha256_first, &more, false, None),
            put(&sha256_both, &more, false, Some(&both)),
            put(&sha512_first, &[], false, Some(&first)),
            put(&sha256_both, &[], true, Some(&both)),
            put(&sha256_first, &[], true, None),
        ];
        for FinalPut {
            digest,
            body,
            second_patch,
            stored,
        } in cases
        {
            let what = format!("PUT {digest} with {} bytes, second PATCH {second_patch}", body.len());
            let (store, registry) = setup();
            let id = registry.start_upload(&repo()).await.unwrap().id;
            registry
                .upload_chunk(&repo(), &id, None, full_body(first.clone()))
                .await
                .unwrap();
            if second_patch {
                registry
                    .upload_chunk(&repo(), &id, None, full_body(more.clone()))
                    .await
                    .unwrap();
            }
            let finished = registry
                .finish_upload(&repo(), &id, digest, None, full_body(body.to_vec()))
                .await;
            match stored {
                Some(bytes) => {
                    finished.unwrap_or_else(|e| panic!("{what}: {e:?}"));
                    assert_eq!(read_blob(&registry, digest).await, bytes, "{what}");
                    let record = registry.blob(&repo(), digest).await.unwrap();
                    assert_eq!(keys(&store, "data/").await, [record.object], "{what}: one data object");
                }
                None => {
                    let refused = finished.unwrap_err();
                    assert_eq!(refused.code, ErrorCode::DigestInvalid, "{what}");
                    assert_eq!(
                        registry.blob(&repo(), digest).await.unwrap_err().code,
                        ErrorCode::BlobUnknown,
                        "{what}"
                    );
                    assert!(keys(&store, "blobs/").await.is_empty(), "{what}: no record");
                    assert_eq!(
                        stored_beside_ended_states(&store).await,
                        0,
                        "{what}: nothing at all is stored"
                    );
                }
            }
            assert_all_ended(&store, "{what}: the session ended").await;
        }
    });
}

/// An object at the session's key that no state names (left by a request
/// that died after writing it, or that lost the session to another) is
/// never taken for the session's bytes: the next first chunk goes to a tail
/// piece, and only its own bytes can become the blob.
#[test]
fn an_object_left_at_the_sessions_key_is_never_its_bytes() {
    block_on(async {
        for put_the_planted_digest in [true, false] {
            let (store, registry) = setup();
            let id = registry.start_upload(&repo()).await.unwrap().id;
            let planted = vec![0x66; 5];
            store
                .put(&format!("data/{id}"), Bytes::from(planted.clone()), PutMode::Create)
                .await
                .unwrap();
            let sent = data(5);
            registry
                .upload_chunk(&repo(), &id, None, full_body(sent.clone()))
                .await
                .unwrap();
            if put_the_planted_digest {
                let planted_digest = Digest::of(Algorithm::Sha256, &planted);
                let refused = registry
                    .finish_upload(&repo(), &id, &planted_digest, None, full_body(Vec::new()))
                    .await
                    .unwrap_err();
                assert_eq!(refused.code, ErrorCode::DigestInvalid);
                assert!(registry.blob(&repo(), &planted_digest).await.is_err());
            } else {
                let digest = Digest::of(Algorithm::Sha256, &sent);
                registry
                    .finish_upload(&repo(), &id, &digest, None, full_body(Vec::new()))
                    .await
                    .unwrap();
                assert_eq!(read_blob(&registry, &digest).await, sent, "the chunk's bytes");
            }
        }
    });
}

/// Two first chunks racing from offset 0 with different bytes: one wins the
/// session, and only the winner's bytes can become the blob, whichever of
/// the two wrote first.
#[test]
fn racing_first_chunks_leave_only_the_winners_bytes() {
    block_on(async {
        for (winner_first, put_the_losers_digest) in [(true, true), (true, false), (false, true), (false, false)] {
            let what = format!("winner first {winner_first}, the loser's digest {put_the_losers_digest}");
            let (store, registry) = setup();
            let id = registry.start_upload(&repo()).await.unwrap().id;
            let (env_a, env_b) = (TestEnv::default().with_stream(7), TestEnv::default().with_stream(77));
            let app = repo();
            let open = |env| Upload::open(store.as_ref(), env, &app, &id, None);
            let (mut a, mut b) = (open(&env_a).await.unwrap(), open(&env_b).await.unwrap());
            a.writing_as("a").unwrap();
            b.writing_as("b").unwrap();
            a.append(None, full_body(vec![0xa; 5])).await.unwrap();
            b.append(None, full_body(vec![0xb; 5])).await.unwrap();
            let (first, second, winner, loser) = match winner_first {
                true => (&mut a, &mut b, 0xa, 0xb),
                false => (&mut b, &mut a, 0xb, 0xa),
            };
            first.commit().await.unwrap();
            assert_eq!(second.commit().await.unwrap_err().status.as_u16(), 409, "{what}");
            second.take_leftovers().remove(store.as_ref()).await;
            first.take_leftovers().remove(store.as_ref()).await;
            if put_the_losers_digest {
                let lost = Digest::of(Algorithm::Sha256, &[loser; 5]);
                let refused = registry
                    .finish_upload(&repo(), &id, &lost, None, full_body(Vec::new()))
                    .await
                    .unwrap_err();
                assert_eq!(refused.code, ErrorCode::DigestInvalid, "{what}");
                assert_eq!(stored_beside_ended_states(&store).await, 0, "{what}: nothing is stored");
            } else {
                let won = Digest::of(Algorithm::Sha256, &[winner; 5]);
                registry
                    .finish_upload(&repo(), &id, &won, None, full_body(Vec::new()))
                    .await
                    .unwrap();
                assert_eq!(read_blob(&registry, &won).await, vec![winner; 5], "{what}");
            }
        }
    });
}

/// What a request racing the adopting PUT does, on a view of the session
/// from before it.
#[derive(Clone, Copy, Debug)]
enum Racer {
    /// A second final PUT, with the right digest.
    Put,
    /// A final PUT with a wrong digest, which ends the session.
    WrongPut,
    /// DELETE of the session.
    Cancel,
    /// A chunk that fills a part, which is joined into the session's object.
    Part,
}

async fn finish_and_close(upload: &mut Upload<'_>, digest: &Digest) -> Result<(), RegistryError> {
    let finished = upload.finish(digest, Box::new(|_| Box::pin(async { Ok(()) }))).await;
    if finished.is_ok() {
        // The answer is the finish's: a session a racer ended first stays ended.
        let _ = upload.close().await;
    }
    finished.map(|_| ())
}

async fn run_racer(upload: &mut Upload<'_>, racer: Racer, digest: &Digest) -> Result<(), RegistryError> {
    match racer {
        Racer::Put => finish_and_close(upload, digest).await,
        Racer::WrongPut => finish_and_close(upload, &Digest::of(Algorithm::Sha256, b"wrong")).await,
        Racer::Cancel => upload.close().await,
        Racer::Part => {
            upload.append(None, full_body(data(2 * PART))).await?;
            upload.commit().await
        }
    }
}

/// The bytes of the blob `digest` as its record names them, if stored.
async fn stored_blob(store: &MemoryStore, digest: &Digest) -> Option<Vec<u8>> {
    let (record, _) = read_small(store, &layout::blob_record(digest)).await.unwrap()?;
    let record: BlobRecord = serde_json::from_slice(&record).unwrap();
    let (bytes, _) = read_small(store, &record.object)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the record of {digest} names {}, which is gone", record.object));
    Some(bytes.to_vec())
}

/// Requests racing the final PUT of a session whose bytes are in its own
/// object, each holding a view from before it: a second PUT, a PUT with a
/// wrong digest, a cancel, and a chunk that would join a part into that
/// object. In either order none of them can delete, overwrite or adopt
/// anew the object a PUT made the blob.
#[test]
fn requests_racing_the_adopting_put_cannot_touch_the_blob() {
    block_on(async {
        let content = data(5);
        let digest = Digest::of(Algorithm::Sha256, &content);
        for racer in [Racer::Put, Racer::WrongPut, Racer::Cancel, Racer::Part] {
            for adopter_first in [true, false] {
                let what = format!("{racer:?}, adopter first {adopter_first}");
                let (store, registry) = setup();
                let id = registry.start_upload(&repo()).await.unwrap().id;
                registry
                    .upload_chunk(&repo(), &id, None, full_body(content.clone()))
                    .await
                    .unwrap();
                let (env_a, env_b) = (TestEnv::default().with_stream(5), TestEnv::default().with_stream(55));
                let app = repo();
                let open = |env| Upload::open(store.as_ref(), env, &app, &id, None);
                let (mut adopter, mut other) = (open(&env_a).await.unwrap(), open(&env_b).await.unwrap());
                adopter.writing_as("a").unwrap();
                other.writing_as("b").unwrap();
                let (adopted, raced) = match adopter_first {
                    true => {
                        let adopted = finish_and_close(&mut adopter, &digest).await;
                        (adopted, run_racer(&mut other, racer, &digest).await)
                    }
                    false => {
                        let raced = run_racer(&mut other, racer, &digest).await;
                        (finish_and_close(&mut adopter, &digest).await, raced)
                    }
                };
                adopter.take_leftovers().remove(store.as_ref()).await;
                other.take_leftovers().remove(store.as_ref()).await;
                if adopter_first {
                    assert!(adopted.is_ok(), "{what}: {adopted:?}");
                }
                let stored_by_a_put = adopted.is_ok() || matches!((racer, &raced), (Racer::Put, Ok(())));
                match stored_blob(&store, &digest).await {
                    Some(bytes) => assert_eq!(bytes, content, "{what}: the blob's bytes"),
                    None => assert!(!stored_by_a_put, "{what}: an answered PUT stored nothing"),
                }
                if let Racer::Part = racer {
                    assert!(
                        adopted.is_err() || raced.is_err(),
                        "{what}: the part and the adoption both went through"
                    );
                }
            }
        }
    });
}

/// A first chunk in the session's own object, then chunks that join it into
/// a part of the multipart write completing to that same object: removals
/// the requests leave for after their answers, run only after the final PUT,
/// must not remove the blob.
#[test]
fn removals_after_the_answers_spare_the_sessions_object() {
    block_on(async {
        let store = Arc::new(MemoryStore::new(PART));
        let background = Arc::new(HeldBackground::default());
        let registry = registry_over(store.clone(), RegistryOptions::default()).with_background(background.clone());
        let content = data(3 * PART + 2);
        let digest = push_chunked(&[&registry], &content, &[5, 5, 2 * PART]).await;
        background.run().await;
        assert_eq!(read_blob(&registry, &digest).await, content);
        assert_all_ended(&store, "the session ended").await;
    });
}

/// The adopting PUT ends the session before it writes the record; when that
/// write fails (the bucket is away), the client is told to retry (503), the
/// session is unknown from then on and its keys go, the object stays for
/// the orphan sweep (the write may have landed), and the push made again
/// from the start stores the blob.
#[test]
fn an_adopting_put_whose_record_fails_ends_the_session_cleanly() {
    block_on(async {
        let (memory, registry) = refusing_the_next_record(8);
        let content = data(PART - 2);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let id = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &id, None, full_body(content.clone()))
            .await
            .unwrap();
        let refused = registry
            .finish_upload(&repo(), &id, &digest, None, full_body(Vec::new()))
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unavailable);
        assert!(registry.blob(&repo(), &digest).await.is_err(), "nothing visible");
        assert_eq!(
            registry.upload_status(&repo(), &id).await.unwrap_err().code,
            ErrorCode::BlobUploadUnknown,
            "the session ended"
        );
        assert_all_ended(&memory, "its keys are gone").await;
        assert_eq!(
            keys(&memory, "data/").await,
            [format!("data/{id}")],
            "its object is the sweep's"
        );
        let id = registry.start_upload(&repo()).await.unwrap().id;
        registry
            .upload_chunk(&repo(), &id, None, full_body(content.clone()))
            .await
            .unwrap();
        registry
            .finish_upload(&repo(), &id, &digest, None, full_body(Vec::new()))
            .await
            .unwrap();
        assert_eq!(read_blob(&registry, &digest).await, content);
    });
}

/// A session whose first chunk (less than a part) is in its own object,
/// which a final PUT adding nothing makes the blob: its id, bytes and digest.
async fn session_with_a_first_chunk(registry: &Registry) -> (String, Vec<u8>, Digest) {
    let id = registry.start_upload(&repo()).await.unwrap().id;
    let content = data(3);
    registry
        .upload_chunk(&repo(), &id, None, full_body(content.clone()))
        .await
        .unwrap();
    let digest = Digest::of(Algorithm::Sha256, &content);
    (id, content, digest)
}

/// The final PUT, answered, and what it left removed after it.
async fn finish_adding_nothing(store: &MemoryStore, registry: &Registry, id: &str, digest: &Digest) {
    registry
        .finish_upload(&repo(), id, digest, None, full_body(Vec::new()))
        .await
        .unwrap();
    assert_all_ended(store, "the finished session").await;
}

/// The blob as another instance reads it (this one keeps what it wrote in
/// memory).
async fn read_elsewhere(store: &Arc<MemoryStore>, digest: &Digest) -> Vec<u8> {
    read_blob(&registry_over(store.clone(), RegistryOptions::default()), digest).await
}

/// A request holding a view of a session from before another request
/// finished it (a cancel racing the final PUT). When an ended session's
/// states were removed at once, it could write the closed marker anew and
/// take itself for the request that ended the session, removing the
/// session's object that the finished request made the blob: the PUT was
/// answered 201. Found by tests/http's racing PUT and DELETE. The states
/// stay until upload expiry: the cancel finds the session ended.
#[test]
fn a_cancel_with_an_old_view_never_removes_the_blob_a_put_adopted() {
    block_on(async {
        let (store, registry) = setup();
        let (id, content, digest) = session_with_a_first_chunk(&registry).await;
        let env = TestEnv::default().with_stream(5);
        let mut cancel = Upload::open(store.as_ref(), &env, &repo(), &id, None).await.unwrap();
        finish_adding_nothing(&store, &registry, &id, &digest).await;
        let refused = cancel.close().await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::BlobUploadUnknown, "the session ended");
        cancel.take_leftovers().remove(store.as_ref()).await;
        assert_eq!(read_elsewhere(&store, &digest).await, content, "the adopted blob stays");
    });
}

/// The same old view, sending a chunk that completes a part instead: its
/// parts would be joined into the session's own object, which the finished
/// PUT made the blob. It is refused as the session's end, and the blob
/// keeps its bytes.
#[test]
fn a_chunk_with_an_old_view_never_rewrites_the_blob_a_put_adopted() {
    block_on(async {
        let (store, registry) = setup();
        let (id, content, digest) = session_with_a_first_chunk(&registry).await;
        let env = TestEnv::default().with_stream(6);
        let mut stale = Upload::open(store.as_ref(), &env, &repo(), &id, None).await.unwrap();
        finish_adding_nothing(&store, &registry, &id, &digest).await;
        stale.writing_as("stale").unwrap();
        let more = vec![7u8; 2 * PART];
        let range = ChunkRange {
            start: 3,
            end: 3 + more.len() as u64 - 1,
        };
        let err = stale.append(Some(range), full_body(more)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BlobUploadUnknown);
        stale.release().await;
        stale.take_leftovers().remove(store.as_ref()).await;
        assert_eq!(
            read_elsewhere(&store, &digest).await,
            content,
            "the adopted blob keeps its bytes"
        );
    });
}

/// A request holding the view its POST gave (nothing received yet) while
/// the session is pushed in parts and finished by other requests: the blob
/// is then the session's own object, the parts joined into it. The old
/// view's parts, joined by its own final PUT, would write over the blob's
/// bytes under a record of other content. The session ended: the old view
/// is refused before it writes a part, and the blob keeps its bytes.
#[test]
fn a_put_with_the_posts_view_never_joins_parts_over_a_finished_blob() {
    block_on(async {
        let (store, registry) = setup();
        let id = registry.start_upload(&repo()).await.unwrap().id;
        let env = TestEnv::default().with_stream(7);
        let mut stale = Upload::open(store.as_ref(), &env, &repo(), &id, None).await.unwrap();
        let content = data(2 * PART + 1);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let range = ChunkRange {
            start: 0,
            end: 2 * PART as u64 - 1,
        };
        let parts = full_body(content[..2 * PART].to_vec());
        registry.upload_chunk(&repo(), &id, Some(range), parts).await.unwrap();
        let last = full_body(content[2 * PART..].to_vec());
        registry.finish_upload(&repo(), &id, &digest, None, last).await.unwrap();
        let (record, _) = read_small(store.as_ref(), &layout::blob_record(&digest))
            .await
            .unwrap()
            .unwrap();
        let record: BlobRecord = serde_json::from_slice(&record).unwrap();
        assert_eq!(
            record.object,
            format!("data/{id}"),
            "the blob is the session's own object"
        );

        stale.writing_as("stale").unwrap();
        let other = vec![9u8; 2 * PART];
        let other_digest = Digest::of(Algorithm::Sha256, &other);
        let refused = match stale.append(None, full_body(other)).await {
            Ok(()) => stale
                .finish(&other_digest, Box::new(|_| Box::pin(async { Ok(()) })))
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        stale.release().await;
        stale.take_leftovers().remove(store.as_ref()).await;
        eprintln!(
            "DEBUG {:?} {:?} {:?}",
            refused,
            keys(&store, "").await,
            read_small(store.as_ref(), &format!("data/{id}"))
                .await
                .unwrap()
                .map(|x| x.0)
        );
        assert_eq!(
            read_elsewhere(&store, &digest).await,
            content,
            "the blob keeps its bytes"
        );
        assert_eq!(refused.unwrap_err().code, ErrorCode::BlobUploadUnknown);
    });
}

/// A POST saves nothing: the session is known by its id alone until a
/// request saves its first state (1, the POST's being 0). A PUT of the
/// whole blob on it ends it with one closed marker, and the id, with the
/// POST's Location or any other, is unknown from then on.
#[test]
fn a_post_saves_nothing_and_its_session_ends_with_one_marker() {
    block_on(async {
        let (store, registry) = setup();
        let started = registry.start_upload(&repo()).await.unwrap();
        assert_eq!((started.offset, started.state), (0, Some(0)));
        assert!(keys(&store, "").await.is_empty(), "the POST stored nothing");
        let posted = SessionRef {
            id: &started.id,
            state: Some(0),
        };
        assert_eq!(registry.upload_status(&repo(), posted).await.unwrap().offset, 0);
        let content = data(5);
        let digest = Digest::of(Algorithm::Sha256, &content);
        registry
            .finish_upload(&repo(), posted, &digest, None, full_body(content.clone()))
            .await
            .unwrap();
        assert_eq!(keys(&store, "uploads/").await, [layout::upload_state(&started.id, 1)]);
        assert_all_ended(&store, "the pushed session").await;
        for state in [Some(0), None, Some(1)] {
            let named = SessionRef { id: &started.id, state };
            let again = registry
                .finish_upload(&repo(), named, &digest, None, full_body(content.clone()))
                .await;
            assert_eq!(
                again.err().map(|e| e.code),
                Some(ErrorCode::BlobUploadUnknown),
                "{state:?}"
            );
            let patch = registry.upload_chunk(&repo(), named, None, full_body(vec![1])).await;
            assert_eq!(
                patch.err().map(|e| e.code),
                Some(ErrorCode::BlobUploadUnknown),
                "{state:?}"
            );
        }
        assert_eq!(read_blob(&registry, &digest).await, content);
    });
}

/// Ids no POST of this repository issued within the day are unknown, with
/// or without the POST's state, and a request on one stores nothing: an id
/// of an older build's shape never saved, a session's id under another
/// repository, an id issued more than a day ago, an id dated an hour ahead
/// (a clock, or a client, far off), and garbage.
#[test]
fn ids_not_issued_for_the_repository_within_the_day_are_unknown() {
    block_on(async {
        let store = Arc::new(MemoryStore::new(PART));
        let env = Arc::new(TestEnv::default().with_stream(9));
        let registry = Registry::new(store.clone(), env.clone(), RegistryOptions::default());
        let other = RepoName::parse("team/other").unwrap();
        let elsewhere = registry.start_upload(&other).await.unwrap().id;
        let stale = registry.start_upload(&repo()).await.unwrap().id;
        env.advance_millis(pier_core::upload_id::UNUSED_FOR_MS);
        let ahead = pier_core::upload_id::issue(&TestEnv::at(env.now_millis() + 3_600_000), &repo());
        let content = data(5);
        let digest = Digest::of(Algorithm::Sha256, &content);
        let older_build = "0123456789abcdef0123456789abcdef".to_string();
        for id in [older_build, elsewhere, stale, ahead, "z".repeat(48)] {
            for state in [Some(0), None] {
                let named = SessionRef { id: &id, state };
                let status = registry.upload_status(&repo(), named).await;
                assert_eq!(status.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown), "{id}");
                let patch = registry
                    .upload_chunk(&repo(), named, None, full_body(content.clone()))
                    .await;
                assert_eq!(patch.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown), "{id}");
                let put = registry
                    .finish_upload(&repo(), named, &digest, None, full_body(content.clone()))
                    .await;
                assert_eq!(put.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown), "{id}");
                let cancel = registry.cancel_upload(&repo(), named).await;
                assert_eq!(cancel.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown), "{id}");
            }
        }
        assert!(keys(&store, "").await.is_empty(), "nothing was stored");
    });
}
