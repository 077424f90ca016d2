//! `pier gc`: one collection over the configured storage, a dry run unless
//! `--apply`, with a progress bar. Everything it decides lives in
//! `pier_core::gc`; this only runs its steps and shows what they did.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pier_core::gc::{Gc, Report};
use pier_core::quota::Quotas;

use crate::config::{CheckStorageArgs, Config, ServeArgs};
use crate::env::SystemEnv;

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
    let config = Config::load(ServeArgs {
        config: args.target.config.clone(),
        storage: args.target.storage,
        ..ServeArgs::default()
    })?;
    let quotas = Arc::new(Quotas::new(&config.deployment.quotas)?);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let store = crate::store::open(&config.storage)?;
        let mut gc = Gc::new(store, Arc::new(SystemEnv), config.deployment.gc.clone(), !args.apply).with_quotas(quotas);
        // Archived blobs' bytes are deleted from the archive's store.
        if let Some(archive) = &config.archive {
            gc = gc.with_archive(crate::store::open(&archive.store).map_err(|e| format!("[archive] {e}"))?);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("literal template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let report = loop {
            let outcome = gc.step().await.map_err(|e| e.message.clone())?;
            bar.set_message(format!("{:?}: {} objects examined", outcome.phase, outcome.examined));
            if let Some(report) = outcome.report {
                break report;
            }
        };
        bar.finish_and_clear();
        print_report(&report, args.verbose);
        Ok(())
    })
}

fn print_report(report: &Report, verbose: bool) {
    let verb = if report.dry_run { "would remove" } else { "removed" };
    if verbose {
        for what in &report.removed {
            println!("{verb} {what}");
        }
    }
    println!("{}", report.summary());
    for quota in &report.quotas {
        println!(
            "quota {}: {} of {} bytes used{}",
            quota.namespace,
            quota.used_bytes,
            quota.max_bytes,
            if report.dry_run {
                " (recounted, not recorded)"
            } else {
                ""
            }
        );
    }
    if report.dry_run {
        println!("dry run: nothing was removed; run `pier gc --apply` to remove it");
    }
}
