//! Routes for tests under local workerd, compiled only with the
//! `test-endpoints` feature (scripts/edge-build.sh --test) and answered only
//! when the var `PIER_TEST_ENDPOINTS` is `1`. A production build has none of
//! this code.
//!
//! - `POST /_pier_test/storage-contract`: core's storage contract against R2,
//!   and whether the edge caches' `CachedStore` and the round-trip counter's
//!   `CountedStore` forward what R2 knows (`contract::check_wrapper`), as
//!   JSON: `{"prefix", "expected": [check names], "checks": [{"name",
//!   "passed", "elapsed_ms", "error"}], "cached_store_forwards": {"passed",
//!   "error"}, "counted_store_forwards": {"passed", "error"}}`.
//! - `GET|PUT|DELETE /_pier_test/objects/<key>`: raw R2 reads, writes and
//!   deletes, for importing a native data directory and for proving that reads
//!   come from the caches once R2 no longer has an object.
//! - `GET /_pier_test/cached/<key>`: 200 if the edge caches hold the key;
//!   `DELETE` drops blob data under the key from this location's Cache API
//!   alone (200, or 404 if it held none), as if its fill had not landed.
//! - `GET /_pier_test/in-memory/<key>`: 200 if this isolate keeps the blob
//!   data under the key in its memory (`hot_blobs`); `DELETE` drops whatever
//!   this isolate keeps of the key (blob data, or a small object core keeps),
//!   so that the next read is the one another isolate would make.
//! - `GET /_pier_test/wasm-memory`: the isolate's wasm memory in bytes, which
//!   never shrinks, so it is the peak of what pier's code has held at once;
//!   `POST` with `?at_least=<bytes>` first grows it to that size, as uploads'
//!   parts do, and gives what it took back to the allocator.
//! - `GET /_pier_test/hot-blobs`: the bytes of blobs kept in memory (or
//!   being copied in) and the room they may take now.
//! - `GET /_pier_test/uploads/<id>/multipart`: the R2 multipart upload an
//!   upload session writes its parts to, and `POST` on it with
//!   `?multipart=<upload id>`: 200 if R2 still takes parts for it, 404 if R2
//!   no longer knows it (aborted), to prove that expiring a session aborts it.

use std::rc::Rc;

use serde_json::json;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{Context, Env, Method, Request, Response};

use crate::cache::{CachedStore, EdgeCaches};
use crate::config::{var, EdgeConfig, BUCKET_BINDING, KV_BINDING};
use crate::counted::{CountedStore, OpCounts};
use crate::env::WorkerEnv;
use crate::r2::R2Store;
use pier_core::deployment::Deployment;
use pier_core::layout;
use pier_core::platform::Env as _;
use pier_core::store::{contract, read_small, PutMode, Store, StoreError};
use pier_core::upload::{load_state, SavedState};

const PREFIX: &str = "/_pier_test/";

/// The response to a test route, or `None` for every other request.
pub async fn serve(
    request: &Request,
    env: &Env,
    config: &EdgeConfig,
    deployment: &Deployment,
    context: &Context,
) -> Option<worker::Result<Response>> {
    let route = request.path().strip_prefix(PREFIX)?.to_string();
    if var(env, "PIER_TEST_ENDPOINTS").as_deref() != Some("1") {
        return None;
    }
    Some(answer(request, env, config, deployment, context, &route).await)
}

async fn answer(
    request: &Request,
    env: &Env,
    config: &EdgeConfig,
    deployment: &Deployment,
    context: &Context,
    route: &str,
) -> worker::Result<Response> {
    let store = R2Store::new(env.bucket(BUCKET_BINDING)?, config.part_size);
    let method = request.method();
    if route == "storage-contract" && method == Method::Post {
        let caches = edge_caches(request, env, config)?;
        return storage_contract(&store, caches, context_handle(context)).await;
    }
    if route == "wasm-memory" {
        let wasm_memory = || core::arch::wasm32::memory_size::<0>() * 65_536;
        if method == Method::Post {
            // What uploads' parts do: take memory until the wasm memory has
            // grown to the size asked, then give it all back to the
            // allocator (the wasm memory keeps its size, and later requests
            // reuse what was given back).
            let url = request.url()?;
            let asked = url.query_pairs().find(|(name, _)| name == "at_least");
            // At most 1 GiB: more would only end the isolate.
            let target = asked
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .filter(|&n| n <= 1 << 30);
            let target = target.ok_or("?at_least=<bytes, at most 1 GiB> needed")?;
            let mut held = Vec::new();
            while wasm_memory() < target {
                held.push(std::hint::black_box(vec![1u8; target - wasm_memory()]));
            }
        }
        return Response::ok(format!("{}\n", wasm_memory()));
    }
    if route == "hot-blobs" && method == Method::Get {
        let (held, room) = (
            crate::hot_blobs::held_bytes(),
            crate::hot_blobs::room(config.hot_blob_bytes),
        );
        return Response::from_json(&json!({ "held": held, "room": room }));
    }
    if let Some(key) = route.strip_prefix("objects/") {
        let key = decode(key)?;
        return match method {
            Method::Get => match read_small(&store, &key).await.map_err(|e| e.to_string())? {
                Some((bytes, _)) => Response::from_bytes(bytes.to_vec()),
                None => Response::error("no such object", 404),
            },
            Method::Put => {
                let body = request.clone()?.bytes().await?;
                let meta = store
                    .put(&key, body.into(), PutMode::Overwrite)
                    .await
                    .map_err(|e| e.to_string())?;
                Response::ok(format!("{} {}\n", meta.size, meta.etag))
            }
            Method::Delete => {
                store.delete(&key).await.map_err(|e| e.to_string())?;
                Response::ok("deleted\n")
            }
            _ => Response::error("method not allowed", 405),
        };
    }
    if let Some(id) = route
        .strip_prefix("uploads/")
        .and_then(|r| r.strip_suffix("/multipart"))
    {
        return multipart(request, &store, id).await;
    }
    if let Some(key) = route.strip_prefix("cached/") {
        let caches = edge_caches(request, env, config)?;
        if method == Method::Delete {
            return match caches.drop_cached_data(&decode(key)?).await? {
                true => Response::ok("dropped\n"),
                false => Response::error("not cached", 404),
            };
        }
        return if caches.holds(&decode(key)?).await {
            Response::ok("cached\n")
        } else {
            Response::error("not cached", 404)
        };
    }
    if let Some(key) = route.strip_prefix("in-memory/") {
        let key = decode(key)?;
        if method == Method::Delete {
            deployment.forget_in_memory(&key);
            crate::hot_blobs::forget(&key);
            return Response::ok("forgotten\n");
        }
        return if crate::hot_blobs::holds(&key) {
            Response::ok("in memory\n")
        } else {
            Response::error("not in memory", 404)
        };
    }
    Response::error("no such test route", 404)
}

/// A second handle on this request's context (the same JavaScript object),
/// for a store to own.
fn context_handle(context: &Context) -> Rc<Context> {
    let js: &worker::worker_sys::Context = context.as_ref();
    Rc::new(Context::new(js.unchecked_ref::<JsValue>().clone().unchecked_into()))
}

/// The edge caches as the Worker builds them for this request.
fn edge_caches(request: &Request, env: &Env, config: &EdgeConfig) -> worker::Result<EdgeCaches> {
    let origin = request.url()?.origin().ascii_serialization();
    Ok(EdgeCaches::new(
        env.kv(KV_BINDING).ok(),
        &origin,
        config,
        OpCounts::default(),
    ))
}

/// Runs the storage contract on R2 under a fresh prefix, and checks that a
/// `CachedStore` reports the capabilities and signed URLs of the store it
/// wraps; every outcome goes back for the edge suite to assert on.
async fn storage_contract(store: &R2Store, caches: EdgeCaches, context: Rc<Context>) -> worker::Result<Response> {
    let prefix = format!("storage-contract/{}/", WorkerEnv.random_id());
    let results = contract::run(store, &WorkerEnv, &prefix).await;
    let checks: Vec<_> = results
        .iter()
        .map(|result| {
            json!({
                "name": result.name,
                "passed": result.outcome.is_ok(),
                "elapsed_ms": result.elapsed_ms,
                "error": result.outcome.as_ref().err(),
            })
        })
        .collect();
    let forwarding = contract::check_wrapper(|inner| CachedStore::new(inner, caches, context)).await;
    let counted_forwarding = contract::check_wrapper(|inner| CountedStore::new(inner, OpCounts::default())).await;
    Response::from_json(&json!({
        "prefix": prefix,
        "expected": contract::check_names().collect::<Vec<_>>(),
        "checks": checks,
        "cached_store_forwards": {
            "passed": forwarding.is_ok(),
            "error": forwarding.err(),
        },
        "counted_store_forwards": {
            "passed": counted_forwarding.is_ok(),
            "error": counted_forwarding.err(),
        },
    }))
}

async fn multipart(request: &Request, store: &R2Store, id: &str) -> worker::Result<Response> {
    let id = decode(id)?;
    match request.method() {
        Method::Get => match load_state(store, &id).await.map_err(|e| e.to_string())? {
            SavedState::Saved(_, state) => match state.multipart {
                Some(multipart) => Response::ok(multipart),
                None => Response::error("the session has no multipart write", 404),
            },
            SavedState::Missing | SavedState::Torn | SavedState::Closed(_) => {
                Response::error("no such upload session", 404)
            }
        },
        Method::Post => {
            let url = request.url()?;
            let Some((_, multipart)) = url.query_pairs().find(|(name, _)| name == "multipart") else {
                return Response::error("?multipart= is required", 400);
            };
            // A last part may be of any size; 10000 is past any part a test writes.
            let probe = bytes::Bytes::from_static(b"probe");
            match store.put_part(&layout::blob_data(&id), &multipart, 10_000, probe).await {
                Ok(_) => Response::ok("R2 takes parts for it\n"),
                Err(StoreError::NotFound) => Response::error("R2 does not know this multipart upload", 404),
                Err(err) => Err(worker::Error::RustError(err.to_string())),
            }
        }
        _ => Response::error("method not allowed", 405),
    }
}

/// The store key in a route. Layout keys need no escaping in a URL path, so an
/// escaped one is refused rather than guessed at.
fn decode(key: &str) -> worker::Result<String> {
    if key.is_empty() || key.contains('%') {
        return Err(worker::Error::RustError(format!("bad key {key:?}")));
    }
    Ok(key.to_string())
}
