//! Webhooks and replication rules on the Worker: the `PIER_WEBHOOKS` and
//! `PIER_REPLICATE` vars (or secrets, when they hold credentials) hold the
//! `[[webhook]]` and `[[replicate]]` tables of the native configuration as
//! JSON arrays (docs/mirroring.md). Core decides and sends; this shell gives
//! it `fetch` and background tasks that run under `waitUntil`, so deliveries
//! and copies go on after the response without delaying it (within the
//! runtime's limit on work after a response: retries far apart may be cut
//! short).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use pier_core::events::{EventSink, Hooks, HooksError, ReplicateConfig, WebhookConfig};
use pier_core::platform::{Background, BoxFuture};
use serde::de::DeserializeOwned;
use worker::{console_error, console_log, Context, Delay, Env};

use crate::config::text_var;
use crate::env::WorkerEnv;
use crate::fetch::FetchClient;
use crate::per_isolate::PerIsolate;

const WEBHOOKS_VAR: &str = "PIER_WEBHOOKS";
const REPLICATE_VAR: &str = "PIER_REPLICATE";

thread_local! {
    /// The hooks built from both vars' text.
    static HOOKS: PerIsolate<Result<Arc<Hooks>, String>> = const { PerIsolate::new() };
}

/// Background work of one request, kept alive by its `waitUntil`.
struct WaitUntil(Rc<Context>);

impl Background for WaitUntil {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.0.wait_until(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(Delay::from(duration))
    }

    fn report(&self, failed: bool, message: &str) {
        if failed {
            console_error!("pier: {message}");
        } else {
            console_log!("pier: {message}");
        }
    }
}

/// The deployment's webhooks and rules with this request's background,
/// `None` when neither var is set. An error names the var at fault.
pub fn from_env(env: &Env, context: Rc<Context>) -> Result<Option<EventSink>, String> {
    let webhooks = text_var(env, WEBHOOKS_VAR)?;
    let replicate = text_var(env, REPLICATE_VAR)?;
    if webhooks.is_none() && replicate.is_none() {
        return Ok(None);
    }
    // One key for both texts; neither holds a NUL.
    let key = format!(
        "{}\0{}",
        webhooks.as_deref().unwrap_or(""),
        replicate.as_deref().unwrap_or("")
    );
    let hooks = HOOKS.with(|kept| kept.get(key, |_| build(webhooks.as_deref(), replicate.as_deref())))?;
    #[allow(clippy::arc_with_non_send_sync)]
    Ok(Some(EventSink::new(hooks, Arc::new(WaitUntil(context)))))
}

// One isolate, one thread: the port's JavaScript handles need not be Send.
#[allow(clippy::arc_with_non_send_sync)]
fn build(webhooks: Option<&str>, replicate: Option<&str>) -> Result<Arc<Hooks>, String> {
    let webhooks: Vec<WebhookConfig> = tables(webhooks, WEBHOOKS_VAR)?;
    let rules: Vec<ReplicateConfig> = tables(replicate, REPLICATE_VAR)?;
    let hooks = Hooks::new(&webhooks, &rules, Arc::new(FetchClient), Arc::new(WorkerEnv)).map_err(|err| match err {
        HooksError::Webhook(why) => format!("{WEBHOOKS_VAR}: {why}"),
        HooksError::Replicate(why) => format!("{REPLICATE_VAR}: {why}"),
    })?;
    Ok(Arc::new(hooks))
}

fn tables<T: DeserializeOwned>(text: Option<&str>, name: &str) -> Result<Vec<T>, String> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| format!("{name}: not a JSON array of tables: {e}")),
    }
}
