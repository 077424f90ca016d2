//! The registry engine: every operation of the distribution API on top of the
//! storage port, independent of HTTP. The HTTP mapping lives in `api`.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::try_join_all;
use serde_json::{json, Value};

use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::manifest::{self, Manifest};
use crate::names::{RepoName, Tag};
use crate::platform::{Env, RequestBody};
use crate::store::cache::ImmutableCache;
use crate::store::{list_all, read_small, GetResult, PutMode, Store, StoreError};
use crate::upload::{BlobRecord, ChunkRange, Upload, UploadStatus};

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
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
}

/// A page of names (tags or repositories).
pub struct NamePage {
    pub names: Vec<String>,
    /// Whether names after the last one remain.
    pub more: bool,
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
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            allow_sparse_manifests: false,
            max_body_bytes: None,
            redirect_blobs: false,
            cache_bytes: 8 << 20,
        }
    }
}

/// The registry over one store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    env: Arc<dyn Env>,
    options: RegistryOptions,
    /// Identifies this process in upload claims.
    instance: String,
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
    pub fn new(store: Arc<dyn Store>, env: Arc<dyn Env>, options: RegistryOptions) -> Registry {
        let instance = env.random_id();
        let store: Arc<dyn Store> = match options.cache_bytes {
            0 => store,
            capacity => Arc::new(ImmutableCache::new(store, env.clone(), capacity)),
        };
        Registry {
            store,
            env,
            options,
            instance,
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The preferred minimum chunk size for chunked uploads.
    pub fn chunk_min_length(&self) -> usize {
        self.store.part_size()
    }

    // ---- blobs ----

    async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let Some((bytes, _)) = read_small(self.store(), &layout::blob_record(digest)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RegistryError::new(ErrorCode::Internal, format!("corrupt blob record {digest}: {e}")))
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
        if self.blob_record(digest).await?.is_none() {
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
        let mut upload = Upload::new(self.store(), self.env.as_ref(), repo, Algorithm::Sha256);
        upload.save().await?;
        Ok(upload.status())
    }

    /// A whole blob in one request (POST or PUT with the digest known up front).
    pub async fn upload_whole(&self, repo: &RepoName, digest: &Digest, body: RequestBody) -> Result<()> {
        let mut upload = Upload::new(self.store(), self.env.as_ref(), repo, digest.algorithm());
        if let Err(e) = upload.append(None, body).await {
            upload.discard().await;
            return Err(e);
        }
        upload.finish(repo, digest).await
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        Ok(Upload::open(self.store(), self.env.as_ref(), repo, id).await?.status())
    }

    /// Adds a chunk (PATCH).
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<UploadStatus> {
        let mut upload = Upload::open(self.store(), self.env.as_ref(), repo, id).await?;
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
        let mut upload = Upload::open(self.store(), self.env.as_ref(), repo, id).await?;
        upload.check_start(range)?;
        upload.claim(&self.instance).await?;
        if let Err(e) = upload.append(range, body).await {
            upload.release().await;
            return Err(e);
        }
        upload.finish(repo, digest).await
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        let mut upload = Upload::open(self.store(), self.env.as_ref(), repo, id).await?;
        upload.discard().await;
        Ok(())
    }

    // ---- manifests ----

    async fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(digest) => Ok(digest.clone()),
            Reference::Tag(tag) => {
                let (bytes, _) = read_small(self.store(), &layout::tag(repo, tag))
                    .await?
                    .ok_or_else(|| manifest_unknown(tag.as_str()))?;
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| Digest::parse(text.trim()).ok())
                    .ok_or_else(|| RegistryError::new(ErrorCode::Internal, format!("corrupt tag record {tag}")))
            }
        }
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
        let parsed =
            manifest::parse(&bytes, content_type).map_err(|msg| RegistryError::new(ErrorCode::ManifestInvalid, msg))?;
        self.check_references(repo, &parsed).await?;

        self.store
            .put(&layout::manifest(repo, &digest), bytes.clone(), PutMode::Overwrite)
            .await?;
        if let Some(subject) = &parsed.subject {
            let entry = referrer_descriptor(&parsed, &digest, bytes.len());
            self.store
                .put(
                    &layout::referrer(repo, &subject.digest, &digest),
                    serde_json::to_vec(&entry).expect("json").into(),
                    PutMode::Overwrite,
                )
                .await?;
        }
        let tags = match reference {
            Reference::Tag(tag) => std::iter::once(tag).chain(extra_tags).collect::<Vec<_>>(),
            Reference::Digest(_) => extra_tags.iter().collect(),
        };
        try_join_all(tags.into_iter().map(|tag| async {
            let key = layout::tag(repo, tag);
            self.store
                .put(&key, Bytes::from(digest.as_str().to_string()), PutMode::Overwrite)
                .await
        }))
        .await?;
        self.add_to_catalog(repo).await?;
        Ok(PushedManifest {
            digest,
            subject: parsed.subject.map(|s| s.digest),
        })
    }

    async fn check_references(&self, repo: &RepoName, parsed: &Manifest) -> Result<()> {
        if self.options.allow_sparse_manifests {
            return Ok(());
        }
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

    async fn add_to_catalog(&self, repo: &RepoName) -> Result<()> {
        match self
            .store
            .put(&layout::catalog_entry(repo), Bytes::new(), PutMode::Create)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a manifest by digest (with every tag on it), or a tag alone.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        match reference {
            Reference::Tag(tag) => {
                let key = layout::tag(repo, tag);
                if self.store.head(&key).await?.is_none() {
                    return Err(manifest_unknown(tag.as_str()));
                }
                self.store.delete(&key).await?;
            }
            Reference::Digest(digest) => {
                let key = layout::manifest(repo, digest);
                let (bytes, _) = read_small(self.store(), &key)
                    .await?
                    .ok_or_else(|| manifest_unknown(digest.as_str()))?;
                for tag_key in list_all(self.store(), &layout::tags_prefix(repo)).await? {
                    if let Some((target, _)) = read_small(self.store(), &tag_key).await? {
                        if target.as_ref() == digest.as_str().as_bytes() {
                            self.store.delete(&tag_key).await?;
                        }
                    }
                }
                if let Ok(parsed) = manifest::parse(&bytes, None) {
                    if let Some(subject) = parsed.subject {
                        self.store
                            .delete(&layout::referrer(repo, &subject.digest, digest))
                            .await?;
                    }
                }
                self.store.delete(&key).await?;
            }
        }
        Ok(())
    }

    // ---- discovery ----

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        Ok(self.store.head(&layout::catalog_entry(repo)).await?.is_some())
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n`.
    pub async fn tags(&self, repo: &RepoName, n: Option<usize>, last: Option<&str>) -> Result<NamePage> {
        if !self.repo_exists(repo).await? {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is not known"),
            ));
        }
        let prefix = layout::tags_prefix(repo);
        let start_after = last.map(|last| format!("{prefix}{last}"));
        let limit = n.unwrap_or(usize::MAX);
        let mut names = Vec::new();
        let mut cursor = start_after;
        let mut more = false;
        while names.len() < limit {
            let page = self
                .store
                .list(&prefix, cursor.as_deref(), (limit - names.len()).min(1000))
                .await?;
            cursor = page.keys.last().cloned().or(cursor);
            names.extend(page.keys.iter().map(|k| k[prefix.len()..].to_string()));
            more = page.more;
            if !page.more {
                break;
            }
        }
        Ok(NamePage { names, more })
    }

    /// Repositories in lexical order, after `last`, at most `n`.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<NamePage> {
        let mut names: Vec<String> = list_all(self.store(), layout::CATALOG)
            .await?
            .iter()
            .filter_map(|key| layout::repo_of_catalog_entry(key).map(str::to_string))
            .filter(|name| last.is_none_or(|last| name.as_str() > last))
            .collect();
        names.sort();
        let limit = n.unwrap_or(usize::MAX);
        let more = names.len() > limit;
        names.truncate(limit);
        Ok(NamePage { names, more })
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`,
    /// optionally only those of `artifact_type`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Value>> {
        let keys = list_all(self.store(), &layout::referrers_prefix(repo, subject)).await?;
        let entries = try_join_all(keys.iter().map(|key| read_small(self.store(), key))).await?;
        Ok(entries
            .into_iter()
            .flatten()
            .filter_map(|(bytes, _)| serde_json::from_slice::<Value>(&bytes).ok())
            .filter(|entry| {
                artifact_type.is_none_or(|wanted| entry.get("artifactType").and_then(Value::as_str) == Some(wanted))
            })
            .collect())
    }
}

/// The descriptor a referrers listing shows for a manifest with a subject.
fn referrer_descriptor(parsed: &Manifest, digest: &Digest, size: usize) -> Value {
    let mut entry = json!({ "mediaType": parsed.media_type, "digest": digest.as_str(), "size": size });
    if let Some(artifact_type) = parsed.referrer_artifact_type() {
        entry["artifactType"] = json!(artifact_type);
    }
    if let Some(annotations) = &parsed.annotations {
        entry["annotations"] = Value::Object(annotations.clone());
    }
    entry
}
