//! The Worker's auth settings: the `[auth]` table as JSON in the var
//! `PIER_AUTH` and the token signing keys (a JWK Set) in the secret
//! `PIER_AUTH_SIGNING_KEYS`, made into core's `Auth` once per isolate.
//!
//! Building it checks the whole configuration (rules, accounts, hash costs,
//! keys), which is too costly to do per request; kept per isolate it also
//! holds the failed-login counts, which are therefore per isolate (best
//! effort: see docs/auth.md). Without `PIER_AUTH` the registry is open, as on
//! the native server without an `[auth]` table.

use std::rc::Rc;
use std::sync::Arc;

use pier_core::auth::{Auth, AuthConfig};
use worker::{console_log, console_warn, Env};

use crate::config::text_var;
use crate::env::WorkerEnv;
use crate::per_isolate::PerIsolate;

/// The var holding the `[auth]` table as JSON.
pub const AUTH_VAR: &str = "PIER_AUTH";
/// The secret holding the JWK Set whose first key signs tokens.
pub const SIGNING_KEYS_SECRET: &str = "PIER_AUTH_SIGNING_KEYS";

type Built = Result<Option<Rc<Auth>>, String>;

thread_local! {
    static AUTH: PerIsolate<Built> = const { PerIsolate::new() };
}

/// This isolate's `Auth`, `None` when auth is off; an error names the var or
/// secret at fault.
pub fn auth(env: &Env) -> Built {
    let config = text_var(env, AUTH_VAR)?;
    let keys = text_var(env, SIGNING_KEYS_SECRET)?;
    // One key for both texts; neither holds a NUL.
    let key = format!("{}\0{}", config.as_deref().unwrap_or(""), keys.as_deref().unwrap_or(""));
    AUTH.with(|built| built.get(key, |_| build(config.as_deref(), keys.as_deref())))
}

fn build(config: Option<&str>, keys: Option<&str>) -> Built {
    match (config, keys) {
        (None, None) => {
            console_warn!("pier: {AUTH_VAR} is not set: anyone may pull, push and delete anything");
            Ok(None)
        }
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
            let auth = Auth::new(config, keys, Arc::new(WorkerEnv))
                .map_err(|err| format!("{AUTH_VAR} with {SIGNING_KEYS_SECRET}: {err}"))?;
            console_log!("pier: auth on (service {:?})", auth.service());
            Ok(Some(Rc::new(auth)))
        }
    }
}
