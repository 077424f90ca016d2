//! `[[sync]]` on the native server: `pier sync [-c CONFIG] [NAME...]` runs a
//! pass of the named rules by hand against the configured storage, with a
//! progress bar on a terminal (a line per repository otherwise) and a
//! summary, failing when a tag did; and `pier serve` runs the due passes on
//! a timer ([`on_schedule`]). Everything a pass decides lives in
//! `pier_core::sync`; this only runs it and shows what it did.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pier_core::deployment::{Deployment, Ports, Stores};
use pier_core::sync::{Budget, PassObserver, PassOutcome, PassRecord, SyncPasses, TagOutcome};

use crate::background::TokioBackground;
use crate::config::{Config, ServeArgs};
use crate::env::SystemEnv;
use crate::remote::ReqwestClient;
use crate::store::settings::StorageArgs;

/// `pier sync`: the configuration file (its storage and `[[sync]]` tables)
/// and which rules to run.
#[derive(Args, Debug, Default)]
pub struct SyncArgs {
    /// TOML configuration file (the one `pier serve` uses).
    #[arg(long, short = 'c', env = "PIER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The rules to run, by name [default: every rule].
    pub names: Vec<String>,
}

pub fn run(args: SyncArgs) -> Result<(), String> {
    let config = Config::load(ServeArgs {
        config: args.config,
        storage: args.storage,
        ..ServeArgs::default()
    })?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let store = crate::store::open(&config.storage)?;
        let ports = Ports {
            env: Arc::new(SystemEnv),
            http: Arc::new(ReqwestClient::open()),
        };
        let deployment = Deployment::new(config.deployment_settings()?, ports).map_err(|e| e.to_string())?;
        let site = deployment.site(Stores::Backend(store), Arc::new(TokioBackground));
        let passes = deployment.sync_passes(&site);
        let known: Vec<&str> = passes.rules().iter().map(|rule| rule.name()).collect();
        if known.is_empty() {
            return Err("the configuration has no [[sync]] tables".into());
        }
        if let Some(unknown) = args.names.iter().find(|name| !known.contains(&name.as_str())) {
            return Err(format!("no sync rule {unknown:?} (rules: {})", known.join(", ")));
        }
        let mut failures = Vec::new();
        for rule in passes.rules() {
            if !args.names.is_empty() && !args.names.iter().any(|name| name == rule.name()) {
                continue;
            }
            let progress = Progress::new(rule.name());
            let outcome = passes.run(rule, Budget::UNLIMITED, true, &progress).await;
            progress.finish();
            match outcome {
                Ok(PassOutcome::Finished(record)) => {
                    println!("sync {}: {}", rule.name(), record.summary());
                    for error in &record.errors {
                        println!("  error: {error}");
                    }
                    if record.failed() {
                        failures.push(format!("{}: some tags failed", rule.name()));
                    }
                }
                Ok(PassOutcome::Busy { holder, until_ms }) => failures.push(format!(
                    "{}: another runner ({holder}) holds the pass under way, its lease until {}",
                    rule.name(),
                    pier_core::time::rfc3339(until_ms / 1000)
                )),
                Ok(other) => failures.push(format!("{}: no pass ran ({other:?})", rule.name())),
                Err(error) => failures.push(format!("{}: {error}", rule.name())),
            }
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(format!("sync: {}", failures.join("; "))),
        }
    })
}

/// A bar over the pass's repositories on a terminal; lines otherwise.
struct Progress {
    rule: String,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(rule: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} repositories {elapsed} {msg}")
                    .expect("literal template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("sync {rule}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            rule: rule.to_string(),
            bar,
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl PassObserver for Progress {
    fn taken(&self, record: &PassRecord, resumed: bool) {
        if let Some(bar) = &self.bar {
            bar.set_length(record.repositories.len() as u64);
            bar.set_position(record.next_repository as u64);
        }
        let total = record.repositories.len();
        match resumed {
            true => self.line(format!(
                "sync {}: resuming pass {} at repository {} of {total} (run {})",
                self.rule,
                record.pass,
                record.next_repository + 1,
                record.runs
            )),
            false => self.line(format!(
                "sync {}: pass {} over {total} repositories",
                self.rule, record.pass
            )),
        }
    }

    fn repository_started(&self, record: &PassRecord) {
        if let (Some(bar), Some(repo)) = (&self.bar, record.repositories.get(record.next_repository)) {
            bar.set_message(repo.clone());
        }
    }

    fn tag_done(&self, repo: &str, tag: &str, outcome: &TagOutcome) {
        match outcome {
            TagOutcome::Copied => self.line(format!("  {repo}:{tag} copied")),
            TagOutcome::Deleted => self.line(format!("  {repo}:{tag} deleted (upstream dropped it)")),
            TagOutcome::Failed(why) => self.line(format!("  {repo}:{tag} FAILED: {why}")),
            TagOutcome::Unchanged => {}
        }
    }

    fn repository_done(&self, record: &PassRecord) {
        match &self.bar {
            Some(bar) => bar.set_position(record.next_repository as u64),
            None => {
                let c = &record.counts;
                eprintln!(
                    "sync {}: {}/{} repositories; tags {} copied, {} unchanged, {} deleted, {} failed",
                    self.rule,
                    record.next_repository,
                    record.repositories.len(),
                    c.tags_copied,
                    c.tags_unchanged,
                    c.tags_deleted,
                    c.tags_failed
                );
            }
        }
    }
}

/// Longest wait between two looks at whether a pass is due.
const MAX_TICK: Duration = Duration::from_secs(60);

/// `pier serve`'s scheduler: every tick (the shortest rule interval, 1 s
/// to a minute) runs the passes that are due, and any a restart or another
/// instance left unfinished, to their end. Due-ness is read from the store,
/// so restarts and instances over one bucket share one schedule.
pub async fn on_schedule(passes: SyncPasses) {
    let Some(tick) = tick(&passes) else {
        return;
    };
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for (name, outcome) in passes.run_due(Budget::UNLIMITED).await {
            match outcome {
                Ok(PassOutcome::Finished(record)) => {
                    let c = &record.counts;
                    tracing::info!(
                        rule = %name,
                        tags_copied = c.tags_copied,
                        tags_unchanged = c.tags_unchanged,
                        tags_deleted = c.tags_deleted,
                        tags_failed = c.tags_failed,
                        summary = %record.summary(),
                        "sync pass finished"
                    );
                    for error in &record.errors {
                        tracing::warn!(rule = %name, %error, "sync error");
                    }
                }
                Ok(PassOutcome::Busy { holder, .. }) => {
                    tracing::debug!(rule = %name, %holder, "sync pass held by another instance")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(rule = %name, %error, "sync pass stopped"),
            }
        }
    }
}

/// How often the scheduler looks; `None` without rules.
fn tick(passes: &SyncPasses) -> Option<Duration> {
    let rules = passes.rules();
    if rules.is_empty() {
        return None;
    }
    let shortest = rules
        .iter()
        .filter_map(|rule| rule.interval())
        .min()
        .unwrap_or(MAX_TICK);
    Some(shortest.clamp(Duration::from_secs(1), MAX_TICK))
}
