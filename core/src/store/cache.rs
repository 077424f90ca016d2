//! An in-process cache of small immutable objects (blob records, manifests by
//! digest, layer links) in front of any store.
//!
//! Digest-addressed data never changes, so a copy may be served without asking
//! the store again; that removes a storage round trip from most pulls. What
//! is written through the cache is kept as a read of it would be. Only
//! existence is cached, never absence, so content pushed through another
//! instance is seen at once. A delete through this process evicts the entry;
//! a delete made by another instance (garbage collection, a manifest delete)
//! may be served from here for at most [`MAX_AGE_MS`], or until a read of the
//! store itself finds the object gone ([`Store::forget`], see `fresh`).
//!
//! Tags move, so they are kept only where this cache sees every write: on a
//! store one process owns (`Capabilities::single_process`, the local
//! directory, locked by its server), through which the registry, its
//! uploads and its collector all write. There a tag written is kept as
//! written and one deleted is evicted, like any other key, and the store
//! itself is read again after [`MAX_AGE_MS`] all the same. A read or write
//! overtaken by a later write or delete of its key keeps nothing, so a slow
//! request never puts back a tag the next push moved.
//!
//! The memory ([`ImmutableMemory`]) is apart from the store decorator
//! ([`ImmutableCache`]) because they live differently long: the native
//! server builds its stores once, the Worker per request, and an isolate's
//! memory must outlive its requests to be worth having.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::{Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreResult};
use crate::layout::{is_immutable, is_layer_link, is_tag};
use crate::platform::{box_stream, Env};

/// Objects larger than this are never cached (blob data streams through).
pub const MAX_OBJECT_BYTES: u64 = 64 << 10;
/// How long an entry is served before the store is asked again.
pub const MAX_AGE_MS: u64 = 10_000;

struct Entry {
    data: Bytes,
    meta: ObjectMeta,
    stored_ms: u64,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, Entry>,
    /// Insertion order, for eviction (oldest first).
    order: VecDeque<String>,
    bytes: u64,
    /// Counts forgets. A read or write takes the count as its [`Ticket`]
    /// when it starts, and keeps what it found only if its key was not
    /// forgotten since: a slower read or write must not put back what a
    /// later write replaced (a tag moved by the next push).
    generation: u64,
    /// The generation of each key's last forget since `floor`.
    forgotten: HashMap<String, u64>,
    /// Tickets older than this keep nothing: `forgotten` was cleared then.
    floor: u64,
}

/// When a read or write of the store began, in forgets (see
/// `Entries::generation`).
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

/// How many forgotten keys are remembered; past that the record is cleared
/// and reads and writes under way keep nothing.
const MAX_FORGOTTEN_KEYS: usize = 4096;

/// Up to `capacity` bytes of small immutable objects, by key: the memory of
/// one process or isolate, shared by every [`ImmutableCache`] made over it.
pub struct ImmutableMemory {
    env: Arc<dyn Env>,
    capacity: u64,
    entries: Mutex<Entries>,
}

impl ImmutableMemory {
    pub fn new(env: Arc<dyn Env>, capacity: u64) -> ImmutableMemory {
        ImmutableMemory {
            env,
            capacity,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lookup(&self, key: &str) -> Option<(Bytes, ObjectMeta)> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = entries
            .by_key
            .get(key)
            .map(|e| self.env.now_millis().saturating_sub(e.stored_ms) < MAX_AGE_MS)?;
        if !fresh {
            Self::evict(&mut entries, key);
            return None;
        }
        entries.by_key.get(key).map(|e| (e.data.clone(), e.meta.clone()))
    }

    fn ticket(&self) -> Ticket {
        Ticket(self.entries.lock().unwrap_or_else(PoisonError::into_inner).generation)
    }

    /// Keeps what a read or write that began at `ticket` found under `key`,
    /// unless the key was forgotten since (a later write or delete).
    fn insert(&self, key: &str, data: Bytes, meta: ObjectMeta, ticket: Ticket) {
        let size = data.len() as u64 + key.len() as u64;
        if size > self.capacity {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let forgotten_since = entries.forgotten.get(key).is_some_and(|&at| at > ticket.0);
        if ticket.0 < entries.floor || forgotten_since {
            return;
        }
        Self::evict(&mut entries, key);
        while entries.bytes + size > self.capacity {
            let Some(oldest) = entries.order.pop_front() else { break };
            if let Some(gone) = entries.by_key.remove(&oldest) {
                entries.bytes -= gone.data.len() as u64 + oldest.len() as u64;
            }
        }
        entries.bytes += size;
        entries.order.push_back(key.to_string());
        entries.by_key.insert(
            key.to_string(),
            Entry {
                data,
                meta,
                stored_ms: self.env.now_millis(),
            },
        );
    }

    fn evict(entries: &mut Entries, key: &str) {
        if let Some(gone) = entries.by_key.remove(key) {
            entries.bytes -= gone.data.len() as u64 + key.len() as u64;
            entries.order.retain(|k| k != key);
        }
    }

    /// Drops the copy of `key`, if one is kept, and any a read or write
    /// under way would keep; the ticket of a write of `key` that starts now.
    pub fn forget(&self, key: &str) -> Ticket {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.generation += 1;
        let generation = entries.generation;
        if entries.forgotten.len() >= MAX_FORGOTTEN_KEYS {
            entries.forgotten.clear();
            entries.floor = generation;
        }
        entries.forgotten.insert(key.to_string(), generation);
        Self::evict(&mut entries, key);
        Ticket(generation)
    }
}

/// A store decorator answering immutable reads from an [`ImmutableMemory`].
pub struct ImmutableCache {
    inner: Arc<dyn Store>,
    memory: Arc<ImmutableMemory>,
    /// Whether every write to `inner` passes here, so tags may be kept too.
    sees_every_write: bool,
}

impl ImmutableCache {
    pub fn new(inner: Arc<dyn Store>, memory: Arc<ImmutableMemory>) -> ImmutableCache {
        let sees_every_write = inner.capabilities().single_process;
        ImmutableCache {
            inner,
            memory,
            sees_every_write,
        }
    }

    fn keeps(&self, key: &str) -> bool {
        is_immutable(key) || (self.sees_every_write && is_tag(key))
    }

    /// Keeps what a write just stored, as a read right after it would: the
    /// pull that follows a push (a CI job's next step) then finds the blob's
    /// record, its link and the manifest here instead of asking the store.
    /// A write that failed keeps nothing: a refused `Create` says nothing of
    /// what is there.
    fn keep_written(&self, key: &str, data: Bytes, meta: &ObjectMeta, ticket: Ticket) {
        if self.keeps(key) && data.len() as u64 <= MAX_OBJECT_BYTES {
            self.memory.insert(key, data, meta.clone(), ticket);
        }
    }
}

fn one_chunk(data: Bytes) -> super::ByteStream {
    box_stream(futures::stream::once(async move { Ok(data) }))
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for ImmutableCache {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        if let Some((_, meta)) = self.memory.lookup(key) {
            return Ok(Some(meta));
        }
        // Every blob pull asks for its layer link's head. A link is a few
        // bytes: reading it whole costs the same round trip, and the copy
        // answers the next heads.
        if is_layer_link(key) {
            return Ok(self.get(key, None).await?.map(|found| found.meta));
        }
        self.inner.head(key).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        if !self.keeps(key) {
            return self.inner.get(key, range).await;
        }
        if let Some((data, meta)) = self.memory.lookup(key) {
            let slice = match range {
                Some(r) if r.start <= r.end && r.end <= meta.size => data.slice(r.start as usize..r.end as usize),
                Some(_) => return self.inner.get(key, range).await,
                None => data,
            };
            return Ok(Some(GetResult {
                meta,
                body: one_chunk(slice),
            }));
        }
        let ticket = self.memory.ticket();
        let Some(result) = self.inner.get(key, range.clone()).await? else {
            return Ok(None);
        };
        if range.is_some() || result.meta.size > MAX_OBJECT_BYTES {
            return Ok(Some(result));
        }
        let meta = result.meta.clone();
        let data = result.bytes().await?;
        self.memory.insert(key, data.clone(), meta.clone(), ticket);
        Ok(Some(GetResult {
            meta,
            body: one_chunk(data),
        }))
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        // Taken with the forget, so that a write of the same key starting on
        // another thread in between is seen as later.
        let ticket = self.memory.forget(key);
        let meta = self.inner.put(key, data.clone(), mode).await?;
        self.keep_written(key, data, &meta, ticket);
        Ok(meta)
    }

    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        let ticket = self.memory.forget(key);
        let meta = self.inner.put_volatile(key, data.clone(), mode).await?;
        self.keep_written(key, data, &meta, ticket);
        Ok(meta)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.memory.forget(key);
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        self.inner.list(prefix, start_after, limit).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        self.inner.create_multipart(key).await
    }

    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        self.inner.put_part(key, upload_id, number, data).await
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        self.memory.forget(key);
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn signed_url(&self, key: &str, expires: std::time::Duration) -> StoreResult<Option<String>> {
        self.inner.signed_url(key, expires).await
    }

    async fn forget(&self, key: &str) {
        self.memory.forget(key);
        self.inner.forget(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{contract, read_small, StoreError};
    use crate::testing::TestEnv;

    /// Under `blobs/` too, where objects are immutable and cached.
    #[test]
    fn keeps_the_storage_contract() {
        let inner = Arc::new(MemoryStore::new(1024));
        let clock = Arc::new(TestEnv::at(0));
        let cache = ImmutableCache::new(inner.clone(), Arc::new(ImmutableMemory::new(clock.clone(), 1 << 20)));
        for prefix in ["contract/", "blobs/contract/"] {
            let results = futures::executor::block_on(contract::run(&cache, clock.as_ref(), prefix));
            assert_eq!(
                contract::all_passed(&results),
                Ok(contract::check_names().count()),
                "under {prefix}"
            );
        }
        assert_eq!(inner.total_bytes(), 0, "the contract leaves nothing behind");
    }

    #[test]
    fn forwards_what_the_store_beneath_knows() {
        let wrapped = contract::check_wrapper(|inner| {
            ImmutableCache::new(inner, Arc::new(ImmutableMemory::new(Arc::new(TestEnv::at(0)), 1 << 20)))
        });
        assert_eq!(futures::executor::block_on(wrapped), Ok(()));
    }

    #[test]
    fn serves_immutable_objects_from_memory_until_they_age_out() {
        futures::executor::block_on(async {
            let inner = Arc::new(MemoryStore::new(1024));
            let clock = Arc::new(TestEnv::at(0));
            let cache = ImmutableCache::new(inner.clone(), Arc::new(ImmutableMemory::new(clock.clone(), 1 << 20)));
            inner
                .put("blobs/sha256/aa", Bytes::from_static(b"record"), PutMode::Overwrite)
                .await
                .unwrap();
            inner
                .put("repos/a/_tags/t", Bytes::from_static(b"one"), PutMode::Overwrite)
                .await
                .unwrap();
            assert_eq!(
                read_small(&cache, "blobs/sha256/aa").await.unwrap().unwrap().0,
                "record"
            );
            assert_eq!(read_small(&cache, "repos/a/_tags/t").await.unwrap().unwrap().0, "one");
            // Changed behind the cache's back (another instance):
            inner.delete("blobs/sha256/aa").await.unwrap();
            inner
                .put("repos/a/_tags/t", Bytes::from_static(b"two"), PutMode::Overwrite)
                .await
                .unwrap();
            assert!(
                read_small(&cache, "blobs/sha256/aa").await.unwrap().is_some(),
                "immutable: served from memory"
            );
            assert_eq!(
                read_small(&cache, "repos/a/_tags/t").await.unwrap().unwrap().0,
                "two",
                "tags always from the store"
            );
            clock.advance_millis(MAX_AGE_MS);
            assert!(
                read_small(&cache, "blobs/sha256/aa").await.unwrap().is_none(),
                "aged out"
            );
            // Deletes through the cache are seen at once.
            cache
                .put("blobs/sha256/bb", Bytes::from_static(b"x"), PutMode::Overwrite)
                .await
                .unwrap();
            assert!(read_small(&cache, "blobs/sha256/bb").await.unwrap().is_some());
            cache.delete("blobs/sha256/bb").await.unwrap();
            assert!(read_small(&cache, "blobs/sha256/bb").await.unwrap().is_none());
            assert!(cache.head("blobs/sha256/bb").await.unwrap().is_none());
        });
    }

    #[test]
    fn keeps_what_a_write_through_it_stored() {
        futures::executor::block_on(async {
            let inner = Arc::new(MemoryStore::new(1024));
            let clock = Arc::new(TestEnv::at(0));
            let cache = ImmutableCache::new(inner.clone(), Arc::new(ImmutableMemory::new(clock.clone(), 1 << 20)));
            let (record, link, refused, large, state) = (
                "blobs/sha256/aa",
                "repos/a/_layers/sha256/aa",
                "blobs/sha256/bb",
                "repos/a/_manifests/sha256/cc",
                "uploads/u/s/0000000000",
            );
            cache
                .put(record, Bytes::from_static(b"record"), PutMode::Create)
                .await
                .unwrap();
            cache
                .put_volatile(link, Bytes::from_static(b"link"), PutMode::Overwrite)
                .await
                .unwrap();
            inner
                .put(refused, Bytes::from_static(b"theirs"), PutMode::Overwrite)
                .await
                .unwrap();
            let mine = cache.put(refused, Bytes::from_static(b"mine"), PutMode::Create).await;
            assert_eq!(mine, Err(StoreError::AlreadyExists));
            let too_large = Bytes::from(vec![7u8; MAX_OBJECT_BYTES as usize + 1]);
            cache.put(large, too_large, PutMode::Overwrite).await.unwrap();
            cache
                .put(state, Bytes::from_static(b"{}"), PutMode::Overwrite)
                .await
                .unwrap();
            // All gone behind the cache's back (another instance):
            for key in [record, link, refused, large, state] {
                inner.delete(key).await.unwrap();
            }
            assert_eq!(read_small(&cache, record).await.unwrap().unwrap().0, "record");
            assert_eq!(read_small(&cache, link).await.unwrap().unwrap().0, "link");
            assert!(cache.head(link).await.unwrap().is_some());
            assert!(
                read_small(&cache, refused).await.unwrap().is_none(),
                "a refused write keeps nothing"
            );
            assert!(read_small(&cache, large).await.unwrap().is_none(), "too large to keep");
            assert!(read_small(&cache, state).await.unwrap().is_none(), "not immutable");
            clock.advance_millis(MAX_AGE_MS);
            assert!(read_small(&cache, record).await.unwrap().is_none(), "aged out");
        });
    }

    fn meta(etag: &str) -> ObjectMeta {
        ObjectMeta {
            size: 3,
            etag: etag.to_string(),
        }
    }

    fn kept(memory: &ImmutableMemory, key: &str) -> Option<Bytes> {
        memory.lookup(key).map(|(data, _)| data)
    }

    #[test]
    fn a_slower_read_or_write_does_not_put_back_what_a_later_write_replaced() {
        let memory = ImmutableMemory::new(Arc::new(TestEnv::at(0)), 1 << 20);
        let tag = "repos/a/_tags/t";
        // A read of the tag begins; a write replaces it and keeps its bytes;
        // the read, slower, ends with the old bytes.
        let read = memory.ticket();
        let write = memory.forget(tag);
        memory.insert(tag, Bytes::from_static(b"two"), meta("2"), write);
        memory.insert(tag, Bytes::from_static(b"one"), meta("1"), read);
        assert_eq!(
            kept(&memory, tag).as_deref(),
            Some(&b"two"[..]),
            "the read kept nothing"
        );
        // Two writes, the first one slower to keep what it wrote.
        let first = memory.forget(tag);
        let second = memory.forget(tag);
        memory.insert(tag, Bytes::from_static(b"fou"), meta("4"), second);
        memory.insert(tag, Bytes::from_static(b"thr"), meta("3"), first);
        assert_eq!(
            kept(&memory, tag).as_deref(),
            Some(&b"fou"[..]),
            "the first write kept nothing"
        );
        // Another key's forget does not stop a read of this one.
        let read = memory.ticket();
        memory.forget("repos/a/_tags/other");
        memory.insert(tag, Bytes::from_static(b"fiv"), meta("5"), read);
        assert_eq!(kept(&memory, tag).as_deref(), Some(&b"fiv"[..]));
    }

    #[test]
    fn forgets_of_many_keys_stop_every_older_read_rather_than_grow() {
        let memory = ImmutableMemory::new(Arc::new(TestEnv::at(0)), 1 << 20);
        let key = "blobs/sha256/aa";
        let old = memory.ticket();
        for i in 0..MAX_FORGOTTEN_KEYS + 1 {
            memory.forget(&format!("blobs/sha256/{i:04x}"));
        }
        let entries = memory.entries.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(entries.forgotten.len() <= MAX_FORGOTTEN_KEYS, "bounded");
        drop(entries);
        memory.insert(key, Bytes::from_static(b"old"), meta("1"), old);
        assert_eq!(kept(&memory, key), None, "older than the record of forgets");
        let new = memory.ticket();
        memory.insert(key, Bytes::from_static(b"new"), meta("2"), new);
        assert_eq!(kept(&memory, key).as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn keeps_a_layer_links_head_but_not_a_records() {
        futures::executor::block_on(async {
            let inner = Arc::new(MemoryStore::new(1024));
            let clock = Arc::new(TestEnv::at(0));
            let cache = ImmutableCache::new(inner.clone(), Arc::new(ImmutableMemory::new(clock.clone(), 1 << 20)));
            let (link, record) = ("repos/a/_layers/sha256/aa", "blobs/sha256/aa");
            inner
                .put(link, Bytes::from_static(br#"{"created_ms":1}"#), PutMode::Overwrite)
                .await
                .unwrap();
            inner
                .put(record, Bytes::from_static(b"r"), PutMode::Overwrite)
                .await
                .unwrap();
            assert!(cache.head(link).await.unwrap().is_some());
            assert!(cache.head(record).await.unwrap().is_some());
            // Deleted by another instance:
            inner.delete(link).await.unwrap();
            inner.delete(record).await.unwrap();
            assert!(cache.head(link).await.unwrap().is_some(), "a link's head read it whole");
            assert!(
                cache.head(record).await.unwrap().is_none(),
                "a head holds no bytes to serve"
            );
            clock.advance_millis(MAX_AGE_MS);
            assert!(cache.head(link).await.unwrap().is_none(), "aged out");
        });
    }

    #[test]
    fn keeps_tags_only_where_every_write_passes_through_it() {
        futures::executor::block_on(async {
            let tag = "repos/a/_tags/t";
            for (inner, owned) in [(MemoryStore::owned(1024), true), (MemoryStore::new(1024), false)] {
                let inner = Arc::new(inner);
                let clock = Arc::new(TestEnv::at(0));
                let cache = ImmutableCache::new(inner.clone(), Arc::new(ImmutableMemory::new(clock.clone(), 1 << 20)));
                cache
                    .put(tag, Bytes::from_static(b"one"), PutMode::Overwrite)
                    .await
                    .unwrap();
                assert_eq!(read_small(&cache, tag).await.unwrap().unwrap().0, "one");
                cache
                    .put(tag, Bytes::from_static(b"two"), PutMode::Overwrite)
                    .await
                    .unwrap();
                assert_eq!(
                    read_small(&cache, tag).await.unwrap().unwrap().0,
                    "two",
                    "written through it"
                );
                // Behind its back, which a store one process owns never sees:
                inner
                    .put(tag, Bytes::from_static(b"three"), PutMode::Overwrite)
                    .await
                    .unwrap();
                let seen = read_small(&cache, tag).await.unwrap().unwrap().0;
                assert_eq!(seen, if owned { "two" } else { "three" }, "owned: {owned}");
                clock.advance_millis(MAX_AGE_MS);
                assert_eq!(read_small(&cache, tag).await.unwrap().unwrap().0, "three", "aged out");
                cache.delete(tag).await.unwrap();
                assert!(read_small(&cache, tag).await.unwrap().is_none(), "deleted through it");
            }
        });
    }

    #[test]
    fn stays_within_its_capacity() {
        futures::executor::block_on(async {
            let inner = Arc::new(MemoryStore::new(1024));
            let memory = Arc::new(ImmutableMemory::new(Arc::new(TestEnv::at(0)), 1000));
            let cache = ImmutableCache::new(inner.clone(), memory.clone());
            for i in 0..50 {
                let key = format!("blobs/sha256/{i:02}");
                inner
                    .put(&key, Bytes::from(vec![0u8; 100]), PutMode::Overwrite)
                    .await
                    .unwrap();
                read_small(&cache, &key).await.unwrap().unwrap();
            }
            let entries = memory.entries.lock().unwrap_or_else(PoisonError::into_inner);
            assert!(entries.bytes <= 1000, "{} bytes cached", entries.bytes);
            assert!(entries.by_key.contains_key("blobs/sha256/49"), "the newest is kept");
            assert!(!entries.by_key.contains_key("blobs/sha256/00"), "the oldest went first");
        });
    }
}
