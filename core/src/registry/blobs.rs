//! Blobs of a repository: records, reads, mounts and deletes, and the
//! reuse of a stored blob that races with garbage collection.

use std::ops::Range;

use bytes::Bytes;
use serde_json::json;

use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::handshake;
use crate::layout;
use crate::names::RepoName;
use crate::quota::Added;
use crate::records::{BlobRecord, LayerLink};
use crate::store::{read_small, GetResult, PutMode, Store, StoreError};

use super::Registry;

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

impl Registry {
    async fn blob_record(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        read_blob_record(self.store(), digest).await
    }

    /// The blob's record as the backend holds it now, not as cached.
    async fn fresh_record(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        read_blob_record(self.origin(), digest).await
    }

    pub(super) async fn is_linked(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
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
        if let Some(found) = self.read_bytes(digest, record, range.clone()).await? {
            return Ok(found);
        }
        // The record came from the cache, and a collection has since deleted
        // it (an upload may have written a new one, pointing at new bytes),
        // or the archive moved the bytes to its other store.
        let record = self.fresh_record(digest).await?.ok_or_else(|| blob_unknown(digest))?;
        self.read_bytes(digest, &record, range)
            .await?
            .ok_or_else(|| blob_unknown(digest))
    }

    /// The bytes where `record` says they are: the main store, or the
    /// archive's (then, where configured, the next pass is asked to bring
    /// them back; a failure to ask does not fail the read).
    async fn read_bytes(
        &self,
        digest: &Digest,
        record: &BlobRecord,
        range: Option<Range<u64>>,
    ) -> Result<Option<GetResult>> {
        if !record.archived {
            return Ok(self.store.get(&record.object, range).await?);
        }
        let Some(archive) = &self.archive else {
            return Err(RegistryError::new(
                ErrorCode::Unavailable,
                format!(
                    "blob {digest} is in the archive store, which this deployment is not configured with ([archive])"
                ),
            ));
        };
        let found = archive.store.get(&record.object, range).await?;
        if found.is_some() && archive.promote_on_pull {
            // A read first: many pulls of one archived blob make one write
            // (a failed conditional write is billed like a write).
            let marker = layout::archive_wanted(digest);
            if let Ok(None) = self.origin.head(&marker).await {
                let _ = self.origin.put(&marker, Bytes::new(), PutMode::Create).await;
            }
        }
        Ok(found)
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
        handshake::touch(self.origin(), self.env.as_ref(), digest).await?;
        if handshake::blob_doomed(self.origin(), digest).await? {
            return Ok(false);
        }
        let Some(record) = self.fresh_record(digest).await? else {
            return Ok(false);
        };
        self.link_blob(repo, digest, record.size).await?;
        Ok(true)
    }

    /// Makes a stored blob readable in `repo`, if its quotas have room
    /// (checked before the link, counted after it: `crate::quota`).
    pub(super) async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        self.write_link(repo, digest, size, PutMode::Overwrite).await.map(drop)
    }

    /// [`link_blob`](Self::link_blob) in `mode`; `false` when a create found
    /// a link there already.
    pub(super) async fn write_link(&self, repo: &RepoName, digest: &Digest, size: u64, mode: PutMode) -> Result<bool> {
        let quotas = &self.options.quotas;
        let counted = quotas.cover(repo);
        let added = [Added { digest, size }];
        if counted {
            quotas.admit(self.origin(), repo, &added).await?;
        }
        let link = LayerLink {
            created_ms: self.env.now_millis(),
        };
        let written = match self
            .origin
            .put(&layout::layer_link(repo, digest), link.to_bytes(), mode)
            .await
        {
            Ok(_) => true,
            Err(StoreError::AlreadyExists) => false,
            Err(e) => return Err(e.into()),
        };
        if counted {
            quotas.count(self.origin(), repo, &added).await?;
        }
        Ok(written)
    }
}
