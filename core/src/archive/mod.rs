//! The archive tier: blobs of images nobody pulls move to a second, cheaper
//! store and stay pullable from there.
//!
//! The archive is a store of its own (natively any backend `storage_url`
//! names, e.g. a bucket whose objects a lifecycle rule keeps in S3
//! Glacier Instant Retrieval; on the Worker a second R2 bucket whose
//! default storage class is Infrequent Access), so every backend pier runs
//! on can hold one. Only blob bytes move: records, manifests and tags stay
//! in the main store, and a blob record's `archived` flag says which store
//! holds its bytes under the same data key. A pull of an archived blob reads
//! the archive (slower and billed per read there) and, with
//! `promote_on_pull`, asks the next pass to bring it back.
//!
//! A pass ([`Archiver::run`]), under a lease so that one instance moves at a
//! time: finish the moves a crash or a deadline left (`mover`), bring back
//! what pulls asked for, then apply the `[[archive.rules]]`: in each
//! repository a rule covers, the blobs of the tagged images it selects
//! (tags matching `tags`, not pulled for `unpulled_for_days`) that no other
//! tagged image of the repository uses go out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::gc::{keep_closure, read_nodes, read_tags};
use crate::glob;
use crate::layout;
use crate::names::RepoName;
use crate::platform::Env;
use crate::records::BlobRecord;
use crate::retention;
use crate::store::{list_all, read_small, PutMode, Store, StoreError};

pub mod mover;

pub use mover::{Direction, Moved};

/// The `[archive]` table's rules and behaviour (the Worker's `PIER_ARCHIVE`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Which images' blobs go to the archive.
    #[serde(default)]
    pub rules: Vec<ArchiveRule>,
    /// A pull of an archived blob asks the next pass to bring it back.
    #[serde(default = "yes")]
    pub promote_on_pull: bool,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            rules: Vec::new(),
            promote_on_pull: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// One `[[archive.rules]]` table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRule {
    /// Repositories the rule covers, e.g. `prod/**`.
    pub namespace: String,
    /// Tags it considers; every tag by default.
    #[serde(default = "every_tag")]
    pub tags: String,
    /// Archive those not pulled for D days (counted from the push when never
    /// pulled); without it, every matching tag's image goes now.
    #[serde(default, deserialize_with = "retention::days")]
    pub unpulled_for_days: Option<f64>,
}

fn every_tag() -> String {
    "*".into()
}

impl ArchiveConfig {
    /// Checks the rules' globs and that a rule without a day count names
    /// tags (archiving every tag of a namespace at once is not a rule).
    pub fn check(&self) -> std::result::Result<(), String> {
        for rule in &self.rules {
            glob::Glob::new(&rule.namespace).map_err(|e| format!("archive rule {:?}: {e}", rule.namespace))?;
            glob::Glob::new(&rule.tags).map_err(|e| format!("archive rule {:?} tags: {e}", rule.namespace))?;
            if rule.unpulled_for_days.is_none() && rule.tags == "*" {
                return Err(format!(
                    "archive rule {:?}: say which images go: unpulled_for_days, or a tags glob narrower than \"*\"",
                    rule.namespace
                ));
            }
        }
        Ok(())
    }
}

/// Most a lease lasts without renewal; a pass renews it before each blob.
/// It only saves duplicate work: two movers on one blob are safe
/// (`mover::abandon`), so a blob longer to copy than this may be moved by two
/// instances at once, and an instance killed holds the others off this long.
const LEASE_MS: u64 = 30 * 1000;

#[derive(Serialize, Deserialize)]
struct Lease {
    holder: String,
    until_ms: u64,
}

/// What a pass did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PassReport {
    pub dry_run: bool,
    /// Another instance holds the lease: nothing was done.
    pub busy: bool,
    /// Moves left by a crash or a deadline, finished.
    pub resumed: u64,
    pub moved_out: u64,
    pub bytes_out: u64,
    pub moved_in: u64,
    pub bytes_in: u64,
    /// Moves whose blob went or changed meanwhile.
    pub abandoned: u64,
    /// The deadline came before the pass's end; the next goes on.
    pub unfinished: bool,
    /// Each image selected and each blob moved, as `kind name (why)`.
    pub listed: Vec<String>,
}

impl PassReport {
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would move" } else { "moved" };
        format!(
            "archive {verb}: {} blobs out ({} bytes), {} blobs back ({} bytes); {} interrupted moves finished, \
             {} abandoned{}",
            self.moved_out,
            self.bytes_out,
            self.moved_in,
            self.bytes_in,
            self.resumed,
            self.abandoned,
            if self.unfinished {
                "; unfinished, the next pass goes on"
            } else {
                ""
            }
        )
    }
}

/// What the archive holds, for `pier archive status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub archived_blobs: u64,
    pub archived_bytes: u64,
    /// Moves under way (or left by a crash).
    pub moves_pending: u64,
    /// Blobs pulls asked back.
    pub wanted: u64,
}

/// What `Archiver::verify` found: every blob's bytes where its record says,
/// and nowhere else unless a move under way explains it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Verified {
    pub blobs: u64,
    pub archived: u64,
    /// Blobs whose bytes are not (whole) where their record says.
    pub missing: Vec<String>,
    /// Data objects in a store their record does not name, with no move
    /// under way to explain them (or in the archive with no record at all).
    pub strays: Vec<String>,
}

/// Moves blobs between a registry's main store and its archive.
pub struct Archiver {
    config: ArchiveConfig,
    /// The main store as it is (no cache): records must be read fresh.
    main: Arc<dyn Store>,
    archive: Arc<dyn Store>,
    env: Arc<dyn Env>,
    holder: String,
}

impl Archiver {
    pub fn new(config: ArchiveConfig, main: Arc<dyn Store>, archive: Arc<dyn Store>, env: Arc<dyn Env>) -> Archiver {
        let holder = env.random_id();
        Archiver {
            config,
            main,
            archive,
            env,
            holder,
        }
    }

    fn stores(&self) -> mover::Stores<'_> {
        mover::Stores {
            main: self.main.as_ref(),
            archive: self.archive.as_ref(),
        }
    }

    fn now(&self) -> u64 {
        self.env.now_millis()
    }

    /// Takes or renews the pass's lease; `false` when another holds it.
    async fn lease(&self) -> Result<bool> {
        let key = layout::ARCHIVE_LEASE;
        let now = self.now();
        let mode = match read_small(self.main.as_ref(), key).await? {
            None => PutMode::Create,
            Some((bytes, meta)) => {
                let lease: Option<Lease> = serde_json::from_slice(&bytes).ok();
                // On a store one process owns, another holder is a dead process.
                let shared = !self.main.capabilities().single_process;
                match lease {
                    Some(lease) if shared && lease.holder != self.holder && lease.until_ms > now => return Ok(false),
                    _ => PutMode::Update(meta.etag),
                }
            }
        };
        let lease = Lease {
            holder: self.holder.clone(),
            until_ms: now + LEASE_MS,
        };
        let bytes = serde_json::to_vec(&lease).map_err(|e| RegistryError::unserializable("an archive lease", e))?;
        match self.main.put(key, bytes.into(), mode).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists | StoreError::PreconditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self) -> Result<()> {
        self.main.delete(layout::ARCHIVE_LEASE).await?;
        Ok(())
    }

    /// One pass until `deadline_ms` (a dry run moves nothing and lists what
    /// the rules select).
    pub async fn run(&self, deadline_ms: u64, dry_run: bool) -> Result<PassReport> {
        let mut report = PassReport {
            dry_run,
            ..PassReport::default()
        };
        if dry_run {
            for (digest, record, why) in self.selected().await? {
                if record.archived {
                    continue;
                }
                let size = record.size;
                report.moved_out += 1;
                report.bytes_out += size;
                report.listed.push(format!("blob {digest} ({size} bytes) {why}"));
            }
            return Ok(report);
        }
        if !self.lease().await? {
            report.busy = true;
            return Ok(report);
        }
        let outcome = self.apply(deadline_ms, &mut report).await;
        let released = self.release().await;
        outcome?;
        released?;
        Ok(report)
    }

    async fn apply(&self, deadline_ms: u64, report: &mut PassReport) -> Result<()> {
        // The first blob of a pass is always worked on, so that a pass with
        // a budget shorter than one part still gets somewhere.
        let mut started = false;
        // What crashes and deadlines left.
        for key in list_all(self.main.as_ref(), layout::ARCHIVE_MOVES).await? {
            let Some(digest) = layout::digest_at_end(&key) else {
                continue;
            };
            if self.out_of_time(deadline_ms, started, report).await? {
                return Ok(());
            }
            started = true;
            match mover::resume_intent(&self.stores(), &digest, self.env.as_ref(), deadline_ms).await? {
                Moved::Done => report.resumed += 1,
                Moved::Abandoned => report.abandoned += 1,
                Moved::Unfinished => {
                    report.unfinished = true;
                    return Ok(());
                }
            }
        }
        // What pulls asked back, but what the rules still select: a rule
        // without a day count keeps its images archived, pulled or not.
        let selected = self.selected().await?;
        let still_selected: BTreeSet<&Digest> = selected.iter().map(|(digest, _, _)| digest).collect();
        for key in list_all(self.main.as_ref(), layout::ARCHIVE_WANTED).await? {
            let Some(digest) = layout::digest_at_end(&key) else {
                continue;
            };
            if still_selected.contains(&digest) {
                self.main.delete(&key).await?;
                continue;
            }
            if self.out_of_time(deadline_ms, started, report).await? {
                return Ok(());
            }
            started = true;
            let size = self.size_of(&digest).await?;
            match mover::advance(&self.stores(), &digest, Direction::In, self.env.as_ref(), deadline_ms).await? {
                Moved::Done => {
                    report.moved_in += 1;
                    report.bytes_in += size;
                    report.listed.push(format!("blob {digest} ({size} bytes) back: pulled"));
                }
                Moved::Abandoned => report.abandoned += 1,
                Moved::Unfinished => {
                    report.unfinished = true;
                    return Ok(());
                }
            }
            self.main.delete(&key).await?;
        }
        // What the rules select.
        for (digest, record, why) in selected {
            if record.archived {
                continue;
            }
            let size = record.size;
            if self.out_of_time(deadline_ms, started, report).await? {
                return Ok(());
            }
            started = true;
            match mover::advance(&self.stores(), &digest, Direction::Out, self.env.as_ref(), deadline_ms).await? {
                Moved::Done => {
                    report.moved_out += 1;
                    report.bytes_out += size;
                    report.listed.push(format!("blob {digest} ({size} bytes) {why}"));
                }
                Moved::Abandoned => report.abandoned += 1,
                Moved::Unfinished => {
                    report.unfinished = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Whether the deadline has come (then the report says unfinished);
    /// else the lease is renewed for the next blob.
    async fn out_of_time(&self, deadline_ms: u64, started: bool, report: &mut PassReport) -> Result<bool> {
        if started && self.now() >= deadline_ms {
            report.unfinished = true;
            return Ok(true);
        }
        if !self.lease().await? {
            return Err(RegistryError::new(
                ErrorCode::Unavailable,
                "another instance took the archive pass's lease (this one stalled past it); it goes on",
            ));
        }
        Ok(false)
    }

    async fn record(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        Ok(mover::read_record(self.main.as_ref(), digest)
            .await?
            .map(|(record, _)| record))
    }

    async fn size_of(&self, digest: &Digest) -> Result<u64> {
        Ok(self.record(digest).await?.map_or(0, |record| record.size))
    }

    /// The blobs the rules select (archived already or not): `(digest, record, why)`.
    async fn selected(&self) -> Result<Vec<(Digest, BlobRecord, String)>> {
        if self.config.rules.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut chosen: BTreeMap<Digest, String> = BTreeMap::new();
        for entry in list_all(self.main.as_ref(), layout::CATALOG).await? {
            let Some(repo) = layout::repo_of_catalog_entry(&entry).and_then(RepoName::parse) else {
                continue;
            };
            let rules: Vec<&ArchiveRule> = self
                .config
                .rules
                .iter()
                .filter(|rule| glob::matches(&rule.namespace, repo.as_str()))
                .collect();
            if rules.is_empty() {
                continue;
            }
            let counts_pulls = rules.iter().any(|rule| rule.unpulled_for_days.is_some());
            let tags = read_tags(self.main.as_ref(), &repo, counts_pulls).await?;
            let mut cold_roots = Vec::new();
            let mut hot_roots = Vec::new();
            let mut reasons: BTreeMap<Digest, String> = BTreeMap::new();
            for tag in &tags {
                let why = rules.iter().find_map(|rule| {
                    if !glob::matches(&rule.tags, &tag.name) {
                        return None;
                    }
                    match rule.unpulled_for_days {
                        None => Some(format!(
                            "tag {repo}:{} matches {} (rule {})",
                            tag.name, rule.tags, rule.namespace
                        )),
                        Some(days) => {
                            let since = tag.pulled_ms.unwrap_or(0).max(tag.tagged_ms);
                            let idle = now.saturating_sub(since);
                            (idle > retention::days_ms(days)).then(|| {
                                format!(
                                    "image {repo}:{} not pulled for {} (unpulled_for_days {days}, rule {})",
                                    tag.name,
                                    retention::ago(idle),
                                    rule.namespace
                                )
                            })
                        }
                    }
                });
                match why {
                    Some(why) => {
                        reasons.entry(tag.digest.clone()).or_insert(why);
                        cold_roots.push(tag.digest.clone());
                    }
                    None => hot_roots.push(tag.digest.clone()),
                }
            }
            if cold_roots.is_empty() {
                continue;
            }
            let nodes = read_nodes(self.main.as_ref(), &repo).await?;
            let hot = keep_closure(&nodes, hot_roots);
            let hot_blobs: BTreeSet<&Digest> = hot.iter().filter_map(|d| nodes.get(d)).flat_map(|n| &n.blobs).collect();
            for root in cold_roots {
                let why = reasons.get(&root).cloned().unwrap_or_default();
                for manifest in keep_closure(&nodes, vec![root]) {
                    let Some(node) = nodes.get(&manifest) else { continue };
                    for blob in &node.blobs {
                        if !hot_blobs.contains(blob) {
                            chosen.entry(blob.clone()).or_insert_with(|| why.clone());
                        }
                    }
                }
            }
        }
        let mut selected = Vec::new();
        for (digest, why) in chosen {
            if let Some(record) = self.record(&digest).await? {
                selected.push((digest, record, why));
            }
        }
        Ok(selected)
    }

    /// Moves the blobs of `repo:tag` (with an index's children) now,
    /// whatever the rules say (`pier archive move` and `restore`); returns
    /// how many blobs moved and their bytes.
    pub async fn move_image(&self, repo: &RepoName, tag: &str, direction: Direction) -> Result<(u64, u64)> {
        let Some(root) = read_tags(self.main.as_ref(), repo, false)
            .await?
            .into_iter()
            .find(|t| t.name == tag)
            .map(|t| t.digest)
        else {
            return Err(RegistryError::new(
                ErrorCode::ManifestUnknown,
                format!("{repo}:{tag} is not a tag of this registry"),
            ));
        };
        if !self.lease().await? {
            return Err(RegistryError::new(
                ErrorCode::Unavailable,
                "an archive pass is running (its lease is held); try again when it ends",
            ));
        }
        let outcome = self.move_closure(repo, root, direction).await;
        let released = self.release().await;
        let moved = outcome?;
        released?;
        Ok(moved)
    }

    async fn move_closure(&self, repo: &RepoName, root: Digest, direction: Direction) -> Result<(u64, u64)> {
        let nodes = read_nodes(self.main.as_ref(), repo).await?;
        let blobs: BTreeSet<Digest> = keep_closure(&nodes, vec![root])
            .iter()
            .filter_map(|d| nodes.get(d))
            .flat_map(|node| node.blobs.iter().cloned())
            .collect();
        let (mut moved, mut bytes) = (0, 0);
        for blob in blobs {
            let Some(record) = self.record(&blob).await? else {
                continue;
            };
            if record.archived == (direction == Direction::Out) {
                continue;
            }
            if mover::advance(&self.stores(), &blob, direction, self.env.as_ref(), u64::MAX).await? == Moved::Done {
                moved += 1;
                bytes += record.size;
            }
        }
        Ok((moved, bytes))
    }

    /// The tagged images of the registry with blobs in the archive:
    /// `(repo:tag, archived blobs, blobs)`.
    pub async fn archived_images(&self) -> Result<Vec<(String, u64, u64)>> {
        let mut images = Vec::new();
        let mut archived: BTreeMap<Digest, bool> = BTreeMap::new();
        for entry in list_all(self.main.as_ref(), layout::CATALOG).await? {
            let Some(repo) = layout::repo_of_catalog_entry(&entry).and_then(RepoName::parse) else {
                continue;
            };
            let nodes = read_nodes(self.main.as_ref(), &repo).await?;
            for tag in read_tags(self.main.as_ref(), &repo, false).await? {
                let blobs: BTreeSet<&Digest> = keep_closure(&nodes, vec![tag.digest.clone()])
                    .iter()
                    .filter_map(|d| nodes.get(d))
                    .flat_map(|node| &node.blobs)
                    .collect();
                let mut count = 0;
                for blob in &blobs {
                    let is_archived = match archived.get(*blob) {
                        Some(known) => *known,
                        None => {
                            let known = self.record(blob).await?.is_some_and(|r| r.archived);
                            archived.insert((*blob).clone(), known);
                            known
                        }
                    };
                    count += u64::from(is_archived);
                }
                if count > 0 {
                    images.push((format!("{repo}:{}", tag.name), count, blobs.len() as u64));
                }
            }
        }
        Ok(images)
    }

    /// Checks every blob record against both stores (`pier archive verify`).
    pub async fn verify(&self) -> Result<Verified> {
        let mut verified = Verified::default();
        let mut moving = BTreeSet::new();
        let mut moving_objects = BTreeSet::new();
        for key in list_all(self.main.as_ref(), layout::ARCHIVE_MOVES).await? {
            if let Some(digest) = layout::digest_at_end(&key) {
                moving.insert(digest);
            }
            if let Some(object) = mover::moving_object(self.main.as_ref(), &key).await? {
                moving_objects.insert(object);
            }
        }
        let mut named_in_archive = BTreeSet::new();
        for key in list_all(self.main.as_ref(), layout::BLOB_RECORDS).await? {
            let Some(digest) = layout::digest_at_end(&key) else {
                continue;
            };
            let Some(record) = self.record(&digest).await? else {
                continue;
            };
            verified.blobs += 1;
            let (home, other) = match record.archived {
                true => (self.archive.as_ref(), self.main.as_ref()),
                false => (self.main.as_ref(), self.archive.as_ref()),
            };
            if record.archived {
                verified.archived += 1;
                named_in_archive.insert(record.object.clone());
            }
            if home
                .head(&record.object)
                .await?
                .is_none_or(|meta| meta.size != record.size)
            {
                verified.missing.push(format!("{digest} ({})", record.object));
            }
            if !moving.contains(&digest) && other.head(&record.object).await?.is_some() {
                verified
                    .strays
                    .push(format!("{digest}: a second copy of {}", record.object));
            }
        }
        for key in list_all(self.archive.as_ref(), layout::BLOB_DATA).await? {
            if !named_in_archive.contains(&key) && !moving_objects.contains(&key) {
                verified
                    .strays
                    .push(format!("{key}: in the archive, named by no record"));
            }
        }
        Ok(verified)
    }

    /// What the archive holds and what waits.
    pub async fn status(&self) -> Result<Status> {
        let mut status = Status::default();
        for key in list_all(self.main.as_ref(), layout::BLOB_RECORDS).await? {
            let Some(digest) = layout::digest_at_end(&key) else {
                continue;
            };
            if let Some(record) = self.record(&digest).await? {
                if record.archived {
                    status.archived_blobs += 1;
                    status.archived_bytes += record.size;
                }
            }
        }
        status.moves_pending = list_all(self.main.as_ref(), layout::ARCHIVE_MOVES).await?.len() as u64;
        status.wanted = list_all(self.main.as_ref(), layout::ARCHIVE_WANTED).await?.len() as u64;
        Ok(status)
    }
}
