//! Replication and promotion rules: a tag pushed in a namespace (`ci/**`,
//! tags `v*`) is copied by digest to another namespace of this registry
//! (`prod/**`: blobs are mounted, no bytes move) or to another registry,
//! under the same tag. The copy is `remote::copy`'s, so the destination gets
//! the same manifest bytes and digest; it runs in the background, retried
//! with backoff, and is done by the registry itself: the pusher's rights on
//! the destination do not matter (the operator who wrote the rule decided).
//! A replication's own pushes are told to webhooks (actor `pier`) but start
//! no further rules, so rules cannot loop.
//!
//! Referrers go only as the rule says: whoever may push the source may
//! attach anything to an image, so a rule carries the referrers of the
//! artifact types it lists (`referrers`, none by default) when the image is
//! copied, and one pushed later (a signature made after the promotion)
//! follows it to the destination only with `follow_referrers`.

use std::sync::Arc;

use serde::Deserialize;

use super::retry::{self, retrying};
use super::{Action, Event, EventSink, Subject};
use crate::digest::Digest;
use crate::glob::Glob;
use crate::manifest;
use crate::mirror::namespace_prefix;
use crate::names::{RepoName, Tag};
use crate::platform::Env;
use crate::records::Reference;
use crate::registry::Registry;
use crate::remote::copy::{copy_image, ImageStore, Quiet, Referrers, RemoteRepo};
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
    /// Origins (`https://host[:port]`) besides `to_registry`'s own where its
    /// token endpoint may be (`remote::token::TokenRealms`).
    #[serde(default)]
    pub token_realms: Vec<String>,
    /// Attempts per pushed tag before giving up.
    #[serde(default = "retry::default_attempts")]
    pub attempts: u32,
    /// The artifact types (globs, e.g. `application/vnd.dev.cosign.*`) of
    /// the referrers copied with an image; none by default.
    #[serde(default)]
    pub referrers: Vec<String>,
    /// Whether a referrer of those types pushed to the source after its
    /// image was copied follows it. Off by default.
    #[serde(default)]
    pub follow_referrers: bool,
}

pub struct Rule {
    source_prefix: String,
    tags: Glob,
    target_prefix: String,
    /// The other registry; `None`: this one.
    remote: Option<Arc<RegistryClient>>,
    attempts: u32,
    referrers: Referrers,
    follow_referrers: bool,
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
            Some(url) => Some(Arc::new(
                RegistryClient::new(http, env, url, credentials, &config.token_realms).map_err(at)?,
            )),
            None if credentials.is_some() => return Err(at("username and password need to_registry".into())),
            None if target_prefix == source_prefix => {
                return Err(at(
                    "to_namespace or to_registry is needed: it would copy onto itself".into()
                ))
            }
            None => None,
        };
        let referrer_types = config
            .referrers
            .iter()
            .map(|t| Glob::new(t).map_err(|why| at(format!("referrers: {why}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if config.follow_referrers && referrer_types.is_empty() {
            return Err(at(
                "follow_referrers needs the artifact types to follow in referrers".into()
            ));
        }
        Ok(Rule {
            source_prefix,
            tags: Glob::new(&config.tags).map_err(at)?,
            target_prefix,
            remote,
            attempts: retry::check_attempts(config.attempts).map_err(at)?,
            referrers: Referrers::OfTypes(referrer_types),
            follow_referrers: config.follow_referrers,
        })
    }

    /// Whether a manifest pushed by digest to `repo` may have to follow
    /// what this rule copied there.
    pub fn follows_referrers_of(&self, repo: &RepoName) -> bool {
        self.follow_referrers && self.covers(repo)
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
        let Some(target) = self.target(&repo) else {
            let why = format!("replication of {repo}: no valid destination name");
            sink.background.report(true, &why);
            return;
        };
        self.copy(&registry, &sink, &repo, &target, &digest, Some(&tag)).await;
    }

    /// Follows a manifest pushed by digest to `repo` (any tag filter) to
    /// the destination when it refers to a manifest that is there and is of
    /// an artifact type the rule carries: a signature or SBOM made after its
    /// image was copied.
    pub async fn follow_referrer(self: Arc<Self>, registry: Registry, sink: EventSink, repo: RepoName, digest: Digest) {
        if !self.follow_referrers {
            return;
        }
        let Ok(pushed) = registry.manifest(&repo, &Reference::Digest(digest.clone())).await else {
            return;
        };
        let Ok(parsed) = manifest::parse_stored(&pushed.bytes) else {
            return;
        };
        let Some(subject) = parsed.subject.clone() else {
            return;
        };
        let Some(target) = self.target(&repo) else {
            return;
        };
        // Only where the image went: a rule's tag filter chose it.
        if !matches!(
            self.destination(&registry, &target).has_manifest(&subject.digest).await,
            Ok(true)
        ) {
            return;
        }
        if !self.referrers.carries(&parsed) {
            let why = format!(
                "replication {repo}@{digest} -> {}: not carried, a referrer of artifact type {:?} \
                 (the rule carries referrers of the types in its `referrers`, indexes never)",
                self.describe(&target),
                parsed.referrer_artifact_type().unwrap_or("none"),
            );
            sink.background.report(false, &why);
            return;
        }
        self.copy(&registry, &sink, &repo, &target, &digest, None).await;
    }

    fn destination(&self, registry: &Registry, target: &RepoName) -> Box<dyn ImageStore> {
        match &self.remote {
            Some(client) => Box::new(RemoteRepo {
                client: client.clone(),
                repo: target.clone(),
            }),
            None => Box::new(LocalRepo {
                registry: registry.clone(),
                repo: target.clone(),
            }),
        }
    }

    /// The copy itself, retried; a promotion within this registry is told
    /// to webhooks as a push.
    async fn copy(
        &self,
        registry: &Registry,
        sink: &EventSink,
        repo: &RepoName,
        target: &RepoName,
        digest: &Digest,
        tag: Option<&Tag>,
    ) {
        let background = sink.background.clone();
        let at_tag = tag.map(|t| format!(":{t}")).unwrap_or_default();
        let what = format!(
            "replication {repo}{at_tag}@{digest} -> {}{at_tag}",
            self.describe(target)
        );
        let src = LocalRepo {
            registry: registry.clone(),
            repo: repo.clone(),
        };
        let dst = self.destination(registry, target);
        let (src, dst, reference) = (&src, dst.as_ref(), &Reference::Digest(digest.clone()));
        let referrers = &self.referrers;
        let result = retrying(background.as_ref(), &what, self.attempts, |_| async move {
            copy_image(src, reference, dst, tag, referrers, Arc::new(Quiet), PARALLEL_BLOBS)
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
            // The promoted manifest is a push here too: webhooks hear of it.
            if let Ok(pushed) = registry.manifest(target, reference).await {
                let subject = Subject {
                    repo: target,
                    digest,
                    media_type: &pushed.media_type,
                    size: pushed.bytes.len() as u64,
                };
                sink.notify(Event::new(
                    registry.env(),
                    Action::Push,
                    &subject,
                    tag,
                    REPLICATION_ACTOR,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::NoNetwork;

    fn rule(text: &str) -> Result<Rule, String> {
        let config: ReplicateConfig = serde_json::from_str(text).unwrap();
        Rule::new(&config, Arc::new(NoNetwork), Arc::new(crate::testing::TestEnv::at(0)))
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
            r#"{"repository": "ci/**", "to_namespace": "prod/**", "follow_referrers": true}"#,
            r#"{"repository": "ci/**", "to_namespace": "prod/**", "referrers": [""]}"#,
            r#"{"repository": "ci/**", "to_registry": "https://b", "token_realms": ["https://a/token"]}"#,
            r#"{"repository": "ci/**", "to_registry": "https://b", "token_realms": ["http://a"]}"#,
        ] {
            assert!(rule(bad).is_err(), "{bad}");
        }
    }
}
