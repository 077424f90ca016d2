//! Replication and promotion rules: a tag pushed in a namespace (`ci/**`,
//! tags `v*`) is copied by digest to another namespace of this registry
//! (`prod/**`: blobs are mounted, no bytes move) or to another registry,
//! under the same tag. The copy is `remote::copy`'s, so the destination gets
//! the same manifest bytes and digest; it runs in the background, retried
//! with backoff, and is done by the registry itself: the pusher's rights on
//! the destination do not matter (the operator who wrote the rule decided).
//! A replication's own pushes are told to webhooks (actor `pier`) but start
//! no further rules, so rules cannot loop.

use std::sync::Arc;

use serde::Deserialize;

use super::retry::{self, retrying};
use super::{Action, Event, EventSink, Subject};
use crate::digest::Digest;
use crate::glob::Glob;
use crate::mirror::namespace_prefix;
use crate::names::{RepoName, Tag};
use crate::platform::Env;
use crate::registry::{Reference, Registry};
use crate::remote::copy::{copy_image, ImageStore, Quiet, RemoteRepo};
use crate::remote::http::HttpClient;
use crate::remote::local::LocalRepo;
use crate::remote::{Credentials, RegistryClient};

/// Blobs copied at once by one replication.
const PARALLEL_BLOBS: usize = 2;
/// The actor of the pushes replication makes.
pub const REPLICATION_ACTOR: &str = "pier";

fn every_tag() -> String {
    "*".into()
}

/// One rule, as configured (`[[replicate]]` on native).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplicateConfig {
    /// The source namespace: `prefix/**`, or `**`.
    pub repository: String,
    /// Which tags: a glob (`v*`). Default: every tag.
    #[serde(default = "every_tag")]
    pub tags: String,
    /// The destination namespace (`prod/**`); the source prefix is replaced
    /// by it. Default: the same names (only with `to_registry`).
    pub to_namespace: Option<String>,
    /// Another registry's base URL; default: this registry.
    pub to_registry: Option<String>,
    /// Credentials for `to_registry` (both or neither).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Attempts per pushed tag before giving up.
    #[serde(default = "retry::default_attempts")]
    pub attempts: u32,
}

pub struct Rule {
    source_prefix: String,
    tags: Glob,
    target_prefix: String,
    /// The other registry; `None`: this one.
    remote: Option<Arc<RegistryClient>>,
    attempts: u32,
}

impl Rule {
    pub fn new(config: &ReplicateConfig, http: Arc<dyn HttpClient>, env: Arc<dyn Env>) -> Result<Rule, String> {
        let at = |why: String| format!("replication of {:?}: {why}", config.repository);
        let source_prefix = namespace_prefix(&config.repository).map_err(at)?;
        let target_prefix = match &config.to_namespace {
            Some(namespace) => namespace_prefix(namespace).map_err(at)?,
            None => source_prefix.clone(),
        };
        let credentials = Credentials::from_config(&config.username, &config.password).map_err(at)?;
        let remote = match &config.to_registry {
            Some(url) => Some(Arc::new(RegistryClient::new(http, env, url, credentials).map_err(at)?)),
            None if credentials.is_some() => return Err(at("username and password need to_registry".into())),
            None if target_prefix == source_prefix => {
                return Err(at(
                    "to_namespace or to_registry is needed: it would copy onto itself".into()
                ))
            }
            None => None,
        };
        Ok(Rule {
            source_prefix,
            tags: Glob::new(&config.tags).map_err(at)?,
            target_prefix,
            remote,
            attempts: retry::check_attempts(config.attempts).map_err(at)?,
        })
    }

    /// Whether pushes to `repo` may concern this rule (whatever the tag).
    pub fn covers(&self, repo: &RepoName) -> bool {
        repo.as_str().starts_with(&self.source_prefix)
    }

    pub fn matches(&self, repo: &RepoName, tag: &Tag) -> bool {
        self.covers(repo) && self.tags.matches(tag.as_str())
    }

    /// Where `repo` goes.
    fn target(&self, repo: &RepoName) -> Option<RepoName> {
        let rest = repo.as_str().strip_prefix(&self.source_prefix)?;
        RepoName::parse(&format!("{}{rest}", self.target_prefix))
    }

    fn describe(&self, target: &RepoName) -> String {
        match &self.remote {
            Some(client) => format!("{}{target}", client.base()),
            None => target.to_string(),
        }
    }

    /// Copies `digest` from `repo` to the destination, tagged `tag` there.
    pub async fn run(self: Arc<Self>, registry: Registry, sink: EventSink, repo: RepoName, tag: Tag, digest: Digest) {
        let background = sink.background.clone();
        let Some(target) = self.target(&repo) else {
            background.report(true, &format!("replication of {repo}: no valid destination name"));
            return;
        };
        let what = format!("replication {repo}:{tag}@{digest} -> {}:{tag}", self.describe(&target));
        let src = LocalRepo {
            registry: registry.clone(),
            repo: repo.clone(),
        };
        let dst: Box<dyn ImageStore> = match &self.remote {
            Some(client) => Box::new(RemoteRepo {
                client: client.clone(),
                repo: target.clone(),
            }),
            None => Box::new(LocalRepo {
                registry: registry.clone(),
                repo: target.clone(),
            }),
        };
        let (src, dst, reference, tag_ref) = (&src, dst.as_ref(), &Reference::Digest(digest.clone()), &tag);
        let result = retrying(background.as_ref(), &what, self.attempts, |_| async move {
            copy_image(src, reference, dst, Some(tag_ref), Arc::new(Quiet), PARALLEL_BLOBS)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await;
        if let Err(why) = result {
            background.report(
                true,
                &format!("{what}: given up after {} attempts: {why}", self.attempts),
            );
            return;
        }
        background.report(false, &format!("{what}: done"));
        if self.remote.is_none() {
            // The promoted tag is a push here too: webhooks hear of it.
            if let Ok(pushed) = registry.manifest(&target, reference).await {
                let subject = Subject {
                    repo: &target,
                    digest: &digest,
                    media_type: &pushed.media_type,
                    size: pushed.bytes.len() as u64,
                };
                sink.notify(Event::new(
                    registry.env(),
                    Action::Push,
                    &subject,
                    Some(&tag),
                    REPLICATION_ACTOR,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::remote::http::NoNetwork;

    fn rule(text: &str) -> Result<Rule, String> {
        let config: ReplicateConfig = serde_json::from_str(text).unwrap();
        Rule::new(
            &config,
            Arc::new(NoNetwork),
            Arc::new(crate::auth::testing::FixedEnv::at(0)),
        )
    }

    fn name(text: &str) -> RepoName {
        RepoName::parse(text).unwrap()
    }

    #[test]
    fn promotion_rewrites_the_namespace_for_matching_tags() {
        let promote = rule(r#"{"repository": "ci/**", "tags": "v*", "to_namespace": "prod/**"}"#).unwrap();
        let tag = |t: &str| Tag::parse(t).unwrap();
        assert!(promote.matches(&name("ci/app"), &tag("v1")));
        assert!(!promote.matches(&name("ci/app"), &tag("dev")));
        assert!(!promote.matches(&name("cix/app"), &tag("v1")));
        assert_eq!(promote.target(&name("ci/team/app")), Some(name("prod/team/app")));
        let everything = rule(r#"{"repository": "**", "to_registry": "https://b.example"}"#).unwrap();
        assert_eq!(everything.target(&name("a/b")), Some(name("a/b")));
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            r#"{"repository": "ci/**"}"#,
            r#"{"repository": "ci/**", "to_namespace": "ci/**"}"#,
            r#"{"repository": "ci/*", "to_namespace": "prod/**"}"#,
            r#"{"repository": "ci/**", "to_namespace": "prod/**", "username": "u", "password": "p"}"#,
            r#"{"repository": "ci/**", "to_registry": "https://b", "username": "u"}"#,
            r#"{"repository": "ci/**", "to_registry": "ftp://b"}"#,
        ] {
            assert!(rule(bad).is_err(), "{bad}");
        }
    }
}
