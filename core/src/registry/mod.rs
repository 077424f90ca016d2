//! The registry engine: every operation of the distribution API on top of the
//! storage port, independent of HTTP (the HTTP mapping is `api`). Split by
//! concern as `api` is: `blobs`, `uploads`, `manifests` and `discovery` each
//! add their operations to [`Registry`]; this file holds the registry, its
//! options and the shapes of its answers.

use std::sync::Arc;

use serde_json::Value;

use crate::digest::Digest;
use crate::names::RepoName;
use crate::platform::{Background, Env, LocalMarks};
use crate::pulls::PullClock;
use crate::quota::Quotas;
use crate::retention::RetentionRule;
use crate::store::cache::{ImmutableCache, ImmutableMemory};
use crate::store::fresh::FreshReads;
use crate::store::{Store, StoreResult};
use crate::tag_cache::TagCache;

mod blobs;
mod browse;
mod discovery;
mod manifests;
mod uploads;

pub use browse::{PlatformSummary, TagSummary};
pub use uploads::SessionRef;

/// What a manifest push did.
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub media_type: String,
    pub size: u64,
}

/// The manifest a delete removed (or the tag pointed at), for events.
pub struct DeletedManifest {
    pub digest: Digest,
    /// Empty when a deleted tag pointed at a manifest no longer there.
    pub media_type: String,
    pub size: u64,
}

/// A page of names (tags or repositories).
#[derive(Default)]
pub struct NamePage {
    pub names: Vec<String>,
    /// When more remain: the `last` the next page starts after.
    pub next: Option<String>,
}

/// Behaviour a deployment may choose.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Accept manifests whose blobs or child manifests are not in the
    /// repository (sparse images and indexes, e.g. one platform of a
    /// multi-arch image). Off by default: a push must be complete.
    pub allow_sparse_manifests: bool,
    /// Largest request body accepted, in bytes (the edge platform's limit);
    /// larger blobs must be pushed in chunks. `None`: no limit.
    pub max_body_bytes: Option<u64>,
    /// Answer blob GETs with a redirect (307) to a short-lived signed URL of
    /// the bytes in the store, when the store can sign one, so the bytes do
    /// not flow through the registry. Off by default.
    pub redirect_blobs: bool,
    /// Bytes of small immutable objects (blob records, manifests by digest,
    /// layer links) kept in memory; 0 turns the cache off.
    pub cache_bytes: u64,
    /// The retention rules (the `[gc]` configuration): the registry enforces
    /// their `immutable_tags`, collection the rest.
    pub retention: Vec<RetentionRule>,
    /// Storage quotas per namespace (`[[quota]]`), enforced at push.
    pub quotas: Arc<Quotas>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            allow_sparse_manifests: false,
            max_body_bytes: None,
            redirect_blobs: false,
            cache_bytes: 8 << 20,
            retention: Vec::new(),
            quotas: Arc::default(),
        }
    }
}

/// The registry over one store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    /// The store without the cache, for what must see deletes at once: the
    /// checks that race with garbage collection, and uploads.
    origin: Arc<dyn Store>,
    env: Arc<dyn Env>,
    options: RegistryOptions,
    /// Identifies this process in upload claims.
    instance: String,
    /// Records pulls' times; `None` records none.
    pulls: Option<Arc<PullClock>>,
    /// The location's marks the pull clock asks too (the Worker's).
    local_marks: Option<Arc<dyn LocalMarks>>,
    /// Where archived blobs' bytes are (`crate::archive`).
    archive: Option<ArchiveTier>,
    /// Tags pull-only clients may be served from memory (`crate::tag_cache`).
    tags: Option<Arc<TagCache>>,
    /// Runs cleanups after the answer; without it they run before.
    background: Option<Arc<dyn Background>>,
}

/// The archive store, as the registry reads it.
#[derive(Clone)]
pub struct ArchiveTier {
    pub store: Arc<dyn Store>,
    /// A pull of an archived blob asks the next archive pass to bring it back.
    pub promote_on_pull: bool,
}

impl Registry {
    /// The registry over `store`, with an in-process cache of
    /// `options.cache_bytes` in front of it (none if 0).
    pub fn new(store: Arc<dyn Store>, env: Arc<dyn Env>, options: RegistryOptions) -> Registry {
        match options.cache_bytes {
            0 => Registry::with_cache(store.clone(), store, env, options),
            capacity => {
                let memory = Arc::new(ImmutableMemory::new(env.clone(), capacity));
                let cache = Arc::new(ImmutableCache::new(store.clone(), memory));
                Registry::with_cache(store, cache, env, options)
            }
        }
    }

    /// The registry over `backend` with `cache`, a caching decorator of it
    /// the shell built (`options.cache_bytes` is not used): pulls read
    /// through the cache, everything that must see the backend as it is reads
    /// it directly (see [`FreshReads`]).
    pub fn with_cache(
        backend: Arc<dyn Store>,
        cache: Arc<dyn Store>,
        env: Arc<dyn Env>,
        options: RegistryOptions,
    ) -> Registry {
        let origin: Arc<dyn Store> = match Arc::ptr_eq(&backend, &cache) {
            true => backend,
            false => Arc::new(FreshReads::new(backend, cache.clone())),
        };
        Registry {
            store: cache,
            origin,
            instance: env.random_id(),
            env,
            options,
            pulls: None,
            local_marks: None,
            archive: None,
            tags: None,
            background: None,
        }
    }

    /// The registry leaving cleanups the client need not wait for (an
    /// upload's obsolete keys) to `background`.
    pub fn with_background(mut self, background: Arc<dyn Background>) -> Registry {
        self.background = Some(background);
        self
    }

    /// The registry serving pull-only clients tags from `tags`.
    pub fn with_tag_cache(mut self, tags: Option<Arc<TagCache>>) -> Registry {
        self.tags = tags;
        self
    }

    /// The registry reading archived blobs from `tier`.
    pub fn with_archive(mut self, tier: ArchiveTier) -> Registry {
        self.archive = Some(tier);
        self
    }

    /// The registry recording pulls' times on `clock` (kept by the
    /// deployment, so its memory outlives the Worker's per-request sites).
    pub fn with_pull_clock(mut self, clock: Arc<PullClock>) -> Registry {
        self.pulls = Some(clock);
        self
    }

    /// The registry recording pulls once per period per location, as
    /// `marks` say (the Worker's Cache API), not once per process.
    pub fn with_local_marks(mut self, marks: Arc<dyn LocalMarks>) -> Registry {
        self.local_marks = Some(marks);
        self
    }

    /// Notes a client's pull of `digest` in `repo` (see `crate::pulls`).
    pub async fn note_pull(&self, repo: &RepoName, digest: &Digest) {
        if let Some(clock) = &self.pulls {
            let local = self.local_marks.as_deref();
            clock.note(self.origin(), self.env.as_ref(), local, repo, digest).await;
        }
    }

    /// Every namespace quota with its usage.
    pub async fn quota_usage(&self) -> crate::error::Result<Vec<crate::quota::Usage>> {
        self.options.quotas.usage(self.origin()).await
    }

    /// When `digest` was last pulled in `repo`, if recorded.
    pub async fn last_pull(&self, repo: &RepoName, digest: &Digest) -> crate::error::Result<Option<u64>> {
        crate::pulls::last_pull(self.origin(), repo, digest).await
    }

    /// The store as garbage collection must use it beside this registry:
    /// reads bypass the cache, deletes drop cached copies.
    pub fn fresh_store(&self) -> Arc<dyn Store> {
        self.origin.clone()
    }

    pub(crate) fn env(&self) -> &dyn Env {
        self.env.as_ref()
    }

    pub(crate) fn env_arc(&self) -> Arc<dyn Env> {
        self.env.clone()
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn origin(&self) -> &dyn Store {
        self.origin.as_ref()
    }

    /// The preferred minimum chunk size for chunked uploads.
    pub fn chunk_min_length(&self) -> usize {
        self.store.capabilities().part_size
    }
}

/// Most names or descriptors in one page of a listing, whatever `n` asks.
pub const MAX_PAGE: usize = 1000;

/// Most repositories one catalog page examines (most a caller may not see).
pub const MAX_CATALOG_SCAN: usize = 10 * MAX_PAGE;

/// Most bytes of descriptors in one referrers page: the index it is must
/// stay readable by clients, which refuse manifests over 4 MiB.
pub const MAX_REFERRERS_PAGE_BYTES: usize = 3 << 20;

/// Most referrers one page examines (most of another artifact type).
pub const MAX_REFERRERS_SCAN: usize = 10 * MAX_PAGE;

/// Referrer entries read at once.
const REFERRERS_BATCH: usize = 100;

/// A page of referrers; `next` is where the next page starts after.
#[derive(Default)]
pub struct ReferrersPage {
    pub manifests: Vec<Value>,
    pub next: Option<Digest>,
}

async fn exists(store: &dyn Store, key: String) -> StoreResult<bool> {
    Ok(store.head(&key).await?.is_some())
}
