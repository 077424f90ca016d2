//! Edge caches in front of the R2 store, for pulls served from the Cloudflare
//! location nearest the puller.
//!
//! Only keys whose bytes never change ([`layout::is_immutable`]) are cached:
//! blob data through the Cache API (per location, ranged reads served from the
//! cached object), and the small immutable objects (blob records, manifests by
//! digest, layer links) through KV (global, eventually consistent). Tags,
//! uploads and the catalog always come from R2, so a pull right after a push
//! sees it. Core keeps the isolate's own copies of the small ones in front
//! (`pier_core::store::cache`).
//!
//! Caches fill after a miss, in the background (`waitUntil`), from a fresh read
//! of R2, so the puller never waits for a cache write; blob data read often
//! is kept in the isolate's memory too (`hot_blobs`). A delete through this
//! store drops the entry from this location's Cache API and from KV; other
//! locations may serve a deleted object until KV's propagation (about a
//! minute) or, for blob data, until their cached copy is evicted. Blob data is
//! keyed by upload id and never reused, so a stale copy is never wrong, only
//! kept.

use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use pier_core::layout;
use pier_core::platform::{BoxFuture, LocalMarks};
use pier_core::store::{
    Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreError, StoreResult,
};
use serde::{Deserialize, Serialize};
use worker::web_sys::ReadableStream;
use worker::{
    console_warn, Cache, Context, Headers, KvStore, Request, RequestInit, Response, ResponseBody, ResponseBuilder,
};

use crate::config::EdgeConfig;
use crate::counted::{Op, OpCounts};
use crate::hot_blobs;
use crate::js_body::{js_body, take_js_body};
use crate::streams::readable_of_length;

/// `Cache-Control` of cached blob data: the Cache API keeps a response only as
/// long as it says, and the bytes under a data key never change.
const CACHED_DATA_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// The R2 etag of a cached object, kept beside it.
const STORE_ETAG_HEADER: &str = "x-pier-store-etag";
/// KV refuses values over 25 MiB.
const KV_MAX_VALUE_BYTES: u64 = 25 << 20;
/// KV entries expire after a day: a delete made outside this Worker (GC run
/// by a native server on the same bucket) is then seen within a day, at the
/// cost of one KV write a day per object still being pulled.
const KV_ENTRY_TTL_SECS: u64 = 24 * 60 * 60;

/// Which edge cache holds a key, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// Blob bytes: the Cache API.
    Data,
    /// Blob records, manifests by digest and layer links: KV.
    Small,
}

pub fn cache_kind(key: &str) -> Option<CacheKind> {
    if !layout::is_immutable(key) {
        None
    } else if key.starts_with("data/") {
        Some(CacheKind::Data)
    } else {
        Some(CacheKind::Small)
    }
}

/// What KV keeps beside a value.
#[derive(Serialize, Deserialize)]
struct KvMetadata {
    etag: String,
}

/// Where the edge caches live, for one request.
#[derive(Clone)]
pub struct EdgeCaches {
    /// KV namespace for small immutable objects; `None` when not bound.
    kv: Option<KvStore>,
    /// Prefix of the synthetic URLs keying blob data in the Cache API.
    cache_url_prefix: String,
    /// Largest blob put in the Cache API; 0 disables it.
    cache_max_object_bytes: u64,
    /// The isolate's budget for blob bytes pulled often (`hot_blobs`); 0
    /// keeps none.
    hot_blob_bytes: u64,
    /// Where the request's KV and Cache API operations are counted.
    ops: OpCounts,
}

impl EdgeCaches {
    /// `origin` is the request's own (`https://registry.example.com`): the Cache
    /// API only serves keys of the zone the Worker runs on.
    pub fn new(kv: Option<KvStore>, origin: &str, config: &EdgeConfig, ops: OpCounts) -> EdgeCaches {
        EdgeCaches {
            kv,
            cache_url_prefix: format!("{origin}/.pier-cache/"),
            cache_max_object_bytes: config.cache_max_object_bytes,
            hot_blob_bytes: config.hot_blob_bytes,
            ops,
        }
    }

    /// KV alone, for work outside a request (the cron's collection): the
    /// Cache API is keyed by a request's host, which there is none of.
    pub fn kv_only(kv: Option<KvStore>, ops: OpCounts) -> EdgeCaches {
        EdgeCaches {
            kv,
            cache_url_prefix: String::new(),
            cache_max_object_bytes: 0,
            hot_blob_bytes: 0,
            ops,
        }
    }

    fn cache_url(&self, key: &str) -> String {
        format!("{}{key}", self.cache_url_prefix)
    }

    /// A small object from KV, if it is there.
    pub async fn kv_get(&self, key: &str) -> Option<(Bytes, ObjectMeta)> {
        let kv = self.kv.as_ref()?;
        self.ops.count(Op::KvGet);
        match kv.get(key).bytes_with_metadata::<KvMetadata>().await {
            Ok((Some(value), Some(metadata))) => {
                let meta = ObjectMeta {
                    size: value.len() as u64,
                    etag: metadata.etag,
                };
                Some((Bytes::from(value), meta))
            }
            Ok(_) => None,
            Err(err) => {
                console_warn!("pier: KV get {key} failed, reading R2: {err}");
                None
            }
        }
    }

    async fn kv_put(&self, key: &str, value: &[u8], etag: String) {
        let Some(kv) = &self.kv else { return };
        self.ops.count(Op::KvPut);
        let written = match kv
            .put_bytes(key, value)
            .and_then(|put| put.metadata(KvMetadata { etag }))
        {
            Ok(put) => put.expiration_ttl(KV_ENTRY_TTL_SECS).execute().await,
            Err(err) => Err(err),
        };
        if let Err(err) = written {
            console_warn!("pier: KV put {key} failed: {err}");
        }
    }

    /// Blob data (or a range of it) from this location's Cache API.
    #[cfg(feature = "test-endpoints")]
    pub async fn cache_get(&self, key: &str, range: Option<&Range<u64>>) -> Option<GetResult> {
        let (meta, length, readable) = self.cache_match(key, range).await?;
        Some(GetResult {
            meta,
            body: js_body(readable, length, format!("cached {key}")),
        })
    }

    /// What the Cache API holds of blob data: its metadata, the length of the
    /// body (the range's, if one is asked) and the body.
    async fn cache_match(&self, key: &str, range: Option<&Range<u64>>) -> Option<(ObjectMeta, u64, ReadableStream)> {
        let headers = Headers::new();
        if let Some(r) = range {
            headers.set("range", &format!("bytes={}-{}", r.start, r.end - 1)).ok()?;
        }
        let mut init = RequestInit::new();
        init.with_headers(headers);
        let request = Request::new_with_init(&self.cache_url(key), &init).ok()?;
        self.ops.count(Op::CacheMatch);
        let response = match Cache::default().get(&request, false).await {
            Ok(found) => found?,
            Err(err) => {
                console_warn!("pier: cache match {key} failed, reading R2: {err}");
                return None;
            }
        };
        let etag = response.headers().get(STORE_ETAG_HEADER).ok()??;
        let (size, length) = match (response.status_code(), range) {
            (200, None) => {
                let size = response.headers().get("content-length").ok()??.parse().ok()?;
                (size, size)
            }
            (206, Some(range)) => (
                total_of_content_range(&response.headers().get("content-range").ok()??)?,
                range.end - range.start,
            ),
            _ => return None,
        };
        let ResponseBody::Stream(readable) = response.body() else {
            return None;
        };
        Some((ObjectMeta { size, etag }, length, readable.clone()))
    }

    /// Copies blob data from `store` into this location's Cache API.
    async fn cache_fill(&self, store: &dyn Store, key: &str) {
        let object = match store.get(key, None).await {
            Ok(Some(object)) => object,
            Ok(None) => return,
            Err(err) => {
                console_warn!("pier: cache fill of {key} could not read it: {err}");
                return;
            }
        };
        let headers = Headers::new();
        let filled = async {
            headers.set("cache-control", CACHED_DATA_CACHE_CONTROL)?;
            headers.set("content-type", "application/octet-stream")?;
            headers.set(STORE_ETAG_HEADER, &object.meta.etag)?;
            let body = readable_of_length(object.body, object.meta.size)?;
            let response: Response = ResponseBuilder::new().with_headers(headers).stream(body);
            self.ops.count(Op::CachePut);
            Cache::default().put(self.cache_url(key), response).await
        };
        if let Err(err) = filled.await {
            console_warn!("pier: cache fill of {key} failed: {err}");
        }
    }

    /// A location-wide mark: whether `key` was marked here in the last
    /// `ttl_secs`, marking it if not. A failed match or put answers `true`:
    /// the work is then done once more, never skipped.
    async fn mark_here(&self, key: &str, ttl_secs: u64) -> bool {
        let url = self.cache_url(&format!("marks/{key}"));
        self.ops.count(Op::CacheMatch);
        if let Ok(Some(_)) = Cache::default().get(url.as_str(), false).await {
            return false;
        }
        let headers = Headers::new();
        let marked = async {
            headers.set("cache-control", &format!("public, max-age={ttl_secs}"))?;
            let response = ResponseBuilder::new().with_headers(headers).empty();
            self.ops.count(Op::CachePut);
            Cache::default().put(url.as_str(), response).await
        };
        if let Err(err) = marked.await {
            console_warn!("pier: cache mark {key} failed: {err}");
        }
        true
    }

    /// Whether `key` is in the edge caches (for tests that must know a later
    /// read will be served from them).
    #[cfg(feature = "test-endpoints")]
    pub async fn holds(&self, key: &str) -> bool {
        match cache_kind(key) {
            Some(CacheKind::Small) => self.kv_get(key).await.is_some(),
            Some(CacheKind::Data) => self.cache_get(key, None).await.is_some(),
            None => false,
        }
    }

    /// Drops blob data from this location's Cache API alone (for tests of a
    /// read made before the fill after the first one landed).
    #[cfg(feature = "test-endpoints")]
    pub async fn drop_cached_data(&self, key: &str) -> worker::Result<bool> {
        Cache::default()
            .delete(self.cache_url(key), false)
            .await
            .map(|deleted| matches!(deleted, worker::CacheDeletionOutcome::Success))
    }

    async fn forget(&self, key: &str, kind: CacheKind) {
        match kind {
            CacheKind::Small => {
                if let Some(kv) = &self.kv {
                    self.ops.count(Op::KvDelete);
                    if let Err(err) = kv.delete(key).await {
                        console_warn!("pier: KV delete {key} failed: {err}");
                    }
                }
            }
            CacheKind::Data if self.cache_url_prefix.is_empty() => hot_blobs::forget(key),
            CacheKind::Data => {
                hot_blobs::forget(key);
                self.ops.count(Op::CacheDelete);
                if let Err(err) = Cache::default().delete(self.cache_url(key), false).await {
                    console_warn!("pier: cache delete {key} failed: {err}");
                }
            }
        }
    }
}

impl LocalMarks for EdgeCaches {
    fn mark<'a>(&'a self, key: &'a str, ttl_secs: u64) -> BoxFuture<'a, bool> {
        Box::pin(self.mark_here(key, ttl_secs))
    }
}

/// The object size in `bytes a-b/size`.
fn total_of_content_range(text: &str) -> Option<u64> {
    text.rsplit_once('/')?.1.trim().parse().ok()
}

/// A store that answers immutable reads from the edge caches when it can.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    caches: EdgeCaches,
    /// The request's context, to fill caches after the response is sent;
    /// `None` for a collector's view, which never reads the caches.
    context: Option<Rc<Context>>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, caches: EdgeCaches, context: Rc<Context>) -> CachedStore {
        CachedStore {
            inner,
            caches,
            context: Some(context),
        }
    }

    /// What a collection uses: reads and writes go to `inner` as they are,
    /// and what it deletes is dropped from KV too, so that a manifest or a
    /// link it removes is not served from there for the rest of the day.
    pub fn forgetting(inner: Arc<dyn Store>, caches: EdgeCaches) -> CachedStore {
        CachedStore {
            inner,
            caches,
            context: None,
        }
    }

    async fn get_small(
        &self,
        context: &Context,
        key: &str,
        range: Option<Range<u64>>,
    ) -> StoreResult<Option<GetResult>> {
        if let Some((bytes, meta)) = self.caches.kv_get(key).await {
            return Ok(Some(small_result(bytes, meta, range)?));
        }
        let Some(object) = self.inner.get(key, None).await? else {
            return Ok(None);
        };
        if object.meta.size > KV_MAX_VALUE_BYTES {
            return match range {
                None => Ok(Some(object)),
                Some(range) => self.inner.get(key, Some(range)).await,
            };
        }
        let meta = object.meta.clone();
        let bytes = object.bytes().await?;
        let (caches, owned_key, value, etag) = (self.caches.clone(), key.to_string(), bytes.clone(), meta.etag.clone());
        context.wait_until(async move { caches.kv_put(&owned_key, &value, etag).await });
        Ok(Some(small_result(bytes, meta, range)?))
    }

    async fn get_data(
        &self,
        context: &Context,
        key: &str,
        range: Option<Range<u64>>,
    ) -> StoreResult<Option<GetResult>> {
        let empty_range = range.as_ref().is_some_and(Range::is_empty);
        if self.caches.hot_blob_bytes > 0 && !empty_range {
            if let Some(kept) = hot_blobs::serve(key, range.as_ref(), self.caches.hot_blob_bytes) {
                return Ok(Some(kept));
            }
        }
        if self.caches.cache_max_object_bytes > 0 && !empty_range {
            if let Some((meta, length, readable)) = self.caches.cache_match(key, range.as_ref()).await {
                let readable = match range {
                    None => hot_blobs::keep(key, &meta, readable, self.caches.hot_blob_bytes, context),
                    Some(_) => readable,
                };
                let body = js_body(readable, length, format!("cached {key}"));
                return Ok(Some(GetResult { meta, body }));
            }
        }
        let whole = range.is_none();
        let Some(object) = self.inner.get(key, range).await? else {
            return Ok(None);
        };
        if (1..=self.caches.cache_max_object_bytes).contains(&object.meta.size) {
            let (caches, store, owned_key) = (self.caches.clone(), self.inner.clone(), key.to_string());
            context.wait_until(async move { caches.cache_fill(store.as_ref(), &owned_key).await });
        }
        // Pulled again before the Cache API's fill landed: kept all the same.
        if whole && self.caches.hot_blob_bytes > 0 && hot_blobs::read_before(key) {
            if let Some((readable, length)) = take_js_body(&object.body) {
                let readable = hot_blobs::keep(key, &object.meta, readable, self.caches.hot_blob_bytes, context);
                let body = js_body(readable, length, format!("{key} from R2"));
                return Ok(Some(GetResult {
                    meta: object.meta,
                    body,
                }));
            }
        }
        Ok(Some(object))
    }
}

fn small_result(bytes: Bytes, meta: ObjectMeta, range: Option<Range<u64>>) -> StoreResult<GetResult> {
    let bytes = match range {
        None => bytes,
        Some(r) if r.start <= r.end && r.end <= meta.size => bytes.slice(r.start as usize..r.end as usize),
        Some(r) => {
            return Err(StoreError::Invalid(format!(
                "range {r:?} outside object of {} bytes",
                meta.size
            )))
        }
    };
    Ok(GetResult {
        meta,
        body: pier_core::platform::box_stream(futures::stream::once(async move { Ok(bytes) })),
    })
}

#[async_trait::async_trait(?Send)]
impl Store for CachedStore {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let Some(context) = &self.context else {
            return self.inner.head(key).await;
        };
        if cache_kind(key) != Some(CacheKind::Small) {
            return self.inner.head(key).await;
        }
        // A layer link (every blob pull asks for its head) is a few bytes:
        // read whole, as a get, it fills KV in the same round trip.
        if layout::is_layer_link(key) {
            return Ok(self.get_small(context, key, None).await?.map(|found| found.meta));
        }
        if let Some((_, meta)) = self.caches.kv_get(key).await {
            return Ok(Some(meta));
        }
        self.inner.head(key).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        let Some(context) = &self.context else {
            return self.inner.get(key, range).await;
        };
        match cache_kind(key) {
            None => self.inner.get(key, range).await,
            Some(CacheKind::Small) => self.get_small(context, key, range).await,
            Some(CacheKind::Data) => self.get_data(context, key, range).await,
        }
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.inner.put(key, data, mode).await
    }

    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.inner.put_volatile(key, data, mode).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await?;
        if let Some(kind) = cache_kind(key) {
            self.caches.forget(key, kind).await;
        }
        Ok(())
    }

    /// Called for every key a fresh read found missing, most of them never
    /// cached (a new blob's record before its upload writes it). Only a small
    /// object's copy can mislead (a blob record a collection deleted and an
    /// upload wrote anew); data keys are never reused. KV is read before it
    /// is written to: its writes are the scarce ones. A request's client
    /// does not wait for either: KV is as far as the bucket from most
    /// locations, a stale copy is already gone from this isolate's memory,
    /// and other locations see KV's delete only within a minute anyway
    /// (a pull whose stale record names deleted bytes reads the record again).
    async fn forget(&self, key: &str) {
        if cache_kind(key) != Some(CacheKind::Small) {
            return;
        }
        let (caches, key) = (self.caches.clone(), key.to_string());
        let forget = async move {
            if caches.kv_get(&key).await.is_some() {
                caches.forget(&key, CacheKind::Small).await;
            }
        };
        match &self.context {
            Some(context) => context.wait_until(forget),
            None => forget.await,
        }
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
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn signed_url(&self, key: &str, expires: std::time::Duration) -> StoreResult<Option<String>> {
        self.inner.signed_url(key, expires).await
    }
}
