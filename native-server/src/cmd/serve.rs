//! `pier serve`: one deployment (`pier_core::deployment`) over the
//! configured storage, behind axum, over plain HTTP or TLS (`tls`,
//! `listen`), with collection on a timer and a graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use pier_core::deployment::{Deployment, Ports, Stores};
use pier_core::platform::Env;
use pier_core::remote::http::HttpClient;
use pier_core::store::Store;

use crate::background::TokioBackground;
use crate::config::{Config, ServeArgs};
use crate::env::SystemEnv;
use crate::http::{self, AppState};
use crate::remote::ReqwestClient;
use crate::store::metered::MeteredStore;
use crate::store::settings::StorageLocation;

pub fn run(args: ServeArgs) -> Result<(), String> {
    let config = Config::load(args)?;
    keep_freed_memory_small();
    super::init_logging(config.log_format);
    super::runtime()?.block_on(serve(config))
}

async fn serve(config: Config) -> Result<(), String> {
    let metrics = crate::metrics::install()?;
    let store: Arc<dyn Store> = Arc::new(MeteredStore::new(crate::store::open(&config.storage)?));
    if config.deployment.redirect_blobs && matches!(config.storage.location, StorageLocation::Disk(_)) {
        tracing::warn!("redirect_blobs is on, but a local directory cannot sign URLs: blobs are served directly");
    }
    let env: Arc<dyn Env> = Arc::new(SystemEnv);
    let client = ReqwestClient::open();
    if let Some(why) = client.unusable() {
        tracing::warn!("{why}");
    }
    let http: Arc<dyn HttpClient> = Arc::new(client);
    let deployment = Deployment::new(config.deployment_settings()?, Ports { env, http }).map_err(|e| e.to_string())?;
    for notice in deployment.notices() {
        match notice.warning {
            true => tracing::warn!("{}", notice.message),
            false => tracing::info!("{}", notice.message),
        }
    }
    let deployment = Arc::new(deployment);
    let archive_store = match &config.archive {
        Some(archive) => Some(Arc::new(MeteredStore::new(
            crate::store::open(&archive.store).map_err(|e| format!("[archive] {e}"))?,
        )) as Arc<dyn Store>),
        None => None,
    };
    let mut site = deployment.site(Stores::Backend(store.clone()), Arc::new(TokioBackground));
    if let Some(archive) = &archive_store {
        site = deployment.with_archive(site, archive.clone());
    }
    tokio::spawn(collect_on_schedule(
        deployment.clone(),
        store.clone(),
        archive_store.clone(),
        config.gc_interval_secs,
    ));
    if let (Some(archiver), Some(settings)) = (site.archiver_handle(), &config.archive) {
        tokio::spawn(super::archive::on_schedule(archiver, settings.interval_secs));
    }
    if let Some(events) = site.events() {
        tokio::spawn(deliver_on_schedule(events.clone()));
    }
    tokio::spawn(super::sync::on_schedule(deployment.sync_passes(&site)));
    let tls = match crate::tls::certificate_files(&config.tls)? {
        Some((cert, key)) => Some(crate::tls::acceptor(&config.tls, cert, key)?),
        None if !config.listen.ip().is_loopback() => {
            tracing::warn!(
                listen = %config.listen,
                "serving plain HTTP on a network address: passwords and tokens cross the network in clear, \
                 and docker and podman refuse such a registry unless told it is insecure (docs/tls.md)"
            );
            None
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", config.listen))?;
    tracing::info!(listen = %config.listen, tls = tls.is_some(), storage = %config.storage.location, "pier is serving");
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let app = http::router(AppState {
        deployment,
        site: Arc::new(site),
        store,
        metrics,
    });
    let server = crate::listen::serve(listener, tls, app, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = signalled_tx.send(());
    });
    let mut server = tokio::spawn(server);
    tokio::select! {
        result = &mut server => return result.map_err(|e| e.to_string()),
        _ = signalled_rx => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => {
            tracing::warn!("requests still running after {}s; stopping", grace.as_secs());
            Ok(())
        }
    }
}

/// How often `pier serve` expires idle uploads when no collection is scheduled.
const UPLOAD_EXPIRY_EVERY: Duration = Duration::from_secs(3600);

/// Runs the deployment's scheduled collection every `interval_secs` for as
/// long as the server runs; with no interval (collection off), the expiry of
/// idle uploads, hourly. A run interrupted by a restart resumes from its
/// saved state.
async fn collect_on_schedule(
    deployment: Arc<Deployment>,
    store: Arc<dyn Store>,
    archive: Option<Arc<dyn Store>>,
    interval_secs: u64,
) {
    let every = match interval_secs {
        0 => UPLOAD_EXPIRY_EVERY,
        secs => Duration::from_secs(secs),
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut collector = deployment.scheduled_collector(store.clone());
        if let Some(archive) = &archive {
            collector = collector.with_archive(archive.clone());
        }
        match collector.run_to_end().await {
            // The counts as fields too, for whoever reads the JSON log.
            Ok(report) => tracing::info!(
                blobs_deleted = report.blobs_deleted,
                bytes_freed = report.bytes_freed(),
                manifests_deleted = report.manifests_deleted,
                tags_deleted = report.tags_deleted,
                uploads_expired = report.uploads_expired,
                blobs_examined = report.blobs_examined,
                duration_ms = report.duration_ms,
                summary = %report.summary(),
                "gc finished"
            ),
            Err(e) => tracing::warn!(error = %e.message, "gc failed; the next run resumes it"),
        }
    }
}

/// The longest `pier serve` waits between two passes over the outbox: what
/// another instance left (it crashed, or its drain was dropped over the
/// bound) is delivered within this.
const OUTBOX_PASS_EVERY: Duration = Duration::from_secs(30);

/// Backfills new rules, then delivers what the outbox holds as it comes due,
/// for as long as the server runs. New events do not wait for this: their
/// lanes are drained at once, in tasks of their own.
async fn deliver_on_schedule(events: pier_core::events::EventSink) {
    if let Err(err) = events.backfill_new_rules().await {
        tracing::warn!(error = %err.message, "backfill of new replication rules failed; the next start retries it");
    }
    loop {
        let due = match events.drain_all().await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "delivering the outbox failed; trying again later");
                None
            }
        };
        let now = SystemEnv.now_millis();
        let wait = due.map_or(OUTBOX_PASS_EVERY, |due| Duration::from_millis(due.saturating_sub(now)));
        tokio::time::sleep(wait.clamp(Duration::from_millis(50), OUTBOX_PASS_EVERY)).await;
    }
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
