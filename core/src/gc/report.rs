//! What a collection did (or, in a dry run, would do), kept in the run state
//! while it goes and written to `gc/last-report` when it ends, for the
//! operator (`pier gc`) and the admin report route.

use serde::{Deserialize, Serialize};

/// Most removals listed by name in a report; counts and bytes are always whole.
pub const MAX_LISTED: usize = 1000;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub run: String,
    pub dry_run: bool,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub duration_ms: u64,
    pub steps: u64,
    pub uploads_expired: u64,
    pub repos_examined: u64,
    pub tags_deleted: u64,
    pub manifests_deleted: u64,
    pub referrers_deleted: u64,
    pub blobs_examined: u64,
    pub blobs_deleted: u64,
    pub blob_bytes_freed: u64,
    /// Unreferenced blobs spared because they are younger than the grace window.
    pub blobs_in_grace: u64,
    /// Unreferenced blobs spared because a push or reuse named them mid-run.
    pub blobs_spared_by_push: u64,
    pub orphan_data_deleted: u64,
    pub orphan_bytes_freed: u64,
    pub links_deleted: u64,
    /// The first [`MAX_LISTED`] things removed, as `kind name`.
    pub removed: Vec<String>,
}

impl Report {
    pub fn bytes_freed(&self) -> u64 {
        self.blob_bytes_freed + self.orphan_bytes_freed
    }

    pub(super) fn list(&mut self, what: String) {
        if self.removed.len() < MAX_LISTED {
            self.removed.push(what);
        }
    }
}
