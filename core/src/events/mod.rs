//! Events: a manifest was pushed, deleted or pulled. The API layer reports
//! one after it answered a request successfully (it knows the caller); the
//! deployment's webhooks (`webhook`) and replication rules (`replicate`)
//! act on it. Their work runs as background tasks of the platform
//! ([`Background`]), so the response to the client never waits for a
//! receiver or a copy, and failed attempts are retried with backoff
//! (`retry`). Those tasks are bounded per process (`limit`): over the
//! bound, work is dropped and counted, never queued without end.
//!
//! Configuration is the same on both shells: `[[webhook]]` and
//! `[[replicate]]` tables natively, JSON arrays in `PIER_WEBHOOKS` and
//! `PIER_REPLICATE` on the Worker.

pub mod limit;
pub mod replicate;
pub mod retry;
pub mod webhook;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::names::{RepoName, Tag};
use crate::platform::{Background, Env};
use crate::registry::Registry;
use crate::remote::http::HttpClient;

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
#[derive(Clone, Debug, PartialEq, Serialize)]
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

/// The configured webhooks and replication rules of a deployment, and the
/// bound on the background work they make (one per process or isolate:
/// whatever holds the `Hooks`).
pub struct Hooks {
    webhooks: Vec<Arc<webhook::Webhook>>,
    rules: Vec<Arc<replicate::Rule>>,
    limit: Arc<limit::TaskLimit>,
}

impl Hooks {
    pub fn new(
        webhooks: &[WebhookConfig],
        rules: &[ReplicateConfig],
        http: Arc<dyn HttpClient>,
        env: Arc<dyn Env>,
    ) -> Result<Hooks, HooksError> {
        Ok(Hooks {
            webhooks: webhooks
                .iter()
                .map(|c| webhook::Webhook::new(c, http.clone()).map(Arc::new))
                .collect::<Result<_, _>>()
                .map_err(HooksError::Webhook)?,
            rules: rules
                .iter()
                .map(|c| replicate::Rule::new(c, http.clone(), env.clone()).map(Arc::new))
                .collect::<Result<_, _>>()
                .map_err(HooksError::Replicate)?,
            limit: Arc::new(limit::TaskLimit::new(limit::MAX_RUNNING, limit::MAX_WAITING, env)),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && self.rules.is_empty()
    }

    /// Deliveries and copies dropped over the bound since start.
    pub fn dropped(&self) -> u64 {
        self.limit.dropped()
    }
}

/// The hooks with the platform's background tasks, as a registry holds them.
#[derive(Clone)]
pub struct EventSink {
    hooks: Arc<Hooks>,
    background: Arc<dyn Background>,
}

impl EventSink {
    pub fn new(hooks: Arc<Hooks>, background: Arc<dyn Background>) -> EventSink {
        EventSink { hooks, background }
    }

    /// Whether anything acts on `action` events on `repo` (the API skips
    /// building events nobody wants, pulls above all).
    pub fn wants(&self, action: Action, repo: &RepoName) -> bool {
        self.hooks.webhooks.iter().any(|w| w.wants(action, repo.as_str()))
            || (action == Action::Push && self.hooks.rules.iter().any(|r| r.covers(repo)))
    }

    /// Starts what `event` calls for: deliveries to the webhooks that want
    /// it and, for a push, the replication rules that match (a tag push) or
    /// that follow referrers pushed to the repository (a push by digest,
    /// which may be a signature of something they copied). Returns at once; the work runs in the
    /// background.
    pub fn emit(&self, registry: &Registry, event: Event) {
        if event.action == Action::Push {
            let parsed = (RepoName::parse(&event.repository), Digest::parse(&event.digest).ok());
            if let (Some(repo), Some(digest)) = parsed {
                match event.tag.as_deref().map(Tag::parse) {
                    Some(Some(tag)) => {
                        for rule in self.hooks.rules.iter().filter(|r| r.matches(&repo, &tag)) {
                            let task = rule.clone().run(
                                registry.clone(),
                                self.clone(),
                                repo.clone(),
                                tag.clone(),
                                digest.clone(),
                            );
                            self.spawn(&format!("replication of {repo}:{tag}"), Box::pin(task));
                        }
                    }
                    Some(None) => {}
                    None => {
                        for rule in self.hooks.rules.iter().filter(|r| r.follows_referrers_of(&repo)) {
                            let task = rule.clone().follow_referrer(
                                registry.clone(),
                                self.clone(),
                                repo.clone(),
                                digest.clone(),
                            );
                            self.spawn(&format!("replication of {repo}@{digest}"), Box::pin(task));
                        }
                    }
                }
            }
        }
        self.notify(event);
    }

    /// Delivers `event` to the webhooks that want it, and only to them.
    pub fn notify(&self, event: Event) {
        let event = Arc::new(event);
        for hook in self
            .hooks
            .webhooks
            .iter()
            .filter(|w| w.wants(event.action, &event.repository))
        {
            let task = hook.clone().deliver(event.clone(), self.background.clone());
            let what = format!("webhook delivery of {} {}", event.action.as_str(), event.repository);
            self.spawn(&what, Box::pin(task));
        }
    }

    /// Starts background work under the process's bound.
    fn spawn(&self, what: &str, task: crate::platform::BoxFuture<'static, ()>) {
        self.hooks.limit.spawn(&self.background, what, task);
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
        Hooks::new(&webhooks, &rules, Arc::new(NoNetwork), Arc::new(TestEnv::at(0)))
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
