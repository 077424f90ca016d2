//! Manifests and tags: reads by tag or digest, pushes with every check a
//! push needs (references present, tags kept, immutable tags, the
//! collector's handshake), and deletes.

use bytes::Bytes;
use futures::future::{join_all, try_join_all};
use serde_json::{json, Value};

use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::handshake;
use crate::layout;
use crate::manifest::{self, Manifest};
use crate::names::{RepoName, Tag};
use crate::quota::Added;
use crate::records::{Reference, StoredManifest, TagRecord};
use crate::retention;
use crate::store::{list_all, read_small, PutMode, StoreError};

use super::{exists, DeletedManifest, PushedManifest, Registry};

/// Where a stored manifest came from.
enum ManifestOrigin {
    /// A client pushed it: checked against the deployment's options.
    Push,
    /// The pull-through cache fetched it from upstream at `checked_ms`:
    /// stored sparse (blobs and children arrive when pulled).
    Upstream { checked_ms: u64 },
}

fn manifest_unknown(reference: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not known to this repository"),
    )
}

impl Registry {
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
        self.manifest_by_digest(repo, digest).await
    }

    /// The manifest `reference` names, for a client that may not push to
    /// `repo`: by tag, resolved from memory where the namespace's policy
    /// allows (`crate::tag_cache`), else as [`Registry::manifest`].
    pub async fn manifest_for_puller(&self, repo: &RepoName, reference: &Reference) -> Result<StoredManifest> {
        let (Reference::Tag(tag), Some(tags)) = (reference, &self.tags) else {
            return self.manifest(repo, reference).await;
        };
        if let Some(digest) = tags.lookup(repo, tag) {
            match self.manifest_by_digest(repo, digest).await {
                Ok(found) => return Ok(found),
                // Deleted since: the tag may have moved on; ask the store.
                Err(err) if err.code == ErrorCode::ManifestUnknown => tags.forget(repo, tag),
                Err(err) => return Err(err),
            }
        }
        let digest = self.resolve(repo, reference).await?;
        tags.insert(repo, tag, &digest);
        self.manifest_by_digest(repo, digest).await
    }

    async fn manifest_by_digest(&self, repo: &RepoName, digest: Digest) -> Result<StoredManifest> {
        let (bytes, _) = read_small(self.store(), &layout::manifest(repo, &digest))
            .await?
            .ok_or_else(|| manifest_unknown(digest.as_str()))?;
        Ok(StoredManifest {
            media_type: manifest::media_type_of(&bytes),
            digest,
            bytes,
        })
    }

    /// Drops this instance's memory of `tags` in `repo`: written or deleted.
    fn forget_cached_tags<'t>(&self, repo: &RepoName, tags: impl IntoIterator<Item = &'t Tag>) {
        if let Some(cache) = &self.tags {
            for tag in tags {
                cache.forget(repo, tag);
            }
        }
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
        let quotas = &self.options.quotas;
        let counted = quotas.cover(repo);
        let added = [Added {
            digest: &digest,
            size: bytes.len() as u64,
        }];
        if counted {
            quotas.admit(self.origin(), repo, &added).await?;
        }

        handshake::publish_push(self.origin(), self.env.as_ref(), repo, &digest, &parsed).await?;
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
        if counted {
            quotas.count(self.origin(), repo, &added).await?;
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
        self.forget_cached_tags(repo, tags.iter().copied());
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
    /// first, then the tag: see `handshake`). A refused push is retried
    /// by the client and writes its tags again.
    async fn check_tags_kept(&self, repo: &RepoName, tags: &[&Tag]) -> Result<()> {
        let store = self.origin();
        try_join_all(tags.iter().map(|tag| async move {
            if handshake::tag_doomed(store, repo, tag).await? || !exists(store, layout::tag(repo, tag)).await? {
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
            if handshake::manifest_doomed(store, repo, digest).await?
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
                if handshake::blob_doomed(store, &d.digest).await? {
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
            if handshake::manifest_doomed(store, repo, &d.digest).await? {
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
                match self.is_linked(repo, &d.digest).await? {
                    true => Ok(()),
                    false => Err(not_in_repository("blob", &d.digest)),
                }
            });
        let child_checks = parsed.children.iter().map(|d| async move {
            match self.store.head(&layout::manifest(repo, &d.digest)).await?.is_some() {
                true => Ok(()),
                false => Err(not_in_repository("manifest", &d.digest)),
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
                self.forget_cached_tags(repo, [tag]);
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
                self.forget_cached_tags(repo, &tags);
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
                self.store.delete(&layout::manifest_pulled(repo, digest)).await?;
                Ok(DeletedManifest {
                    digest: digest.clone(),
                    media_type: manifest::media_type_of(&bytes),
                    size: bytes.len() as u64,
                })
            }
        }
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

/// A reference of a pushed manifest to a `what` (blob or manifest) the
/// repository lacks.
fn not_in_repository(what: &str, digest: &Digest) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestBlobUnknown,
        format!("{what} {digest} is not in this repository"),
    )
    .with_detail(json!({ "digest": digest.as_str() }))
}
