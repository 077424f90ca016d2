//! The view of a cached store that never answers from the cache.
//!
//! Pulls read through caches; the checks that race with garbage collection,
//! uploads and the collector itself must see the backend as it is. This view
//! reads the backend directly and writes through the cache, so whatever it
//! writes or deletes also drops the cached copy. A read that finds an object
//! gone tells the cache to forget it: cached objects are immutable while they
//! exist, but a collection (possibly by another instance) may delete a blob
//! record and a later upload write a new one pointing at other bytes, so a
//! stale copy must not outlive the first fresh look at the backend.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::{Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreResult};

pub struct FreshReads {
    /// The backend the cache sits on.
    backend: Arc<dyn Store>,
    /// The cache decorator over `backend`.
    cache: Arc<dyn Store>,
}

impl FreshReads {
    pub fn new(backend: Arc<dyn Store>, cache: Arc<dyn Store>) -> FreshReads {
        FreshReads { backend, cache }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for FreshReads {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let found = self.backend.head(key).await?;
        if found.is_none() {
            self.cache.forget(key).await;
        }
        Ok(found)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        let found = self.backend.get(key, range).await?;
        if found.is_none() {
            self.cache.forget(key).await;
        }
        Ok(found)
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.cache.put(key, data, mode).await
    }

    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.cache.put_volatile(key, data, mode).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.cache.delete(key).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        self.backend.list(prefix, start_after, limit).await
    }

    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        self.cache.create_multipart(key).await
    }

    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        self.cache.put_part(key, upload_id, number, data).await
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        self.cache.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.cache.abort_multipart(key, upload_id).await
    }

    async fn signed_url(&self, key: &str, expires: std::time::Duration) -> StoreResult<Option<String>> {
        self.backend.signed_url(key, expires).await
    }

    async fn forget(&self, key: &str) {
        self.cache.forget(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cache::{ImmutableCache, ImmutableMemory};
    use crate::store::contract;
    use crate::store::memory::MemoryStore;
    use crate::testing::TestEnv;

    /// The fresh view over a cache over `backend`, as the registry builds it.
    fn fresh_view(backend: Arc<dyn Store>) -> FreshReads {
        let cache = Arc::new(ImmutableCache::new(
            backend.clone(),
            Arc::new(ImmutableMemory::new(Arc::new(TestEnv::at(0)), 1 << 20)),
        ));
        FreshReads::new(backend, cache)
    }

    #[test]
    fn keeps_the_storage_contract() {
        let backend = Arc::new(MemoryStore::new(1024));
        let fresh = fresh_view(backend.clone());
        for prefix in ["contract/", "blobs/contract/"] {
            let results = futures::executor::block_on(contract::run(&fresh, &TestEnv::at(0), prefix));
            assert_eq!(
                contract::all_passed(&results),
                Ok(contract::check_names().count()),
                "under {prefix}"
            );
        }
        assert_eq!(backend.total_bytes(), 0, "the contract leaves nothing behind");
    }

    #[test]
    fn forwards_what_the_store_beneath_knows() {
        assert_eq!(futures::executor::block_on(contract::check_wrapper(fresh_view)), Ok(()));
    }
}
