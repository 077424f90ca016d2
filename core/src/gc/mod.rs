//! Online garbage collection: mark and sweep with no read-only window,
//! retention rules and upload expiry, in bounded, resumable steps.
//!
//! A collection is a state machine whose state (`gc/run`, or `gc/dry-run`)
//! and marks live in the store, so it survives a crash or a restart and the
//! edge can advance it a few steps per cron invocation. Each step does at most
//! about one page of work and saves the state with a conditional write, so two
//! collectors over one store never both advance the same step (the loser
//! redoes idempotent work and moves on with the winner's state).
//!
//! Phases: expire idle uploads; per repository apply retention and mark the
//! blobs kept manifests reference; sweep unmarked old blobs (merge-join of
//! sorted listings); remove orphaned data objects; remove dangling repository
//! links; recount each namespace quota's usage; clean up and write the report. Why this is safe against concurrent
//! pushes: `protocol` and docs/gc.md.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, RegistryError, Result};
use crate::handshake;
use crate::layout;
use crate::platform::Env;
use crate::quota::Quotas;
use crate::retention::RetentionRule;
use crate::store::{read_small, ObjectMeta, PutMode, Store, StoreError};

mod marks;
pub mod report;
mod repos;
pub(crate) use repos::{keep_closure, read_nodes, read_tags};
mod sweep;
mod uploads;

pub use report::Report;

/// How collection behaves; the `[gc]` section of the native configuration and
/// the `GC` variable of the Worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GcConfig {
    /// Unreferenced blobs younger than this (since upload or last reuse) are
    /// kept: they belong to pushes whose manifest has not arrived yet.
    pub grace_secs: u64,
    /// Upload sessions idle longer than this are removed with their parts.
    pub upload_expiry_secs: u64,
    /// Keys one step lists or examines at most.
    pub page_size: usize,
    pub rules: Vec<RetentionRule>,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            grace_secs: 3600,
            upload_expiry_secs: 24 * 3600,
            page_size: 500,
            rules: Vec::new(),
        }
    }
}

/// Keys of the `[gc]` table besides [`GcConfig`]'s own: the native server's
/// schedule, which other deployments accept and ignore (the edge's cron
/// trigger says when it collects).
const SCHEDULE_KEYS: &[&str] = &["interval_secs"];

impl GcConfig {
    /// Reads the JSON form of the `[gc]` table (the edge Worker's `PIER_GC`
    /// var). Unknown keys are refused, so a misspelt setting is an error and
    /// not a silent default.
    pub fn from_json(text: &str) -> std::result::Result<GcConfig, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("gc configuration: {e}"))?;
        let serde_json::Value::Object(mut table) = value else {
            return Err("gc configuration: expected a JSON object (the [gc] table)".into());
        };
        table.retain(|key, _| !SCHEDULE_KEYS.contains(&key.as_str()));
        let known = ["grace_secs", "upload_expiry_secs", "page_size", "rules"];
        if let Some(unknown) = table.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(format!(
                "gc configuration: unknown key {unknown:?} (known: {})",
                known.join(", ")
            ));
        }
        serde_json::from_value(serde_json::Value::Object(table)).map_err(|e| format!("gc configuration: {e}"))
    }
}

/// Where a collection stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Uploads,
    Repos,
    Sweep,
    Orphans,
    Links,
    Quotas,
    Finish,
}

/// The persisted state of a collection.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunState {
    run: String,
    started_ms: u64,
    phase: Phase,
    /// The last key (suffix under the phase's prefix) the phase is done with.
    cursor: Option<String>,
    report: Report,
}

/// What one step did.
#[derive(Debug)]
pub struct StepOutcome {
    /// The collection has ended; `report` says what it did.
    pub done: bool,
    pub phase: Phase,
    /// Objects examined so far in this collection (blobs, data objects, uploads, repositories).
    pub examined: u64,
    pub report: Option<Report>,
}

/// What [`Gc::run_for`] did within its budget.
#[derive(Debug)]
pub struct BudgetedRun {
    /// Steps taken by this call.
    pub steps: u64,
    /// The outcome of the last of them.
    pub last: StepOutcome,
}

/// A collector over one store.
pub struct Gc {
    store: Arc<dyn Store>,
    env: Arc<dyn Env>,
    config: GcConfig,
    dry_run: bool,
    /// Only the upload phase: idle sessions go, nothing else is examined.
    uploads_only: bool,
    /// Journal entries read so far, by key (they never change once written).
    journal: BTreeMap<String, handshake::JournalEntry>,
    /// Quotas whose usage the collection recounts.
    quotas: Arc<Quotas>,
    /// Where archived blobs' bytes are deleted (`crate::archive`).
    archive: Option<Arc<dyn Store>>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(ErrorCode::Internal, format!("corrupt {what}: {e}"))
}

impl Gc {
    /// A collector; `dry_run` removes nothing and reports what would go.
    pub fn new(store: Arc<dyn Store>, env: Arc<dyn Env>, config: GcConfig, dry_run: bool) -> Gc {
        Gc {
            store,
            env,
            config,
            dry_run,
            uploads_only: false,
            journal: BTreeMap::new(),
            quotas: Arc::default(),
            archive: None,
        }
    }

    /// The collector deleting archived blobs' bytes from `archive`.
    pub fn with_archive(mut self, archive: Arc<dyn Store>) -> Gc {
        self.archive = Some(archive);
        self
    }

    /// The collector recounting `quotas` after its sweep (usage only grows
    /// between collections: `crate::quota`).
    pub fn with_quotas(mut self, quotas: Arc<Quotas>) -> Gc {
        self.quotas = quotas;
        self
    }

    /// A pass that only removes upload sessions idle longer than
    /// `config.upload_expiry_secs`, with their parts and tails. Deployments
    /// run it when no collection is configured, so abandoned uploads never
    /// pile up. Its state is its own: it may run beside a full collection.
    pub fn uploads_only(store: Arc<dyn Store>, env: Arc<dyn Env>, config: GcConfig) -> Gc {
        Gc {
            uploads_only: true,
            ..Gc::new(store, env, config, false)
        }
    }

    fn state_key(&self) -> &'static str {
        match self.uploads_only {
            true => layout::GC_UPLOADS_STATE,
            false => layout::gc_state(self.dry_run),
        }
    }

    fn now(&self) -> u64 {
        self.env.now_millis()
    }

    /// A grace window too long to count in milliseconds keeps everything,
    /// never wraps to a short one (which would delete blobs of pushes under way).
    fn grace_ms(&self) -> u64 {
        self.config.grace_secs.saturating_mul(1000)
    }

    fn page_size(&self) -> usize {
        self.config.page_size.max(1)
    }

    /// Journal entries older than this cannot concern a run started at `started_ms`.
    fn journal_horizon(&self, started_ms: u64) -> u64 {
        started_ms.saturating_sub(self.grace_ms())
    }

    /// Runs steps until the collection ends; returns its report.
    pub async fn run_to_end(&mut self) -> Result<Report> {
        loop {
            let outcome = self.step().await?;
            if let Some(report) = outcome.report {
                return Ok(report);
            }
        }
    }

    /// Runs steps until the collection ends or `budget_ms` is spent, for a
    /// caller with a time limit (the edge's cron invocations). Takes at least
    /// one step, and no step it expects to end past the budget: it expects
    /// the next step to take as long as the longest one so far. The state is
    /// in the store, so the next call goes on where this one stopped.
    pub async fn run_for(&mut self, budget_ms: u64) -> Result<BudgetedRun> {
        let started = self.now();
        let deadline = started.saturating_add(budget_ms);
        let mut longest_step = 0;
        let mut steps = 0;
        loop {
            let before = self.now();
            let outcome = self.step().await?;
            steps += 1;
            let after = self.now();
            longest_step = longest_step.max(after.saturating_sub(before));
            if outcome.done || after.saturating_add(longest_step) >= deadline {
                return Ok(BudgetedRun { steps, last: outcome });
            }
        }
    }

    /// Advances the collection (starting one if none is under way) by one
    /// bounded step.
    pub async fn step(&mut self) -> Result<StepOutcome> {
        let (mut state, etag) = self.load_or_start().await?;
        state.report.steps += 1;
        self.advance(&mut state).await?;
        if state.phase == Phase::Finish && state.cursor.as_deref() == Some(FINISHED) {
            let report = self.finish(state).await?;
            return Ok(StepOutcome {
                done: true,
                phase: Phase::Finish,
                examined: examined(&report),
                report: Some(report),
            });
        }
        let bytes = serde_json::to_vec(&state).map_err(|e| RegistryError::unserializable("the collection state", e))?;
        match self
            .store
            .put(self.state_key(), bytes.into(), PutMode::Update(etag.etag))
            .await
        {
            // Another collector saved first: the next step continues from its state.
            Ok(_) | Err(StoreError::PreconditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(StepOutcome {
            done: false,
            phase: state.phase,
            examined: examined(&state.report),
            report: None,
        })
    }

    async fn load_or_start(&self) -> Result<(RunState, ObjectMeta)> {
        let key = self.state_key();
        loop {
            if let Some((bytes, meta)) = read_small(self.store.as_ref(), key).await? {
                let state = serde_json::from_slice(&bytes).map_err(|e| corrupt("gc state", e))?;
                return Ok((state, meta));
            }
            let started_ms = self.now();
            let run = self.env.random_id();
            let state = RunState {
                report: Report {
                    run: run.clone(),
                    dry_run: self.dry_run,
                    started_ms,
                    ..Report::default()
                },
                run,
                started_ms,
                phase: Phase::Uploads,
                cursor: None,
            };
            let bytes =
                serde_json::to_vec(&state).map_err(|e| RegistryError::unserializable("the collection state", e))?;
            match self.store.put(key, bytes.into(), PutMode::Create).await {
                Ok(meta) => return Ok((state, meta)),
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn advance(&mut self, state: &mut RunState) -> Result<()> {
        let next = match state.phase {
            Phase::Uploads => self.expire_uploads(state).await?,
            Phase::Repos => self.collect_repo(state).await?,
            Phase::Sweep => self.sweep_blobs(state).await?,
            Phase::Orphans => self.sweep_orphan_data(state).await?,
            Phase::Links => self.remove_dangling_links(state).await?,
            Phase::Quotas => self.reconcile_quota(state).await?,
            Phase::Finish => self.remove_marks(state).await?,
        };
        if self.uploads_only && next.is_some() {
            state.phase = Phase::Finish;
            state.cursor = Some(FINISHED.to_string());
            return Ok(());
        }
        if let Some(phase) = next {
            if phase == Phase::Sweep && !self.dry_run {
                let marked = layout::gc_marked(&state.run);
                self.store.put(&marked, Bytes::new(), PutMode::Overwrite).await?;
            }
            state.phase = phase;
            state.cursor = None;
        }
        Ok(())
    }

    /// Whether the marks read so far are all of this run's. Two collectors
    /// may work on one run (two instances); one that was paused can resume a
    /// step of a run the other has finished, whose marks are being removed:
    /// it must not take an absent mark for an unreferenced blob. A dry run
    /// deletes nothing, so it needs no such guard.
    async fn marks_trusted(&self, state: &RunState) -> Result<bool> {
        if self.dry_run {
            return Ok(true);
        }
        Ok(self.store.head(&layout::gc_marked(&state.run)).await?.is_some())
    }

    /// Deletes a page of this run's marks; when none are left, marks the run finished.
    async fn remove_marks(&self, state: &mut RunState) -> Result<Option<Phase>> {
        if !self.dry_run {
            // First, so that a collector still sweeping this run stops trusting its marks.
            self.store.delete(&layout::gc_marked(&state.run)).await?;
        }
        let prefix = layout::gc_marks(&state.run);
        let page = self.store.list(&prefix, None, self.page_size()).await?;
        for key in &page.keys {
            self.store.delete(key).await?;
        }
        if !page.more {
            state.cursor = Some(FINISHED.to_string());
        }
        Ok(None)
    }

    /// Drops journal entries no collection can need any more, writes the
    /// report and ends the run.
    async fn finish(&mut self, mut state: RunState) -> Result<Report> {
        if self.uploads_only {
            state.report.finished_ms = self.now();
            state.report.duration_ms = state.report.finished_ms.saturating_sub(state.started_ms);
            self.store.delete(self.state_key()).await?;
            return Ok(state.report);
        }
        if !self.dry_run {
            let horizon = self.journal_horizon(state.started_ms);
            for key in crate::store::list_all(self.store.as_ref(), layout::GC_JOURNAL).await? {
                if layout::gc_journal_time(&key).is_some_and(|t| t < horizon) {
                    self.store.delete(&key).await?;
                }
            }
            // Only one real run exists at a time: any other completion marker
            // was left by a collector that fell behind a finished run.
            for key in crate::store::list_all(self.store.as_ref(), layout::GC_MARKED).await? {
                self.store.delete(&key).await?;
            }
        }
        let finished_ms = self.now();
        state.report.finished_ms = finished_ms;
        state.report.duration_ms = finished_ms.saturating_sub(state.started_ms);
        let bytes =
            serde_json::to_vec_pretty(&state.report).map_err(|e| RegistryError::unserializable("the report", e))?;
        self.store
            .put(layout::GC_REPORT, bytes.into(), PutMode::Overwrite)
            .await?;
        self.store.delete(self.state_key()).await?;
        Ok(state.report)
    }

    /// Every digest named (blobs and manifests) by the journal entries of
    /// pushes that may overlap the run, re-read so that pushes published since
    /// the last look are seen. Older entries belong to pushes that ended long
    /// before the run listed the repositories (a push lasts less than the
    /// grace window), so the listing already shows what they wrote.
    async fn journaled(&mut self, started_ms: u64) -> Result<HashSet<String>> {
        let horizon = self.journal_horizon(started_ms);
        let keys: Vec<String> = crate::store::list_all(self.store.as_ref(), layout::GC_JOURNAL)
            .await?
            .into_iter()
            .filter(|key| layout::gc_journal_time(key).is_none_or(|t| t >= horizon))
            .collect();
        self.journal.retain(|key, _| keys.binary_search(key).is_ok());
        for key in keys {
            if self.journal.contains_key(&key) {
                continue;
            }
            if let Some((bytes, _)) = read_small(self.store.as_ref(), &key).await? {
                let entry = serde_json::from_slice(&bytes).map_err(|e| corrupt("gc journal entry", e))?;
                self.journal.insert(key, entry);
            }
        }
        Ok(self
            .journal
            .values()
            .flat_map(|entry| entry.blobs.iter().chain(&entry.manifests).cloned())
            .collect())
    }
}

/// The cursor of the finish phase once every mark is gone.
const FINISHED: &str = "finished";

fn examined(report: &Report) -> u64 {
    report.blobs_examined + report.repos_examined + report.uploads_expired
}

/// The last report written, if any collection has ended.
pub async fn last_report(store: &dyn Store) -> Result<Option<Report>> {
    match read_small(store, layout::GC_REPORT).await? {
        None => Ok(None),
        Some((bytes, _)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt("gc report", e)),
    }
}

impl Gc {
    /// Phase 6, one quota per step: its usage recounted from what the
    /// repositories hold after the sweep.
    async fn reconcile_quota(&mut self, state: &mut RunState) -> Result<Option<Phase>> {
        let index = state
            .cursor
            .as_deref()
            .and_then(|c| c.parse::<usize>().ok())
            .map_or(0, |i| i + 1);
        let recounted = self
            .quotas
            .reconcile(self.store.as_ref(), self.env.as_ref(), index, self.dry_run)
            .await?;
        let Some(usage) = recounted else {
            return Ok(Some(Phase::Finish));
        };
        state.report.quotas.push(usage);
        state.cursor = Some(index.to_string());
        Ok((index + 1 >= self.quotas.len()).then_some(Phase::Finish))
    }
}
