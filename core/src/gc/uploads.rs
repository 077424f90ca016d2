//! Phase 1: upload sessions idle longer than the expiry are removed with their
//! tails, and their multipart writes aborted (so R2 and S3 free the parts);
//! the states of sessions that ended that long ago go too. A session whose id
//! is young keeps its states, ended by a closed marker (see `crate::upload_id`).

use super::{Gc, Phase, RunState};
use crate::error::Result;
use crate::layout;
use crate::upload::{end_idle, load_state, remove_upload_keys, SavedState};
use crate::upload_id;

impl Gc {
    pub(super) async fn expire_uploads(&self, state: &mut RunState) -> Result<Option<Phase>> {
        let page = super::marks::page(
            self.store.as_ref(),
            layout::UPLOADS,
            state.cursor.as_deref(),
            self.page_size(),
        )
        .await?;
        let expiry_ms = self.config.upload_expiry_secs.saturating_mul(1000);
        let now = self.now();
        // A session's state keys (`<id>/s/...`) sort before its tails (`<id>/t/...`).
        let mut seen = None;
        for suffix in &page.suffixes {
            let Some(id) = suffix.split('/').next() else { continue };
            if seen == Some(id) {
                continue;
            }
            seen = Some(id);
            if upload_id::too_young_to_expire(id, expiry_ms, now) {
                continue;
            }
            // A young id's states stay even past expiry: without them a
            // request would take the session for one nothing was sent to.
            let removable = upload_id::states_removable(id, now);
            let upload = match load_state(self.store.as_ref(), id).await? {
                SavedState::Saved(_, upload) if now.saturating_sub(upload.updated_ms) <= expiry_ms => continue,
                SavedState::Saved(seq, upload) => Some((seq, upload)),
                // Torn by a crash: no client can resume it.
                SavedState::Torn if removable => None,
                SavedState::Torn => continue,
                // Ended: its states stay until expiry, so that no request
                // holding an older view can bring it back (see `crate::upload`).
                SavedState::Closed(Some(at_ms)) if now.saturating_sub(at_ms) <= expiry_ms => continue,
                // Its bytes went when it ended; an older build's marker is its cleanup's.
                SavedState::Closed(_) => {
                    if removable && !self.dry_run {
                        remove_upload_keys(self.store.as_ref(), id).await;
                    }
                    continue;
                }
                SavedState::Missing => continue,
            };
            state.report.uploads_expired += 1;
            match upload {
                Some(_) => state.report.list(format!("upload {id}")),
                None => state
                    .report
                    .list(format!("upload {id} (its state was torn by a crash)")),
            }
            if self.dry_run {
                continue;
            }
            let Some((seq, upload)) = upload else {
                remove_upload_keys(self.store.as_ref(), id).await;
                continue;
            };
            if !removable && !end_idle(self.store.as_ref(), id, seq, &upload, now).await? {
                continue; // written to meanwhile
            }
            if let Some(multipart) = &upload.multipart {
                self.store.abort_multipart(&layout::blob_data(id), multipart).await?;
            }
            if removable {
                remove_upload_keys(self.store.as_ref(), id).await;
            }
        }
        state.cursor = page.suffixes.last().cloned().or(state.cursor.take());
        Ok((!page.more).then_some(Phase::Repos))
    }
}
