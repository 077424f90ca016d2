//! How many round trips one request makes to R2, KV and the Cache API.
//!
//! On Cloudflare a request pays for each trip to R2 (tens to hundreds of
//! milliseconds from a location far from the bucket), so the number a pull
//! makes is a measure of its own, checked by the edge suite and printed by the
//! edge benchmark. The test build (`test-endpoints`) counts every operation a
//! request makes and reports the counts made by the time its response is
//! built in the `x-pier-test-ops` response header. A production build has
//! none of it: its `OpCounts` is empty, counting compiles to nothing, no store
//! is wrapped and no header is added. Work a request leaves to `waitUntil`
//! (filling the caches after a miss) is in the header only as far as it got
//! by then.
//!
//! R2 is counted by [`CountedStore`], a decorator around the R2 store (it
//! forwards every method of the port, which has no default methods); KV and
//! the Cache API by the edge caches, through the same [`OpCounts`].

/// One kind of round trip.
#[derive(Clone, Copy)]
// Production builds name only the kinds the edge caches count (into nothing).
#[cfg_attr(not(feature = "test-endpoints"), allow(dead_code))]
pub enum Op {
    R2Head,
    R2Get,
    R2Put,
    R2Delete,
    R2List,
    /// Creating, writing a part of, completing or aborting a multipart upload.
    R2Multipart,
    KvGet,
    KvPut,
    KvDelete,
    CacheMatch,
    CachePut,
    CacheDelete,
}

/// One request's counts (a new one per request), shared by the stores and
/// caches serving it.
#[derive(Clone, Default)]
pub struct OpCounts {
    #[cfg(feature = "test-endpoints")]
    tally: counting::Tally,
}

impl OpCounts {
    /// Counts one `op` (in the test build; nothing in production).
    #[inline]
    pub fn count(&self, op: Op) {
        #[cfg(feature = "test-endpoints")]
        self.tally.add(op);
        #[cfg(not(feature = "test-endpoints"))]
        let _ = op;
    }
}

/// Production: nothing counted, nothing reported.
#[cfg(not(feature = "test-endpoints"))]
impl OpCounts {
    pub fn wrap(
        &self,
        store: std::sync::Arc<dyn pier_core::store::Store>,
    ) -> std::sync::Arc<dyn pier_core::store::Store> {
        store
    }

    pub fn report(&self, _response: &mut worker::Response) -> worker::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "test-endpoints")]
pub use counting::CountedStore;

#[cfg(feature = "test-endpoints")]
mod counting {
    use std::cell::Cell;
    use std::ops::Range;
    use std::rc::Rc;
    use std::sync::Arc;

    use bytes::Bytes;
    use pier_core::store::{Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreResult};

    use super::{Op, OpCounts};

    /// The response header holding a request's counts, e.g.
    /// `r2.head=0 r2.get=1 ... cache.match=1 cache.put=0 cache.delete=0`.
    const OPS_HEADER: &str = "x-pier-test-ops";

    const KINDS: usize = 12;

    /// A count per kind, in the order of [`Op::ALL`].
    #[derive(Clone, Default)]
    pub(super) struct Tally(Rc<[Cell<u32>; KINDS]>);

    impl Tally {
        pub(super) fn add(&self, op: Op) {
            if let Some(cell) = self.0.get(op as usize) {
                cell.set(cell.get().saturating_add(1));
            }
        }
    }

    impl Op {
        /// Every kind, in the order of the header.
        const ALL: [Op; KINDS] = [
            Op::R2Head,
            Op::R2Get,
            Op::R2Put,
            Op::R2Delete,
            Op::R2List,
            Op::R2Multipart,
            Op::KvGet,
            Op::KvPut,
            Op::KvDelete,
            Op::CacheMatch,
            Op::CachePut,
            Op::CacheDelete,
        ];

        fn name(self) -> &'static str {
            match self {
                Op::R2Head => "r2.head",
                Op::R2Get => "r2.get",
                Op::R2Put => "r2.put",
                Op::R2Delete => "r2.delete",
                Op::R2List => "r2.list",
                Op::R2Multipart => "r2.multipart",
                Op::KvGet => "kv.get",
                Op::KvPut => "kv.put",
                Op::KvDelete => "kv.delete",
                Op::CacheMatch => "cache.match",
                Op::CachePut => "cache.put",
                Op::CacheDelete => "cache.delete",
            }
        }
    }

    impl OpCounts {
        /// `store` with its operations counted here.
        pub fn wrap(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
            // One isolate, one thread: the counts need not be Send.
            #[allow(clippy::arc_with_non_send_sync)]
            Arc::new(CountedStore::new(store, self.clone()))
        }

        /// Puts the counts in `response`'s [`OPS_HEADER`].
        pub fn report(&self, response: &mut worker::Response) -> worker::Result<()> {
            let counts: Vec<String> = Op::ALL
                .iter()
                .zip(self.tally.0.iter())
                .map(|(op, count)| format!("{}={}", op.name(), count.get()))
                .collect();
            response.headers_mut().set(OPS_HEADER, &counts.join(" "))
        }
    }

    /// A store that counts, by kind, the operations it forwards to the one it wraps.
    pub struct CountedStore {
        inner: Arc<dyn Store>,
        counts: OpCounts,
    }

    impl CountedStore {
        pub fn new(inner: Arc<dyn Store>, counts: OpCounts) -> CountedStore {
            CountedStore { inner, counts }
        }
    }

    #[async_trait::async_trait(?Send)]
    impl Store for CountedStore {
        async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
            self.counts.count(Op::R2Head);
            self.inner.head(key).await
        }

        async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
            self.counts.count(Op::R2Get);
            self.inner.get(key, range).await
        }

        async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
            self.counts.count(Op::R2Put);
            self.inner.put(key, data, mode).await
        }

        async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
            self.counts.count(Op::R2Put);
            self.inner.put_volatile(key, data, mode).await
        }

        async fn delete(&self, key: &str) -> StoreResult<()> {
            self.counts.count(Op::R2Delete);
            self.inner.delete(key).await
        }

        async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
            self.counts.count(Op::R2List);
            self.inner.list(prefix, start_after, limit).await
        }

        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }

        async fn create_multipart(&self, key: &str) -> StoreResult<String> {
            self.counts.count(Op::R2Multipart);
            self.inner.create_multipart(key).await
        }

        async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
            self.counts.count(Op::R2Multipart);
            self.inner.put_part(key, upload_id, number, data).await
        }

        async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
            self.counts.count(Op::R2Multipart);
            self.inner.complete_multipart(key, upload_id, parts).await
        }

        async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
            self.counts.count(Op::R2Multipart);
            self.inner.abort_multipart(key, upload_id).await
        }

        /// No round trip: the store signs, or says it cannot.
        async fn signed_url(&self, key: &str, expires: std::time::Duration) -> StoreResult<Option<String>> {
            self.inner.signed_url(key, expires).await
        }

        /// No round trip to R2 (a cache the store keeps may make its own, counted there).
        async fn forget(&self, key: &str) {
            self.inner.forget(key).await
        }
    }
}
