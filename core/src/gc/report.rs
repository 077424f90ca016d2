//! What a collection did (or, in a dry run, would do), kept in the run state
//! while it goes and written to `gc/last-report` when it ends, for the
//! operator (`pier gc`) and the admin report route.

use serde::{Deserialize, Serialize};

use crate::quota::Usage;

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
    /// The first [`MAX_LISTED`] things removed, as `kind name (why)`.
    pub removed: Vec<String>,
    /// Each quota's usage as recounted (a dry run writes none of it).
    #[serde(default)]
    pub quotas: Vec<Usage>,
}

impl Report {
    pub fn bytes_freed(&self) -> u64 {
        self.blob_bytes_freed + self.orphan_bytes_freed
    }

    /// The report in one line, as every shell logs or prints it.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would remove" } else { "removed" };
        let seconds = self.duration_ms as f64 / 1000.0;
        format!(
            "gc {verb}: {} blobs ({} bytes), {} orphaned data objects ({} bytes), {} manifests, {} tags, \
             {} referrer entries, {} links, {} expired uploads; examined {} blobs in {} repositories in {seconds:.2}s \
             ({} steps); {} blobs kept by the grace window, {} spared by pushes under way",
            self.blobs_deleted,
            self.blob_bytes_freed,
            self.orphan_data_deleted,
            self.orphan_bytes_freed,
            self.manifests_deleted,
            self.tags_deleted,
            self.referrers_deleted,
            self.links_deleted,
            self.uploads_expired,
            self.blobs_examined,
            self.repos_examined,
            self.steps,
            self.blobs_in_grace,
            self.blobs_spared_by_push,
        )
    }

    pub(super) fn list(&mut self, what: String) {
        if self.removed.len() < MAX_LISTED {
            self.removed.push(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[test]
    fn the_summary_says_whether_anything_was_removed() {
        let report = Report {
            dry_run: true,
            blobs_deleted: 3,
            blob_bytes_freed: 300,
            duration_ms: 1500,
            ..Report::default()
        };
        let summary = report.summary();
        assert!(
            summary.starts_with("gc would remove: 3 blobs (300 bytes),"),
            "{summary}"
        );
        assert!(summary.contains("in 1.50s"), "{summary}");
        let applied = Report {
            dry_run: false,
            ..report
        }
        .summary();
        assert!(applied.starts_with("gc removed: 3 blobs"), "{applied}");
    }
}
