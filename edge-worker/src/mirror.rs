//! Pull-through caches on the Worker: the `PIER_MIRRORS` var holds the
//! `[[mirror]]` tables of the native configuration as a JSON array (see
//! docs/mirroring.md); core does the rest over the `fetch` port. The mirror
//! is kept per isolate while the var is unchanged, so upstream tokens are
//! fetched once, not on every request.

use std::cell::RefCell;
use std::sync::Arc;

use pier_core::mirror::{Mirror, MirrorConfig};
use worker::Env;

use crate::config::{kept_per_isolate, var};
use crate::env::WorkerEnv;
use crate::fetch::FetchClient;

const MIRRORS_VAR: &str = "PIER_MIRRORS";

thread_local! {
    /// The mirror built from the var's text, with that text.
    static MIRROR: RefCell<Option<(String, Arc<Mirror>)>> = const { RefCell::new(None) };
}

/// The deployment's mirror, `None` when `PIER_MIRRORS` is unset or empty.
pub fn from_env(env: &Env) -> Result<Option<Arc<Mirror>>, String> {
    let Some(text) = var(env, MIRRORS_VAR).filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    kept_per_isolate(&MIRROR, text, |text| {
        let configs: Vec<MirrorConfig> =
            serde_json::from_str(text).map_err(|e| format!("{MIRRORS_VAR}: not a JSON array of mirrors: {e}"))?;
        // One isolate, one thread: the port's JavaScript handles need not be Send.
        #[allow(clippy::arc_with_non_send_sync)]
        let mirror = Mirror::new(&configs, Arc::new(FetchClient), Arc::new(WorkerEnv))
            .map_err(|e| format!("{MIRRORS_VAR}: {e}"))?;
        Ok(Arc::new(mirror))
    })
    .map(Some)
}
