//! The Worker's deployment: its settings read from vars and secrets, made
//! into core's `Deployment` once per isolate and kept while their text is
//! unchanged. Kept, the deployment also keeps what lives in it: the
//! failed-login counts (per isolate, best effort: see docs/auth.md) and the
//! pull-through cache's upstream tokens, fetched once rather than per
//! request.
//!
//! The vars hold the native configuration's tables as JSON: `PIER_AUTH` the
//! `[auth]` table (with the JWK Set in the secret `PIER_AUTH_SIGNING_KEYS`),
//! `PIER_GC` the `[gc]` table, `PIER_MIRRORS`, `PIER_WEBHOOKS`,
//! `PIER_REPLICATE`, `PIER_SYNC`, `PIER_QUOTAS` and `PIER_POLICY` arrays of
//! `[[mirror]]`, `[[webhook]]`, `[[replicate]]`, `[[sync]]`, `[[quota]]` and
//! `[[policy]]` tables (a policy's keys as PEM text); `PIER_ARCHIVE` the
//! `[archive]` table (its store is the R2 bucket bound as
//! `PIER_ARCHIVE_BUCKET`); `PIER_LAST_PULL_PERIOD_SECS` a number. An error
//! names the var at fault.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use pier_core::auth::AuthConfig;
use pier_core::deployment::{Deployment, Ports, Settings, SettingsError, Site, Stores};
use pier_core::gc::GcConfig;
use pier_core::platform::Background;
use pier_core::store::Store;
use serde::de::DeserializeOwned;
use worker::js_sys::Object;
use worker::wasm_bindgen::JsValue;
use worker::{console_log, console_warn, Bucket, Env};

use crate::config::{flag, number, text_var, EdgeConfig, ARCHIVE_BUCKET_BINDING, BUCKET_BINDING};
use crate::counted::OpCounts;
use crate::env::WorkerEnv;
use crate::fetch::FetchClient;
use crate::per_isolate::PerIsolate;
use crate::r2::R2Store;

/// The var holding the `[auth]` table as JSON.
pub const AUTH_VAR: &str = "PIER_AUTH";
/// The secret holding the JWK Set whose first key signs tokens.
pub const SIGNING_KEYS_SECRET: &str = "PIER_AUTH_SIGNING_KEYS";
/// The var holding the `[gc]` table as JSON; without it the cron only
/// expires idle uploads.
pub const GC_VAR: &str = "PIER_GC";
const MIRRORS_VAR: &str = "PIER_MIRRORS";
const WEBHOOKS_VAR: &str = "PIER_WEBHOOKS";
const REPLICATE_VAR: &str = "PIER_REPLICATE";
const SYNC_VAR: &str = "PIER_SYNC";
const QUOTAS_VAR: &str = "PIER_QUOTAS";
const ARCHIVE_VAR: &str = "PIER_ARCHIVE";
const POLICY_VAR: &str = "PIER_POLICY";
const SPARSE_VAR: &str = "PIER_ALLOW_SPARSE_MANIFESTS";
const MAX_BODY_VAR: &str = "PIER_MAX_BODY_BYTES";
const LAST_PULL_PERIOD_VAR: &str = "PIER_LAST_PULL_PERIOD_SECS";

/// Cloudflare's request body limit on the Free and Pro plans.
const DEFAULT_MAX_BODY_BYTES: u64 = 100_000_000;

type Built = Result<Rc<Deployment>, String>;

thread_local! {
    static DEPLOYMENT: PerIsolate<Built> = const { PerIsolate::new() };
}

/// The text of every var a deployment is built from, in one order.
struct Texts([Option<String>; 13]);

impl Texts {
    fn read(env: &Env) -> Result<Texts, String> {
        Ok(Texts([
            text_var(env, AUTH_VAR)?,
            text_var(env, SIGNING_KEYS_SECRET)?,
            text_var(env, GC_VAR)?,
            text_var(env, MIRRORS_VAR)?,
            text_var(env, WEBHOOKS_VAR)?,
            text_var(env, REPLICATE_VAR)?,
            text_var(env, SYNC_VAR)?,
            text_var(env, QUOTAS_VAR)?,
            text_var(env, ARCHIVE_VAR)?,
            text_var(env, POLICY_VAR)?,
            crate::config::var(env, SPARSE_VAR),
            crate::config::var(env, MAX_BODY_VAR),
            crate::config::var(env, LAST_PULL_PERIOD_VAR),
        ]))
    }

    /// One key for all the texts; none holds a NUL.
    fn key(&self) -> String {
        let parts: Vec<&str> = self.0.iter().map(|text| text.as_deref().unwrap_or("")).collect();
        parts.join("\0")
    }
}

/// What a request needs from the bindings object: the shell's settings, the
/// deployment and the bucket.
#[derive(Clone)]
pub struct Configured {
    pub config: EdgeConfig,
    pub deployment: Rc<Deployment>,
    pub bucket: Bucket,
}

thread_local! {
    /// The bindings object the configuration was last read from, with what was
    /// read. The runtime hands an isolate's requests one bindings object, and
    /// a deployment's vars, secrets and bindings are fixed for its life (a
    /// change is a new version, served by new isolates), so a request bringing
    /// the same object reads nothing again: reading the vars and checking the
    /// bucket binding's type cost half of a small request's CPU.
    static LAST_READ: RefCell<Option<(JsValue, Configured)>> = const { RefCell::new(None) };
}

/// The settings, deployment and bucket the bindings in `env` make.
pub fn configured(env: &Env) -> Result<Configured, String> {
    let bindings: &JsValue = env.as_ref();
    let kept = LAST_READ.with(|last| {
        let last = last.borrow();
        let (seen, configured) = last.as_ref()?;
        Object::is(seen, bindings).then(|| configured.clone())
    });
    if let Some(kept) = kept {
        return Ok(kept);
    }
    let configured = Configured {
        config: EdgeConfig::from_env(env).map_err(|err| format!("configuration: {err}"))?,
        deployment: deployment(env).map_err(|err| format!("configuration: {err}"))?,
        bucket: env
            .bucket(BUCKET_BINDING)
            .map_err(|err| format!("R2 binding {BUCKET_BINDING}: {err}"))?,
    };
    LAST_READ.with(|last| *last.borrow_mut() = Some((bindings.clone(), configured.clone())));
    Ok(configured)
}

/// This isolate's deployment, built when a var it depends on changed.
fn deployment(env: &Env) -> Built {
    let texts = Texts::read(env)?;
    DEPLOYMENT.with(|kept| kept.get(texts.key(), |_| build(env, &texts)))
}

// One isolate, one thread: the ports' JavaScript handles need not be Send.
#[allow(clippy::arc_with_non_send_sync)]
fn build(env: &Env, texts: &Texts) -> Built {
    let [auth, keys, gc, mirrors, webhooks, replicate, sync, quotas, archive, policies, _, _, _] = &texts.0;
    let max_body_bytes = number(env, MAX_BODY_VAR, DEFAULT_MAX_BODY_BYTES)?;
    let settings = Settings {
        allow_sparse_manifests: flag(env, SPARSE_VAR)?,
        max_body_bytes: (max_body_bytes > 0).then_some(max_body_bytes),
        redirect_blobs: false,
        gc: match gc {
            Some(text) => GcConfig::from_json(text).map_err(|err| format!("{GC_VAR}: {err}"))?,
            None => GcConfig::default(),
        },
        collect: gc.is_some(),
        auth: auth_settings(auth.as_deref(), keys.as_deref())?,
        mirrors: tables(mirrors.as_deref(), MIRRORS_VAR)?,
        webhooks: tables(webhooks.as_deref(), WEBHOOKS_VAR)?,
        replicate: tables(replicate.as_deref(), REPLICATE_VAR)?,
        sync: tables(sync.as_deref(), SYNC_VAR)?,
        quotas: tables(quotas.as_deref(), QUOTAS_VAR)?,
        archive: match archive {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|e| format!("{ARCHIVE_VAR}: {e}"))?),
        },
        last_pull_period_secs: match crate::config::var(env, LAST_PULL_PERIOD_VAR) {
            None => None,
            Some(_) => Some(number(env, LAST_PULL_PERIOD_VAR, 0)?),
        },
        policies: tables(policies.as_deref(), POLICY_VAR)?,
    };
    let ports = Ports {
        env: Arc::new(WorkerEnv),
        http: Arc::new(FetchClient),
    };
    let deployment = Deployment::new(settings, ports).map_err(|err| match err {
        SettingsError::Auth(why) => format!("{AUTH_VAR} with {SIGNING_KEYS_SECRET}: {why}"),
        SettingsError::Mirror(why) => format!("{MIRRORS_VAR}: {why}"),
        SettingsError::Webhook(why) => format!("{WEBHOOKS_VAR}: {why}"),
        SettingsError::Replicate(why) => format!("{REPLICATE_VAR}: {why}"),
        SettingsError::Sync(why) => format!("{SYNC_VAR}: {why}"),
        SettingsError::Quota(why) => format!("{QUOTAS_VAR}: {why}"),
        SettingsError::Archive(why) => format!("{ARCHIVE_VAR}: {why}"),
        SettingsError::Policy(why) => format!("{POLICY_VAR}: {why}"),
    })?;
    for notice in deployment.notices() {
        match notice.warning {
            true => console_warn!("pier: {}", notice.message),
            false => console_log!("pier: {}", notice.message),
        }
    }
    Ok(Rc::new(deployment))
}

/// The `[auth]` table with its keys; both or neither must be set, so that
/// auth is never off by mistake.
fn auth_settings(config: Option<&str>, keys: Option<&str>) -> Result<Option<(AuthConfig, String)>, String> {
    match (config, keys) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(format!(
            "the secret {SIGNING_KEYS_SECRET} is set but {AUTH_VAR} is not: set {AUTH_VAR} to the [auth] table \
             as JSON, or delete the secret to run without auth"
        )),
        (Some(_), None) => Err(format!(
            "{AUTH_VAR} is set but the secret {SIGNING_KEYS_SECRET} is not: make a key with \
             `pier auth new-signing-key` and `wrangler secret put {SIGNING_KEYS_SECRET}`"
        )),
        (Some(config), Some(keys)) => {
            let config = AuthConfig::from_json(config).map_err(|err| format!("{AUTH_VAR}: {err}"))?;
            Ok(Some((config, keys.to_string())))
        }
    }
}

fn tables<T: DeserializeOwned>(text: Option<&str>, name: &str) -> Result<Vec<T>, String> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| format!("{name}: not a JSON array of tables: {e}")),
    }
}

/// A site over R2 alone (no request, so no edge cache) for the consumer and
/// the cron.
pub fn backend_site(env: &Env, background: Arc<dyn Background>) -> Result<(Site, EdgeConfig), String> {
    let Configured {
        config,
        deployment,
        bucket,
    } = configured(env)?;
    // One isolate, one thread: the R2 handle need not be Send.
    #[allow(clippy::arc_with_non_send_sync)]
    let store: Arc<dyn Store> = Arc::new(R2Store::new(bucket, config.part_size));
    let site = deployment.site(Stores::Backend(store), background);
    Ok((
        with_archive(env, &deployment, site, &config, &OpCounts::default())?,
        config,
    ))
}

/// The archive's store: the second R2 bucket, where `PIER_ARCHIVE` asks for
/// one (its binding missing is an error naming it); `None` without.
pub fn archive_store(
    env: &Env,
    deployment: &Deployment,
    config: &EdgeConfig,
    ops: &OpCounts,
) -> Result<Option<Arc<dyn Store>>, String> {
    if !deployment.archive_configured() {
        return Ok(None);
    }
    let bucket = env.bucket(ARCHIVE_BUCKET_BINDING).map_err(|err| {
        format!("{ARCHIVE_VAR} is set but the R2 binding {ARCHIVE_BUCKET_BINDING} is not usable: {err}")
    })?;
    // One isolate, one thread: the R2 handle need not be Send.
    #[allow(clippy::arc_with_non_send_sync)]
    let store: Arc<dyn Store> = ops.wrap(Arc::new(R2Store::new(bucket, config.part_size)));
    Ok(Some(store))
}

/// `site` with the archive tier, where `PIER_ARCHIVE` asks for one.
pub fn with_archive(
    env: &Env,
    deployment: &Deployment,
    site: Site,
    config: &EdgeConfig,
    ops: &OpCounts,
) -> Result<Site, String> {
    Ok(match archive_store(env, deployment, config, ops)? {
        Some(store) => deployment.with_archive(site, store),
        None => site,
    })
}
