//! `pier`: the native registry server and its admin commands.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pier_core::events::{EventSink, Hooks};
use pier_core::mirror::Mirror;
use pier_core::registry::RegistryOptions;
use pier_core::remote::http::HttpClient;
use pier_core::store::Store;
use pier_core::Registry;
use pier_server::background::TokioBackground;
use pier_server::config::{CheckStorageArgs, Config, LogFormat, ServeArgs, StorageConfig, StorageLocation};
use pier_server::store::metered::MeteredStore;
use pier_server::{auth, check, copy, env, gc, http, metrics, remote, store};

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
    /// Check that a storage configuration can do what the registry needs:
    /// list, write, conditional writes, ranged reads, multipart, delete.
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => Config::load(args).and_then(serve),
        Command::CheckStorage(args) => StorageConfig::load(args).and_then(check_storage),
        Command::Auth(command) => auth::run(command),
        Command::Gc(args) => gc::run_command(args),
        Command::Copy(args) => copy::run(args),
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

fn serve(config: Config) -> Result<(), String> {
    keep_freed_memory_small();
    init_logging(config.log_format);
    runtime()?.block_on(async move {
        let metrics = metrics::install()?;
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(store::open(&config.storage)?));
        if config.redirect_blobs && matches!(config.storage.location, StorageLocation::Disk(_)) {
            tracing::warn!("redirect_blobs is on, but a local directory cannot sign URLs: blobs are served directly");
        }
        let options = RegistryOptions {
            allow_sparse_manifests: config.allow_sparse_manifests,
            max_body_bytes: config.max_body_bytes,
            redirect_blobs: config.redirect_blobs,
            retention: config.gc.collection.rules.clone(),
            ..RegistryOptions::default()
        };
        let mut registry = Registry::new(store.clone(), Arc::new(env::SystemEnv), options);
        // Through the registry's fresh view, so its deletes drop cached copies at once.
        tokio::spawn(gc::schedule(registry.fresh_store(), config.gc.clone()));
        let http: Arc<dyn HttpClient> = Arc::new(remote::ReqwestClient::new()?);
        if !config.mirrors.is_empty() {
            let mirror = Mirror::new(&config.mirrors, http.clone(), Arc::new(env::SystemEnv))?;
            for rule in &config.mirrors {
                tracing::info!(namespace = %rule.namespace, upstream = %rule.upstream, "pull-through cache");
            }
            registry = registry.with_mirror(Arc::new(mirror));
        }
        let hooks = Hooks::new(&config.webhooks, &config.replicate, http, Arc::new(env::SystemEnv))
            .map_err(|err| err.to_string())?;
        if !hooks.is_empty() {
            tracing::info!(
                webhooks = config.webhooks.len(),
                replication_rules = config.replicate.len(),
                "events"
            );
            registry = registry.with_events(EventSink::new(Arc::new(hooks), Arc::new(TokioBackground)));
        }
        let registry = Arc::new(registry);
        let auth = config.auth.as_ref().map(auth::load).transpose()?;
        if auth.is_none() {
            tracing::warn!("no [auth] table: anyone may pull, push and delete anything");
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("listen on {}: {e}", config.listen))?;
        tracing::info!(listen = %config.listen, storage = %config.storage.location, "pier is serving");
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(http::AppState {
            registry,
            store,
            metrics,
            auth,
        });
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = signalled_tx.send(());
        });
        let mut server = tokio::spawn(async move { server.await });
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

fn check_storage(config: StorageConfig) -> Result<(), String> {
    // Storage failures are reported briefly per check and logged in full.
    init_logging(LogFormat::Text);
    runtime()?.block_on(async move {
        let store = store::open(&config)?;
        let prefix = format!(
            "pier-check-storage/{}/",
            pier_core::platform::Env::random_id(&env::SystemEnv)
        );
        println!(
            "checking {} (part size {} bytes) under {prefix}",
            config.location, config.part_size
        );
        check::run(store.as_ref(), &env::SystemEnv, &prefix).await
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

/// glibc's allocator gives every thread that allocates its own arena (tokio's
/// workers and the blocking threads of disk I/O: dozens) and keeps what is
/// freed in each, so the buffers of a large push or pull stay resident long
/// after, once per arena. Two arenas keep the resident set near what is in use
/// (docs/performance.md, memory). Its thresholds stay dynamic: fixing them
/// (M_TRIM_THRESHOLD) made every 1 MiB read buffer a fresh mmap.
fn keep_freed_memory_small() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
