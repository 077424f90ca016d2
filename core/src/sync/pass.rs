//! Running a pass of a rule: take the rule's pass (a new one, or the
//! unfinished one where it stopped), then for each repository list the
//! upstream tags, resolve each taken tag's digest with a HEAD, skip those
//! the local tag already points at, copy the others with `remote::copy`
//! (blobs, then the manifest with its tag, then the referrers the rule
//! carries), and with `delete` remove the local tags upstream dropped.
//! Progress is saved as it goes (`progress`), so a pass stopped by its
//! budget, a crash or an unreachable upstream continues where it was.
//!
//! A tag that fails is counted and reported and the pass goes on; an
//! upstream (or local store) that is down ends the run at once, its
//! progress kept, since every further tag would fail the same way.

use std::sync::Arc;

use bytes::Bytes;

use super::plan;
use super::progress::{decide, Decision, PassRecord, LEASE_MS};
use super::rule::{RepositoryPattern, SyncRule};
use crate::digest::Digest;
use crate::error::ErrorCode;
use crate::events::replicate::REPLICATION_ACTOR;
use crate::events::{Action, Event, EventSink, Subject};
use crate::layout;
use crate::manifest;
use crate::names::{RepoName, Tag};
use crate::platform::{Env, MaybeSend, MaybeSync};
use crate::records::Reference;
use crate::registry::Registry;
use crate::remote::copy::{copy_image, CopyReport, ImageStore, Quiet, RemoteRepo};
use crate::remote::local::{remote_error, LocalRepo};
use crate::remote::RemoteError;
use crate::store::{read_small, ObjectMeta, PutMode, Store, StoreError};

/// Blobs copied at once for one tag.
const PARALLEL_BLOBS: usize = 2;
/// A holder saves its progress after a tag once its last save is this old:
/// R2 takes about one write per second per key.
pub const SAVE_EVERY_MS: u64 = 1000;
/// Most upstream repositories one pass covers.
const MAX_REPOSITORIES: usize = 10_000;

/// How a run of a pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// The pass is over; the record is also at `sync/<name>/last`.
    Finished(PassRecord),
    /// The budget ran out; the next run goes on from the saved record.
    MoreToDo(PassRecord),
    /// Another runner holds the pass under way.
    Busy { holder: String, until_ms: u64 },
    /// No pass is due (an on-demand rule, or before its interval ends).
    NotDue { next_ms: Option<u64> },
}

/// Why a run stopped early. The progress made is saved in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassError {
    /// The upstream could not be reached, or refused what a pass needs
    /// (its catalog, for a glob).
    Upstream(String),
    /// The local store failed.
    Store(String),
    /// Another runner took the pass over (this one's lease had lapsed).
    LostLease,
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassError::Upstream(why) => write!(f, "upstream: {why} (the next pass resumes from the saved progress)"),
            PassError::Store(why) => write!(f, "store: {why}"),
            PassError::LostLease => f.write_str("another runner took the pass over"),
        }
    }
}

impl std::error::Error for PassError {}

impl From<StoreError> for PassError {
    fn from(error: StoreError) -> PassError {
        PassError::Store(error.to_string())
    }
}

/// What happened to one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOutcome {
    Copied,
    Unchanged,
    Deleted,
    Failed(String),
}

/// Told of a run's progress (`pier sync`'s progress bar, logs); every
/// method may be left out.
pub trait PassObserver: MaybeSend + MaybeSync {
    /// The run holds the pass; `resumed`: it was begun by an earlier run.
    fn taken(&self, _record: &PassRecord, _resumed: bool) {}
    fn repository_started(&self, _record: &PassRecord) {}
    fn tag_done(&self, _repo: &str, _tag: &str, _outcome: &TagOutcome) {}
    fn repository_done(&self, _record: &PassRecord) {}
}

/// An observer that ignores everything.
pub struct Unobserved;
impl PassObserver for Unobserved {}

/// When a run must stop: a deadline from `Env::now_millis`, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub deadline_ms: Option<u64>,
}

impl Budget {
    pub const UNLIMITED: Budget = Budget { deadline_ms: None };

    /// `ms` from `now_ms`.
    pub fn for_ms(now_ms: u64, ms: u64) -> Budget {
        Budget {
            deadline_ms: Some(now_ms.saturating_add(ms)),
        }
    }

    fn spent(&self, now_ms: u64) -> bool {
        self.deadline_ms.is_some_and(|deadline| now_ms >= deadline)
    }
}

/// Runs the passes of a deployment's rules over its registry.
pub struct SyncPasses {
    rules: Vec<Arc<SyncRule>>,
    registry: Registry,
    /// The registry's store as it is (no cache): records change by conditional write.
    store: Arc<dyn Store>,
    env: Arc<dyn Env>,
    /// This runner, in leases.
    me: String,
    /// Where the tags a pass copies or deletes are told (webhooks, rules).
    events: Option<EventSink>,
}

/// A pass this run holds, with the etag of its last save.
struct Held<'a> {
    rule: &'a SyncRule,
    record: PassRecord,
    etag: String,
    saved_ms: u64,
}

/// What bringing one tag in step did.
enum TagSync {
    Copied(CopyReport),
    /// The local tag was upstream's already; `referrers` new ones came.
    Unchanged {
        referrers: u64,
    },
}

/// What a repository's tags came to, before the next one.
enum Flow {
    Done,
    OutOfTime,
}

/// Whether an error means the other side is down (so every further tag
/// would fail too), not that this one tag is bad.
fn is_down(error: &RemoteError) -> bool {
    match error {
        RemoteError::Transport(_) => true,
        RemoteError::Status { status, .. } => *status >= 500 || *status == 429,
        RemoteError::Invalid(_) => false,
    }
}

impl SyncPasses {
    pub fn new(
        rules: Vec<Arc<SyncRule>>,
        registry: Registry,
        env: Arc<dyn Env>,
        events: Option<EventSink>,
    ) -> SyncPasses {
        SyncPasses {
            store: registry.fresh_store(),
            me: env.random_id(),
            rules,
            registry,
            env,
            events,
        }
    }

    /// Tells webhooks and rules that a pass pushed (or deleted) `tag` of
    /// `repo`, as the registry's own actor, like a promotion.
    async fn tell(
        &self,
        action: Action,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        media_type: &str,
        size: u64,
    ) -> Result<(), String> {
        let Some(events) = self.events.as_ref().filter(|events| events.wants(action, repo)) else {
            return Ok(());
        };
        let subject = Subject {
            repo,
            digest,
            media_type,
            size,
        };
        let event = Event::new(self.env.as_ref(), action, &subject, Some(tag), REPLICATION_ACTOR);
        events
            .emit(&event)
            .await
            .map_err(|err| format!("recording its event: {err}"))
    }

    pub fn rules(&self) -> &[Arc<SyncRule>] {
        &self.rules
    }

    pub fn rule(&self, name: &str) -> Option<&Arc<SyncRule>> {
        self.rules.iter().find(|rule| rule.name() == name)
    }

    fn now(&self) -> u64 {
        self.env.now_millis()
    }

    /// Runs the due passes (and the unfinished ones) of every rule within
    /// `budget`; each rule runs at least one step of its pass.
    pub async fn run_due(&self, budget: Budget) -> Vec<(String, Result<PassOutcome, PassError>)> {
        let mut outcomes = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let outcome = self.run(rule, budget, false, &Unobserved).await;
            outcomes.push((rule.name().to_string(), outcome));
        }
        outcomes
    }

    /// Runs `rule`'s pass within `budget`: the unfinished one, else a new
    /// one if due (or whenever `by_hand`).
    pub async fn run(
        &self,
        rule: &SyncRule,
        budget: Budget,
        by_hand: bool,
        observer: &dyn PassObserver,
    ) -> Result<PassOutcome, PassError> {
        let mut held = match self.take(rule, by_hand).await? {
            Ok(held) => held,
            Err(outcome) => return Ok(outcome),
        };
        observer.taken(&held.record, held.record.runs > 1);
        while let Some(upstream) = held.record.repositories.get(held.record.next_repository).cloned() {
            observer.repository_started(&held.record);
            match self.repository(&mut held, &upstream, budget, observer).await {
                Ok(Flow::Done) => {}
                Ok(Flow::OutOfTime) => {
                    self.release(&mut held).await?;
                    return Ok(PassOutcome::MoreToDo(held.record));
                }
                Err(error) => {
                    if error != PassError::LostLease {
                        held.record.note_error(error.to_string());
                        self.release(&mut held).await?;
                    }
                    return Err(error);
                }
            }
            held.record.next_repository += 1;
            held.record.tag_cursor = None;
            held.record.counts.repositories += 1;
            observer.repository_done(&held.record);
            if budget.spent(self.now()) && held.record.next_repository < held.record.repositories.len() {
                self.release(&mut held).await?;
                return Ok(PassOutcome::MoreToDo(held.record));
            }
            self.save_now_and_then(&mut held).await?;
        }
        self.finish(held).await
    }

    /// The pass this run may work on, or why there is none.
    async fn take<'a>(&self, rule: &'a SyncRule, by_hand: bool) -> Result<Result<Held<'a>, PassOutcome>, PassError> {
        let key = layout::sync_pass(rule.name());
        let single_process = self.store.capabilities().single_process;
        loop {
            let stored = read_small(self.store.as_ref(), &key).await?;
            let (record, etag) = match &stored {
                None => (None, None),
                // A record that does not parse is replaced by a new pass.
                Some((bytes, meta)) => (
                    serde_json::from_slice::<PassRecord>(bytes).ok(),
                    Some(meta.etag.clone()),
                ),
            };
            let now = self.now();
            let decision = match (&stored, &record) {
                (Some(_), None) => Decision::Start,
                _ => decide(
                    record.as_ref(),
                    &self.me,
                    now,
                    rule.interval_ms,
                    by_hand,
                    single_process,
                    &rule.fingerprint,
                ),
            };
            let mut next = match decision {
                Decision::Busy { holder, until_ms } => return Ok(Err(PassOutcome::Busy { holder, until_ms })),
                Decision::NotDue { next_ms } => return Ok(Err(PassOutcome::NotDue { next_ms })),
                Decision::Resume => match record {
                    Some(record) => record,
                    None => continue,
                },
                Decision::Start => match self.resolve(rule).await {
                    Ok(repositories) => {
                        PassRecord::new(self.env.random_id(), rule.fingerprint.clone(), now, repositories)
                    }
                    Err(error) => {
                        self.record_unstarted(rule, etag, &error).await?;
                        return Err(error);
                    }
                },
            };
            next.runs += 1;
            next.holder = Some(self.me.clone());
            next.lease_until_ms = now.saturating_add(LEASE_MS);
            let mode = match etag {
                Some(etag) => PutMode::Update(etag),
                None => PutMode::Create,
            };
            match self.store.put(&key, encode(&next)?, mode).await {
                Ok(meta) => {
                    return Ok(Ok(Held {
                        rule,
                        record: next,
                        etag: meta.etag,
                        saved_ms: now,
                    }))
                }
                // Another runner wrote first: decide again on what it wrote.
                Err(StoreError::AlreadyExists | StoreError::PreconditionFailed) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Records a pass that could not start (its repositories could not be
    /// resolved) as finished with the error: it is the last pass to read
    /// about, and the next is due after the interval, not at once.
    async fn record_unstarted(
        &self,
        rule: &SyncRule,
        etag: Option<String>,
        error: &PassError,
    ) -> Result<(), PassError> {
        let now = self.now();
        let mut record = PassRecord::new(self.env.random_id(), rule.fingerprint.clone(), now, Vec::new());
        record.runs = 1;
        record.finished_ms = Some(now);
        record.note_error(error.to_string());
        let mode = match etag {
            Some(etag) => PutMode::Update(etag),
            None => PutMode::Create,
        };
        match self
            .store
            .put(&layout::sync_pass(rule.name()), encode(&record)?, mode)
            .await
        {
            // Another runner wrote first: its record stands.
            Ok(_) | Err(StoreError::AlreadyExists | StoreError::PreconditionFailed) => {}
            Err(store) => return Err(store.into()),
        }
        let last = layout::sync_last(rule.name());
        self.store.put(&last, encode(&record)?, PutMode::Overwrite).await?;
        Ok(())
    }

    /// The upstream repositories `rule` takes, in byte order: its names,
    /// and the catalog's names its globs match.
    async fn resolve(&self, rule: &SyncRule) -> Result<Vec<String>, PassError> {
        let mut names: Vec<String> = rule
            .repositories
            .iter()
            .filter_map(|pattern| match pattern {
                RepositoryPattern::Name(name) => Some(name.as_str().to_string()),
                RepositoryPattern::Glob(_) => None,
            })
            .collect();
        let globs: Vec<&str> = rule
            .repositories
            .iter()
            .filter_map(|pattern| match pattern {
                RepositoryPattern::Glob(glob) => Some(glob.as_str()),
                RepositoryPattern::Name(_) => None,
            })
            .collect();
        if !globs.is_empty() {
            let catalog = rule.client.catalog().await.map_err(|error| {
                PassError::Upstream(format!(
                    "the repository globs {globs:?} need the upstream's /v2/_catalog, and {} refused it: {error}",
                    rule.upstream()
                ))
            })?;
            names.extend(catalog.into_iter().filter(|name| rule.takes(name)));
        }
        names.sort();
        names.dedup();
        if names.len() > MAX_REPOSITORIES {
            return Err(PassError::Upstream(format!(
                "{} repositories match, more than the {MAX_REPOSITORIES} one pass takes: narrow the globs",
                names.len()
            )));
        }
        Ok(names)
    }

    /// One repository's tags, from the cursor on; then its deletes.
    async fn repository(
        &self,
        held: &mut Held<'_>,
        upstream_name: &str,
        budget: Budget,
        observer: &dyn PassObserver,
    ) -> Result<Flow, PassError> {
        let rule = held.rule;
        let names = RepoName::parse(upstream_name).and_then(|upstream| Some((rule.target(&upstream)?, upstream)));
        let Some((target, upstream)) = names else {
            held.record.counts.repositories_failed += 1;
            held.record.note_error(format!(
                "{upstream_name}: no valid local name for it under {:?}",
                rule.target_prefix
            ));
            return Ok(Flow::Done);
        };
        let listed = match rule.client.tags(upstream.as_str()).await {
            Ok(listed) => listed,
            Err(error) if is_down(&error) => return Err(PassError::Upstream(format!("{upstream}: {error}"))),
            Err(error) => {
                // No tag list, no deletes: an upstream that answers oddly
                // must not empty the site.
                held.record.counts.repositories_failed += 1;
                held.record.note_error(format!("{upstream}: listing its tags: {error}"));
                return Ok(Flow::Done);
            }
        };
        let tags = plan::upstream_tags(listed, &rule.tags);
        if held.record.tag_cursor.is_none() {
            for name in &tags.invalid {
                held.record.counts.tags_failed += 1;
                held.record
                    .note_error(format!("{upstream}: upstream lists {name:?}, which is not a valid tag"));
            }
        }
        let src = RemoteRepo {
            client: rule.client.clone(),
            repo: upstream.clone(),
        };
        let dst = LocalRepo {
            registry: self.registry.clone(),
            repo: target.clone(),
        };
        let pending = plan::after_cursor(&tags.taken, held.record.tag_cursor.as_deref()).to_vec();
        for tag in pending {
            let outcome = match self.tag(rule, &src, &dst, &tag).await {
                Ok(TagSync::Copied(report)) => {
                    if let Some(pushed) = report.digest.as_ref() {
                        let told = match self
                            .registry
                            .manifest(&target, &Reference::Digest(pushed.clone()))
                            .await
                        {
                            Ok(stored) => {
                                let size = stored.bytes.len() as u64;
                                self.tell(Action::Push, &target, &tag, pushed, &stored.media_type, size)
                                    .await
                            }
                            Err(err) => Err(err.message),
                        };
                        if let Err(why) = told {
                            held.record.note_error(format!("{target}:{tag}: copied, but {why}"));
                        }
                    }
                    held.record.counts.tags_copied += 1;
                    held.record.counts.blobs_copied += report.blobs_streamed as u64;
                    held.record.counts.bytes_copied += report.bytes_streamed;
                    TagOutcome::Copied
                }
                Ok(TagSync::Unchanged { referrers }) => {
                    held.record.counts.tags_unchanged += 1;
                    held.record.counts.referrers_copied += referrers;
                    TagOutcome::Unchanged
                }
                Err(error) if is_down(&error) => {
                    return Err(PassError::Upstream(format!("{upstream}:{tag}: {error}")));
                }
                Err(error) => {
                    held.record.counts.tags_failed += 1;
                    held.record.note_error(format!("{upstream}:{tag}: {error}"));
                    TagOutcome::Failed(error.to_string())
                }
            };
            observer.tag_done(upstream.as_str(), tag.as_str(), &outcome);
            held.record.tag_cursor = Some(tag.as_str().to_string());
            if budget.spent(self.now()) {
                return Ok(Flow::OutOfTime);
            }
            self.save_now_and_then(held).await?;
        }
        if rule.delete {
            self.delete_stale(held, &target, &tags.taken, observer).await?;
        }
        Ok(Flow::Done)
    }

    /// Brings one tag in step: copies upstream's manifest unless the local
    /// tag already points at it (then only referrers new upstream come).
    async fn tag(&self, rule: &SyncRule, src: &RemoteRepo, dst: &LocalRepo, tag: &Tag) -> Result<TagSync, RemoteError> {
        let Some(info) = src
            .client
            .manifest_info(src.repo.as_str(), &Reference::Tag(tag.clone()))
            .await?
        else {
            return Err(RemoteError::Invalid(
                "listed by upstream, but it has no manifest under that tag".into(),
            ));
        };
        let local = self.registry.tag_record(&dst.repo, tag).await.map_err(remote_error)?;
        if local.is_some_and(|record| record.digest == info.digest) {
            let referrers = self.new_referrers(rule, src, dst, &info.digest).await?;
            return Ok(TagSync::Unchanged { referrers });
        }
        let reference = Reference::Digest(info.digest);
        let report = copy_image(
            src,
            &reference,
            dst,
            Some(tag),
            &rule.referrers,
            Arc::new(Quiet),
            PARALLEL_BLOBS,
        )
        .await?;
        Ok(TagSync::Copied(report))
    }

    /// Copies the referrers of `digest` the rule carries that upstream has
    /// and this registry does not (a signature made after the image came).
    async fn new_referrers(
        &self,
        rule: &SyncRule,
        src: &RemoteRepo,
        dst: &LocalRepo,
        digest: &Digest,
    ) -> Result<u64, RemoteError> {
        if !rule.referrers.any() {
            return Ok(0);
        }
        let mut copied = 0;
        for referrer in src.referrers(digest).await? {
            if dst.has_manifest(&referrer).await? {
                continue;
            }
            let Some(fetched) = src.manifest(&Reference::Digest(referrer.clone())).await? else {
                continue;
            };
            if !manifest::parse(&fetched.bytes, None).is_ok_and(|m| rule.referrers.carries(&m)) {
                continue;
            }
            let reference = Reference::Digest(referrer);
            copy_image(
                src,
                &reference,
                dst,
                None,
                &rule.referrers,
                Arc::new(Quiet),
                PARALLEL_BLOBS,
            )
            .await?;
            copied += 1;
        }
        Ok(copied)
    }

    /// With `delete`: removes the local tags of `target` the rule takes
    /// that upstream no longer lists.
    async fn delete_stale(
        &self,
        held: &mut Held<'_>,
        target: &RepoName,
        upstream: &[Tag],
        observer: &dyn PassObserver,
    ) -> Result<(), PassError> {
        let local = match self.local_tags(target).await {
            Ok(local) => local,
            Err(error) => {
                return Err(PassError::Store(format!(
                    "listing the tags of {target}: {}",
                    error.message
                )))
            }
        };
        for tag in plan::stale_tags(&local, upstream, &held.rule.tags) {
            let outcome = match self
                .registry
                .delete_manifest(target, &Reference::Tag(tag.clone()))
                .await
            {
                Ok(deleted) => {
                    let (digest, media_type) = (&deleted.digest, &deleted.media_type);
                    if let Err(why) = self
                        .tell(Action::Delete, target, &tag, digest, media_type, deleted.size)
                        .await
                    {
                        held.record.note_error(format!("{target}:{tag}: deleted, but {why}"));
                    }
                    held.record.counts.tags_deleted += 1;
                    TagOutcome::Deleted
                }
                Err(error) if error.code == ErrorCode::ManifestUnknown => continue,
                Err(error) => {
                    held.record.counts.tags_failed += 1;
                    held.record.note_error(format!(
                        "{target}:{tag}: deleting it as upstream did: {}",
                        error.message
                    ));
                    TagOutcome::Failed(error.message)
                }
            };
            observer.tag_done(target.as_str(), tag.as_str(), &outcome);
        }
        Ok(())
    }

    /// Every tag of the local repository `repo` (none if it does not exist).
    async fn local_tags(&self, repo: &RepoName) -> crate::error::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = match self
                .registry
                .tags(repo, crate::registry::MAX_PAGE, last.as_deref())
                .await
            {
                Ok(page) => page,
                Err(error) if error.code == ErrorCode::NameUnknown => return Ok(names),
                Err(error) => return Err(error),
            };
            names.extend(page.names);
            match page.next {
                Some(next) => last = Some(next),
                None => return Ok(names),
            }
        }
    }

    /// Saves the progress when the last save is [`SAVE_EVERY_MS`] old.
    async fn save_now_and_then(&self, held: &mut Held<'_>) -> Result<(), PassError> {
        if self.now().saturating_sub(held.saved_ms) < SAVE_EVERY_MS {
            return Ok(());
        }
        held.record.lease_until_ms = self.now().saturating_add(LEASE_MS);
        self.save(held).await
    }

    /// Saves the progress and lets go of the pass, for whoever runs next.
    async fn release(&self, held: &mut Held<'_>) -> Result<(), PassError> {
        held.record.holder = None;
        held.record.lease_until_ms = 0;
        self.save(held).await
    }

    async fn save(&self, held: &mut Held<'_>) -> Result<(), PassError> {
        let key = layout::sync_pass(held.rule.name());
        let mode = PutMode::Update(held.etag.clone());
        match self.store.put(&key, encode(&held.record)?, mode).await {
            Ok(ObjectMeta { etag, .. }) => {
                held.etag = etag;
                held.saved_ms = self.now();
                Ok(())
            }
            Err(StoreError::PreconditionFailed) => Err(PassError::LostLease),
            Err(error) => Err(error.into()),
        }
    }

    /// Ends the pass: the record says so, and is kept as the last one.
    async fn finish(&self, mut held: Held<'_>) -> Result<PassOutcome, PassError> {
        held.record.finished_ms = Some(self.now());
        self.release(&mut held).await?;
        let key = layout::sync_last(held.rule.name());
        self.store.put(&key, encode(&held.record)?, PutMode::Overwrite).await?;
        Ok(PassOutcome::Finished(held.record))
    }
}

fn encode(record: &PassRecord) -> Result<Bytes, PassError> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| PassError::Store(format!("the pass record: {e}")))
}
