//! The handshake between collection and the requests that run beside it.
//!
//! Both sides publish before they check, on a strongly consistent store, so in
//! every interleaving at least one of them sees the other (see docs/gc.md):
//!
//! - a manifest push publishes a journal entry naming everything it
//!   references, writes the manifest, then checks that none of it is doomed;
//! - the reuse of an existing blob (upload dedupe, mount) touches the blob,
//!   then checks that it is not doomed;
//! - the collector writes a tombstone for what it wants to delete, then reads
//!   the journal and the touches, and spares whatever they name;
//! - a tag that retention expires is tombstoned, re-read and deleted only if
//!   unchanged; a push of that tag writes it, then checks the tombstone and
//!   re-reads it.
//!
//! A check reads the tombstone before the thing it guards, and the collector
//! deletes the thing before its tombstone, so a check that finds no tombstone
//! finds anything deleted meanwhile already gone.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::layout;
use crate::manifest::Manifest;
use crate::names::{RepoName, Tag};
use crate::platform::Env;
use crate::store::{read_small, PutMode, Store, StoreError, StoreResult};

/// What one manifest push references, published before its checks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JournalEntry {
    pub repo: String,
    /// The pushed manifest and its children (index entries).
    pub manifests: Vec<String>,
    /// Config, layers and other blobs.
    pub blobs: Vec<String>,
}

/// Publishes a push of `digest` (parsed as `parsed`) to `repo`.
pub async fn publish_push(
    store: &dyn Store,
    env: &dyn Env,
    repo: &RepoName,
    digest: &Digest,
    parsed: &Manifest,
) -> StoreResult<()> {
    let entry = JournalEntry {
        repo: repo.to_string(),
        manifests: std::iter::once(digest)
            .chain(parsed.children.iter().map(|d| &d.digest))
            .map(|d| d.as_str().to_string())
            .collect(),
        blobs: parsed.blobs.iter().map(|d| d.digest.as_str().to_string()).collect(),
    };
    let key = layout::gc_journal_entry(env.now_millis(), &env.random_id());
    let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Invalid(format!("a journal entry: {e}")))?;
    store.put(&key, bytes.into(), PutMode::Create).await?;
    Ok(())
}

/// Records that an existing blob is being reused now.
pub async fn touch(store: &dyn Store, env: &dyn Env, digest: &Digest) -> StoreResult<()> {
    let now = Bytes::from(env.now_millis().to_string());
    store.put(&layout::gc_touch(digest), now, PutMode::Overwrite).await?;
    Ok(())
}

/// When the blob was last reused, 0 if never.
pub async fn touched_ms(store: &dyn Store, digest: &Digest) -> StoreResult<u64> {
    Ok(read_small(store, &layout::gc_touch(digest))
        .await?
        .and_then(|(bytes, _)| std::str::from_utf8(&bytes).ok()?.trim().parse().ok())
        .unwrap_or(0))
}

/// Whether a collection is deleting the blob.
pub async fn blob_doomed(store: &dyn Store, digest: &Digest) -> StoreResult<bool> {
    Ok(store.head(&layout::gc_doomed_blob(digest)).await?.is_some())
}

/// Whether a collection is deleting the manifest.
pub async fn manifest_doomed(store: &dyn Store, repo: &RepoName, digest: &Digest) -> StoreResult<bool> {
    Ok(store.head(&layout::gc_doomed_manifest(repo, digest)).await?.is_some())
}

/// Whether a collection is deleting the tag (retention).
pub async fn tag_doomed(store: &dyn Store, repo: &RepoName, tag: &Tag) -> StoreResult<bool> {
    Ok(store.head(&layout::gc_doomed_tag(repo, tag)).await?.is_some())
}
