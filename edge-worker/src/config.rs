//! The shell's own settings (R2 part size, what the edge caches keep, the
//! cron's time budgets), read from the Worker's vars (wrangler.toml `[vars]`,
//! or the dashboard) when a request brings a bindings object the isolate has
//! not read yet (`deployment::configured`): a Worker has no start-up hook.
//! Bad values are refused with a message naming the var,
//! never silently replaced by a default. The registry's settings are read in
//! `deployment`, with the helpers here.

use worker::wasm_bindgen::JsValue;
use worker::{js_sys, Env};

/// The R2 bucket holding everything (binding name in wrangler.toml).
pub const BUCKET_BINDING: &str = "PIER_BUCKET";
/// The optional KV namespace caching small immutable objects.
pub const KV_BINDING: &str = "PIER_KV";
/// The second R2 bucket of the archive tier, needed with `PIER_ARCHIVE`.
pub const ARCHIVE_BUCKET_BINDING: &str = "PIER_ARCHIVE_BUCKET";
/// The optional queue through which lanes of the events outbox are drained.
pub const EVENTS_QUEUE_BINDING: &str = "PIER_EVENTS";

const MIB: u64 = 1 << 20;
/// R2 refuses multipart parts under 5 MiB (all but the last).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// One upload buffers up to a part in wasm memory and copies it once to hand it
/// to R2; more than this would not fit an isolate's 128 MB with room to spare.
const MAX_PART_SIZE: u64 = 32 * MIB;
const DEFAULT_PART_SIZE: u64 = 10 * MIB;
/// The Cache API refuses objects over 512 MB on all plans but Enterprise.
const DEFAULT_CACHE_MAX_OBJECT_BYTES: u64 = 512_000_000;
/// A quarter of an isolate's 128 MB: room for hot blobs beside the wasm
/// memory an upload's parts take (up to `MAX_PART_SIZE` each).
const DEFAULT_HOT_BLOB_BYTES: u64 = 32 * MIB;
/// Half an isolate's memory: more would leave too little for uploads.
const MAX_HOT_BLOB_BYTES: u64 = 64 * MIB;
/// Wall-clock seconds of collection per cron invocation: well inside the 30 s
/// the platform allows a cron invocation on the Free plan.
const DEFAULT_GC_BUDGET_SECS: u64 = 20;
/// Wall-clock seconds one replication copy step may start blobs for in a
/// queue consumer invocation (the platform allows 15 minutes of wall time).
const DEFAULT_REPLICATION_STEP_SECS: u64 = 300;
/// Wall-clock seconds of sync passes per cron invocation, after collection.
const DEFAULT_SYNC_BUDGET_SECS: u64 = 20;
/// Wall-clock seconds of archive moves per collecting cron invocation.
const DEFAULT_ARCHIVE_BUDGET_SECS: u64 = 20;

#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Bytes per R2 multipart part (`PIER_PART_SIZE`).
    pub part_size: usize,
    /// Largest blob kept in the Cache API (`PIER_CACHE_MAX_OBJECT_BYTES`, `0`
    /// disables blob caching).
    pub cache_max_object_bytes: u64,
    /// Bytes of blobs pulled often that an isolate keeps in its memory
    /// (`PIER_HOT_BLOB_BYTES`, `0` keeps none; see `hot_blobs`).
    pub hot_blob_bytes: u64,
    /// Seconds of collection per cron invocation (`PIER_GC_BUDGET_SECS`); each
    /// invocation takes at least one step.
    pub gc_budget_secs: u64,
    /// Seconds a replication copy starts blobs for in one queue consumer
    /// invocation (`PIER_REPLICATION_STEP_SECS`) before the next invocation
    /// goes on; work under a request's or the cron's `waitUntil` gets the
    /// cron budget.
    pub replication_step_secs: u64,
    /// Seconds of sync passes per cron invocation (`PIER_SYNC_BUDGET_SECS`);
    /// each due rule takes at least one tag.
    pub sync_budget_secs: u64,
    /// Seconds of archive moves per collecting cron invocation
    /// (`PIER_ARCHIVE_BUDGET_SECS`); a move cut by it goes on in the next.
    pub archive_budget_secs: u64,
}

impl EdgeConfig {
    pub fn from_env(env: &Env) -> Result<EdgeConfig, String> {
        let part_size = number(env, "PIER_PART_SIZE", DEFAULT_PART_SIZE)?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(format!(
                "PIER_PART_SIZE={part_size} must be between {MIN_PART_SIZE} (R2's minimum part) \
                 and {MAX_PART_SIZE} (what fits an isolate's memory)"
            ));
        }
        let hot_blob_bytes = number(env, "PIER_HOT_BLOB_BYTES", DEFAULT_HOT_BLOB_BYTES)?;
        if hot_blob_bytes > MAX_HOT_BLOB_BYTES {
            return Err(format!(
                "PIER_HOT_BLOB_BYTES={hot_blob_bytes} must be at most {MAX_HOT_BLOB_BYTES} (half an isolate's \
                 memory, the rest being for uploads); 0 keeps no blob in memory"
            ));
        }
        Ok(EdgeConfig {
            part_size: part_size as usize,
            cache_max_object_bytes: number(env, "PIER_CACHE_MAX_OBJECT_BYTES", DEFAULT_CACHE_MAX_OBJECT_BYTES)?,
            hot_blob_bytes,
            gc_budget_secs: number(env, "PIER_GC_BUDGET_SECS", DEFAULT_GC_BUDGET_SECS)?,
            replication_step_secs: number(env, "PIER_REPLICATION_STEP_SECS", DEFAULT_REPLICATION_STEP_SECS)?,
            sync_budget_secs: number(env, "PIER_SYNC_BUDGET_SECS", DEFAULT_SYNC_BUDGET_SECS)?,
            archive_budget_secs: number(env, "PIER_ARCHIVE_BUDGET_SECS", DEFAULT_ARCHIVE_BUDGET_SECS)?,
        })
    }
}

/// The text of a var or secret holding a document (`PIER_AUTH`, `PIER_GC`,
/// the signing keys), `None` when it is unset or blank. A binding that is not
/// text (a table written under `[vars]` in wrangler.toml) is an error, never
/// taken for unset: auth must not be off by mistake.
pub fn text_var(env: &Env, name: &str) -> Result<Option<String>, String> {
    let bindings: &JsValue = env.as_ref();
    let value =
        js_sys::Reflect::get(bindings, &JsValue::from_str(name)).map_err(|_| format!("{name} cannot be read"))?;
    if value.is_undefined() {
        return Ok(None);
    }
    let text = value
        .as_string()
        .ok_or_else(|| format!("{name} must be text: a JSON document in a string"))?;
    Ok((!text.trim().is_empty()).then_some(text))
}

/// A var's text, `None` when it is not set.
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|value| value.to_string())
}

pub fn number(env: &Env, name: &str, default: u64) -> Result<u64, String> {
    match var(env, name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name}={text:?} is not a whole number")),
    }
}

pub fn flag(env: &Env, name: &str) -> Result<bool, String> {
    match var(env, name).as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(format!("{name}={other:?} must be true or false")),
    }
}
