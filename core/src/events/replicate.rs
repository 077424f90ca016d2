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
//! follows it to the destination only with `follow_referrers`. cosign's
//! tag-mode signatures (`sha256-<hex>.sig`) go with `signature_tags`.
//!
//! Into a namespace whose policy requires signatures (`signing`), a rule
//! copies only a manifest signed in the source repository by one of that
//! policy's keys, and its signatures (both of cosign's forms) always go
//! with it: they are what makes it pullable there. A refused promotion is
//! a dead letter at once, with the reason; the push of a signature of that
//! manifest to the source (cosign signs after the push) revives it, and it
//! is promoted then.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Deserialize;

use super::outbox::{Attempt, Lane};
use super::retry;
use super::{target_id, Action, Event, EventSink, Subject};
use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError};
use crate::glob::Glob;
use crate::manifest;
use crate::mirror::namespace_prefix;
use crate::names::{RepoName, Tag};
use crate::platform::Env;
use crate::records::{Reference, StoredManifest};
use crate::registry::Registry;
use crate::remote::copy::{copy_image, ImageStore, ManifestRole, Quiet, Referrers, RemoteRepo};
use crate::remote::http::{HttpBody, HttpClient};
use crate::remote::local::LocalRepo;
use crate::remote::{Credentials, RegistryClient, RemoteError};
use crate::signing::{self, cosign, Requirement, Verdict};

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
    /// Whether deletes at the source (of a tag, or of a manifest by digest)
    /// are done at the destination too. Off by default.
    #[serde(default)]
    pub deletes: bool,
    /// Whether the rule, the first time an instance runs it, copies the
    /// tags it matches that exist already. Off by default; `pier events
    /// backfill` (or the admin endpoint) does it on request.
    #[serde(default)]
    pub backfill: bool,
    /// Whether cosign's tag-mode signature of a copied manifest (the tag
    /// `sha256-<hex>.sig`) goes with it, and with `follow_referrers` one
    /// pushed later. Off by default; always on into a namespace that
    /// requires signatures.
    #[serde(default)]
    pub signature_tags: bool,
}

pub struct Rule {
    id: String,
    source_prefix: String,
    tags: Glob,
    target_prefix: String,
    /// The other registry; `None`: this one.
    remote: Option<Arc<RegistryClient>>,
    attempts: u32,
    referrers: Referrers,
    follow_referrers: bool,
    deletes: bool,
    backfill: bool,
    signature_tags: bool,
    /// Whether a destination of this rule may require signatures (the
    /// registry has such a namespace, and the rule copies within it).
    maybe_gated: bool,
}

impl Rule {
    /// `signatures_required`: whether any namespace of this registry
    /// requires signatures.
    pub fn new(
        config: &ReplicateConfig,
        signatures_required: bool,
        http: Arc<dyn HttpClient>,
        env: Arc<dyn Env>,
    ) -> Result<Rule, String> {
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
        let destination =
            [config.to_namespace.as_deref(), config.to_registry.as_deref()].map(Option::unwrap_or_default);
        Ok(Rule {
            id: target_id('r', &[&config.repository, &config.tags, destination[0], destination[1]]),
            source_prefix,
            tags: Glob::new(&config.tags).map_err(at)?,
            target_prefix,
            attempts: retry::check_attempts(config.attempts).map_err(at)?,
            referrers: Referrers::OfTypes(referrer_types),
            follow_referrers: config.follow_referrers,
            deletes: config.deletes,
            backfill: config.backfill,
            signature_tags: config.signature_tags,
            maybe_gated: signatures_required && remote.is_none(),
            remote,
        })
    }

    /// Where its deliveries wait in the outbox (see `Webhook::id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether the rule copies existing tags when it is new.
    pub fn backfills(&self) -> bool {
        self.backfill
    }

    /// Whether `event` asks something of this rule: a tag it matches
    /// pushed, a manifest pushed by digest it may have to follow, a delete
    /// it propagates.
    pub fn wants(&self, event: &Event) -> bool {
        let Some(repo) = RepoName::parse(&event.repository).filter(|r| self.covers(r)) else {
            return false;
        };
        let tag_matches = |tag: &str| self.tags.matches(tag);
        match (event.action, event.tag.as_deref()) {
            (Action::Push, Some(tag)) => tag_matches(tag) || self.takes_signature_tag(tag),
            (Action::Push, None) => self.follows_referrers_of(&repo) || self.maybe_gated,
            (Action::Delete, tag) => self.deletes && tag.is_none_or(tag_matches),
            (Action::Pull, _) => false,
        }
    }

    /// Whether a manifest pushed by digest to `repo` may have to follow
    /// what this rule copied there.
    pub fn follows_referrers_of(&self, repo: &RepoName) -> bool {
        self.follow_referrers && self.covers(repo)
    }

    /// Whether a push of `tag` is cosign's tag-mode signature of a manifest
    /// this rule may carry signatures of (or whose promotion it waits for).
    fn takes_signature_tag(&self, tag: &str) -> bool {
        (self.signature_tags || self.maybe_gated) && cosign::attachment_tag_subject(tag).is_some_and(|(_, sig)| sig)
    }

    /// Whether pushes to `repo` may concern this rule (whatever the tag).
    pub fn covers(&self, repo: &RepoName) -> bool {
        repo.as_str().starts_with(&self.source_prefix)
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

    /// One attempt at what `event` asks of this rule: the copy of a pushed
    /// tag, of a referrer pushed by digest, or (with `deletes`) a delete.
    /// A copy with a `deadline` (ms) stops starting blobs once it has
    /// passed, and the next step goes on where it stopped.
    pub async fn attempt(
        &self,
        registry: &Registry,
        sink: &EventSink,
        event: &Event,
        deadline: Option<u64>,
    ) -> Attempt {
        let (Some(repo), Ok(digest)) = (RepoName::parse(&event.repository), Digest::parse(&event.digest)) else {
            return Attempt::Failed(format!("event {} names no repository and digest", event.id));
        };
        let tag = match event.tag.as_deref().map(Tag::parse) {
            Some(Some(tag)) => Some(tag),
            Some(None) => return Attempt::Failed(format!("event {} names a bad tag", event.id)),
            None => None,
        };
        let Some(target) = self.target(&repo) else {
            return Attempt::Failed(format!("replication of {repo}: no valid destination name"));
        };
        let job = Job {
            registry,
            sink,
            repo: &repo,
            target: &target,
            digest: &digest,
            deadline,
        };
        match event.action {
            Action::Push => match tag {
                Some(tag) if self.takes_signature_tag(tag.as_str()) => self.signature_tag_pushed(&job, &tag).await,
                Some(tag) => self.copy(&job, Some(&tag)).await,
                None => self.follow_referrer(&job).await,
            },
            Action::Delete if self.deletes => self.delete(registry, &target, &digest, tag.as_ref()).await,
            Action::Delete | Action::Pull => Attempt::Delivered,
        }
    }

    /// Follows a manifest pushed by digest to `repo` (any tag filter) to
    /// the destination when it refers to a manifest that is there and is of
    /// an artifact type the rule carries: a signature or SBOM made after its
    /// image was copied. A cosign signature also revives the refused
    /// promotions of what it signs. Anything else is done with at once.
    async fn follow_referrer(&self, job: &Job<'_>) -> Attempt {
        let (registry, repo, target, digest) = (job.registry, job.repo, job.target, job.digest);
        let gated = self.requirement(job).is_some();
        if !self.follow_referrers && !gated {
            return Attempt::Delivered;
        }
        let Ok(pushed) = registry.manifest(repo, &Reference::Digest(digest.clone())).await else {
            return Attempt::Delivered;
        };
        let Ok(parsed) = manifest::parse_stored(&pushed.bytes) else {
            return Attempt::Delivered;
        };
        let Some(subject) = parsed.subject.as_ref() else {
            return Attempt::Delivered;
        };
        let is_signature = parsed.referrer_artifact_type() == Some(cosign::SIGNATURE_ARTIFACT_TYPE);
        if gated && is_signature {
            if let Err(failed) = self.revive_refused(job, &subject.digest).await {
                return failed;
            }
        }
        let follows = self.follow_referrers || (gated && is_signature);
        if !follows {
            return Attempt::Delivered;
        }
        // Only where the image went: a rule's tag filter chose it.
        match self.destination(registry, target).has_manifest(&subject.digest).await {
            Ok(true) => {}
            Ok(false) => return Attempt::Delivered,
            Err(err) => return Attempt::Failed(err.to_string()),
        }
        if !self.carried_referrers(gated).carries(&parsed) {
            let why = format!(
                "replication {repo}@{digest} -> {}: not carried, a referrer of artifact type {:?} \
                 (the rule carries referrers of the types in its `referrers`, indexes never)",
                self.describe(target),
                parsed.referrer_artifact_type().unwrap_or("none"),
            );
            job.sink.report(false, &why);
            return Attempt::Delivered;
        }
        self.copy(job, None).await
    }

    /// A push of cosign's tag-mode signature (`sha256-<hex>.sig`) of a
    /// manifest: revives the refused promotions of that manifest, and goes
    /// where the manifest went (into a namespace that requires signatures,
    /// or with `signature_tags` and `follow_referrers`).
    async fn signature_tag_pushed(&self, job: &Job<'_>, tag: &Tag) -> Attempt {
        let Some((subject, _)) = cosign::attachment_tag_subject(tag.as_str()) else {
            return Attempt::Delivered;
        };
        let gated = self.requirement(job).is_some();
        if gated {
            if let Err(failed) = self.revive_refused(job, &subject).await {
                return failed;
            }
        }
        let follows = gated || (self.signature_tags && self.follow_referrers);
        if !follows {
            return Attempt::Delivered;
        }
        match self.destination(job.registry, job.target).has_manifest(&subject).await {
            Ok(true) => self.copy_signature(job, job.digest, tag).await,
            Ok(false) => Attempt::Delivered,
            Err(err) => Attempt::Failed(err.to_string()),
        }
    }

    /// Puts this lane's refused promotions of `subject` back in it: a
    /// signature of it has arrived, so the next look may find it signed.
    /// (They are promoted by this same drain, which holds the lane.)
    async fn revive_refused(&self, job: &Job<'_>, subject: &Digest) -> Result<(), Attempt> {
        let lane = Lane::of(&self.id, job.repo.as_str());
        let wanted = |event: &Event| event.action == Action::Push && event.digest == subject.as_str();
        match job.sink.outbox().revive(&lane, wanted).await {
            Ok(0) => Ok(()),
            Ok(revived) => {
                job.sink.report(
                    false,
                    &format!(
                        "replication {}@{subject}: a signature arrived, {revived} refused promotion(s) tried again",
                        job.repo
                    ),
                );
                Ok(())
            }
            Err(err) => Err(Attempt::Failed(format!("reviving refused promotions: {err}"))),
        }
    }

    /// The signature requirement of the destination, when this rule copies
    /// within this registry into a namespace that has one.
    fn requirement<'a>(&self, job: &Job<'a>) -> Option<Requirement<'a>> {
        if !self.maybe_gated {
            return None;
        }
        job.sink.hooks().signatures()?.requirement(job.target)
    }

    /// The referrers that go with an image: the rule's types, and into a
    /// namespace that requires signatures cosign's signatures too.
    fn carried_referrers(&self, gated: bool) -> Referrers {
        let Referrers::OfTypes(types) = &self.referrers else {
            return Referrers::All;
        };
        let mut types = types.clone();
        if gated {
            if let Ok(signatures) = Glob::new(cosign::SIGNATURE_ARTIFACT_TYPE) {
                types.push(signatures);
            }
        }
        Referrers::OfTypes(types)
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

    /// The copy itself; a promotion within this registry is told to
    /// webhooks as a push.
    async fn copy(&self, job: &Job<'_>, tag: Option<&Tag>) -> Attempt {
        let (registry, sink, repo, target, digest) = (job.registry, job.sink, job.repo, job.target, job.digest);
        let at_tag = tag.map(|t| format!(":{t}")).unwrap_or_default();
        let what = format!(
            "replication {repo}{at_tag}@{digest} -> {}{at_tag}",
            self.describe(target)
        );
        let requirement = self.requirement(job);
        let signed_by = match &requirement {
            Some(requirement) => match self.check_signed(job, requirement, &what).await {
                Ok(signed_by) => signed_by,
                Err(refused) => return refused,
            },
            None => None,
        };
        let src = LocalRepo {
            registry: registry.clone(),
            repo: repo.clone(),
        };
        let dst = StepBudget {
            inner: self.destination(registry, target),
            env: registry.env_arc(),
            deadline: job.deadline,
            ran_out: AtomicBool::new(false),
        };
        let reference = Reference::Digest(digest.clone());
        let copied = copy_image(
            &src,
            &reference,
            &dst,
            tag,
            &self.carried_referrers(requirement.is_some()),
            Arc::new(Quiet),
            PARALLEL_BLOBS,
        )
        .await;
        match copied {
            Err(_) if dst.ran_out.load(Ordering::Relaxed) => {
                sink.report(false, &format!("{what}: this step's time is up; the next step goes on"));
                return Attempt::Unfinished;
            }
            Err(err) => return Attempt::Failed(err.to_string()),
            Ok(_) => {}
        }
        if tag.is_some() && (self.signature_tags || requirement.is_some()) {
            let carried = self.copy_signature_tags(job).await;
            if carried != Attempt::Delivered {
                return carried;
            }
        }
        let signed = signed_by.map(|key| format!(" (signed by {key})")).unwrap_or_default();
        sink.report(false, &format!("{what}: done{signed}"));
        if self.remote.is_none() {
            // The promoted manifest is a push here too: webhooks hear of it.
            if let Ok(pushed) = registry.manifest(target, &reference).await {
                let subject = Subject {
                    repo: target,
                    digest,
                    media_type: &pushed.media_type,
                    size: pushed.bytes.len() as u64,
                };
                let event = Event::new(registry.env(), Action::Push, &subject, tag, REPLICATION_ACTOR);
                if let Err(err) = sink.record_for_webhooks(&event).await {
                    // Retried: the copy is done again, and its event recorded then.
                    return Attempt::Failed(format!("recording the promoted push's event: {err}"));
                }
            }
        }
        Attempt::Delivered
    }

    /// Refuses the copy of a manifest that no key of the destination's
    /// policy signed in the source repository (signatures and other
    /// attachments pass: they are what clients verify with); the key that
    /// signed it.
    async fn check_signed(
        &self,
        job: &Job<'_>,
        requirement: &Requirement<'_>,
        what: &str,
    ) -> Result<Option<String>, Attempt> {
        let Some(gate) = job.sink.hooks().signatures() else {
            return Ok(None);
        };
        let reference = Reference::Digest(job.digest.clone());
        let pushed = match job.registry.manifest(job.repo, &reference).await {
            Ok(pushed) => pushed,
            Err(err) => return Err(Attempt::Failed(err.to_string())),
        };
        if signing::is_exempt(&pushed.bytes) {
            return Ok(None);
        }
        match gate.verify(job.registry, job.repo, job.digest, requirement).await {
            Ok(Verdict::Signed(key)) => Ok(Some(key)),
            Ok(Verdict::Unsigned(why)) => Err(Attempt::Refused(format!(
                "{what}: refused, the namespace policy {:?} requires a cosign signature by one of its keys and {why}; \
                 a signature pushed to {} promotes it",
                requirement.namespace(),
                job.repo,
            ))),
            Err(err) => Err(Attempt::Failed(err.to_string())),
        }
    }

    /// Copies the tag-mode signatures (`sha256-<hex>.sig`) of the copied
    /// manifest and, for an index, of its children (each signed on its own
    /// by `cosign sign --recursive`), where the source has them.
    async fn copy_signature_tags(&self, job: &Job<'_>) -> Attempt {
        let mut digests = vec![job.digest.clone()];
        if let Ok(pushed) = job
            .registry
            .manifest(job.repo, &Reference::Digest(job.digest.clone()))
            .await
        {
            if let Ok(parsed) = manifest::parse_stored(&pushed.bytes) {
                digests.extend(parsed.children.into_iter().map(|child| child.digest));
            }
        }
        for digest in &digests {
            let Some(tag) = cosign::signature_tag(digest) else {
                continue;
            };
            let signature = match job.registry.manifest(job.repo, &Reference::Tag(tag.clone())).await {
                Ok(signature) => signature,
                Err(err) if err.code == ErrorCode::ManifestUnknown => continue,
                Err(err) => return Attempt::Failed(err.to_string()),
            };
            let copied = self.copy_signature(job, &signature.digest, &tag).await;
            if copied != Attempt::Delivered {
                return copied;
            }
        }
        Attempt::Delivered
    }

    /// Copies one tag-mode signature manifest (by digest, tagged `tag`).
    async fn copy_signature(&self, job: &Job<'_>, signature: &Digest, tag: &Tag) -> Attempt {
        let src = LocalRepo {
            registry: job.registry.clone(),
            repo: job.repo.clone(),
        };
        let dst = self.destination(job.registry, job.target);
        let reference = Reference::Digest(signature.clone());
        let none = Referrers::OfTypes(Vec::new());
        match copy_image(
            &src,
            &reference,
            dst.as_ref(),
            Some(tag),
            &none,
            Arc::new(Quiet),
            PARALLEL_BLOBS,
        )
        .await
        {
            Ok(_) => {
                let what = format!("{}:{tag} -> {}:{tag}", job.repo, self.describe(job.target));
                job.sink
                    .report(false, &format!("replication of signature {what}: done"));
                Attempt::Delivered
            }
            Err(err) => Attempt::Failed(format!("copying signature {tag}: {err}")),
        }
    }

    /// Deletes at the destination what was deleted at the source: the tag,
    /// or the manifest by digest. Already gone counts as done.
    async fn delete(&self, registry: &Registry, target: &RepoName, digest: &Digest, tag: Option<&Tag>) -> Attempt {
        let reference = match tag {
            Some(tag) => Reference::Tag(tag.clone()),
            None => Reference::Digest(digest.clone()),
        };
        let result = match &self.remote {
            Some(client) => client.delete_manifest(target.as_str(), &reference).await.map(drop),
            None => match registry.delete_manifest(target, &reference).await {
                Ok(_) => Ok(()),
                Err(err) if err.status.as_u16() == 404 => Ok(()),
                Err(err) => Err(RemoteError::Invalid(err.message)),
            },
        };
        match result {
            Ok(()) => Attempt::Delivered,
            Err(err) => Attempt::Failed(format!("delete of {}: {err}", self.describe(target))),
        }
    }

    /// Push events for every existing tag this rule matches, as if each had
    /// just been pushed: what a new rule (or one asked to) copies.
    pub async fn existing_tags(&self, registry: &Registry) -> Result<Vec<Event>, RegistryError> {
        let mut events = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = registry.catalog(1000, last.as_deref(), |_| true).await?;
            for name in &page.names {
                let Some(repo) = RepoName::parse(name).filter(|r| self.covers(r)) else {
                    continue;
                };
                let mut last_tag: Option<String> = None;
                loop {
                    let tags = registry.tags(&repo, 1000, last_tag.as_deref()).await?;
                    for text in &tags.names {
                        let Some(tag) = Tag::parse(text).filter(|t| self.tags.matches(t.as_str())) else {
                            continue;
                        };
                        let Ok(found) = registry.manifest(&repo, &Reference::Tag(tag.clone())).await else {
                            continue;
                        };
                        let subject = Subject {
                            repo: &repo,
                            digest: &found.digest,
                            media_type: &found.media_type,
                            size: found.bytes.len() as u64,
                        };
                        events.push(Event::new(
                            registry.env(),
                            Action::Push,
                            &subject,
                            Some(&tag),
                            REPLICATION_ACTOR,
                        ));
                    }
                    match tags.next {
                        Some(next) => last_tag = Some(next),
                        None => break,
                    }
                }
            }
            match page.next {
                Some(next) => last = Some(next),
                None => return Ok(events),
            }
        }
    }
}

/// What one attempt of a rule works on: the pushed manifest, where it goes,
/// and when the step must stop starting blobs.
struct Job<'a> {
    registry: &'a Registry,
    sink: &'a EventSink,
    repo: &'a RepoName,
    target: &'a RepoName,
    digest: &'a Digest,
    deadline: Option<u64>,
}

/// The destination of one copy step: once the step's deadline has passed it
/// starts no more blobs and fails, saying so, and the blobs it finished stay
/// (the next step finds them there and skips them).
struct StepBudget {
    inner: Box<dyn ImageStore>,
    env: Arc<dyn Env>,
    deadline: Option<u64>,
    ran_out: AtomicBool,
}

impl StepBudget {
    fn check(&self) -> Result<(), RemoteError> {
        match self.deadline {
            Some(deadline) if self.env.now_millis() >= deadline => {
                self.ran_out.store(true, Ordering::Relaxed);
                Err(RemoteError::Transport("the step's time is up".into()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl ImageStore for StepBudget {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn registry_repo(&self) -> Option<(&str, &str)> {
        self.inner.registry_repo()
    }
    async fn manifest(&self, reference: &Reference) -> Result<Option<StoredManifest>, RemoteError> {
        self.inner.manifest(reference).await
    }
    async fn has_manifest(&self, digest: &Digest) -> Result<bool, RemoteError> {
        self.inner.has_manifest(digest).await
    }
    async fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, RemoteError> {
        self.inner.referrers(digest).await
    }
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, RemoteError> {
        self.inner.blob_size(digest).await
    }
    async fn blob(&self, digest: &Digest) -> Result<HttpBody, RemoteError> {
        self.inner.blob(digest).await
    }
    async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool, RemoteError> {
        self.check()?;
        self.inner.mount_blob(digest, from).await
    }
    async fn put_blob(&self, digest: &Digest, size: u64, body: HttpBody) -> Result<(), RemoteError> {
        self.check()?;
        self.inner.put_blob(digest, size, body).await
    }
    async fn put_manifest(&self, manifest: &StoredManifest, role: &ManifestRole) -> Result<(), RemoteError> {
        self.inner.put_manifest(manifest, role).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::NoNetwork;

    fn rule(text: &str) -> Result<Rule, String> {
        let config: ReplicateConfig = serde_json::from_str(text).unwrap();
        Rule::new(
            &config,
            false,
            Arc::new(NoNetwork),
            Arc::new(crate::testing::TestEnv::at(0)),
        )
    }

    fn name(text: &str) -> RepoName {
        RepoName::parse(text).unwrap()
    }

    fn event(action: Action, repository: &str, tag: Option<&str>) -> Event {
        Event {
            id: "e1".into(),
            action,
            timestamp: "2026-12-06T00:00:00Z".into(),
            repository: repository.into(),
            tag: tag.map(String::from),
            digest: format!("sha256:{}", "0".repeat(64)),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 2,
            actor: "a".into(),
        }
    }

    #[test]
    fn promotion_rewrites_the_namespace_for_matching_tags() {
        let promote = rule(r#"{"repository": "ci/**", "tags": "v*", "to_namespace": "prod/**"}"#).unwrap();
        assert!(promote.wants(&event(Action::Push, "ci/app", Some("v1"))));
        assert!(!promote.wants(&event(Action::Push, "ci/app", Some("dev"))));
        assert!(!promote.wants(&event(Action::Push, "cix/app", Some("v1"))));
        assert!(
            !promote.wants(&event(Action::Delete, "ci/app", Some("v1"))),
            "deletes only when asked"
        );
        let deletes =
            rule(r#"{"repository": "ci/**", "tags": "v*", "to_namespace": "prod/**", "deletes": true}"#).unwrap();
        assert!(deletes.wants(&event(Action::Delete, "ci/app", Some("v1"))));
        assert!(
            deletes.wants(&event(Action::Delete, "ci/app", None)),
            "a manifest by digest"
        );
        assert!(!deletes.wants(&event(Action::Delete, "ci/app", Some("dev"))));
        assert!(!deletes.wants(&event(Action::Pull, "ci/app", Some("v1"))));
        assert_eq!(promote.target(&name("ci/team/app")), Some(name("prod/team/app")));
        let everything = rule(r#"{"repository": "**", "to_registry": "https://b.example"}"#).unwrap();
        assert_eq!(everything.target(&name("a/b")), Some(name("a/b")));
    }

    #[test]
    fn signature_tags_are_wanted_where_the_rule_carries_or_waits_for_them() {
        let sig_tag = format!("sha256-{}.sig", "0".repeat(64));
        let plain = rule(r#"{"repository": "ci/**", "tags": "v*", "to_namespace": "prod/**"}"#).unwrap();
        assert!(!plain.wants(&event(Action::Push, "ci/app", Some(&sig_tag))));
        assert!(!plain.wants(&event(Action::Push, "ci/app", None)));
        let carrying =
            rule(r#"{"repository": "ci/**", "tags": "v*", "to_namespace": "prod/**", "signature_tags": true}"#)
                .unwrap();
        assert!(carrying.wants(&event(Action::Push, "ci/app", Some(&sig_tag))));
        assert!(!carrying.wants(&event(Action::Push, "ci/app", Some("sha256-00.sig"))));
        let config: ReplicateConfig =
            serde_json::from_str(r#"{"repository": "ci/**", "tags": "v*", "to_namespace": "prod/**"}"#).unwrap();
        let gated = Rule::new(
            &config,
            true,
            Arc::new(NoNetwork),
            Arc::new(crate::testing::TestEnv::at(0)),
        )
        .unwrap();
        assert!(
            gated.wants(&event(Action::Push, "ci/app", Some(&sig_tag))),
            "it may revive a refusal"
        );
        assert!(
            gated.wants(&event(Action::Push, "ci/app", None)),
            "a signature as a referrer"
        );
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
