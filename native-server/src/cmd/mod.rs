//! The `pier` command line: one module per command, each reading its
//! settings through `config` and running on the adapters beside it (stores,
//! HTTP shell, environment). `main.rs` only parses and calls [`run`].

use clap::{Parser, Subcommand};

use crate::config::{CheckStorageArgs, LogFormat, ServeArgs};

pub mod archive;
pub mod auth;
pub mod check_storage;
pub mod copy;
pub mod events;
pub mod gc;
pub mod serve;
pub mod sync;

#[derive(Parser)]
#[command(name = "pier", version, about = "An OCI container registry")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server (the default command).
    Serve(ServeArgs),
    /// Check that a storage configuration keeps the storage contract: reads,
    /// ranged reads, conditional and racing writes, long listings, multipart
    /// writes, deletes.
    CheckStorage(CheckStorageArgs),
    /// Make what an `[auth]` table needs: password hashes, robot tokens, signing keys.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Collect garbage: unreferenced blobs, manifests and tags the retention
    /// rules drop, idle uploads. A dry run unless `--apply`.
    Gc(gc::GcArgs),
    /// Copy an image or a whole index between registries, or to and from an
    /// OCI image layout directory (`oci:DIR[:tag]`).
    Copy(copy::CopyArgs),
    /// The outbox of webhook deliveries and replication copies: list what
    /// waits and what was given up, retry, backfill a rule.
    Events(events::EventsArgs),
    /// The archive tier: what it holds, a pass of its rules (a dry run
    /// unless `--apply`), an image moved out or back now.
    Archive(archive::ArchiveArgs),
    /// Run one pass of the `[[sync]]` rules (all, or those named): copy what
    /// their upstreams have and this registry lacks.
    Sync(sync::SyncArgs),
}

/// Runs the command `cli` names; `Err` holds what to tell the user.
pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve::run(args),
        Command::CheckStorage(args) => check_storage::run(args),
        Command::Auth(command) => auth::run(command),
        Command::Gc(args) => gc::run_command(args),
        Command::Copy(args) => copy::run(args),
        Command::Events(args) => events::run(args),
        Command::Sync(args) => sync::run(args),
        Command::Archive(args) => archive::run(args),
    }
}

/// Logs to standard error, filtered by `PIER_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIER_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}
