//! A repository of this registry as an [`ImageStore`], so that
//! `remote::copy` copies out of (and into) the registry it runs in without
//! going through HTTP: replication rules copy a pushed image from here to
//! another namespace (mounting blobs, no bytes moved) or to another registry.

use futures::TryStreamExt;

use super::copy::{ImageStore, ManifestRole};
use super::http::{HttpBody, HttpError};
use super::RemoteError;
use crate::body::BodyError;
use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError};
use crate::names::RepoName;
use crate::platform::box_stream;
use crate::records::{Reference, StoredManifest};
use crate::registry::Registry;

/// Stands for "this registry" where a copy compares registries: no URL
/// looks like it, so only two local repositories mount from each other.
const THIS_REGISTRY: &str = "pier:this-registry";

pub struct LocalRepo {
    pub registry: Registry,
    pub repo: RepoName,
}

/// A registry error as a copy reports it.
pub(crate) fn remote_error(error: RegistryError) -> RemoteError {
    RemoteError::Status {
        status: error.status.as_u16(),
        code: Some(error.code.as_str().to_string()),
        message: error.message,
    }
}

/// `None` for "not there", the error otherwise.
fn absent_if<T>(result: Result<T, RegistryError>, codes: &[ErrorCode]) -> Result<Option<T>, RemoteError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if codes.contains(&error.code) => Ok(None),
        Err(error) => Err(remote_error(error)),
    }
}

const NO_MANIFEST: &[ErrorCode] = &[ErrorCode::ManifestUnknown, ErrorCode::NameUnknown];

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl ImageStore for LocalRepo {
    fn describe(&self) -> String {
        format!("this registry's {}", self.repo)
    }

    fn registry_repo(&self) -> Option<(&str, &str)> {
        Some((THIS_REGISTRY, self.repo.as_str()))
    }

    async fn manifest(&self, reference: &Reference) -> Result<Option<StoredManifest>, RemoteError> {
        absent_if(self.registry.manifest(&self.repo, reference).await, NO_MANIFEST)
    }

    async fn has_manifest(&self, digest: &Digest) -> Result<bool, RemoteError> {
        Ok(self.manifest(&Reference::Digest(digest.clone())).await?.is_some())
    }

    async fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, RemoteError> {
        let entries = absent_if(self.registry.referrers(&self.repo, digest, None).await, NO_MANIFEST)?;
        Ok(entries
            .unwrap_or_default()
            .iter()
            .filter_map(|entry| Digest::parse(entry["digest"].as_str()?).ok())
            .collect())
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, RemoteError> {
        let record = absent_if(self.registry.blob(&self.repo, digest).await, &[ErrorCode::BlobUnknown])?;
        Ok(record.map(|r| r.size))
    }

    async fn blob(&self, digest: &Digest) -> Result<HttpBody, RemoteError> {
        let record = self.registry.blob(&self.repo, digest).await.map_err(remote_error)?;
        let found = self
            .registry
            .open_blob(digest, &record, None)
            .await
            .map_err(remote_error)?;
        Ok(box_stream(found.body.map_err(|e| HttpError(e.to_string()))))
    }

    async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool, RemoteError> {
        let Some(from) = RepoName::parse(from) else {
            return Ok(false);
        };
        self.registry
            .mount_blob(&self.repo, digest, Some(&from))
            .await
            .map_err(remote_error)
    }

    async fn put_blob(&self, digest: &Digest, _size: u64, body: HttpBody) -> Result<(), RemoteError> {
        let body = box_stream(body.map_err(|e| BodyError::Read(e.0)));
        self.registry
            .upload_whole(&self.repo, digest, body)
            .await
            .map_err(remote_error)
    }

    async fn put_manifest(&self, manifest: &StoredManifest, role: &ManifestRole) -> Result<(), RemoteError> {
        self.registry
            .put_manifest(
                &self.repo,
                &role.reference(&manifest.digest),
                Some(&manifest.media_type),
                manifest.bytes.clone(),
                &[],
            )
            .await
            .map(drop)
            .map_err(remote_error)
    }
}
