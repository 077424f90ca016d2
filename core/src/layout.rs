//! Where everything lives in the store. One layout for every backend, so a
//! bucket written by the native server can be served by the edge Worker and
//! the other way round. See docs/architecture.md for the rationale.
//!
//! ```text
//! blobs/<alg>/<hex>                              blob record: {"size", "object"} (immutable)
//! data/<id>                                      blob bytes, keyed by upload id (immutable)
//! repos/<name>/_layers/<alg>/<hex>               the blob is readable in <name>: {"created_ms"} (empty before)
//! repos/<name>/_manifests/<alg>/<hex>            manifest bytes (immutable)
//! repos/<name>/_tags/<tag>                       tag record: the digest it points to
//! repos/<name>/_referrers/<alg>/<hex>/<alg>/<hex> descriptor of a manifest whose subject is the first digest
//! uploads/<id>/s/<seq>                           upload session state, one new key per change
//! uploads/<id>/t/[g<gen>-]<offset>               upload bytes not yet in a multipart part
//! repos/<name>/_tagged/<alg>/<hex>/<tag>         hint: <tag> was pointed at the manifest (verified on use)
//! repos/<name>/_tagged-all                       marker: every tag of <name> has its hint
//! catalog/<name>/_repo                           marker: the repository exists
//! repos/<name>/_pushed/<alg>/<hex>               when the manifest was last pushed (ms), for untagged expiry
//! repos/<name>/_pulled/<alg>/<hex>               when the manifest was last pulled (ms), written at most once a period per instance
//! gc/run, gc/dry-run                             state of the current collection (see `gc`)
//! gc/journal/<ms>-<id>                           what a manifest push references, published before its checks
//! gc/touched/<alg>/<hex>                         when an existing blob was last reused (ms)
//! gc/doomed/blobs/<alg>/<hex>                    tombstone: the sweep is deleting this blob
//! gc/doomed/repos/<name>/<alg>/<hex>             tombstone: retention is deleting this manifest
//! gc/marks/<run>/blobs/<alg>/<hex>               mark: a kept manifest references the blob
//! gc/marks/<run>/data/<id>                       mark: a live blob record points at the data object
//! gc/marked/<run>                                the run's marking is complete (its marks may be trusted)
//! gc/suspect-data/<id>                           data object with no record, seen by an earlier run
//! gc/last-report                                 what the last collection did
//! events/pending/<target>/<lane>/<ms>-<id>       a delivery of an event not made yet (see `events::outbox`)
//! events/dead/<target>/<lane>/<ms>-<id>          a delivery given up after its last attempt
//! events/leases/<target>/<lane>                  who delivers the lane's events, until when
//! events/backfilled/<target>                     marker: a rule's backfill of existing tags is recorded
//! sync/<name>/pass                               the sync rule's current (or last) pass: progress and lease
//! sync/<name>/last                               what the rule's last finished pass did
//! archive/moves/<alg>/<hex>                     a blob's move to or from the archive store, under way (see `archive`)
//! archive/wanted/<alg>/<hex>                    marker: a pull read the archived blob; the next pass brings it back
//! archive/lease                                  which instance runs the archive pass, until when
//! quota/<id>/usage                               a namespace quota's usage in bytes (see `quota`)
//! quota/<id>/objects/<alg>/<hex>                 marker: the blob or manifest is counted in the quota's usage
//! ```

use crate::digest::Digest;
use crate::names::{RepoName, Tag};

pub fn blob_record(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

pub const BLOB_RECORDS: &str = "blobs/";

pub fn blob_data(upload_id: &str) -> String {
    format!("data/{upload_id}")
}

pub fn repo_prefix(repo: &RepoName) -> String {
    format!("repos/{repo}/")
}

pub fn layer_link(repo: &RepoName, digest: &Digest) -> String {
    format!("repos/{repo}/_layers/{}/{}", digest.algorithm().name(), digest.hex())
}

pub fn manifest(repo: &RepoName, digest: &Digest) -> String {
    format!("repos/{repo}/_manifests/{}/{}", digest.algorithm().name(), digest.hex())
}

pub fn manifests_prefix(repo: &RepoName) -> String {
    format!("repos/{repo}/_manifests/")
}

pub fn tag(repo: &RepoName, tag: &Tag) -> String {
    format!("repos/{repo}/_tags/{tag}")
}

pub fn tags_prefix(repo: &RepoName) -> String {
    format!("repos/{repo}/_tags/")
}

/// A hint that `tag` was pointed at `digest`, written before the tag record,
/// so that a manifest's tags are found without reading every tag record. A
/// tag that moved on leaves its hint behind: hints are checked against the
/// tag record when used.
pub fn tag_hint(repo: &RepoName, digest: &Digest, tag: &Tag) -> String {
    format!("{}{tag}", tag_hints_prefix(repo, digest))
}

pub fn tag_hints_prefix(repo: &RepoName, digest: &Digest) -> String {
    format!("repos/{repo}/_tagged/{}/{}/", digest.algorithm().name(), digest.hex())
}

/// Present once every tag of the repository has its hint (repositories
/// tagged by a pier that wrote none get theirs at the first need).
pub fn tag_hints_complete(repo: &RepoName) -> String {
    format!("repos/{repo}/_tagged-all")
}

pub fn referrers_prefix(repo: &RepoName, subject: &Digest) -> String {
    format!(
        "repos/{repo}/_referrers/{}/{}/",
        subject.algorithm().name(),
        subject.hex()
    )
}

pub fn referrer(repo: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}{}/{}",
        referrers_prefix(repo, subject),
        referrer.algorithm().name(),
        referrer.hex()
    )
}

pub fn upload_prefix(upload_id: &str) -> String {
    format!("uploads/{upload_id}/")
}

/// Where a session's states are: `upload_state` keys sort by number.
pub fn upload_states(upload_id: &str) -> String {
    format!("uploads/{upload_id}/s/")
}

pub fn upload_state(upload_id: &str, seq: u64) -> String {
    format!("uploads/{upload_id}/s/{seq:010}")
}

/// A tail piece starting at `offset`, written by the request that drew
/// `nonce`: requests write tails without claiming the session, so two of
/// them never share a key.
pub fn upload_tail_piece(upload_id: &str, offset: u64, nonce: &str) -> String {
    format!("uploads/{upload_id}/t/{offset:020}-{nonce}")
}

/// A tail piece of an older build, named by its offset and its state's
/// `generation` (generation 0 is the oldest form).
pub fn upload_tail(upload_id: &str, generation: u64, offset: u64) -> String {
    match generation {
        0 => format!("uploads/{upload_id}/t/{offset:020}"),
        g => format!("uploads/{upload_id}/t/g{g:010}-{offset:020}"),
    }
}

pub const CATALOG: &str = "catalog/";

pub fn catalog_entry(repo: &RepoName) -> String {
    format!("catalog/{repo}/_repo")
}

pub fn layers_prefix(repo: &RepoName) -> String {
    format!("repos/{repo}/_layers/")
}

pub fn referrers_root(repo: &RepoName) -> String {
    format!("repos/{repo}/_referrers/")
}

pub fn manifest_pushed(repo: &RepoName, digest: &Digest) -> String {
    format!("repos/{repo}/_pushed/{}/{}", digest.algorithm().name(), digest.hex())
}

pub const ARCHIVE_MOVES: &str = "archive/moves/";
pub const ARCHIVE_WANTED: &str = "archive/wanted/";
pub const ARCHIVE_LEASE: &str = "archive/lease";

pub fn archive_move(digest: &Digest) -> String {
    format!("{ARCHIVE_MOVES}{}/{}", digest.algorithm().name(), digest.hex())
}

pub fn archive_wanted(digest: &Digest) -> String {
    format!("{ARCHIVE_WANTED}{}/{}", digest.algorithm().name(), digest.hex())
}

/// Rewritten at most once a period per instance (`crate::pulls`).
pub fn manifest_pulled(repo: &RepoName, digest: &Digest) -> String {
    format!("repos/{repo}/_pulled/{}/{}", digest.algorithm().name(), digest.hex())
}

pub const UPLOADS: &str = "uploads/";

pub const BLOB_DATA: &str = "data/";

/// Where the state of the current collection lives; a dry run keeps its own
/// so that it never disturbs a real one.
pub fn gc_state(dry_run: bool) -> &'static str {
    if dry_run {
        "gc/dry-run"
    } else {
        "gc/run"
    }
}

/// The state of a pass that only expires idle uploads (the default when no
/// collection is configured).
pub const GC_UPLOADS_STATE: &str = "gc/uploads-run";

pub const GC_REPORT: &str = "gc/last-report";

pub const GC_JOURNAL: &str = "gc/journal/";

pub fn gc_journal_entry(now_ms: u64, id: &str) -> String {
    format!("{GC_JOURNAL}{now_ms:020}-{id}")
}

/// The time in the key of a journal entry.
pub fn gc_journal_time(key: &str) -> Option<u64> {
    key.strip_prefix(GC_JOURNAL)?.split('-').next()?.parse().ok()
}

pub fn gc_touch(digest: &Digest) -> String {
    format!("gc/touched/{}/{}", digest.algorithm().name(), digest.hex())
}

pub fn gc_doomed_blob(digest: &Digest) -> String {
    format!("gc/doomed/blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

pub fn gc_doomed_manifest(repo: &RepoName, digest: &Digest) -> String {
    format!("gc/doomed/repos/{repo}/{}/{}", digest.algorithm().name(), digest.hex())
}

pub fn gc_doomed_tag(repo: &RepoName, tag: &Tag) -> String {
    format!("gc/doomed/tags/{repo}/{tag}")
}

pub fn gc_marks(run: &str) -> String {
    format!("gc/marks/{run}/")
}

/// Blob marks of a run; `<prefix><alg>/<hex>` sorts like `blobs/<alg>/<hex>`.
pub fn gc_blob_marks(run: &str) -> String {
    format!("gc/marks/{run}/blobs/")
}

pub fn gc_blob_mark(run: &str, digest: &Digest) -> String {
    format!("{}{}/{}", gc_blob_marks(run), digest.algorithm().name(), digest.hex())
}

/// Present from the end of a run's marking until its marks are removed: a
/// collector that finds it absent is behind a run another one finished.
pub const GC_MARKED: &str = "gc/marked/";

pub fn gc_marked(run: &str) -> String {
    format!("{GC_MARKED}{run}")
}

pub fn gc_data_marks(run: &str) -> String {
    format!("gc/marks/{run}/data/")
}

/// The state of sync rule `name`'s current pass (or its last, once
/// finished): where it stands, its counts and who holds it (`sync`).
pub fn sync_pass(name: &str) -> String {
    format!("sync/{name}/pass")
}

/// The record of sync rule `name`'s last finished pass.
pub fn sync_last(name: &str) -> String {
    format!("sync/{name}/last")
}

pub const GC_SUSPECT_DATA: &str = "gc/suspect-data/";

pub const EVENTS_PENDING: &str = "events/pending/";

pub const EVENTS_DEAD: &str = "events/dead/";

/// Where the deliveries of one lane (a target and a repository) wait, in
/// the order they were recorded; `dead` for those given up.
pub fn event_lane(dead: bool, target: &str, lane: &str) -> String {
    let root = if dead { EVENTS_DEAD } else { EVENTS_PENDING };
    format!("{root}{target}/{lane}/")
}

pub fn event_delivery(dead: bool, target: &str, lane: &str, now_ms: u64, id: &str) -> String {
    format!("{}{now_ms:013}-{id}", event_lane(dead, target, lane))
}

pub fn event_lease(target: &str, lane: &str) -> String {
    format!("events/leases/{target}/{lane}")
}

pub fn event_backfilled(target: &str) -> String {
    format!("events/backfilled/{target}")
}

/// The repository named by a catalog key.
pub fn repo_of_catalog_entry(key: &str) -> Option<&str> {
    key.strip_prefix(CATALOG)?.strip_suffix("/_repo")
}

/// Whether the bytes under `key` never change once written: blob records, blob
/// data, manifests by digest and layer links (what counts is that a link
/// exists; its time, which a link written again changes, only the collector
/// reads, from the store itself).
/// Such keys may be cached anywhere (KV, Cache API, CDN); they can still be
/// deleted (manifest or blob DELETE, GC), so caches must drop them on delete
/// and may serve a deleted one only for their own staleness window.
/// Everything else (tags, referrers, uploads, catalog) is mutable and must be
/// read from the store itself.
pub fn is_immutable(key: &str) -> bool {
    key.starts_with(BLOB_RECORDS)
        || key.starts_with("data/")
        || is_layer_link(key)
        || (key.starts_with("repos/") && key.contains("/_manifests/"))
}

/// Whether `key` is a repository's link to a blob (`repos/<name>/_layers/...`).
pub fn is_layer_link(key: &str) -> bool {
    key.starts_with("repos/") && key.contains("/_layers/")
}

/// Whether `key` is a tag record (`repos/<name>/_tags/<tag>`).
pub fn is_tag(key: &str) -> bool {
    key.starts_with("repos/") && key.contains("/_tags/")
}

/// `<alg>/<hex>` at the end of a key, as a digest.
pub fn digest_at_end(key: &str) -> Option<Digest> {
    let mut parts = key.rsplitn(3, '/');
    let hex = parts.next()?;
    let alg = parts.next()?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutable_keys_are_the_digest_addressed_ones() {
        let repo = RepoName::parse("a/b").unwrap();
        let tag = Tag::parse("v1").unwrap();
        let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        for key in [
            blob_record(&digest),
            blob_data("x1"),
            manifest(&repo, &digest),
            layer_link(&repo, &digest),
        ] {
            assert!(is_immutable(&key), "{key}");
        }
        for key in [
            self::tag(&repo, &tag),
            referrer(&repo, &digest, &digest),
            upload_state("u1", 1),
            upload_tail("u1", 0, 0),
            upload_tail("u1", 1, 0),
            upload_tail_piece("u1", 0, "n1"),
            catalog_entry(&repo),
        ] {
            assert!(!is_immutable(&key), "{key}");
        }
    }
}
