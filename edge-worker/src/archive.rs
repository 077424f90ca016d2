//! The archive tier from the cron trigger: each collecting invocation runs
//! a pass of the `PIER_ARCHIVE` rules (`pier_core::archive`) for at most
//! `PIER_ARCHIVE_BUDGET_SECS`; a blob's move cut by the budget goes on from
//! its saved progress in the next invocation (any isolate, any location).

use std::sync::Arc;

use pier_core::platform::{Background, Env as _};
use worker::{console_error, console_log, Env};

use crate::env::WorkerEnv;

/// Runs an archive pass within the configured budget and logs what it did.
pub async fn advance(env: &Env, cron: &str, background: Arc<dyn Background>) {
    if let Err(err) = try_advance(env, background).await {
        console_error!("pier: cron {cron}: the archive pass failed, the next invocation goes on: {err}");
    }
}

async fn try_advance(env: &Env, background: Arc<dyn Background>) -> Result<(), String> {
    let (site, config) = crate::deployment::backend_site(env, background)?;
    let Some(archiver) = site.archiver() else {
        return Ok(());
    };
    let deadline = WorkerEnv
        .now_millis()
        .saturating_add(config.archive_budget_secs.saturating_mul(1000));
    let report = archiver.run(deadline, false).await.map_err(|err| err.to_string())?;
    if !report.busy {
        console_log!("pier: archive: {}", report.summary());
    }
    Ok(())
}
