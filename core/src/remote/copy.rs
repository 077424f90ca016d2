//! Copying an image (a manifest with its blobs, or an index with every
//! child) from one place that holds images to another, unchanged: same
//! bytes, same digests. A place is anything implementing [`ImageStore`]: a
//! repository of a registry here, an OCI image layout directory in the
//! native shell. Blobs the destination has are skipped; between two
//! repositories of one registry they are mounted; otherwise they stream
//! through, checked against their digest, never held whole in memory.
//! Children go before their index and blobs before their manifest, so a
//! registry that checks references accepts every push. The manifests that
//! name a copied one as their subject (signatures, SBOMs, attestations) go
//! with it, after it: an image promoted or carried to another site keeps
//! what vouches for it. Which of them go is the caller's choice
//! ([`Referrers`]): all of them for `pier copy`, the artifact types a rule
//! names for a promotion (whoever may push the source may attach anything).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt, TryStreamExt};

use super::http::HttpBody;
use super::verify::verified;
use super::{RegistryClient, RemoteError};
use crate::digest::Digest;
use crate::glob::Glob;
use crate::manifest::{self, Descriptor, Manifest};
use crate::names::{RepoName, Tag};
use crate::platform::{box_stream, BoxFuture, MaybeSend, MaybeSync};
use crate::records::{Reference, StoredManifest};

/// Where a copied manifest goes in the destination.
#[derive(Clone, Debug, PartialEq)]
pub enum ManifestRole {
    /// A child of an index: stored by digest only.
    Child,
    /// What was asked for: stored under the tag, or by digest alone.
    Root(Option<Tag>),
    /// A manifest whose subject was copied: stored by digest, and listed
    /// where a layout lists what it holds.
    Referrer,
}

impl ManifestRole {
    /// How a registry stores the manifest: under the tag, else by digest.
    pub fn reference(&self, digest: &Digest) -> Reference {
        match self {
            ManifestRole::Root(Some(tag)) => Reference::Tag(tag.clone()),
            _ => Reference::Digest(digest.clone()),
        }
    }
}

/// Something that holds images: read from, written to.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait ImageStore: MaybeSend + MaybeSync {
    /// Where it is, for messages.
    fn describe(&self) -> String;

    /// The registry (its base URL) and repository, when this is a
    /// repository of a registry: blobs move between two repositories of the
    /// same registry by mounting.
    fn registry_repo(&self) -> Option<(&str, &str)> {
        None
    }

    async fn manifest(&self, reference: &Reference) -> Result<Option<StoredManifest>, RemoteError>;

    async fn has_manifest(&self, digest: &Digest) -> Result<bool, RemoteError>;

    /// The digests of the manifests whose subject is `digest`; none where
    /// they cannot be listed.
    async fn referrers(&self, _digest: &Digest) -> Result<Vec<Digest>, RemoteError> {
        Ok(Vec::new())
    }

    /// The blob's size if it is here.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, RemoteError>;

    /// The blob's bytes (unchecked; the copy checks them).
    async fn blob(&self, digest: &Digest) -> Result<HttpBody, RemoteError>;

    /// Takes the blob from repository `from` of the same registry without
    /// moving bytes; `false` if it cannot.
    async fn mount_blob(&self, _digest: &Digest, _from: &str) -> Result<bool, RemoteError> {
        Ok(false)
    }

    /// Stores a blob from a stream that fails rather than end with wrong bytes.
    async fn put_blob(&self, digest: &Digest, size: u64, body: HttpBody) -> Result<(), RemoteError>;

    async fn put_manifest(&self, manifest: &StoredManifest, role: &ManifestRole) -> Result<(), RemoteError>;
}

/// Which referrers (manifests naming a copied one as their subject) a copy
/// carries, theirs included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Referrers {
    /// Every one (`pier copy`: the person copying reads the source).
    All,
    /// Single manifests (not indexes, which would bring whole images along)
    /// whose artifact type (`artifactType`, else the config's media type)
    /// matches one of these globs; none when empty.
    OfTypes(Vec<Glob>),
}

impl Referrers {
    /// Whether a referrer `manifest` goes with what it refers to.
    pub fn carries(&self, manifest: &Manifest) -> bool {
        match self {
            Referrers::All => true,
            Referrers::OfTypes(types) => {
                manifest.children.is_empty()
                    && manifest
                        .referrer_artifact_type()
                        .is_some_and(|t| types.iter().any(|glob| glob.matches(t)))
            }
        }
    }

    /// Whether any referrer may go at all.
    pub fn any(&self) -> bool {
        !matches!(self, Referrers::OfTypes(types) if types.is_empty())
    }
}

/// What happened to one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The destination had it.
    Present,
    Mounted,
    Streamed,
}

/// Told about progress (a progress bar, a log); every method may be left out.
pub trait CopyObserver: MaybeSend + MaybeSync {
    fn blob_started(&self, _digest: &Digest, _size: u64) {}
    /// `bytes` more of the blob went through.
    fn blob_progress(&self, _digest: &Digest, _bytes: u64) {}
    fn blob_done(&self, _digest: &Digest, _size: u64, _outcome: BlobOutcome) {}
    fn manifest_done(&self, _manifest: &StoredManifest) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl CopyObserver for Quiet {}

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The digest of the copied root manifest.
    pub digest: Option<Digest>,
    pub manifests: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub blobs_streamed: usize,
    pub bytes_streamed: u64,
}

/// Copies the manifest `reference` names in `src` (with its blobs, or its
/// children and theirs) to `dst`, tagged `tag` there if given, and the
/// `referrers` of each manifest copied. `parallel` blobs move at once.
pub async fn copy_image(
    src: &dyn ImageStore,
    reference: &Reference,
    dst: &dyn ImageStore,
    tag: Option<&Tag>,
    referrers: &Referrers,
    observer: Arc<dyn CopyObserver>,
    parallel: usize,
) -> Result<CopyReport, RemoteError> {
    let root = src.manifest(reference).await?.ok_or_else(|| RemoteError::Status {
        status: 404,
        code: Some("MANIFEST_UNKNOWN".into()),
        message: format!("{} has no manifest {}", src.describe(), reference_text(reference)),
    })?;
    let copy = Copy {
        src,
        dst,
        referrers,
        observer,
        parallel: parallel.max(1),
        report: Mutex::new(CopyReport::default()),
    };
    copy.tree(&root, ManifestRole::Root(tag.cloned())).await?;
    let mut report = copy.report.into_inner().unwrap_or_else(PoisonError::into_inner);
    report.digest = Some(root.digest);
    Ok(report)
}

fn reference_text(reference: &Reference) -> String {
    match reference {
        Reference::Tag(tag) => format!(":{}", tag.as_str()),
        Reference::Digest(digest) => format!("@{digest}"),
    }
}

struct Copy<'a> {
    src: &'a dyn ImageStore,
    dst: &'a dyn ImageStore,
    referrers: &'a Referrers,
    observer: Arc<dyn CopyObserver>,
    parallel: usize,
    report: Mutex<CopyReport>,
}

impl<'a> Copy<'a> {
    fn tree(&'a self, manifest: &'a StoredManifest, role: ManifestRole) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let parsed = manifest::parse(&manifest.bytes, None).map_err(|why| {
                RemoteError::Invalid(format!(
                    "{}: manifest {} is invalid: {why}",
                    self.src.describe(),
                    manifest.digest
                ))
            })?;
            for child in &parsed.children {
                if self.dst.has_manifest(&child.digest).await? {
                    continue;
                }
                let fetched = self
                    .src
                    .manifest(&Reference::Digest(child.digest.clone()))
                    .await?
                    .ok_or_else(|| {
                        RemoteError::Invalid(format!(
                            "{}: manifest {} lists {}, which is not there",
                            self.src.describe(),
                            manifest.digest,
                            child.digest
                        ))
                    })?;
                self.tree(&fetched, ManifestRole::Child).await?;
            }
            let mut seen = HashSet::new();
            let blobs: Vec<&Descriptor> = parsed
                .blobs
                .iter()
                .filter(|d| !Manifest::blob_may_be_foreign(d) && seen.insert(d.digest.clone()))
                .collect();
            let moves: Vec<BoxFuture<'_, Result<(), RemoteError>>> = blobs
                .into_iter()
                .map(|d| Box::pin(self.blob(d)) as BoxFuture<'_, _>)
                .collect();
            futures::stream::iter(moves)
                .buffer_unordered(self.parallel)
                .try_collect::<Vec<()>>()
                .await?;
            self.dst.put_manifest(manifest, &role).await?;
            self.report.lock().unwrap_or_else(PoisonError::into_inner).manifests += 1;
            self.observer.manifest_done(manifest);
            if !self.referrers.any() {
                return Ok(());
            }
            for referrer in self.src.referrers(&manifest.digest).await? {
                if self.dst.has_manifest(&referrer).await? {
                    continue;
                }
                let Some(fetched) = self.src.manifest(&Reference::Digest(referrer)).await? else {
                    continue; // deleted since it was listed
                };
                // (`All` takes even one that does not parse: copying it says why.)
                let carried = *self.referrers == Referrers::All
                    || manifest::parse(&fetched.bytes, None).is_ok_and(|m| self.referrers.carries(&m));
                if carried {
                    self.tree(&fetched, ManifestRole::Referrer).await?;
                }
            }
            Ok(())
        })
    }

    async fn blob(&self, descriptor: &Descriptor) -> Result<(), RemoteError> {
        let (digest, size) = (&descriptor.digest, descriptor.size);
        let outcome = if self.dst.blob_size(digest).await?.is_some() {
            BlobOutcome::Present
        } else if self.mounted(digest).await? {
            BlobOutcome::Mounted
        } else {
            self.observer.blob_started(digest, size);
            let body = self.src.blob(digest).await?;
            let observer = self.observer.clone();
            let counted_digest = digest.clone();
            let counted = box_stream(verified(body, digest, Some(size)).inspect_ok(move |chunk| {
                observer.blob_progress(&counted_digest, chunk.len() as u64);
            }));
            self.dst.put_blob(digest, size, counted).await?;
            BlobOutcome::Streamed
        };
        {
            let mut report = self.report.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                BlobOutcome::Present => report.blobs_present += 1,
                BlobOutcome::Mounted => report.blobs_mounted += 1,
                BlobOutcome::Streamed => {
                    report.blobs_streamed += 1;
                    report.bytes_streamed += size;
                }
            }
        }
        self.observer.blob_done(digest, size, outcome);
        Ok(())
    }

    async fn mounted(&self, digest: &Digest) -> Result<bool, RemoteError> {
        match self.same_registry_source() {
            Some(from) => self.dst.mount_blob(digest, from).await,
            None => Ok(false),
        }
    }

    /// The source repository, when source and destination are two
    /// repositories of one registry.
    fn same_registry_source(&self) -> Option<&str> {
        let (src_base, src_repo) = self.src.registry_repo()?;
        let (dst_base, dst_repo) = self.dst.registry_repo()?;
        (src_base == dst_base && src_repo != dst_repo).then_some(src_repo)
    }
}

/// A repository of a registry reached with a [`RegistryClient`].
pub struct RemoteRepo {
    pub client: Arc<RegistryClient>,
    pub repo: RepoName,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl ImageStore for RemoteRepo {
    fn describe(&self) -> String {
        format!("{}{}", self.client.base(), self.repo)
    }

    fn registry_repo(&self) -> Option<(&str, &str)> {
        Some((self.client.base(), self.repo.as_str()))
    }

    async fn manifest(&self, reference: &Reference) -> Result<Option<StoredManifest>, RemoteError> {
        self.client.manifest(self.repo.as_str(), reference).await
    }

    async fn has_manifest(&self, digest: &Digest) -> Result<bool, RemoteError> {
        let reference = Reference::Digest(digest.clone());
        Ok(self
            .client
            .manifest_info(self.repo.as_str(), &reference)
            .await?
            .is_some())
    }

    async fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, RemoteError> {
        self.client.referrers(self.repo.as_str(), digest).await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, RemoteError> {
        self.client.blob_size(self.repo.as_str(), digest).await
    }

    async fn blob(&self, digest: &Digest) -> Result<HttpBody, RemoteError> {
        match self.client.blob(self.repo.as_str(), digest).await? {
            Some(blob) => Ok(blob.body),
            None => Err(RemoteError::Status {
                status: 404,
                code: Some("BLOB_UNKNOWN".into()),
                message: format!("{} has no blob {digest}", self.describe()),
            }),
        }
    }

    async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool, RemoteError> {
        self.client.mount_blob(self.repo.as_str(), digest, from).await
    }

    async fn put_blob(&self, digest: &Digest, size: u64, body: HttpBody) -> Result<(), RemoteError> {
        self.client.push_blob(self.repo.as_str(), digest, size, body).await
    }

    async fn put_manifest(&self, manifest: &StoredManifest, role: &ManifestRole) -> Result<(), RemoteError> {
        let reference = role.reference(&manifest.digest);
        self.client.put_manifest(self.repo.as_str(), &reference, manifest).await
    }
}
