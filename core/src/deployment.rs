//! One deployment of pier, assembled in one place. Both shells read their
//! settings (a TOML file natively, JSON vars on the Worker) into
//! [`Settings`], hand over the ports only they can provide ([`Ports`]:
//! clock and entropy, outgoing HTTP) and call [`Deployment::new`]; from then
//! on they pass requests to [`Deployment::handle`] and run collection through
//! [`Deployment::scheduled_collector`]. Every wiring decision (which options the
//! registry gets from which table, that retention rules also make tags
//! immutable at push, when collection only expires uploads) is made here,
//! so the shells cannot drift apart.

use std::sync::Arc;

use crate::api::{self, HttpResponse, Service};
use crate::archive::{ArchiveConfig, Archiver};
use crate::auth::{Auth, AuthConfig};
use crate::body::RequestBody;
use crate::events::{EventSink, Hooks, HooksError, ReplicateConfig, WebhookConfig};
use crate::gc::{Gc, GcConfig};
use crate::mirror::{Mirror, MirrorConfig};
use crate::namespace_policy::{NamespacePolicies, PolicyConfig};
use crate::platform::{Background, Env, LocalMarks};
use crate::pulls::PullClock;
use crate::quota::{QuotaConfig, Quotas};
use crate::registry::{ArchiveTier, Registry, RegistryOptions};
use crate::remote::http::HttpClient;
use crate::signing::SignatureGate;
use crate::store::cache::{ImmutableCache, ImmutableMemory};
use crate::store::fresh::FreshReads;
use crate::store::Store;
use crate::sync::{SyncConfig, SyncPasses, SyncRule};
use crate::tag_cache::TagCache;

/// What a deployment is configured with, whichever shell read it.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Accept manifests whose blobs or child manifests are absent.
    pub allow_sparse_manifests: bool,
    /// Largest request body, in bytes; `None` for no limit.
    pub max_body_bytes: Option<u64>,
    /// Redirect blob GETs to signed URLs where the store can sign them.
    pub redirect_blobs: bool,
    /// Collection and retention (`[gc]`); its rules' immutable tags are
    /// enforced at push whether or not collection runs.
    pub gc: GcConfig,
    /// Whether the deployment's schedule collects garbage as `gc` says;
    /// when not, the schedule only expires idle uploads.
    pub collect: bool,
    /// The `[auth]` table and the JWK Set whose first key signs tokens;
    /// `None` leaves the registry open.
    pub auth: Option<(AuthConfig, String)>,
    /// Pull-through caches (`[[mirror]]`).
    pub mirrors: Vec<MirrorConfig>,
    /// Receivers of events (`[[webhook]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// Promotion and replication on push (`[[replicate]]`).
    pub replicate: Vec<ReplicateConfig>,
    /// Images pulled from upstream registries, pass by pass (`[[sync]]`).
    pub sync: Vec<SyncConfig>,
    /// Storage quotas per namespace (`[[quota]]`).
    pub quotas: Vec<QuotaConfig>,
    /// The archive tier's rules (`[archive]`); the shell provides its store.
    pub archive: Option<ArchiveConfig>,
    /// How often, at most, an instance records a manifest's last pull;
    /// `None` for [`DEFAULT_LAST_PULL_PERIOD_SECS`], 0 records no pulls.
    pub last_pull_period_secs: Option<u64>,
    /// Rules per namespace (`[[policy]]`): signatures required.
    pub policies: Vec<PolicyConfig>,
}

/// An hour: fine enough for retention counted in days, and at most 24
/// writes a day per pulled manifest and instance.
pub const DEFAULT_LAST_PULL_PERIOD_SECS: u64 = 3600;

/// What the shell provides that core cannot do portably.
#[derive(Clone)]
pub struct Ports {
    pub env: Arc<dyn Env>,
    pub http: Arc<dyn HttpClient>,
}

/// A setting that cannot be used: which table it is in, so the shell can
/// name where it read it (a file's table, a Worker var), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsError {
    Auth(String),
    Mirror(String),
    Webhook(String),
    Replicate(String),
    Sync(String),
    Quota(String),
    Archive(String),
    Policy(String),
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsError::Auth(why)
            | SettingsError::Mirror(why)
            | SettingsError::Webhook(why)
            | SettingsError::Replicate(why)
            | SettingsError::Sync(why)
            | SettingsError::Quota(why)
            | SettingsError::Archive(why) => f.write_str(why),
            SettingsError::Policy(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for SettingsError {}

/// Where a registry reads and writes: the backend alone, or the backend
/// behind a cache the shell built (the Worker's KV and Cache API).
pub enum Stores {
    /// The store alone.
    Backend(Arc<dyn Store>),
    /// Pulls read through `cache` (the Worker's edge caches); what races
    /// with collection reads `backend`.
    Cached {
        backend: Arc<dyn Store>,
        cache: Arc<dyn Store>,
    },
}

/// Where requests are served: a registry over its stores and where work
/// after the response runs. The native server makes one at start; the
/// Worker one per request, since its caches and `waitUntil` are the
/// request's.
pub struct Site {
    registry: Registry,
    events: Option<EventSink>,
    /// The archive tier's passes, where `[archive]` and its store are.
    archiver: Option<Arc<Archiver>>,
}

impl Site {
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Its events' outbox and targets; `None` without webhooks and rules.
    pub fn events(&self) -> Option<&EventSink> {
        self.events.as_ref()
    }

    /// The site recording pulls once per period per location, as `marks`
    /// say (the Worker's Cache API: `crate::pulls`).
    pub fn with_local_marks(mut self, marks: Arc<dyn LocalMarks>) -> Site {
        self.registry = self.registry.with_local_marks(marks);
        self
    }

    /// The archive's passes; `None` without `[archive]` and its store.
    pub fn archiver(&self) -> Option<&Archiver> {
        self.archiver.as_deref()
    }

    /// The same, shared, for a task of the shell's that outlives a request.
    pub fn archiver_handle(&self) -> Option<Arc<Archiver>> {
        self.archiver.clone()
    }

    /// The site with its events set up by `setup` (the Worker's queue).
    pub fn with_events(mut self, setup: impl FnOnce(EventSink) -> EventSink) -> Site {
        self.events = self.events.map(setup);
        self
    }
}

/// The parts a deployment's settings make, built and checked once.
pub struct Deployment {
    options: RegistryOptions,
    gc: GcConfig,
    collect: bool,
    auth: Option<Auth>,
    mirror: Option<Mirror>,
    hooks: Option<Arc<Hooks>>,
    signatures: Option<Arc<SignatureGate>>,
    sync: Vec<Arc<SyncRule>>,
    /// Reconciled by each collection.
    quotas: Arc<Quotas>,
    archive: Option<ArchiveConfig>,
    /// Kept for the deployment's life, so the Worker's per-request sites
    /// share the isolate's memory of recorded pulls.
    pulls: Arc<PullClock>,
    /// Small immutable objects in memory, in front of every site's stores
    /// (kept like `pulls`); `None` when `cache_bytes` is 0.
    memory: Option<Arc<ImmutableMemory>>,
    /// Tags served to pull-only clients from memory, where a policy allows
    /// (kept like `pulls`).
    tags: Option<Arc<TagCache>>,
    env: Arc<dyn Env>,
    notices: Vec<Notice>,
}

impl Deployment {
    /// Checks every setting and builds what they describe; an error names
    /// the table at fault.
    pub fn new(settings: Settings, ports: Ports) -> Result<Deployment, SettingsError> {
        let mut notices = notices(&settings);
        let quotas = Arc::new(Quotas::new(&settings.quotas).map_err(SettingsError::Quota)?);
        if let Some(archive) = &settings.archive {
            archive.check().map_err(SettingsError::Archive)?;
        }
        let options = RegistryOptions {
            quotas: quotas.clone(),
            allow_sparse_manifests: settings.allow_sparse_manifests,
            max_body_bytes: settings.max_body_bytes,
            redirect_blobs: settings.redirect_blobs,
            // Retention rules are enforced at push too: their immutable tags.
            retention: settings.gc.rules.clone(),
            ..RegistryOptions::default()
        };
        let auth = match settings.auth {
            None => None,
            Some((config, signing_keys)) => {
                Some(Auth::new(config, &signing_keys, ports.env.clone()).map_err(SettingsError::Auth)?)
            }
        };
        let mirror = match settings.mirrors.is_empty() {
            true => None,
            false => Some(
                Mirror::new(&settings.mirrors, ports.http.clone(), ports.env.clone()).map_err(SettingsError::Mirror)?,
            ),
        };
        let policies = NamespacePolicies::new(&settings.policies).map_err(SettingsError::Policy)?;
        let tags = TagCache::new(&policies, ports.env.clone()).map(Arc::new);
        let signatures = SignatureGate::new(&policies)
            .map_err(SettingsError::Policy)?
            .map(Arc::new);
        let sync =
            crate::sync::rules(&settings.sync, ports.http.clone(), ports.env.clone()).map_err(SettingsError::Sync)?;
        let hooks = Hooks::new(
            &settings.webhooks,
            &settings.replicate,
            signatures.clone(),
            ports.http,
            ports.env.clone(),
        )
        .map_err(|err| match err {
            HooksError::Webhook(why) => SettingsError::Webhook(why),
            HooksError::Replicate(why) => SettingsError::Replicate(why),
        })?;
        for (id, rule) in hooks.rule_ids().iter().zip(&settings.replicate) {
            let destination = [rule.to_registry.as_deref(), rule.to_namespace.as_deref()];
            notices.push(Notice::info(format!(
                "replication rule {id}: {} tags {} -> {}",
                rule.repository,
                rule.tags,
                destination.into_iter().flatten().collect::<Vec<_>>().join(" "),
            )));
        }
        let last_pull_period_secs = settings.last_pull_period_secs.unwrap_or(DEFAULT_LAST_PULL_PERIOD_SECS);
        Ok(Deployment {
            quotas,
            archive: settings.archive,
            pulls: Arc::new(PullClock::new(last_pull_period_secs)),
            tags,
            memory: (options.cache_bytes > 0)
                .then(|| Arc::new(ImmutableMemory::new(ports.env.clone(), options.cache_bytes))),
            options,
            gc: settings.gc,
            collect: settings.collect,
            auth,
            mirror,
            hooks: (!hooks.is_empty()).then(|| Arc::new(hooks)),
            signatures,
            sync,
            env: ports.env,
            notices,
        })
    }

    /// A site over `stores` whose background work runs on `background`.
    pub fn site(&self, stores: Stores, background: Arc<dyn Background>) -> Site {
        let (backend, cache) = match stores {
            Stores::Backend(store) => (store.clone(), store),
            Stores::Cached { backend, cache } => (backend, cache),
        };
        let cache: Arc<dyn Store> = match &self.memory {
            Some(memory) => Arc::new(ImmutableCache::new(cache, memory.clone())),
            None => cache,
        };
        let registry = Registry::with_cache(backend, cache, self.env.clone(), self.options.clone())
            .with_pull_clock(self.pulls.clone())
            .with_tag_cache(self.tags.clone())
            .with_background(background.clone());
        let events = self
            .hooks
            .clone()
            .map(|hooks| EventSink::new(hooks, registry.clone(), background));
        Site {
            registry,
            events,
            archiver: None,
        }
    }

    /// Drops this process's own copy of `key` (the memory in front of every
    /// site's stores), not the object nor any cache beneath: for tests that
    /// must read the way another process would.
    pub fn forget_in_memory(&self, key: &str) {
        if let Some(memory) = &self.memory {
            memory.forget(key);
        }
    }

    /// Whether `[archive]` is configured (the shell must then provide its store).
    pub fn archive_configured(&self) -> bool {
        self.archive.is_some()
    }

    /// `site` with the archive tier over `store`, the archive store the
    /// shell opened: archived blobs read from it, passes moving to and from
    /// it. Unchanged without `[archive]`.
    pub fn with_archive(&self, mut site: Site, store: Arc<dyn Store>) -> Site {
        let Some(config) = &self.archive else {
            return site;
        };
        let tier = ArchiveTier {
            store: store.clone(),
            promote_on_pull: config.promote_on_pull,
        };
        site.registry = site.registry.with_archive(tier);
        let main = site.registry.fresh_store();
        site.archiver = Some(Arc::new(Archiver::new(config.clone(), main, store, self.env.clone())));
        site
    }

    /// Answers one request at `site`.
    pub async fn handle(&self, site: &Site, request: http::Request<RequestBody>) -> HttpResponse {
        let service = Service {
            registry: &site.registry,
            auth: self.auth.as_ref(),
            mirror: self.mirror.as_ref(),
            events: site.events.as_ref(),
            archive: site.archiver(),
            signatures: self.signatures.as_deref(),
        };
        api::handle(service, request).await
    }

    /// What the deployment's schedule runs over `store` (the backend as it
    /// is, never through a cache): the configured collection, or, when
    /// collection is off, only the expiry of idle uploads, so abandoned
    /// uploads never pile up on a deployment nobody configured. It reads
    /// `store` itself; what it deletes leaves this deployment's memory at
    /// once (`store::fresh`), as a delete through its registry would.
    pub fn scheduled_collector(&self, store: Arc<dyn Store>) -> Gc {
        let store: Arc<dyn Store> = match &self.memory {
            Some(memory) => {
                let cache = Arc::new(ImmutableCache::new(store.clone(), memory.clone()));
                Arc::new(FreshReads::new(store, cache))
            }
            None => store,
        };
        match self.collect {
            true => Gc::new(store, self.env.clone(), self.gc.clone(), false).with_quotas(self.quotas.clone()),
            false => Gc::uploads_only(store, self.env.clone(), self.gc.clone()),
        }
    }

    /// The passes of the `[[sync]]` rules, writing to `site`'s registry
    /// (their state read and written past any cache).
    pub fn sync_passes(&self, site: &Site) -> SyncPasses {
        SyncPasses::new(
            self.sync.clone(),
            site.registry.clone(),
            self.env.clone(),
            site.events.clone(),
        )
    }

    /// Who may do what; `None` when the registry is open.
    pub fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    /// What an operator should hear at start: the parts that are on, and a
    /// warning when anyone may do anything.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }
}

/// What `settings` turn on, for the operator.
fn notices(settings: &Settings) -> Vec<Notice> {
    let mut notices = Vec::new();
    match &settings.auth {
        None => notices.push(Notice::warning(
            "auth is off: anyone may pull, push and delete anything",
        )),
        Some((config, _)) => notices.push(Notice::info(format!("auth is on (service {:?})", config.service))),
    }
    for mirror in &settings.mirrors {
        notices.push(Notice::info(format!(
            "pull-through cache: {} from {}",
            mirror.namespace, mirror.upstream
        )));
    }
    if !settings.webhooks.is_empty() || !settings.replicate.is_empty() {
        notices.push(Notice::info(format!(
            "events: {} webhooks, {} replication rules",
            settings.webhooks.len(),
            settings.replicate.len()
        )));
    }
    for quota in &settings.quotas {
        notices.push(Notice::info(format!(
            "quota: {} may hold {} bytes",
            quota.namespace, quota.max_bytes
        )));
    }
    for policy in settings.policies.iter().filter(|p| !p.require_signature.is_empty()) {
        notices.push(Notice::info(format!(
            "namespace policy {}: pulls and promotions need a cosign signature by one of {} keys",
            policy.namespace,
            policy.require_signature.len()
        )));
    }
    for policy in settings.policies.iter().filter(|p| p.tag_cache_secs > 0) {
        notices.push(match settings.auth {
            Some(_) => Notice::info(format!(
                "namespace policy {}: clients that may not push there are served tags up to {} s old",
                policy.namespace, policy.tag_cache_secs
            )),
            None => Notice::warning(format!(
                "namespace policy {}: tag_cache_secs has no effect while auth is off (every client may push, \
                 and pushers always read tags from the store)",
                policy.namespace
            )),
        });
    }
    for rule in &settings.sync {
        let when = match rule.interval_secs {
            0 => "on demand".to_string(),
            secs => format!("every {secs} s"),
        };
        notices.push(Notice::info(format!(
            "sync {:?}: {} from {}, {when}",
            rule.name,
            rule.repositories.join(", "),
            rule.upstream
        )));
    }
    notices
}

/// A line for the operator's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub message: String,
}

impl Notice {
    fn info(message: impl Into<String>) -> Notice {
        Notice {
            warning: false,
            message: message.into(),
        }
    }

    fn warning(message: impl Into<String>) -> Notice {
        Notice {
            warning: true,
            message: message.into(),
        }
    }
}
