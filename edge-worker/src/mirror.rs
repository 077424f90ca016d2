//! Pull-through caches on the Worker: the `PIER_MIRRORS` var holds the
//! `[[mirror]]` tables of the native configuration as a JSON array (see
//! docs/mirroring.md); core does the rest over the `fetch` port. The mirror
//! is kept per isolate while the var is unchanged, so upstream tokens are
//! fetched once, not on every request.

use std::sync::Arc;

use pier_core::mirror::{Mirror, MirrorConfig};
use worker::Env;

use crate::config::text_var;
use crate::env::WorkerEnv;
use crate::fetch::FetchClient;
use crate::per_isolate::PerIsolate;

const MIRRORS_VAR: &str = "PIER_MIRRORS";

thread_local! {
    static MIRROR: PerIsolate<Result<Arc<Mirror>, String>> = const { PerIsolate::new() };
}

/// The deployment's mirror, `None` when `PIER_MIRRORS` is unset or empty.
pub fn from_env(env: &Env) -> Result<Option<Arc<Mirror>>, String> {
    let Some(text) = text_var(env, MIRRORS_VAR)? else {
        return Ok(None);
    };
    MIRROR.with(|kept| kept.get(text, build)).map(Some)
}

// One isolate, one thread: the port's JavaScript handles need not be Send.
#[allow(clippy::arc_with_non_send_sync)]
fn build(text: &str) -> Result<Arc<Mirror>, String> {
    let configs: Vec<MirrorConfig> =
        serde_json::from_str(text).map_err(|e| format!("{MIRRORS_VAR}: not a JSON array of mirrors: {e}"))?;
    let mirror =
        Mirror::new(&configs, Arc::new(FetchClient), Arc::new(WorkerEnv)).map_err(|e| format!("{MIRRORS_VAR}: {e}"))?;
    Ok(Arc::new(mirror))
}
