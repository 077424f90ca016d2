//! Garbage collection from the cron trigger: each invocation advances core's
//! resumable collection (`pier_core::gc::Gc`) for at most `PIER_GC_BUDGET_SECS`
//! and leaves its state in R2, where the next invocation (any isolate, any
//! location) picks it up. Without `PIER_GC` it only expires idle uploads. It
//! reads and deletes R2 directly: a collector must see the objects as they
//! are, not as a cache remembers them.

use std::sync::Arc;

use pier_core::gc::{Gc, GcConfig};
use worker::{console_error, console_log, Env};

use crate::config::{EdgeConfig, BUCKET_BINDING};
use crate::env::WorkerEnv;
use crate::r2::R2Store;

/// Runs collection steps within the configured budget and logs what they did.
pub async fn collect(env: &Env, cron: &str) {
    if let Err(err) = try_collect(env, cron).await {
        console_error!("pier: cron {cron}: garbage collection failed, the next invocation resumes it: {err}");
    }
}

async fn try_collect(env: &Env, cron: &str) -> Result<(), String> {
    let config = EdgeConfig::from_env(env).map_err(|err| format!("configuration: {err}"))?;
    let bucket = env
        .bucket(BUCKET_BINDING)
        .map_err(|err| format!("R2 binding {BUCKET_BINDING}: {err}"))?;
    let store = Arc::new(R2Store::new(bucket, config.part_size));
    // Without PIER_GC, only idle uploads expire (after the default day), so
    // abandoned uploads never pile up on a Worker nobody configured.
    let mut gc = match config.gc.clone() {
        Some(gc_config) => Gc::new(store, Arc::new(WorkerEnv), gc_config, false),
        None => Gc::uploads_only(store, Arc::new(WorkerEnv), GcConfig::default()),
    };
    let run = gc
        .run_for(config.gc_budget_secs.saturating_mul(1000))
        .await
        .map_err(|err| err.to_string())?;
    match &run.last.report {
        Some(report) => console_log!(
            "pier: cron {cron}: gc finished after {} steps in all ({} this invocation): removed {} blobs \
             ({} bytes), {} orphaned data objects, {} manifests, {} tags, {} expired uploads; {} blobs examined",
            report.steps,
            run.steps,
            report.blobs_deleted,
            report.bytes_freed(),
            report.orphan_data_deleted,
            report.manifests_deleted,
            report.tags_deleted,
            report.uploads_expired,
            report.blobs_examined,
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
