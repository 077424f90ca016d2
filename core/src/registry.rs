//! The registry engine: every operation of the distribution API on top of the
//! storage port, independent of HTTP. The HTTP mapping lives in `api`.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{join_all, try_join_all};
use serde_json::{json, Value};

use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::EventSink;
use crate::gc::{protocol, retention, RetentionRule};
use crate::layout;
use crate::manifest::{self, Manifest};
use crate::mirror::Mirror;
use crate::names::{RepoName, Tag};
use crate::platform::{Env, RequestBody};
use crate::store::cache::ImmutableCache;
use crate::store::fresh::FreshReads;
use crate::store::{list_all, read_small, GetResult, PutMode, Store, StoreError, StoreResult};
use crate::upload::{BlobRecord, ChunkRange, Upload, UploadStatus};

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// The tag, when it is one.
    pub fn tag(&self) -> Option<&Tag> {
        match self {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        }
    }
}

/// A manifest as read back.
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

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
    /// Bytes of small immutable objects (blob records, manifests by digest)
    /// kept in memory; 0 turns the cache off.
    pub cache_bytes: u64,
    /// The retention rules (the `[gc]` configuration): the registry enforces
    /// their `immutable_tags`, collection the rest.
    pub retention: Vec<RetentionRule>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            allow_sparse_manifests: false,
            max_body_bytes: None,
            redirect_blobs: false,
            cache_bytes: 8 << 20,
            retention: Vec::new(),
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
    /// The pull-through cache: namespaces filled from upstream registries.
    mirror: Option<Arc<Mirror>>,
    /// Webhooks and replication rules, told about pushes, deletes and pulls.
    events: Option<EventSink>,
}

/// Where a stored manifest came from.
enum ManifestOrigin {
    /// A client pushed it: checked against the deployment's options.
    Push,
    /// The pull-through cache fetched it from upstream at `checked_ms`:
    /// stored sparse (blobs and children arrive when pulled).
    Upstream { checked_ms: u64 },
}

async fn read_blob_record(store: &dyn Store, digest: &Digest) -> Result<Option<BlobRecord>> {
    let Some((bytes, _)) = read_small(store, &layout::blob_record(digest)).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RegistryError::new(ErrorCode::Internal, format!("corrupt blob record {digest}: {e}")))
}

fn blob_unknown(digest: &Digest) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUnknown,
        format!("blob {digest} is not known to this repository"),
    )
    .with_detail(json!({ "digest": digest.as_str() }))
}

fn manifest_unknown(reference: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not known to this repository"),
    )
}

impl Registry {
    /// The registry over `store`, with an in-process cache of
    /// `options.cache_bytes` in front of it (none if 0).
    pub fn new(store: Arc<dyn Store>, env: Arc<dyn Env>, options: RegistryOptions) -> Registry {
        match options.cache_bytes {
            0 => Registry::with_cache(store.clone(), store, env, options),
            capacity => {
                let cache = Arc::new(ImmutableCache::new(store.clone(), env.clone(), capacity));
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
            mirror: None,
            events: None,
        }
    }

    /// The store as garbage collection must use it beside this registry:
    /// reads bypass the cache, deletes drop cached copies.
    pub fn fresh_store(&self) -> Arc<dyn Store> {
        self.origin.clone()
    }

    /// Serves the mirror's namespaces as pull-through caches of their upstreams.
    pub fn with_mirror(mut self, mirror: Arc<Mirror>) -> Registry {
        self.mirror = Some(mirror);
        self
    }

    pub fn mirror(&self) -> Option<&Mirror> {
        self.mirror.as_deref()
    }

    /// Tells `events` (webhooks, replication rules) what happens here.
    pub fn with_events(mut self, events: EventSink) -> Registry {
        self.events = Some(events);
        self
    }

    pub fn events(&self) -> Option<&EventSink> {
        self.events.as_ref()
    }

    pub(crate) fn env(&self) -> &dyn Env {
        self.env.as_ref()
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

    // ---- blobs ----

    async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        read_blob_record(self.store(), digest).await
    }

    /// The blob's record as the backend holds it now, not as cached.
    async fn fresh_record(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        read_blob_record(self.origin(), digest).await
    }

    async fn is_linked(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        Ok(self.store.head(&layout::layer_link(repo, digest)).await?.is_some())
    }

    /// The record of a blob readable in `repo`.
    pub async fn blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobRecord> {
        let (linked, record) = futures::join!(self.is_linked(repo, digest), self.blob_record(digest));
        match (linked?, record?) {
            (true, Some(record)) => Ok(record),
            _ => Err(blob_unknown(digest)),
        }
    }

    /// Opens a blob's bytes, or a range of them (within the blob's size).
    pub async fn open_blob(
        &self,
        digest: &Digest,
        record: &BlobRecord,
        range: Option<Range<u64>>,
    ) -> Result<GetResult> {
        if let Some(found) = self.store.get(&record.object, range.clone()).await? {
            return Ok(found);
        }
        // The record came from the cache, and a collection has since deleted
        // it; an upload may have written a new one, pointing at new bytes.
        let record = self.fresh_record(digest).await?.ok_or_else(|| blob_unknown(digest))?;
        self.store
            .get(&record.object, range)
            .await?
            .ok_or_else(|| blob_unknown(digest))
    }

    /// Unlinks a blob from `repo`; its bytes go when GC finds no other use.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if !self.is_linked(repo, digest).await? {
            return Err(blob_unknown(digest));
        }
        self.store.delete(&layout::layer_link(repo, digest)).await?;
        Ok(())
    }

    /// Links an existing blob into `repo`: from `from` when given, else from
    /// anywhere in the registry (automatic mount). `false` if it cannot.
    pub async fn mount_blob(&self, repo: &RepoName, digest: &Digest, from: Option<&RepoName>) -> Result<bool> {
        if let Some(from) = from {
            if !self.is_linked(from, digest).await? {
                return Ok(false);
            }
        }
        // Touch before looking, so a collection either sees the reuse or we see its tombstone.
        // Then the tombstone before the record: see `check_published`.
        protocol::touch(self.origin(), self.env.as_ref(), digest).await?;
        if protocol::blob_doomed(self.origin(), digest).await?
            || self.origin.head(&layout::blob_record(digest)).await?.is_none()
        {
            return Ok(false);
        }
        self.store
            .put(&layout::layer_link(repo, digest), Bytes::new(), PutMode::Overwrite)
            .await?;
        Ok(true)
    }

    // ---- uploads ----

    /// Opens an upload session.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadStatus> {
        let mut upload = Upload::new(self.origin(), self.env.as_ref(), repo, Algorithm::Sha256);
        upload.save().await?;
        Ok(upload.status())
    }

    /// A whole blob in one request (POST or PUT with the digest known up front).
    pub async fn upload_whole(&self, repo: &RepoName, digest: &Digest, body: RequestBody) -> Result<()> {
        self.store_whole(repo, digest, None, body).await
    }

    /// Stores a blob received whole in a session of its own, never saved
    /// unless the blob needs a multipart write.
    async fn store_whole(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<()> {
        let mut upload = Upload::new(self.origin(), self.env.as_ref(), repo, digest.algorithm());
        if let Err(e) = upload.append(range, body).await {
            upload.discard().await;
            return Err(e);
        }
        upload.finish(repo, digest).await
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        Ok(Upload::open(self.origin(), self.env.as_ref(), repo, id).await?.status())
    }

    /// Adds a chunk (PATCH).
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<UploadStatus> {
        let mut upload = Upload::open(self.origin(), self.env.as_ref(), repo, id).await?;
        upload.check_start(range)?;
        upload.claim(&self.instance).await?;
        let written = match upload.append(range, body).await {
            Ok(()) => upload.commit().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            upload.release().await;
            return Err(e);
        }
        Ok(upload.status())
    }

    /// Ends an upload (PUT), with an optional last chunk.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<()> {
        let mut upload = Upload::open(self.origin(), self.env.as_ref(), repo, id).await?;
        upload.check_start(range)?;
        if upload.is_untouched() {
            // Nothing was sent before this request (POST then PUT, the common
            // push): the blob goes to an object of its own, as in a monolithic
            // POST, so no claim is needed (racing requests cannot share that
            // object). The session ends once the blob exists or its digest
            // was wrong; other failures leave it for a retry.
            let stored = self.store_whole(repo, digest, range, body).await;
            if stored.as_ref().err().is_none_or(|e| e.code == ErrorCode::DigestInvalid) {
                upload.remove_untouched().await;
            }
            return stored;
        }
        upload.claim(&self.instance).await?;
        if let Err(e) = upload.append(range, body).await {
            upload.release().await;
            return Err(e);
        }
        match upload.finish(repo, digest).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // A failed finish keeps the session (unless it discarded it),
                // so a retry of the PUT can take it at once.
                upload.release().await;
                Err(e)
            }
        }
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        let mut upload = Upload::open(self.origin(), self.env.as_ref(), repo, id).await?;
        upload.discard().await;
        Ok(())
    }

    // ---- manifests ----

    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(digest) => Ok(digest.clone()),
            Reference::Tag(tag) => self
                .tag_target(repo, tag)
                .await?
                .ok_or_else(|| manifest_unknown(tag.as_str())),
        }
    }

    async fn tag_target(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        Ok(self.tag_record(repo, tag).await?.map(|record| record.digest))
    }

    pub(crate) async fn tag_record(&self, repo: &RepoName, tag: &Tag) -> Result<Option<TagRecord>> {
        match read_small(self.store(), &layout::tag(repo, tag)).await? {
            None => Ok(None),
            Some((bytes, _)) => TagRecord::parse(&bytes)
                .map(Some)
                .ok_or_else(|| RegistryError::new(ErrorCode::Internal, format!("corrupt tag record {tag}"))),
        }
    }

    /// Records that upstream still has `record`'s manifest under `tag`.
    pub(crate) async fn mark_tag_checked(&self, repo: &RepoName, tag: &Tag, record: &TagRecord) -> Result<()> {
        let record = TagRecord {
            checked_ms: self.env.now_millis(),
            ..record.clone()
        };
        self.store
            .put(&layout::tag(repo, tag), record.to_bytes(), PutMode::Overwrite)
            .await?;
        Ok(())
    }

    /// Stores a manifest the pull-through cache fetched from upstream,
    /// tagged `tag` when it was asked for by tag.
    pub(crate) async fn put_upstream_manifest(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
        tag: Option<&Tag>,
    ) -> Result<()> {
        let reference = match tag {
            Some(tag) => Reference::Tag(tag.clone()),
            None => Reference::Digest(manifest.digest.clone()),
        };
        let origin = ManifestOrigin::Upstream {
            checked_ms: self.env.now_millis(),
        };
        self.store_manifest(repo, &reference, None, manifest.bytes.clone(), &[], origin)
            .await?;
        Ok(())
    }

    pub async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<StoredManifest> {
        let digest = self.resolve(repo, reference).await?;
        let (bytes, _) = read_small(self.store(), &layout::manifest(repo, &digest))
            .await?
            .ok_or_else(|| manifest_unknown(digest.as_str()))?;
        Ok(StoredManifest {
            media_type: manifest::media_type_of(&bytes),
            digest,
            bytes,
        })
    }

    /// Stores a manifest after checking it and everything it references.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
    ) -> Result<PushedManifest> {
        self.store_manifest(repo, reference, content_type, bytes, extra_tags, ManifestOrigin::Push)
            .await
    }

    async fn store_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
        origin: ManifestOrigin,
    ) -> Result<PushedManifest> {
        let (sparse, checked_ms) = match origin {
            ManifestOrigin::Push => (self.options.allow_sparse_manifests, 0),
            ManifestOrigin::Upstream { checked_ms } => (true, checked_ms),
        };
        if bytes.len() > manifest::MAX_MANIFEST_BYTES {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!(
                    "manifest of {} bytes is over the {} byte limit",
                    bytes.len(),
                    manifest::MAX_MANIFEST_BYTES
                ),
            )
            .with_status(http::StatusCode::PAYLOAD_TOO_LARGE));
        }
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &bytes);
        if let Reference::Digest(expected) = reference {
            if expected != &digest {
                return Err(RegistryError::new(
                    ErrorCode::DigestInvalid,
                    format!("manifest digest is {digest}, not {expected}"),
                ));
            }
        }
        let parsed = manifest::parse(&bytes, content_type)
            .and_then(|parsed| manifest::check_media_types(&parsed).map(|()| parsed))
            .map_err(|msg| RegistryError::new(ErrorCode::ManifestInvalid, msg))?;
        let tags = match reference {
            Reference::Tag(tag) => std::iter::once(tag).chain(extra_tags).collect::<Vec<_>>(),
            Reference::Digest(_) => extra_tags.iter().collect(),
        };
        let immutable = retention::tags_immutable(&self.options.retention, repo.as_str());
        if immutable {
            for tag in &tags {
                self.refuse_moving_tag(repo, tag, &digest).await?;
            }
        }
        // A cheap early refusal; the check after the write is the one that counts.
        if !sparse {
            self.check_references(repo, &parsed).await?;
        }

        protocol::publish_push(self.origin(), self.env.as_ref(), repo, &digest, &parsed).await?;
        let manifest_key = layout::manifest(repo, &digest);
        let created = match self.store.put(&manifest_key, bytes.clone(), PutMode::Create).await {
            Ok(_) => true,
            Err(StoreError::AlreadyExists) => false,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.check_published(repo, &digest, &parsed, sparse).await {
            if created {
                self.store.delete(&manifest_key).await?;
            }
            return Err(e);
        }
        let now = Bytes::from(self.env.now_millis().to_string());
        self.store
            .put(&layout::manifest_pushed(repo, &digest), now, PutMode::Overwrite)
            .await?;
        if let Some(subject) = &parsed.subject {
            let entry = referrer_descriptor(&parsed, &digest, bytes.len());
            self.store
                .put(
                    &layout::referrer(repo, &subject.digest, &digest),
                    entry.to_string().into_bytes().into(),
                    PutMode::Overwrite,
                )
                .await?;
        }
        let record = TagRecord {
            digest: digest.clone(),
            tagged_ms: self.env.now_millis(),
            checked_ms,
        }
        .to_bytes();
        let digest_ref = &digest;
        try_join_all(tags.iter().map(|&tag| {
            let record = record.clone();
            async move {
                // The hint first: a tag record written now always has one.
                self.store
                    .put(
                        &layout::tag_hint(repo, digest_ref, tag),
                        Bytes::new(),
                        PutMode::Overwrite,
                    )
                    .await?;
                if !immutable {
                    self.store
                        .put(&layout::tag(repo, tag), record, PutMode::Overwrite)
                        .await?;
                    return Ok(());
                }
                match self.store.put(&layout::tag(repo, tag), record, PutMode::Create).await {
                    Ok(_) => Ok(()),
                    // Pushed concurrently: fine if to the same manifest.
                    Err(StoreError::AlreadyExists) => self.refuse_moving_tag(repo, tag, digest_ref).await,
                    Err(e) => Err(e.into()),
                }
            }
        }))
        .await?;
        if retention::tags_may_expire(&self.options.retention, repo.as_str()) {
            self.check_tags_kept(repo, &tags).await?;
        }
        self.add_to_catalog(repo).await?;
        Ok(PushedManifest {
            media_type: manifest::media_type_of(&bytes),
            size: bytes.len() as u64,
            digest,
            subject: parsed.subject.map(|s| s.digest),
        })
    }

    /// Refuses to move an immutable tag to another manifest. 409 because the
    /// request conflicts with the tag's current state (nothing is wrong with
    /// the caller's rights, which 403 would suggest); `DENIED` because it is
    /// the spec's code for a refused operation, so clients print our message.
    async fn refuse_moving_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<()> {
        match self.tag_target(repo, tag).await? {
            Some(current) if &current != digest => Err(RegistryError::new(
                ErrorCode::Denied,
                format!("tag {tag} is immutable in {repo} and points to {current}; push a new tag"),
            )
            .with_status(http::StatusCode::CONFLICT)
            .with_detail(json!({ "tag": tag.as_str(), "digest": current.as_str() }))),
            _ => Ok(()),
        }
    }

    /// After the tags are written, where retention may expire them: none was
    /// deleted by a collection that read it before this push (the tombstone
    /// first, then the tag: see `gc::protocol`). A refused push is retried
    /// by the client and writes its tags again.
    async fn check_tags_kept(&self, repo: &RepoName, tags: &[&Tag]) -> Result<()> {
        let store = self.origin();
        try_join_all(tags.iter().map(|tag| async move {
            if protocol::tag_doomed(store, repo, tag).await? || !exists(store, layout::tag(repo, tag)).await? {
                return Err(RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("tag {tag} is being expired by a garbage collection; push it again"),
                )
                .with_detail(json!({ "tag": tag.as_str() })));
            }
            Ok(())
        }))
        .await?;
        Ok(())
    }

    /// After the manifest is written (and its push published in the GC
    /// journal): everything it references is still there and no collection
    /// is deleting it. Reads bypass the cache, which may hold deleted records.
    async fn check_published(&self, repo: &RepoName, digest: &Digest, parsed: &Manifest, sparse: bool) -> Result<()> {
        let store = self.origin();
        let missing = |what: &str, d: &Digest| {
            RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("{what} {d} is not in this repository"),
            )
            .with_detail(json!({ "digest": d.as_str() }))
        };
        let collected = |d: &Digest| {
            RegistryError::new(
                ErrorCode::Unavailable,
                format!("{d} is being garbage collected; push it again and retry"),
            )
            .with_detail(json!({ "digest": d.as_str() }))
        };
        // Each check reads the tombstone before what it guards: a collector
        // deletes what it dooms first and its tombstone last, so a check that
        // finds no tombstone finds anything deleted under it already gone
        // (docs/gc.md). Reading both at once would let a collection finish
        // between the two reads, unseen by either.
        let own_check = async {
            if protocol::manifest_doomed(store, repo, digest).await?
                || !exists(store, layout::manifest(repo, digest)).await?
            {
                return Err(collected(digest));
            }
            Ok(())
        };
        let blob_checks = parsed
            .blobs
            .iter()
            .filter(|d| !Manifest::blob_may_be_foreign(d))
            .map(|d| async move {
                if protocol::blob_doomed(store, &d.digest).await? {
                    return Err(collected(&d.digest));
                }
                let (linked, recorded) = futures::try_join!(
                    exists(store, layout::layer_link(repo, &d.digest)),
                    exists(store, layout::blob_record(&d.digest)),
                )?;
                if sparse || (linked && recorded) {
                    Ok(())
                } else {
                    Err(missing("blob", &d.digest))
                }
            });
        let child_checks = parsed.children.iter().map(|d| async move {
            if protocol::manifest_doomed(store, repo, &d.digest).await? {
                return Err(collected(&d.digest));
            }
            if sparse || exists(store, layout::manifest(repo, &d.digest)).await? {
                Ok(())
            } else {
                Err(missing("manifest", &d.digest))
            }
        });
        // Every check runs to the end, even after one fails: a fresh read that
        // finds a record gone drops its stale cached copy, so the client's
        // next HEAD of each missing blob tells it to upload again.
        let (own, blobs, children) = futures::join!(own_check, join_all(blob_checks), join_all(child_checks));
        std::iter::once(own).chain(blobs).chain(children).collect()
    }

    async fn check_references(&self, repo: &RepoName, parsed: &Manifest) -> Result<()> {
        let blob_checks = parsed
            .blobs
            .iter()
            .filter(|d| !Manifest::blob_may_be_foreign(d))
            .map(|d| async move {
                if self.is_linked(repo, &d.digest).await? {
                    Ok(())
                } else {
                    Err(RegistryError::new(
                        ErrorCode::ManifestBlobUnknown,
                        format!("blob {} is not in this repository", d.digest),
                    )
                    .with_detail(json!({ "digest": d.digest.as_str() })))
                }
            });
        let child_checks = parsed.children.iter().map(|d| async move {
            if self.store.head(&layout::manifest(repo, &d.digest)).await?.is_some() {
                Ok(())
            } else {
                Err(RegistryError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!("manifest {} is not in this repository", d.digest),
                )
                .with_detail(json!({ "digest": d.digest.as_str() })))
            }
        });
        futures::try_join!(try_join_all(blob_checks), try_join_all(child_checks))?;
        Ok(())
    }

    /// Lists `repo` in the catalog. A repository new to the catalog has had
    /// every tag written with its hint, so its hints are complete from now on.
    async fn add_to_catalog(&self, repo: &RepoName) -> Result<()> {
        match self
            .store
            .put(&layout::catalog_entry(repo), Bytes::new(), PutMode::Create)
            .await
        {
            Ok(_) => self.mark_tag_hints_complete(repo).await,
            Err(StoreError::AlreadyExists) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn mark_tag_hints_complete(&self, repo: &RepoName) -> Result<()> {
        self.store
            .put(&layout::tag_hints_complete(repo), Bytes::new(), PutMode::Overwrite)
            .await?;
        Ok(())
    }

    /// The tags of `repo` that point at `digest`, found through the hints
    /// written when tagging (each verified against its tag record: a tag
    /// that moved on leaves a stale hint). A repository tagged by an older
    /// pier, which wrote no hints, has its tags read once, their hints
    /// written, and is marked complete.
    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
        let store = self.origin();
        if store.head(&layout::tag_hints_complete(repo)).await?.is_none() {
            let prefix = layout::tags_prefix(repo);
            for key in list_all(store, &prefix).await? {
                let (Some(tag), Some((bytes, _))) = (
                    key.strip_prefix(&prefix).and_then(Tag::parse),
                    read_small(store, &key).await?,
                ) else {
                    continue;
                };
                if let Some(record) = TagRecord::parse(&bytes) {
                    store
                        .put(
                            &layout::tag_hint(repo, &record.digest, &tag),
                            Bytes::new(),
                            PutMode::Overwrite,
                        )
                        .await?;
                }
            }
            self.mark_tag_hints_complete(repo).await?;
        }
        let prefix = layout::tag_hints_prefix(repo, digest);
        let mut tags = Vec::new();
        for key in list_all(store, &prefix).await? {
            let Some(tag) = key.strip_prefix(&prefix).and_then(Tag::parse) else {
                continue;
            };
            if self.tag_target(repo, &tag).await?.as_ref() == Some(digest) {
                tags.push(tag);
            }
        }
        Ok(tags)
    }

    /// Refuses a delete that would untag in a namespace of immutable tags:
    /// such tags are retired by retention rules only (docs/gc.md).
    fn refuse_untagging(&self, repo: &RepoName, tags: &[Tag], what: &str) -> Result<()> {
        let Some(first) = tags.first() else {
            return Ok(());
        };
        if !retention::tags_immutable(&self.options.retention, repo.as_str()) {
            return Ok(());
        }
        let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        Err(RegistryError::new(
            ErrorCode::Denied,
            format!(
                "{what} would remove tag {first} (of {}), and tags are immutable in {repo}; retention rules retire them",
                names.join(", ")
            ),
        )
        .with_status(http::StatusCode::CONFLICT)
        .with_detail(json!({ "tags": names })))
    }

    /// Deletes a manifest by digest (with every tag on it), or a tag alone.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<DeletedManifest> {
        match reference {
            Reference::Tag(tag) => {
                let key = layout::tag(repo, tag);
                let digest = self
                    .tag_target(repo, tag)
                    .await?
                    .ok_or_else(|| manifest_unknown(tag.as_str()))?;
                self.refuse_untagging(repo, std::slice::from_ref(tag), &format!("deleting tag {tag}"))?;
                let target = read_small(self.store(), &layout::manifest(repo, &digest)).await?;
                self.store.delete(&key).await?;
                self.store.delete(&layout::tag_hint(repo, &digest, tag)).await?;
                let (media_type, size) = target.map_or((String::new(), 0), |(bytes, _)| {
                    (manifest::media_type_of(&bytes), bytes.len() as u64)
                });
                Ok(DeletedManifest {
                    digest,
                    media_type,
                    size,
                })
            }
            Reference::Digest(digest) => {
                let key = layout::manifest(repo, digest);
                let (bytes, _) = read_small(self.store(), &key)
                    .await?
                    .ok_or_else(|| manifest_unknown(digest.as_str()))?;
                let tags = self.tags_of(repo, digest).await?;
                self.refuse_untagging(repo, &tags, &format!("deleting manifest {digest}"))?;
                for tag in &tags {
                    self.store.delete(&layout::tag(repo, tag)).await?;
                }
                for hint in list_all(self.store(), &layout::tag_hints_prefix(repo, digest)).await? {
                    self.store.delete(&hint).await?;
                }
                if let Some(subject) = manifest::parse_stored(&bytes).ok().and_then(|m| m.subject) {
                    self.store
                        .delete(&layout::referrer(repo, &subject.digest, digest))
                        .await?;
                }
                self.store.delete(&key).await?;
                self.store.delete(&layout::manifest_pushed(repo, digest)).await?;
                Ok(DeletedManifest {
                    digest: digest.clone(),
                    media_type: manifest::media_type_of(&bytes),
                    size: bytes.len() as u64,
                })
            }
        }
    }

    // ---- discovery ----

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        Ok(self.store.head(&layout::catalog_entry(repo)).await?.is_some())
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n` (and at
    /// most [`MAX_PAGE`]).
    pub async fn tags(&self, repo: &RepoName, n: usize, last: Option<&str>) -> Result<NamePage> {
        if !self.repo_exists(repo).await? {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is not known"),
            ));
        }
        let limit = n.min(MAX_PAGE);
        if limit == 0 {
            return Ok(NamePage::default());
        }
        let prefix = layout::tags_prefix(repo);
        let start_after = last.map(|last| format!("{prefix}{last}"));
        let page = self.store.list(&prefix, start_after.as_deref(), limit).await?;
        let names: Vec<String> = page
            .keys
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let next = names.last().filter(|_| page.more).cloned();
        Ok(NamePage { names, next })
    }

    /// Repositories `lists` accepts, in lexical order, after `last`, at most
    /// `n` (and at most [`MAX_PAGE`]). A page examines at most
    /// [`MAX_CATALOG_SCAN`] repositories: one cut short by that bound (a
    /// caller who may see few of many) ends with a `next` to go on from.
    ///
    /// Catalog keys are `catalog/<name>/_repo`, and the store lists them in
    /// key order, which differs from name order where one name extends
    /// another with a character sorting before `/_` (`a` comes after `a-b`,
    /// `a.b` and `a/0` in key order, before them in name order). Listing
    /// from `catalog/<last>` finds every name after `last`; such a shorter
    /// name of a listed one, not listed yet, is looked up directly.
    pub async fn catalog(&self, n: usize, last: Option<&str>, lists: impl Fn(&str) -> bool) -> Result<NamePage> {
        let limit = n.min(MAX_PAGE);
        if limit == 0 {
            return Ok(NamePage::default());
        }
        let last = last.unwrap_or("");
        let after_last = |name: &str| name > last;
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = Some(format!("{}{last}", layout::CATALOG)).filter(|_| !last.is_empty());
        let mut exhausted = false;
        loop {
            let page = self.store.list(layout::CATALOG, cursor.as_deref(), 1000).await?;
            cursor = page.keys.last().cloned().or(cursor);
            seen.extend(
                page.keys
                    .iter()
                    .filter_map(|key| layout::repo_of_catalog_entry(key))
                    .filter(|name| after_last(name))
                    .map(str::to_string),
            );
            if !page.more {
                exhausted = true;
                break;
            }
            let listed = seen.iter().filter(|name| lists(name)).count();
            if listed > limit || seen.len() >= MAX_CATALOG_SCAN {
                break;
            }
        }
        let mut shorter = Vec::new();
        for name in &seen {
            // Where the key of the shorter name sorts after this one's:
            // before `-` or `.`, or before `/` and a digit (`/_repo` > `/0`).
            let inverted = |(at, separator): &(usize, &str)| {
                *separator != "/"
                    || name
                        .get(at + 1..)
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            };
            for (at, _) in name.match_indices(['-', '.', '/']).filter(inverted) {
                let Some(candidate) = name.get(..at).filter(|c| after_last(c) && !seen.contains(*c)) else {
                    continue;
                };
                if let Some(repo) = RepoName::parse(candidate) {
                    shorter.push(repo);
                }
            }
        }
        shorter.sort();
        shorter.dedup();
        for repo in shorter {
            if self.repo_exists(&repo).await? {
                seen.insert(repo.as_str().to_string());
            }
        }
        let examined_up_to = seen.last().cloned();
        let mut names: Vec<String> = seen.into_iter().filter(|name| lists(name)).collect();
        let next = if names.len() > limit {
            names.truncate(limit);
            names.last().cloned()
        } else if exhausted {
            None
        } else {
            examined_up_to
        };
        Ok(NamePage { names, next })
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`,
    /// optionally only those of `artifact_type`, after the referrer `after`:
    /// at most `n` (and [`MAX_PAGE`]), of at most [`MAX_REFERRERS_PAGE_BYTES`]
    /// together, from at most [`MAX_REFERRERS_SCAN`] examined.
    pub async fn referrers_page(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        n: usize,
    ) -> Result<ReferrersPage> {
        let limit = n.min(MAX_PAGE);
        if limit == 0 {
            return Ok(ReferrersPage::default());
        }
        let prefix = layout::referrers_prefix(repo, subject);
        let mut cursor = after.map(|after| layout::referrer(repo, subject, after));
        let mut page = ReferrersPage::default();
        let (mut bytes, mut examined) = (0, 0);
        loop {
            let listed = self.store.list(&prefix, cursor.as_deref(), REFERRERS_BATCH).await?;
            let entries = try_join_all(listed.keys.iter().map(|key| read_small(self.store(), key))).await?;
            for (key, entry) in listed.keys.iter().zip(entries) {
                let value =
                    entry.and_then(|(entry, _)| Some((entry.len(), serde_json::from_slice::<Value>(&entry).ok()?)));
                let wanted = value.filter(|(_, entry)| {
                    artifact_type.is_none_or(|t| entry.get("artifactType").and_then(Value::as_str) == Some(t))
                });
                if let Some((size, entry)) = wanted {
                    let full = page.manifests.len() >= limit
                        || (!page.manifests.is_empty() && bytes + size > MAX_REFERRERS_PAGE_BYTES);
                    if full {
                        page.next = cursor.as_deref().and_then(layout::digest_at_end);
                        return Ok(page);
                    }
                    bytes += size;
                    page.manifests.push(entry);
                }
                examined += 1;
                cursor = Some(key.clone());
            }
            if !listed.more {
                return Ok(page);
            }
            if examined >= MAX_REFERRERS_SCAN {
                page.next = cursor.as_deref().and_then(layout::digest_at_end);
                return Ok(page);
            }
        }
    }

    /// Every referrer of `subject` in `repo`, following pages (for copies
    /// made by the operator, not for requests).
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .referrers_page(repo, subject, artifact_type, after.as_ref(), MAX_PAGE)
                .await?;
            all.extend(page.manifests);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
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

/// What a tag record holds: `{"digest", "tagged_ms"}`, and `checked_ms` in
/// a pull-through cache. Older builds wrote the digest as plain text; those
/// read with `tagged_ms` 0 (as old as can be).
#[derive(Clone, Debug, PartialEq)]
pub struct TagRecord {
    pub digest: Digest,
    pub tagged_ms: u64,
    /// When upstream last confirmed the tag (pull-through caches); 0 for
    /// tags pushed here.
    pub checked_ms: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TagRecordJson {
    digest: String,
    #[serde(default)]
    tagged_ms: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    checked_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TagRecord {
    pub fn parse(bytes: &[u8]) -> Option<TagRecord> {
        let (digest, tagged_ms, checked_ms) = match serde_json::from_slice::<TagRecordJson>(bytes) {
            Ok(json) => (json.digest, json.tagged_ms, json.checked_ms),
            Err(_) => (std::str::from_utf8(bytes).ok()?.trim().to_string(), 0, 0),
        };
        Some(TagRecord {
            digest: Digest::parse(&digest).ok()?,
            tagged_ms,
            checked_ms,
        })
    }

    pub fn to_bytes(&self) -> Bytes {
        let json = TagRecordJson {
            digest: self.digest.as_str().to_string(),
            tagged_ms: self.tagged_ms,
            checked_ms: self.checked_ms,
        };
        // A struct of a string and numbers: its JSON cannot fail.
        #[allow(clippy::expect_used)]
        let bytes = serde_json::to_vec(&json).expect("a string and numbers serialize");
        bytes.into()
    }
}

/// The descriptor a referrers listing shows for a manifest with a subject.
fn referrer_descriptor(parsed: &Manifest, digest: &Digest, size: usize) -> Value {
    let mut entry = serde_json::Map::new();
    entry.insert("mediaType".into(), json!(parsed.media_type));
    entry.insert("digest".into(), json!(digest.as_str()));
    entry.insert("size".into(), json!(size));
    if let Some(artifact_type) = parsed.referrer_artifact_type() {
        entry.insert("artifactType".into(), json!(artifact_type));
    }
    if let Some(annotations) = &parsed.annotations {
        entry.insert("annotations".into(), Value::Object(annotations.clone()));
    }
    Value::Object(entry)
}
