//! Phases 3 to 5: delete unmarked blobs past the grace window, data objects no
//! record points at, and repository links whose blob is gone. Each step takes
//! one page of the sorted object listing and only the marks in the same key
//! range, so memory stays at one page whatever the number of blobs.

use bytes::Bytes;

use super::marks::{page, suffixes_in_range};
use super::{Gc, Phase, RunState};
use crate::digest::Digest;
use crate::error::Result;
use crate::handshake::touched_ms;
use crate::layout;
use crate::names::RepoName;
use crate::records::{BlobRecord, LayerLink};
use crate::store::{list_all, read_small, PutMode};

impl Gc {
    pub(super) async fn sweep_blobs(&mut self, state: &mut RunState) -> Result<Option<Phase>> {
        let store = self.store.clone();
        let store = store.as_ref();
        let listed = page(store, layout::BLOB_RECORDS, state.cursor.as_deref(), self.page_size()).await?;
        let Some(last) = listed.suffixes.last().cloned() else {
            return Ok(Some(Phase::Orphans));
        };
        let marked = suffixes_in_range(
            store,
            &layout::gc_blob_marks(&state.run),
            state.cursor.as_deref(),
            &last,
        )
        .await?;
        if !self.marks_trusted(state).await? {
            return Ok(None);
        }
        let now = self.now();
        let mut candidates = Vec::new();
        for suffix in &listed.suffixes {
            state.report.blobs_examined += 1;
            let key = format!("{}{suffix}", layout::BLOB_RECORDS);
            let Some(digest) = layout::digest_at_end(&key) else {
                continue;
            };
            let Some(record) = self.record(&key).await? else {
                continue;
            };
            if marked.contains(suffix) {
                self.mark_data(state, &record).await?;
            } else if now.saturating_sub(record.created_ms.max(touched_ms(store, &digest).await?)) < self.grace_ms() {
                state.report.blobs_in_grace += 1;
                self.mark_data(state, &record).await?;
            } else {
                candidates.push((digest, record));
            }
        }
        if self.dry_run {
            for (digest, record) in candidates {
                self.count_blob(state, &digest, &record);
            }
        } else if !candidates.is_empty() {
            self.delete_blobs(state, candidates).await?;
        }
        state.cursor = Some(last);
        Ok((!listed.more).then_some(Phase::Orphans))
    }

    /// Tombstones first, then the touches and the journal: a reuse or push
    /// that did not see the tombstone is seen here (see `protocol`).
    async fn delete_blobs(&mut self, state: &mut RunState, candidates: Vec<(Digest, BlobRecord)>) -> Result<()> {
        let store = self.store.clone();
        let store = store.as_ref();
        for (digest, _) in &candidates {
            store
                .put(&layout::gc_doomed_blob(digest), Bytes::new(), PutMode::Overwrite)
                .await?;
        }
        let journaled = self.journaled(state.started_ms).await?;
        let now = self.now();
        for (digest, record) in candidates {
            let reused = now.saturating_sub(touched_ms(store, &digest).await?) < self.grace_ms();
            if reused || journaled.contains(digest.as_str()) {
                state.report.blobs_spared_by_push += 1;
                self.mark_data(state, &record).await?;
            } else {
                store.delete(&layout::blob_record(&digest)).await?;
                match (&self.archive, record.archived) {
                    (Some(archive), true) => archive.delete(&record.object).await?,
                    // Without the archive store its bytes stay there (a leak,
                    // never a loss); the report lists the blob as removed.
                    (None, true) => {}
                    (_, false) => store.delete(&record.object).await?,
                }
                store.delete(&layout::gc_touch(&digest)).await?;
                self.count_blob(state, &digest, &record);
            }
            store.delete(&layout::gc_doomed_blob(&digest)).await?;
        }
        Ok(())
    }

    fn count_blob(&self, state: &mut RunState, digest: &Digest, record: &BlobRecord) {
        state.report.blobs_deleted += 1;
        state.report.blob_bytes_freed += record.size;
        state.report.list(format!("blob {digest} ({} bytes)", record.size));
    }

    async fn record(&self, key: &str) -> Result<Option<BlobRecord>> {
        let Some((bytes, _)) = read_small(self.store.as_ref(), key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| super::corrupt("blob record", e))
    }

    /// Marks the data object of a live record, so the orphan phase keeps it.
    async fn mark_data(&self, state: &RunState, record: &BlobRecord) -> Result<()> {
        let mark = format!("{}{}", layout::gc_marks(&state.run), record.object);
        self.store.put(&mark, Bytes::new(), PutMode::Overwrite).await?;
        Ok(())
    }

    /// Data objects no live record points at. A record may be created just
    /// after the sweep passed its key, so an unmarked data object is first
    /// only suspected; a later run, whose sweep saw every record older than
    /// the suspicion, deletes it if it is still unmarked.
    pub(super) async fn sweep_orphan_data(&mut self, state: &mut RunState) -> Result<Option<Phase>> {
        let store = self.store.clone();
        let store = store.as_ref();
        let listed = page(store, layout::BLOB_DATA, state.cursor.as_deref(), self.page_size()).await?;
        let Some(last) = listed.suffixes.last().cloned() else {
            return Ok(Some(Phase::Links));
        };
        let after = state.cursor.as_deref();
        let marked = suffixes_in_range(store, &layout::gc_data_marks(&state.run), after, &last).await?;
        let suspects = suffixes_in_range(store, layout::GC_SUSPECT_DATA, after, &last).await?;
        if !self.marks_trusted(state).await? {
            return Ok(None);
        }
        for id in &listed.suffixes {
            let suspect_key = format!("{}{id}", layout::GC_SUSPECT_DATA);
            if marked.contains(id) {
                if suspects.contains(id) && !self.dry_run {
                    store.delete(&suspect_key).await?;
                }
                continue;
            }
            let session = store.list(&layout::upload_prefix(id), None, 1).await?;
            if !session.keys.is_empty() {
                continue; // an upload still writing (or finishing) it
            }
            let suspected_ms = match suspects.contains(id) {
                true => read_small(store, &suspect_key)
                    .await?
                    .and_then(|(bytes, _)| std::str::from_utf8(&bytes).ok()?.parse::<u64>().ok()),
                false => None,
            };
            let data_key = layout::blob_data(id);
            match suspected_ms {
                Some(since) if since < state.started_ms && self.now().saturating_sub(since) >= self.grace_ms() => {
                    let size = store.head(&data_key).await?.map_or(0, |meta| meta.size);
                    state.report.orphan_data_deleted += 1;
                    state.report.orphan_bytes_freed += size;
                    state.report.list(format!("data {id} ({size} bytes)"));
                    if !self.dry_run {
                        store.delete(&data_key).await?;
                        store.delete(&suspect_key).await?;
                    }
                }
                Some(_) => {}
                None if !self.dry_run => {
                    let now = Bytes::from(self.now().to_string());
                    store.put(&suspect_key, now, PutMode::Overwrite).await?;
                }
                None => {}
            }
        }
        state.cursor = Some(last);
        Ok((!listed.more).then_some(Phase::Links))
    }

    /// One repository per step: links to blobs whose record is gone.
    pub(super) async fn remove_dangling_links(&mut self, state: &mut RunState) -> Result<Option<Phase>> {
        let store = self.store.clone();
        let store = store.as_ref();
        let listed = page(store, layout::CATALOG, state.cursor.as_deref(), 1).await?;
        let Some(suffix) = listed.suffixes.first().cloned() else {
            return Ok(Some(Phase::Quotas));
        };
        if let Some(repo) = suffix.strip_suffix("/_repo").and_then(RepoName::parse) {
            for key in list_all(store, &layout::layers_prefix(&repo)).await? {
                let Some(digest) = layout::digest_at_end(&key) else {
                    continue;
                };
                let record = layout::blob_record(&digest);
                if store.head(&record).await?.is_some() {
                    continue;
                }
                // An upload writes a new link at the same time as its record:
                // a young link may still be waiting for it.
                let Some((link, _)) = read_small(store, &key).await? else {
                    continue;
                };
                if self.now().saturating_sub(LayerLink::parse(&link).created_ms) < self.grace_ms() {
                    continue;
                }
                if self.dry_run {
                    state.report.links_deleted += 1;
                    continue;
                }
                store.delete(&key).await?;
                // An upload of the same content may have recreated the record
                // and its link between the check and the delete (a link it
                // found there already is written again after the record): put
                // the link back, so a manifest pushed on the strength of it
                // keeps its blob.
                if store.head(&record).await?.is_some() {
                    let link = LayerLink { created_ms: self.now() };
                    store.put(&key, link.to_bytes(), PutMode::Overwrite).await?;
                } else {
                    state.report.links_deleted += 1;
                }
            }
        }
        state.cursor = Some(suffix);
        Ok((!listed.more).then_some(Phase::Quotas))
    }
}
