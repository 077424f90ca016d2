//! `pier`: the native registry server and its admin commands.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pier_core::registry::RegistryOptions;
use pier_core::Registry;

mod config;
mod env;
mod http;
mod store;

use config::{Config, LogFormat, ServeArgs};

#[derive(Parser)]
#[command(name = "pier", version, about = "An OCI container registry")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server (the default command).
    Serve(ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => Config::load(args).and_then(serve),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pier: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIER_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(config: Config) -> Result<(), String> {
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let store = store::fs::FsStore::open(&config.data_dir, config.part_size)
            .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
        let options = RegistryOptions {
            allow_sparse_manifests: config.allow_sparse_manifests,
            max_body_bytes: config.max_body_bytes,
        };
        let registry = Arc::new(Registry::new(Arc::new(store), Arc::new(env::SystemEnv), options));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("listen on {}: {e}", config.listen))?;
        tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "pier is serving");
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, http::router(registry)).with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = signalled_tx.send(());
        });
        let server = tokio::spawn(async move { server.await });
        let mut server = server;
        tokio::select! {
            result = &mut server => return result.map_err(|e| e.to_string())?.map_err(|e| e.to_string()),
            _ = signalled_rx => {}
        }
        match tokio::time::timeout(grace, server).await {
            Ok(result) => result.map_err(|e| e.to_string())?.map_err(|e| e.to_string()),
            Err(_) => {
                tracing::warn!("requests still running after {}s; stopping", grace.as_secs());
                Ok(())
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
