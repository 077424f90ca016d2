//! Garbage collection from the cron trigger: each invocation advances the
//! deployment's scheduled collection (`pier_core::gc::Gc`) for at most
//! `PIER_GC_BUDGET_SECS` and leaves its state in R2, where the next invocation
//! (any isolate, any location) picks it up. Without `PIER_GC` it only expires
//! idle uploads. It reads and deletes R2 directly: a collector must see the
//! objects as they are, not as a cache remembers them; what it deletes is
//! dropped from KV as well (`CachedStore::forgetting`).

use std::sync::Arc;

use worker::{console_error, console_log, Env};

use crate::cache::{CachedStore, EdgeCaches};
use crate::config::KV_BINDING;
use crate::r2::R2Store;

/// Runs collection steps within the configured budget and logs what they did.
pub async fn collect(env: &Env, cron: &str) {
    if let Err(err) = try_collect(env, cron).await {
        console_error!("pier: cron {cron}: garbage collection failed, the next invocation resumes it: {err}");
    }
}

async fn try_collect(env: &Env, cron: &str) -> Result<(), String> {
    let crate::deployment::Configured {
        config,
        deployment,
        bucket,
    } = crate::deployment::configured(env)?;
    let ops = crate::counted::OpCounts::default();
    // One isolate, one thread: the R2 and KV handles need not be Send.
    #[allow(clippy::arc_with_non_send_sync)]
    let store = Arc::new(CachedStore::forgetting(
        Arc::new(R2Store::new(bucket, config.part_size)),
        EdgeCaches::kv_only(env.kv(KV_BINDING).ok(), ops.clone()),
    ));
    let mut collector = deployment.scheduled_collector(store);
    if let Some(archive) = crate::deployment::archive_store(env, &deployment, &config, &ops)? {
        collector = collector.with_archive(archive);
    }
    let run = collector
        .run_for(config.gc_budget_secs.saturating_mul(1000))
        .await
        .map_err(|err| err.to_string())?;
    match &run.last.report {
        Some(report) => console_log!(
            "pier: cron {cron}: {} ({} steps this invocation)",
            report.summary(),
            run.steps
        ),
        None => console_log!(
            "pier: cron {cron}: gc took {} steps, now in phase {:?} with {} objects examined; \
             the next invocation goes on",
            run.steps,
            run.last.phase,
            run.last.examined,
        ),
    }
    Ok(())
}
