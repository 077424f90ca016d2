//! A pass's progress in the store, so that a pass outlives the process (or
//! the cron invocation) that started it. `sync/<name>/pass` holds the
//! current pass, or the last one once finished: the repositories it
//! resolved, how many are done and the last tag done in the next one, its
//! counts, and a lease (holder and expiry). Every write of it is
//! conditional (`Create` for the first, `Update(etag)` after), so of two
//! instances only one holds a pass at a time and the other one learns it
//! lost the lease at its next save. `sync/<name>/last` keeps the record of
//! the last finished pass for people and the scheduler.
//!
//! Whether a pass may be taken and whether a new one is due are pure
//! functions of the record and the clock ([`decide`]), tested here.

use serde::{Deserialize, Serialize};

/// Errors kept in a record (the counts say how many there were).
pub const MAX_ERRORS: usize = 20;

/// How long a lease lasts without a save: a holder saves (and renews it)
/// after a tag once its last save is [`super::pass::SAVE_EVERY_MS`] old, so
/// only a dead holder, or one copying one very large image, lets it lapse
/// (and then the other redoes idempotent work).
pub const LEASE_MS: u64 = 60_000;

/// What a pass did so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Counts {
    pub repositories: u64,
    /// Repositories whose tags could not be listed (or named here).
    pub repositories_failed: u64,
    pub tags_copied: u64,
    pub tags_unchanged: u64,
    pub tags_deleted: u64,
    pub tags_failed: u64,
    /// Referrers of unchanged tags that were new upstream.
    pub referrers_copied: u64,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
}

/// A pass of one rule, as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PassRecord {
    /// Identifies the pass.
    pub pass: String,
    /// The rule's fingerprint when the pass began.
    pub rule: String,
    pub started_ms: u64,
    /// Set once the pass ended.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// The upstream repositories the pass covers, resolved when it began.
    pub repositories: Vec<String>,
    /// Repositories before this index are done.
    pub next_repository: usize,
    /// Tags of `repositories[next_repository]` up to this one (in byte
    /// order) are done.
    #[serde(default)]
    pub tag_cursor: Option<String>,
    /// How many runs (processes, cron invocations) worked on the pass.
    pub runs: u64,
    pub counts: Counts,
    /// The first [`MAX_ERRORS`] errors.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Who works on it now, until `lease_until_ms`.
    #[serde(default)]
    pub holder: Option<String>,
    #[serde(default)]
    pub lease_until_ms: u64,
}

impl PassRecord {
    pub fn new(pass: String, rule: String, started_ms: u64, repositories: Vec<String>) -> PassRecord {
        PassRecord {
            pass,
            rule,
            started_ms,
            finished_ms: None,
            repositories,
            next_repository: 0,
            tag_cursor: None,
            runs: 0,
            counts: Counts::default(),
            errors: Vec::new(),
            holder: None,
            lease_until_ms: 0,
        }
    }

    /// Whether anything failed: a tag, or a repository's listing.
    pub fn failed(&self) -> bool {
        self.counts.tags_failed > 0 || self.counts.repositories_failed > 0
    }

    /// Keeps an error (the first few; all are counted elsewhere).
    pub fn note_error(&mut self, error: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(error);
        }
    }

    /// One line: what the pass did.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "pass {}: {} of {} repositories ({} failed), {} tags copied, {} unchanged, {} deleted, {} failed, \
             {} referrers added, {} blobs ({} bytes) copied, {} runs",
            self.pass,
            c.repositories,
            self.repositories.len(),
            c.repositories_failed,
            c.tags_copied,
            c.tags_unchanged,
            c.tags_deleted,
            c.tags_failed,
            c.referrers_copied,
            c.blobs_copied,
            c.bytes_copied,
            self.runs
        )
    }
}

/// What a runner may do with a rule's stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start a new pass (none yet, or the last one finished and a new one is due).
    Start,
    /// Take the unfinished pass over and go on with it.
    Resume,
    /// Another runner holds the unfinished pass.
    Busy { holder: String, until_ms: u64 },
    /// The last pass finished; the next is due then (never, for an on-demand rule).
    NotDue { next_ms: Option<u64> },
}

/// What the runner `me` may do with `record` at `now_ms`: `by_hand` starts
/// a pass whenever none is under way; a schedule every `interval_ms` after
/// the last pass ended (0: never). A lease held by another runner is
/// respected until it expires, or not at all on a `single_process` store
/// (whose other runners are dead: the store is locked by this process). A
/// pass begun under another `fingerprint` of the rule is not resumed.
pub fn decide(
    record: Option<&PassRecord>,
    me: &str,
    now_ms: u64,
    interval_ms: u64,
    by_hand: bool,
    single_process: bool,
    fingerprint: &str,
) -> Decision {
    let Some(record) = record else {
        return match by_hand || interval_ms > 0 {
            true => Decision::Start,
            false => Decision::NotDue { next_ms: None },
        };
    };
    match record.finished_ms {
        None if record.rule != fingerprint => Decision::Start,
        None => match &record.holder {
            Some(holder) if holder != me && record.lease_until_ms > now_ms && !single_process => Decision::Busy {
                holder: holder.clone(),
                until_ms: record.lease_until_ms,
            },
            _ => Decision::Resume,
        },
        Some(_) if by_hand => Decision::Start,
        Some(_) if interval_ms == 0 => Decision::NotDue { next_ms: None },
        Some(finished) => {
            let next_ms = finished.saturating_add(interval_ms);
            match now_ms >= next_ms {
                true => Decision::Start,
                false => Decision::NotDue { next_ms: Some(next_ms) },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(finished_ms: Option<u64>, holder: Option<&str>, lease_until_ms: u64) -> PassRecord {
        PassRecord {
            finished_ms,
            holder: holder.map(str::to_string),
            lease_until_ms,
            ..PassRecord::new("p".into(), "f".into(), 0, vec!["a".into()])
        }
    }

    #[test]
    fn a_first_pass_starts_when_scheduled_or_asked() {
        assert_eq!(decide(None, "me", 0, 1000, false, false, "f"), Decision::Start);
        assert_eq!(decide(None, "me", 0, 0, true, false, "f"), Decision::Start);
        assert_eq!(
            decide(None, "me", 0, 0, false, false, "f"),
            Decision::NotDue { next_ms: None }
        );
    }

    #[test]
    fn an_unfinished_pass_is_resumed_unless_someone_live_holds_it() {
        let released = record(None, None, 0);
        assert_eq!(decide(Some(&released), "me", 5, 0, false, false, "f"), Decision::Resume);
        let held = record(None, Some("other"), 100);
        assert_eq!(
            decide(Some(&held), "me", 50, 0, true, false, "f"),
            Decision::Busy {
                holder: "other".into(),
                until_ms: 100
            }
        );
        assert_eq!(
            decide(Some(&held), "me", 100, 0, true, false, "f"),
            Decision::Resume,
            "expired"
        );
        assert_eq!(
            decide(Some(&held), "me", 50, 0, true, true, "f"),
            Decision::Resume,
            "dead on a locked store"
        );
        assert_eq!(
            decide(Some(&held), "other", 50, 0, true, false, "f"),
            Decision::Resume,
            "its own"
        );
        assert_eq!(
            decide(Some(&held), "me", 50, 0, true, true, "g"),
            Decision::Start,
            "another rule"
        );
    }

    #[test]
    fn a_finished_pass_is_followed_after_the_interval_or_by_hand() {
        let done = record(Some(1000), None, 0);
        assert_eq!(
            decide(Some(&done), "me", 1500, 1000, false, false, "f"),
            Decision::NotDue { next_ms: Some(2000) }
        );
        assert_eq!(
            decide(Some(&done), "me", 2000, 1000, false, false, "f"),
            Decision::Start
        );
        assert_eq!(
            decide(Some(&done), "me", 9000, 0, false, false, "f"),
            Decision::NotDue { next_ms: None }
        );
        assert_eq!(decide(Some(&done), "me", 1001, 0, true, false, "f"), Decision::Start);
    }

    #[test]
    fn errors_are_bounded_and_records_read_back() {
        let mut pass = record(None, None, 0);
        for n in 0..50 {
            pass.note_error(format!("e{n}"));
        }
        assert_eq!(pass.errors.len(), MAX_ERRORS);
        let text = serde_json::to_string(&pass).unwrap();
        assert_eq!(serde_json::from_str::<PassRecord>(&text).unwrap(), pass);
        assert!(pass.summary().contains("0 of 1 repositories (0 failed)"));
    }
}
