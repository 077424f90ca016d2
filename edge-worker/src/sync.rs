//! `[[sync]]` on the Worker: each cron invocation, after collection,
//! advances the due sync passes (`pier_core::sync`) for at most
//! `PIER_SYNC_BUDGET_SECS` (default 20) and leaves their progress in R2,
//! where the next invocation (any isolate, any location) goes on. The rules
//! are the `PIER_SYNC` var (read with the other tables in `deployment`).
//! Passes write R2 directly, as collection does: tags and pass records are
//! never cached, and the KV and Cache API copies of immutable objects stay
//! right whoever wrote them.

use std::sync::Arc;

use pier_core::platform::{Background, Env as CoreEnv};
use pier_core::sync::{Budget, PassOutcome};
use worker::{console_error, console_log, Env};

use crate::env::WorkerEnv;

/// Advances the due passes within the budget and logs what they did.
pub async fn advance(env: &Env, cron: &str, background: Arc<dyn Background>) {
    if let Err(err) = try_advance(env, cron, background).await {
        console_error!("pier: cron {cron}: sync failed, the next invocation resumes it: {err}");
    }
}

async fn try_advance(env: &Env, cron: &str, background: Arc<dyn Background>) -> Result<(), String> {
    let (site, config) = crate::deployment::backend_site(env, background)?;
    let deployment = crate::deployment::configured(env)?.deployment;
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
