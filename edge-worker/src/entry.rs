//! The Worker's entry points: `fetch` hands every request to this isolate's
//! deployment (`deployment`) over the cached R2 store; `scheduled` is the cron
//! trigger, which advances garbage collection and the due sync passes and
//! drains the events outbox; `queue` consumes the events queue (`events`).

use std::rc::Rc;
use std::sync::Arc;

use pier_core::auth::RequestOrigin;
use pier_core::deployment::Stores;
use pier_core::error::{ErrorCode, RegistryError};
use pier_core::events::outbox::Lane;
use pier_core::platform::Background;
use pier_core::store::Store;
use worker::{console_error, event, web_sys, Context, Env, MessageBatch, Response, ScheduleContext, ScheduledEvent};

use crate::background::WaitUntil;
use crate::cache::{CachedStore, EdgeCaches};
use crate::config::KV_BINDING;
use crate::counted::OpCounts;
use crate::http_shell::{core_request, worker_response};
use crate::r2::R2Store;

/// How much of a request body core left unread is read out before answering:
/// the largest body the platform lets through on any plan (Enterprise), so a
/// client pushing past PIER_MAX_BODY_BYTES still gets its 413 and not a reset.
const UNREAD_BODY_DRAIN_LIMIT: u64 = 500_000_000;

#[event(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| console_error!("pier: panic: {info}")));
}

/// Takes the runtime's request as it is (see `http_shell::core_request`).
#[event(fetch)]
async fn fetch(request: web_sys::Request, env: Env, context: Context) -> worker::Result<Response> {
    let (method, url) = (request.method(), request.url());
    let response = match serve(request, &env, context).await {
        Ok(response) => response,
        Err(err) => failure(&format!("{method} {url}: {err}"))?,
    };
    if response.status_code() >= 500 {
        console_error!("pier: {method} {url} -> {}", response.status_code());
    }
    Ok(response)
}

async fn serve(request: web_sys::Request, env: &Env, context: Context) -> Result<Response, String> {
    let crate::deployment::Configured {
        config,
        deployment,
        bucket,
    } = crate::deployment::configured(env)?;
    #[cfg(feature = "test-endpoints")]
    if let Some(response) = crate::test_routes::serve(
        &worker::Request::from(Clone::clone(&request)),
        env,
        &config,
        &deployment,
        &context,
    )
    .await
    {
        return response.map_err(|err| err.to_string());
    }
    let (request, unread) = core_request(request).map_err(|err| err.to_string())?;
    let url_origin = request
        .extensions()
        .get::<RequestOrigin>()
        .map(|origin| origin.0.clone())
        .unwrap_or_default();
    let ops = OpCounts::default();
    let caches = EdgeCaches::new(env.kv(KV_BINDING).ok(), &url_origin, &config, ops.clone());
    // Core takes `Arc<dyn Store>` for the native server's threads; a Worker
    // isolate has one thread, so the JavaScript handles inside need not be Send.
    #[allow(clippy::arc_with_non_send_sync)]
    let r2: Arc<dyn Store> = ops.wrap(Arc::new(R2Store::new(bucket, config.part_size)));
    let context = Rc::new(context);
    #[allow(clippy::arc_with_non_send_sync)]
    let cached: Arc<dyn Store> = Arc::new(CachedStore::new(r2.clone(), caches.clone(), context.clone()));
    // Pulls read through the edge caches; what races with GC reads R2.
    let stores = Stores::Cached {
        backend: r2,
        cache: cached,
    };
    #[allow(clippy::arc_with_non_send_sync)]
    let site = deployment
        .site(stores, Arc::new(WaitUntil::of_request(context)))
        .with_local_marks(Arc::new(caches));
    let site = crate::deployment::with_archive(env, &deployment, site, &config, &ops)?;
    let site = crate::events::route_lanes(site, env, &config);
    let response = deployment.handle(&site, request).await;
    if let Some(unread) = unread {
        unread.drain(UNREAD_BODY_DRAIN_LIMIT).await;
    }
    let mut response = worker_response(response).map_err(|err| err.to_string())?;
    ops.report(&mut response).map_err(|err| err.to_string())?;
    Ok(response)
}

/// A 500 in the registry's error format, for failures of the shell itself
/// (configuration, bindings).
fn failure(message: &str) -> worker::Result<Response> {
    console_error!("pier: {message}");
    let response = pier_core::api::error_response(&RegistryError::new(ErrorCode::Internal, message));
    worker_response(response)
}

/// The every-minute trigger (wrangler.toml), which collects no garbage.
const EVERY_MINUTE: &str = "* * * * *";

/// Every cron: garbage collection's and the archive's next steps (but every
/// minute), the sync passes that are due, and the events outbox.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, context: ScheduleContext) {
    let cron = event.cron();
    if cron != EVERY_MINUTE {
        crate::gc::collect(&env, &cron).await;
    }
    // One isolate, one thread: the context need not be Send.
    #[allow(clippy::arc_with_non_send_sync)]
    let background: Arc<dyn Background> = Arc::new(WaitUntil::of_cron(context));
    if cron != EVERY_MINUTE {
        crate::archive::advance(&env, &cron, background.clone()).await;
    }
    crate::sync::advance(&env, &cron, background.clone()).await;
    crate::events::on_cron(&env, background).await;
}

/// The events queue's consumer.
#[event(queue)]
async fn queue(batch: MessageBatch<Lane>, env: Env, context: Context) -> worker::Result<()> {
    crate::events::consume(batch, &env, context).await;
    Ok(())
}
