//! Events: a manifest was pushed, deleted or pulled. The API layer reports
//! one once the request succeeded (it knows the caller); the deployment's
//! webhooks (`webhook`) and replication rules (`replicate`) act on it.
//! Each delivery an event calls for is recorded in the store's outbox
//! (`outbox`) before the request is answered, then made after the response
//! by a background task of the platform ([`Background`]) or the Worker's
//! queue, and retried with backoff (`retry`) by whichever instance drains
//! its lane next. The tasks are bounded per process (`limit`): over the
//! bound a drain is dropped and counted, and its deliveries wait in the
//! outbox for the next pass.
//!
//! Configuration is the same on both shells: `[[webhook]]` and
//! `[[replicate]]` tables natively, JSON arrays in `PIER_WEBHOOKS` and
//! `PIER_REPLICATE` on the Worker.

pub mod limit;
pub mod outbox;
pub mod replicate;
pub mod retry;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, RegistryError};
use crate::names::{RepoName, Tag};
use crate::platform::{Background, BoxFuture, Env, MaybeSend, MaybeSync};
use crate::registry::Registry;
use crate::remote::http::HttpClient;
use crate::signing::SignatureGate;
use crate::store::{PutMode, StoreError, StoreResult};
use outbox::{Attempt, Deliverer, Drained, Lane, Outbox};

pub use replicate::ReplicateConfig;
pub use webhook::WebhookConfig;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Push,
    Delete,
    Pull,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Pull => "pull",
        }
    }
}

/// One event, as webhooks receive it (JSON, camelCase keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique per event, the same on every retry: receivers deduplicate by it.
    pub id: String,
    pub action: Action,
    /// RFC 3339, UTC, seconds.
    pub timestamp: String,
    pub repository: String,
    /// The tag pushed, deleted or pulled; `None` when by digest.
    pub tag: Option<String>,
    pub digest: String,
    pub media_type: String,
    /// The manifest's size in bytes.
    pub size: u64,
    /// Who did it: the authenticated identity's name, `anonymous` without
    /// credentials or auth, or `pier` for a replication's own pushes.
    pub actor: String,
}

/// The facts of a manifest an event is about.
pub struct Subject<'a> {
    pub repo: &'a RepoName,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub size: u64,
}

impl Event {
    pub fn new(env: &dyn Env, action: Action, subject: &Subject<'_>, tag: Option<&Tag>, actor: &str) -> Event {
        Event {
            id: env.random_id(),
            action,
            timestamp: crate::time::rfc3339(env.now_millis() / 1000),
            repository: subject.repo.to_string(),
            tag: tag.map(|t| t.to_string()),
            digest: subject.digest.to_string(),
            media_type: subject.media_type.to_string(),
            size: subject.size,
            actor: actor.to_string(),
        }
    }
}

/// A `[[webhook]]` or `[[replicate]]` table that cannot be used: which kind,
/// so that a shell can name where it came from (the Worker's var), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HooksError {
    Webhook(String),
    Replicate(String),
}

impl std::fmt::Display for HooksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HooksError::Webhook(why) | HooksError::Replicate(why) => f.write_str(why),
        }
    }
}

/// The id under which a target's deliveries wait in the outbox: a kind
/// letter and a hash of what identifies the target (never its secrets),
/// so it stays the same across restarts and instances.
pub(crate) fn target_id(kind: char, parts: &[&str]) -> String {
    let digest = Digest::of(Algorithm::Sha256, parts.join("\0").as_bytes());
    format!("{kind}{}", digest.hex().get(..15).unwrap_or_default())
}

/// The configured webhooks and replication rules of a deployment, and the
/// bound on the background work they make (one per process or isolate:
/// whatever holds the `Hooks`).
pub struct Hooks {
    webhooks: Vec<Arc<webhook::Webhook>>,
    rules: Vec<Arc<replicate::Rule>>,
    limit: Arc<limit::TaskLimit>,
    /// Lanes waiting to be kicked again, and when.
    due_at: Mutex<HashMap<Lane, u64>>,
    /// The bound on pull events recorded (each a store write anyone may cause).
    pulls: limit::RateLimit,
    /// The namespaces a promotion copies only signed manifests into.
    signatures: Option<Arc<SignatureGate>>,
}

impl Hooks {
    pub fn new(
        webhooks: &[WebhookConfig],
        rules: &[ReplicateConfig],
        signatures: Option<Arc<SignatureGate>>,
        http: Arc<dyn HttpClient>,
        env: Arc<dyn Env>,
    ) -> Result<Hooks, HooksError> {
        let webhooks: Vec<Arc<webhook::Webhook>> = webhooks
            .iter()
            .map(|c| webhook::Webhook::new(c, http.clone()).map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(HooksError::Webhook)?;
        let rules: Vec<Arc<replicate::Rule>> = rules
            .iter()
            .map(|c| replicate::Rule::new(c, signatures.is_some(), http.clone(), env.clone()).map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(HooksError::Replicate)?;
        // Two targets under one id would share their deliveries.
        if let Some(twice) = first_repeated(webhooks.iter().map(|w| w.id())) {
            return Err(HooksError::Webhook(format!(
                "two webhooks with the same url, repository and events (outbox id {twice})"
            )));
        }
        if let Some(twice) = first_repeated(rules.iter().map(|r| r.id())) {
            return Err(HooksError::Replicate(format!(
                "two rules with the same repository, tags and destination (outbox id {twice})"
            )));
        }
        Ok(Hooks {
            webhooks,
            rules,
            limit: Arc::new(limit::TaskLimit::new(limit::MAX_RUNNING, limit::MAX_WAITING, env)),
            due_at: Mutex::default(),
            pulls: limit::RateLimit::new(limit::MAX_PULL_EVENTS_PER_SEC),
            signatures,
        })
    }

    /// The namespaces that require signatures; `None` when none does.
    pub fn signatures(&self) -> Option<&SignatureGate> {
        self.signatures.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && self.rules.is_empty()
    }

    /// Drains dropped over the bound since start (their deliveries wait in
    /// the outbox for the next pass).
    pub fn dropped(&self) -> u64 {
        self.limit.dropped()
    }

    /// The rules' outbox ids, in configuration order.
    pub fn rule_ids(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.id().to_string()).collect()
    }

    /// The targets `event` is for: the webhooks that want it, and (unless
    /// only webhooks are asked for) the rules it asks something of.
    fn targets(&self, event: &Event, webhooks_only: bool) -> Vec<&str> {
        let webhooks = self
            .webhooks
            .iter()
            .filter(|w| w.wants(event.action, &event.repository))
            .map(|w| w.id());
        let rules = self
            .rules
            .iter()
            .filter(|r| !webhooks_only && r.wants(event))
            .map(|r| r.id());
        webhooks.chain(rules).collect()
    }
}

fn first_repeated<'a>(ids: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter().find(|id| !seen.insert(*id))
}

/// Where a lane with new deliveries is handed to be drained when not in a
/// background task of this process: the Worker's queue, whose consumer
/// drains it in an invocation of its own, retried by the platform.
pub trait LaneQueue: MaybeSend + MaybeSync {
    fn enqueue(&self, lane: Lane) -> BoxFuture<'static, Result<(), String>>;
}

/// The hooks of a site: its registry, its outbox and where its background
/// work runs.
#[derive(Clone)]
pub struct EventSink {
    hooks: Arc<Hooks>,
    background: Arc<dyn Background>,
    registry: Registry,
    outbox: Outbox,
    queue: Option<Arc<dyn LaneQueue>>,
    step_budget: Option<Duration>,
}

impl EventSink {
    /// The outbox is the registry's fresh store: deliveries are state that
    /// no cache may hold.
    pub fn new(hooks: Arc<Hooks>, registry: Registry, background: Arc<dyn Background>) -> EventSink {
        let outbox = Outbox::new(registry.fresh_store(), registry.env_arc());
        EventSink {
            hooks,
            background,
            registry,
            outbox,
            queue: None,
            step_budget: None,
        }
    }

    /// Lanes with new deliveries go to `queue` rather than to a background
    /// task.
    pub fn with_queue(mut self, queue: Arc<dyn LaneQueue>) -> EventSink {
        self.queue = Some(queue);
        self
    }

    /// A replication copy stops starting blobs after `budget` and goes on
    /// in the lane's next drain (a Worker invocation's limits).
    pub fn with_step_budget(mut self, budget: Duration) -> EventSink {
        self.step_budget = Some(budget);
        self
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Whether anything acts on `action` events on `repo` (the API skips
    /// building events nobody wants, pulls above all).
    pub fn wants(&self, action: Action, repo: &RepoName) -> bool {
        self.hooks.webhooks.iter().any(|w| w.wants(action, repo.as_str()))
            || (matches!(action, Action::Push | Action::Delete) && self.hooks.rules.iter().any(|r| r.covers(repo)))
    }

    /// Records a delivery of `event` for every target it is for, then has
    /// their lanes drained. Durable when it returns `Ok`: the caller may
    /// acknowledge what caused the event.
    pub async fn emit(&self, event: &Event) -> StoreResult<()> {
        self.record(event, false).await
    }

    /// [`EventSink::emit`] for webhooks alone: a replication's own pushes
    /// start no further rules, so rules cannot loop.
    pub async fn record_for_webhooks(&self, event: &Event) -> StoreResult<()> {
        self.record(event, true).await
    }

    async fn record(&self, event: &Event, webhooks_only: bool) -> StoreResult<()> {
        let now = self.registry.env().now_millis();
        if event.action == Action::Pull && !self.hooks.pulls.admit(now, self.background.as_ref(), "pull events") {
            return Ok(());
        }
        let mut lanes = Vec::new();
        for target in self.hooks.targets(event, webhooks_only) {
            lanes.push(self.outbox.record(target, event).await?);
        }
        for lane in lanes {
            self.kick(lane);
        }
        Ok(())
    }

    /// Has `lane` drained soon: its queue message, or a background task
    /// under the process's bound. Either may be lost (a dropped task, a
    /// crash): the deliveries wait in the outbox for the next pass.
    fn kick(&self, lane: Lane) {
        let sink = self.clone();
        let what = format!("delivery of the events in lane {}/{}", lane.target, lane.lane);
        let task = async move {
            let outcome = match &sink.queue {
                Some(queue) => queue.enqueue(lane.clone()).await,
                None => match sink.drain(&lane).await {
                    Ok(Drained::DueAt(due)) => {
                        sink.kick_at(lane.clone(), due);
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(err) => Err(err.to_string()),
                },
            };
            if let Err(why) = outcome {
                let what = format!("delivery of lane {}/{}", lane.target, lane.lane);
                sink.report(true, &format!("{what}: {why}; the next pass delivers it"));
            }
        };
        self.hooks.limit.spawn(&self.background, &what, Box::pin(task));
    }

    /// Kicks `lane` again when its first delivery is due (after a failed
    /// attempt's backoff), once per lane and time: the waiting holds no
    /// turn of the bound.
    fn kick_at(&self, lane: Lane, due: u64) {
        {
            let mut due_at = self.hooks.due_at.lock().unwrap_or_else(PoisonError::into_inner);
            if due_at.get(&lane).is_some_and(|at| *at <= due) {
                return;
            }
            due_at.insert(lane.clone(), due);
        }
        let sink = self.clone();
        let wait = Duration::from_millis(due.saturating_sub(self.registry.env().now_millis()));
        let sleep = self.background.sleep(wait);
        self.background.spawn(Box::pin(async move {
            sleep.await;
            let mut due_at = sink.hooks.due_at.lock().unwrap_or_else(PoisonError::into_inner);
            if due_at.get(&lane) == Some(&due) {
                due_at.remove(&lane);
            }
            drop(due_at);
            sink.kick(lane);
        }));
    }

    /// Delivers what is due in `lane`.
    pub async fn drain(&self, lane: &Lane) -> StoreResult<Drained> {
        self.outbox.drain(lane, self).await
    }

    /// Delivers what is due in every lane; when the earliest delivery left
    /// is due.
    pub async fn drain_all(&self) -> StoreResult<Option<u64>> {
        self.outbox.drain_all(self).await
    }

    /// Puts dead deliveries (those of `ids`, or all) back in their lanes
    /// and has them drained; how many lanes.
    pub async fn retry_dead(&self, ids: &[String]) -> StoreResult<usize> {
        let lanes = self.outbox.retry_dead(ids).await?;
        let count = lanes.len();
        for lane in lanes {
            self.kick(lane);
        }
        Ok(count)
    }

    /// Records a push event for every existing tag rule `rule_id` matches;
    /// how many.
    pub async fn backfill(&self, rule_id: &str) -> Result<usize, RegistryError> {
        let Some(rule) = self.hooks.rules.iter().find(|r| r.id() == rule_id) else {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("no replication rule has the id {rule_id:?}"),
            ));
        };
        let events = rule.existing_tags(&self.registry).await?;
        let mut lanes = Vec::new();
        for event in &events {
            let lane = self.outbox.record(rule.id(), event).await?;
            if !lanes.contains(&lane) {
                lanes.push(lane);
            }
        }
        for lane in lanes {
            self.kick(lane);
        }
        Ok(events.len())
    }

    /// Backfills each rule configured with `backfill` that has not been
    /// backfilled yet (a marker in the store says it was, so it happens
    /// once per rule, whichever instance gets there first).
    pub async fn backfill_new_rules(&self) -> Result<(), RegistryError> {
        let store = self.registry.fresh_store();
        for rule in self.hooks.rules.iter().filter(|r| r.backfills()) {
            let marker = crate::layout::event_backfilled(rule.id());
            let now = self.registry.env().now_millis().to_string();
            match store.put(&marker, now.into(), PutMode::Create).await {
                Ok(_) => {}
                Err(StoreError::AlreadyExists) => continue,
                Err(err) => return Err(err.into()),
            }
            let count = self.backfill(rule.id()).await?;
            self.report(
                false,
                &format!(
                    "replication rule {}: backfill of {count} existing tags recorded",
                    rule.id()
                ),
            );
        }
        Ok(())
    }

    pub(crate) fn report(&self, failed: bool, message: &str) {
        self.background.report(failed, message);
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Deliverer for EventSink {
    fn attempts(&self, target: &str) -> Option<u32> {
        let webhook = self
            .hooks
            .webhooks
            .iter()
            .find(|w| w.id() == target)
            .map(|w| w.attempts());
        webhook.or_else(|| self.hooks.rules.iter().find(|r| r.id() == target).map(|r| r.attempts()))
    }

    async fn attempt(&self, target: &str, event: &Event) -> Attempt {
        if let Some(hook) = self.hooks.webhooks.iter().find(|w| w.id() == target) {
            return match hook.attempt(event, self.background.as_ref()).await {
                Ok(()) => Attempt::Delivered,
                Err(why) => {
                    self.report(true, &format!("webhook {target} for event {}: {why}", event.id));
                    Attempt::Failed(why)
                }
            };
        }
        let Some(rule) = self.hooks.rules.iter().find(|r| r.id() == target) else {
            return Attempt::Failed(format!("no webhook or rule {target} here"));
        };
        let deadline = self
            .step_budget
            .map(|budget| self.registry.env().now_millis() + budget.as_millis() as u64);
        let attempt = rule.attempt(&self.registry, self, event, deadline).await;
        if let Attempt::Failed(why) | Attempt::Refused(why) = &attempt {
            self.report(
                true,
                &format!("replication rule {target} for event {}: {why}", event.id),
            );
        }
        attempt
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.background.sleep(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::NoNetwork;
    use crate::testing::TestEnv;

    fn hooks(webhooks: &str, rules: &str) -> Result<Hooks, HooksError> {
        let webhooks: Vec<WebhookConfig> = serde_json::from_str(webhooks).unwrap();
        let rules: Vec<ReplicateConfig> = serde_json::from_str(rules).unwrap();
        Hooks::new(&webhooks, &rules, None, Arc::new(NoNetwork), Arc::new(TestEnv::at(0)))
    }

    #[test]
    fn a_bad_table_is_told_apart_by_kind() {
        let webhook = r#"[{"url": "http://h/"}]"#;
        let rule = r#"[{"repository": "ci/**", "to_namespace": "prod/**"}]"#;
        assert!(hooks(webhook, rule).is_ok());
        assert!(matches!(
            hooks(r#"[{"url": "ftp://h/"}]"#, rule),
            Err(HooksError::Webhook(_))
        ));
        assert!(matches!(
            hooks(webhook, r#"[{"repository": "ci/**"}]"#),
            Err(HooksError::Replicate(_))
        ));
    }
}
