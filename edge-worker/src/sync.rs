//! `[[sync]]` on the Worker: each cron invocation, after collection,
//! advances the due sync passes (`pier_core::sync`) for at most
//! `PIER_SYNC_BUDGET_SECS` (default 20) and leaves their progress in R2,
//! where the next invocation (any isolate, any location) goes on. The rules
//! are the `PIER_SYNC` var (read with the other tables in `deployment`).
//! Passes write R2 directly, as collection does: tags and pass records are
//! never cached, and the KV and Cache API copies of immutable objects stay
//! right whoever wrote them.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use pier_core::deployment::Stores;
use pier_core::platform::{Background, BoxFuture, Env as CoreEnv};
use pier_core::sync::{Budget, PassOutcome};
use worker::{console_error, console_log, Delay, Env, ScheduleContext};

use crate::config::{EdgeConfig, BUCKET_BINDING};
use crate::env::WorkerEnv;
use crate::r2::R2Store;

/// Advances the due passes within the budget and logs what they did.
pub async fn advance(env: &Env, cron: &str, context: ScheduleContext) {
    if let Err(err) = try_advance(env, cron, context).await {
        console_error!("pier: cron {cron}: sync failed, the next invocation resumes it: {err}");
    }
}

async fn try_advance(env: &Env, cron: &str, context: ScheduleContext) -> Result<(), String> {
    let config = EdgeConfig::from_env(env).map_err(|err| format!("configuration: {err}"))?;
    let deployment = crate::deployment::deployment(env).map_err(|err| format!("configuration: {err}"))?;
    let bucket = env
        .bucket(BUCKET_BINDING)
        .map_err(|err| format!("R2 binding {BUCKET_BINDING}: {err}"))?;
    // One isolate, one thread: the R2 handle and the context need not be Send.
    #[allow(clippy::arc_with_non_send_sync)]
    let store = Arc::new(R2Store::new(bucket, config.part_size));
    #[allow(clippy::arc_with_non_send_sync)]
    let site = deployment.site(Stores::Backend(store), Arc::new(CronWaitUntil(Rc::new(context))));
    let passes = deployment.sync_passes(&site);
    if passes.rules().is_empty() {
        return Ok(());
    }
    let budget = Budget::for_ms(WorkerEnv.now_millis(), config.sync_budget_secs.saturating_mul(1000));
    for (name, outcome) in passes.run_due(budget).await {
        match outcome {
            Ok(PassOutcome::Finished(record)) => console_log!("pier: cron {cron}: sync {name}: {}", record.summary()),
            Ok(PassOutcome::MoreToDo(record)) => console_log!(
                "pier: cron {cron}: sync {name}: {} of {} repositories so far; the next invocation goes on",
                record.next_repository,
                record.repositories.len()
            ),
            Ok(_) => {}
            Err(err) => console_error!("pier: cron {cron}: sync {name}: {err}"),
        }
    }
    Ok(())
}

/// Work after the cron handler returns, kept alive by its `waitUntil` (a
/// schedule's context, where a request has its own `background::WaitUntil`).
struct CronWaitUntil(Rc<ScheduleContext>);

impl Background for CronWaitUntil {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.0.wait_until(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(Delay::from(duration))
    }

    fn report(&self, failed: bool, message: &str) {
        match failed {
            true => console_error!("pier: {message}"),
            false => console_log!("pier: {message}"),
        }
    }
}
