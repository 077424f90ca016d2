//! Garbage collection on the native server: the `pier gc` command (a dry run
//! unless `--apply`, with a progress bar) and the schedule `pier serve` runs
//! on a tokio task. Everything it decides lives in `pier_core::gc`; this only
//! runs its steps and shows what they did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use pier_core::gc::{Gc, GcConfig, Report};
use pier_core::store::Store;
use serde::Deserialize;

use crate::config::{CheckStorageArgs, StorageConfig};
use crate::env::SystemEnv;

/// The `[gc]` table: when the server collects, and how (see docs/gc.md).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GcSection {
    /// Seconds between collections in `pier serve`; 0 (the default) runs none.
    #[serde(default)]
    pub interval_secs: u64,
    #[serde(flatten)]
    pub collection: GcConfig,
}

/// `pier gc`: the storage settings, the `[gc]` table of the same file, and `--apply`.
#[derive(Args, Debug, Default)]
pub struct GcArgs {
    #[command(flatten)]
    pub target: CheckStorageArgs,
    /// Delete what the collection finds; without it nothing is removed.
    #[arg(long)]
    pub apply: bool,
    /// Print every removal the report lists, not only the totals.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run_command(args: GcArgs) -> Result<(), String> {
    let section = crate::config::gc_section(args.target.config.as_deref())?;
    let storage = StorageConfig::load(args.target)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let store = crate::store::open(&storage)?;
        let mut gc = Gc::new(store, Arc::new(SystemEnv), section.collection, !args.apply);
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("literal template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let started = Instant::now();
        let report = loop {
            let outcome = gc.step().await.map_err(|e| e.message.clone())?;
            bar.set_message(format!("{:?}: {} objects examined", outcome.phase, outcome.examined));
            if let Some(report) = outcome.report {
                break report;
            }
        };
        bar.finish_and_clear();
        print_report(&report, started.elapsed(), args.verbose);
        Ok(())
    })
}

fn print_report(report: &Report, elapsed: Duration, verbose: bool) {
    let verb = if report.dry_run { "would remove" } else { "removed" };
    if verbose {
        for what in &report.removed {
            println!("{verb} {what}");
        }
    }
    println!(
        "gc {verb}: {} blobs ({} bytes), {} orphaned data objects ({} bytes), {} manifests, {} tags, \
         {} referrer entries, {} links, {} expired uploads",
        report.blobs_deleted,
        report.blob_bytes_freed,
        report.orphan_data_deleted,
        report.orphan_bytes_freed,
        report.manifests_deleted,
        report.tags_deleted,
        report.referrers_deleted,
        report.links_deleted,
        report.uploads_expired,
    );
    let seconds = elapsed.as_secs_f64().max(1e-3);
    println!(
        "gc examined {} blobs in {} repositories in {:.2}s ({:.0} blobs/s, {} steps); {} kept by the grace window, {} spared by pushes under way",
        report.blobs_examined,
        report.repos_examined,
        seconds,
        report.blobs_examined as f64 / seconds,
        report.steps,
        report.blobs_in_grace,
        report.blobs_spared_by_push,
    );
    if report.dry_run {
        println!("dry run: nothing was removed; run `pier gc --apply` to remove it");
    }
}

/// How often `pier serve` expires idle uploads when no collection is scheduled.
const UPLOAD_EXPIRY_EVERY: Duration = Duration::from_secs(3600);

/// Runs a collection every `interval_secs` for as long as the server runs;
/// with no interval, only the expiry of idle uploads, hourly, so abandoned
/// uploads never pile up on a server nobody configured. A run interrupted by
/// a restart resumes from its saved state.
pub async fn schedule(store: Arc<dyn Store>, section: GcSection) {
    let every = match section.interval_secs {
        0 => UPLOAD_EXPIRY_EVERY,
        secs => Duration::from_secs(secs),
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (env, config) = (Arc::new(SystemEnv), section.collection.clone());
        let mut gc = match section.interval_secs {
            0 => Gc::uploads_only(store.clone(), env, config),
            _ => Gc::new(store.clone(), env, config, false),
        };
        match gc.run_to_end().await {
            Ok(report) => tracing::info!(
                blobs_deleted = report.blobs_deleted,
                bytes_freed = report.bytes_freed(),
                manifests_deleted = report.manifests_deleted,
                tags_deleted = report.tags_deleted,
                uploads_expired = report.uploads_expired,
                blobs_examined = report.blobs_examined,
                duration_ms = report.duration_ms,
                "gc finished"
            ),
            Err(e) => tracing::warn!(error = %e.message, "gc failed; the next run resumes it"),
        }
    }
}
