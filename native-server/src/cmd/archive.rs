//! `pier archive`: the archive tier from the command line (what it holds,
//! a pass of its rules, one image out or back now) and the pass on a timer
//! in `pier serve`. Everything it decides lives in `pier_core::archive`; it
//! works on the stores directly, so it serves buckets many instances share
//! and directories whose server is stopped (docs/lifecycle.md).

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use pier_core::archive::{Archiver, Direction, PassReport};
use pier_core::deployment::{Deployment, Ports, Stores};
use pier_core::names::RepoName;

use crate::background::TokioBackground;
use crate::config::{CheckStorageArgs, Config, ServeArgs};
use crate::env::SystemEnv;
use crate::remote::ReqwestClient;

/// A line on standard output that a reader gone away (`pier archive status
/// | head`) does not turn into a panic: the command goes on, unheard.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Args, Debug)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub target: CheckStorageArgs,
    #[command(subcommand)]
    pub command: ArchiveCommand,
}

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// What the archive holds, the moves under way, and the images with
    /// blobs there.
    Status,
    /// One pass: finish interrupted moves, bring back what pulls asked for,
    /// move out what the rules select. A dry run (listing what the rules
    /// select, and why) unless `--apply`.
    Run {
        #[arg(long)]
        apply: bool,
    },
    /// Checks that every blob's bytes are where its record says, and that
    /// no copy is left anywhere else; exits non-zero if not.
    Verify,
    /// Moves an image's blobs (REPO:TAG) to the archive now.
    Move { image: String },
    /// Brings an image's blobs (REPO:TAG) back to the main store now.
    Restore { image: String },
}

pub fn run(args: ArchiveArgs) -> Result<(), String> {
    let config = Config::load(ServeArgs {
        config: args.target.config.clone(),
        storage: args.target.storage,
        ..ServeArgs::default()
    })?;
    let archive = config
        .archive
        .clone()
        .ok_or("the configuration has no [archive] table: there is no archive store to use")?;
    super::runtime()?.block_on(async move {
        let store = crate::store::open(&config.storage)?;
        let archive_store = crate::store::open(&archive.store).map_err(|e| format!("[archive] {e}"))?;
        let ports = Ports {
            env: Arc::new(SystemEnv),
            http: Arc::new(ReqwestClient::open()),
        };
        // Moves need no auth: the configuration's [auth] is left out.
        let deployment = Deployment::new(config.deployment.clone(), ports).map_err(|e| e.to_string())?;
        let site = deployment.with_archive(
            deployment.site(Stores::Backend(store), Arc::new(TokioBackground)),
            archive_store,
        );
        let archiver = site.archiver().ok_or("the configuration has no [archive] table")?;
        match args.command {
            ArchiveCommand::Status => status(archiver).await,
            ArchiveCommand::Run { apply } => {
                let report = archiver.run(u64::MAX, !apply).await.map_err(|e| e.message)?;
                print_report(&report);
                Ok(())
            }
            ArchiveCommand::Verify => verify(archiver).await,
            ArchiveCommand::Move { image } => move_image(archiver, &image, Direction::Out).await,
            ArchiveCommand::Restore { image } => move_image(archiver, &image, Direction::In).await,
        }
    })
}

async fn status(archiver: &Archiver) -> Result<(), String> {
    let status = archiver.status().await.map_err(|e| e.message)?;
    say!(
        "{} blobs archived ({} bytes); {} moves under way; {} blobs asked back by pulls",
        status.archived_blobs,
        status.archived_bytes,
        status.moves_pending,
        status.wanted
    );
    for (image, archived, blobs) in archiver.archived_images().await.map_err(|e| e.message)? {
        say!("{image}\t{archived}/{blobs} blobs archived");
    }
    Ok(())
}

async fn verify(archiver: &Archiver) -> Result<(), String> {
    let verified = archiver.verify().await.map_err(|e| e.message)?;
    for missing in &verified.missing {
        say!("missing: {missing}");
    }
    for stray in &verified.strays {
        say!("stray: {stray}");
    }
    say!(
        "{} blobs checked, {} archived: {} missing, {} strays",
        verified.blobs,
        verified.archived,
        verified.missing.len(),
        verified.strays.len()
    );
    match verified.missing.is_empty() && verified.strays.is_empty() {
        true => Ok(()),
        false => Err("the archive and the main store disagree with the records (above)".into()),
    }
}

async fn move_image(archiver: &Archiver, image: &str, direction: Direction) -> Result<(), String> {
    let (repo, tag) = image
        .rsplit_once(':')
        .and_then(|(repo, tag)| Some((RepoName::parse(repo)?, tag)))
        .ok_or_else(|| format!("{image:?} is not REPO:TAG"))?;
    let (moved, bytes) = archiver
        .move_image(&repo, tag, direction)
        .await
        .map_err(|e| e.message)?;
    let whither = match direction {
        Direction::Out => "to the archive",
        Direction::In => "back to the main store",
    };
    say!("{image}: {moved} blobs ({bytes} bytes) moved {whither}");
    Ok(())
}

fn print_report(report: &PassReport) {
    let verb = if report.dry_run { "would move" } else { "moved" };
    for what in &report.listed {
        say!("{verb} {what}");
    }
    if report.busy {
        say!("another instance is running a pass (its lease is held): nothing done");
    }
    say!("{}", report.summary());
    if report.dry_run {
        say!("dry run: nothing was moved; run `pier archive run --apply` to move it");
    }
}

/// Runs a pass every `interval_secs` for as long as the server runs (none
/// when 0); a pass cut by a restart is finished by the next one.
pub async fn on_schedule(archiver: Arc<Archiver>, interval_secs: u64) {
    if interval_secs == 0 {
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(interval_secs));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match archiver.run(u64::MAX, false).await {
            Ok(report) if report.busy => tracing::debug!("archive pass skipped: another instance runs one"),
            Ok(report) => tracing::info!(
                moved_out = report.moved_out,
                bytes_out = report.bytes_out,
                moved_in = report.moved_in,
                bytes_in = report.bytes_in,
                summary = %report.summary(),
                "archive pass finished"
            ),
            Err(e) => tracing::warn!(error = %e.message, "archive pass failed; the next one goes on"),
        }
    }
}
