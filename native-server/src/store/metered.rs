//! A store decorator that reports storage health to `/metrics`: how long each
//! kind of storage call takes and how often the backend fails.
//!
//! Operators of many instances over one bucket need to tell "the registry is
//! slow" from "the bucket is slow or failing"; the HTTP metrics alone cannot.
//! Only [`StoreError::Unavailable`] counts as an error: "not found" and refused
//! conditions are ordinary answers the registry asks for.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pier_core::store::{
    Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreError, StoreResult,
};

use crate::metrics::{STORAGE_ERRORS, STORAGE_SECONDS};

pub struct MeteredStore {
    inner: Arc<dyn Store>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>) -> MeteredStore {
        MeteredStore { inner }
    }
}

/// Records one call of `operation` that started at `started`.
fn observe<T>(operation: &'static str, started: Instant, result: &StoreResult<T>) {
    metrics::histogram!(STORAGE_SECONDS, "operation" => operation).record(started.elapsed().as_secs_f64());
    if let Err(StoreError::Unavailable(message)) = result {
        metrics::counter!(STORAGE_ERRORS, "operation" => operation).increment(1);
        tracing::debug!(operation, %message, "storage unavailable");
    }
}

macro_rules! metered {
    ($operation:literal, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        observe($operation, started, &result);
        result
    }};
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        metered!("head", self.inner.head(key))
    }

    /// Times the opening of the read; errors while streaming the body are
    /// the client's to see and are not counted here.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        metered!("get", self.inner.get(key, range))
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        metered!("put", self.inner.put(key, data, mode))
    }

    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        metered!("put_volatile", self.inner.put_volatile(key, data, mode))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        metered!("delete", self.inner.delete(key))
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        metered!("list", self.inner.list(prefix, start_after, limit))
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        metered!("create_multipart", self.inner.create_multipart(key))
    }

    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        metered!("put_part", self.inner.put_part(key, upload_id, number, data))
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        metered!(
            "complete_multipart",
            self.inner.complete_multipart(key, upload_id, parts)
        )
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        metered!("abort_multipart", self.inner.abort_multipart(key, upload_id))
    }

    async fn signed_url(&self, key: &str, expires: Duration) -> StoreResult<Option<String>> {
        metered!("signed_url", self.inner.signed_url(key, expires))
    }

    async fn forget(&self, key: &str) {
        self.inner.forget(key).await
    }
}

#[cfg(test)]
mod tests {
    use pier_core::store::contract;
    use pier_core::store::memory::MemoryStore;

    use super::*;
    use crate::env::SystemEnv;

    #[tokio::test]
    async fn keeps_the_storage_contract() {
        let store = MeteredStore::new(Arc::new(MemoryStore::new(1024)));
        let results = contract::run(&store, &SystemEnv, "contract/").await;
        assert_eq!(contract::all_passed(&results), Ok(contract::check_names().count()));
    }

    #[tokio::test]
    async fn forwards_what_the_store_beneath_knows() {
        assert_eq!(contract::check_wrapper(MeteredStore::new).await, Ok(()));
    }
}
