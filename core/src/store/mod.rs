//! The storage port: the one interface every backend implements.
//!
//! It is deliberately small (the intersection of what R2, S3, GCS, Azure and a
//! local disk can all do well): keyed objects with ranged reads, conditional
//! writes, sorted listing and a resumable multipart write. Everything a registry
//! decides is built on top of it in core, so the backends hold no protocol logic.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::{ErrorCode, RegistryError};
use crate::platform::{BoxStream, MaybeSend, MaybeSync};

pub mod cache;
pub mod contract;
pub mod fresh;
pub mod memory;

/// A stream of an object's bytes.
pub type ByteStream = BoxStream<'static, StoreError>;

/// What a backend reports about a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// Opaque version tag, changes whenever the object is rewritten.
    pub etag: String,
}

/// A (possibly ranged) read in progress.
pub struct GetResult {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

impl GetResult {
    /// Collects the whole body; for small objects (metadata) only.
    pub async fn bytes(self) -> Result<Bytes, StoreError> {
        let mut body = self.body;
        let mut out = BytesMut::with_capacity(self.meta.size.min(1 << 20) as usize);
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }
}

/// How a write treats an existing object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Write only if the key is absent, else [`StoreError::AlreadyExists`].
    Create,
    /// Write only if the current etag matches, else [`StoreError::PreconditionFailed`]
    /// (also when the object is gone).
    Update(String),
}

/// One page of a listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Keys in lexicographic (byte) order.
    pub keys: Vec<String>,
    /// Whether keys after the last one returned remain.
    pub more: bool,
}

/// A part written to a multipart upload, needed to complete it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartRef {
    pub number: u32,
    pub etag: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The object (or multipart upload) does not exist.
    NotFound,
    /// [`PutMode::Create`] found an object in place.
    AlreadyExists,
    /// [`PutMode::Update`] found another version (or none).
    PreconditionFailed,
    /// The backend failed or could not be reached; retrying may succeed.
    Unavailable(String),
    /// A request the backend refused as invalid.
    Invalid(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("not found"),
            StoreError::AlreadyExists => f.write_str("already exists"),
            StoreError::PreconditionFailed => f.write_str("precondition failed"),
            StoreError::Unavailable(msg) => write!(f, "unavailable: {msg}"),
            StoreError::Invalid(msg) => write!(f, "invalid request: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A store that failed is a retryable 503; anything else it reports is a
/// request core should not have made, a 500.
impl From<StoreError> for RegistryError {
    fn from(err: StoreError) -> RegistryError {
        match err {
            StoreError::Unavailable(msg) => {
                RegistryError::new(ErrorCode::Unavailable, format!("storage unavailable: {msg}"))
            }
            other => RegistryError::new(ErrorCode::Internal, format!("storage: {other}")),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage port.
///
/// Keys are `/`-separated paths of the characters the layout uses (lowercase
/// alphanumerics, `._-:/` and tags' uppercase). Every implementation passes the
/// storage contract in [`contract`]. No method has a default body, so a
/// store that wraps another (a cache, a metering layer) cannot forget to
/// pass on what the store beneath knows ([`contract::check_wrapper`]).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Store: MaybeSend + MaybeSync {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>>;

    /// Reads an object, or the byte range of it. The range must lie within
    /// the object (callers resolve client ranges against the known size).
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>>;

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta>;

    /// `put` of an object a crash may lose or leave torn, where a store must
    /// flush to be durable (a local disk): upload states and tail pieces,
    /// whose loss only makes their session unknown (the client starts the
    /// blob again); a state whose parts or tails may be lost is refused by
    /// its epoch (see [`Capabilities::unsynced_epoch`]). The same as `put`
    /// where every write is durable; decorators forward it.
    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// Up to `limit` keys starting with `prefix` and greater than `start_after`,
    /// in lexicographic order.
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage>;

    /// What this store is like; a store wrapping another reports the inner
    /// store's.
    fn capabilities(&self) -> Capabilities;

    /// Starts a multipart write that completes to `key`; returns its id.
    async fn create_multipart(&self, key: &str) -> StoreResult<String>;

    /// Writes part `number` (1-based); every part but the last must be exactly
    /// [`Capabilities::part_size`] bytes.
    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef>;

    /// Makes the parts, in order, the object at `key`.
    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta>;

    /// Discards a multipart write and its parts; aborting an unknown one succeeds.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()>;

    /// A URL that lets anyone holding it GET the object at `key` directly from
    /// the backend for `expires`, so large reads can bypass the registry.
    /// `None` when the backend cannot sign URLs. Decorators forward this to
    /// the store they wrap.
    async fn signed_url(&self, key: &str, expires: std::time::Duration) -> StoreResult<Option<String>>;

    /// Drops any copy of `key` a cache in this store holds; the stored object
    /// is untouched. Called when a read of the backend found that a cached
    /// object is gone. A no-op for stores without a cache; decorators forward
    /// it.
    async fn forget(&self, key: &str);
}

/// What a backend is like, for the code that sizes its work to it: one
/// plain value, which every store must give (a wrapper: the one of the
/// store it wraps), so that no decorator falls back on a default that is
/// wrong for the backend beneath it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The size of every multipart part but the last. Callers buffer at most
    /// this much per upload, so it bounds memory.
    pub part_size: usize,
    /// How many part writes one upload keeps under way at once, each holding
    /// a part in memory. More than one pays where a write is work of its
    /// own thread (the disk's copy into the page cache costs more than the
    /// hashing that feeds it); a Worker has little memory to spare.
    pub part_writes_in_flight: usize,
    /// Whether this store is served by one process only (a local directory
    /// locked by its process), so that state left by another process is
    /// known to be dead rather than possibly in use elsewhere.
    pub single_process: bool,
    /// How long writes not flushed yet survive: for as long as this value
    /// stays the same. A local disk keeps them in the page cache until the
    /// machine restarts, so its value is the boot's; a store whose every
    /// write is durable when it returns answers 0. An upload records it in
    /// its state and is unknown under another value (its parts, not
    /// flushed until completion, may not have survived).
    pub unsynced_epoch: u64,
}

impl Capabilities {
    /// A store other processes may share (a bucket, R2, memory), written
    /// one part at a time.
    pub fn shared(part_size: usize) -> Capabilities {
        Capabilities {
            part_size,
            part_writes_in_flight: 1,
            single_process: false,
            unsynced_epoch: 0,
        }
    }
}

/// Reads a whole small object, `None` if it does not exist.
pub async fn read_small(store: &dyn Store, key: &str) -> StoreResult<Option<(Bytes, ObjectMeta)>> {
    match store.get(key, None).await? {
        None => Ok(None),
        Some(result) => {
            let meta = result.meta.clone();
            Ok(Some((result.bytes().await?, meta)))
        }
    }
}

/// Lists every key under `prefix`, following pages. A page that says more
/// remain but does not get past the cursor (a backend ignoring
/// `start_after`) is an error rather than a loop without end.
pub async fn list_all(store: &dyn Store, prefix: &str) -> StoreResult<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    loop {
        let cursor = keys.last().cloned();
        let page = store.list(prefix, cursor.as_deref(), 1000).await?;
        let advanced = match (page.keys.last(), &cursor) {
            (Some(last), Some(cursor)) => last > cursor,
            (Some(_), None) => true,
            (None, _) => false,
        };
        keys.extend(page.keys);
        if !page.more {
            return Ok(keys);
        }
        if !advanced {
            return Err(StoreError::Unavailable(format!(
                "listing {prefix} did not get past {}",
                cursor.as_deref().unwrap_or("its start")
            )));
        }
    }
}
