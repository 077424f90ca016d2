//! pier-core: everything pier decides, independent of where it runs.
//!
//! The OCI Distribution protocol (`api` over `registry`), the storage port
//! (`store`) and its layout (`layout`), uploads (`upload`), manifests, names,
//! digests, and who may do what (`auth`). The native server and the edge
//! Worker are thin shells that implement [`store::Store`] and
//! [`platform::Env`] and pass requests to [`api::handle`].

// Core shares its parts with `Arc` for the native server's threads; on wasm32
// (one thread per isolate) what they hold need not be Send.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
// No panic on anything a client or a peer sent: outside tests, unwrap,
// expect, panics and unchecked indexing are errors (an allow names why the
// panic is impossible where one remains).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)
)]

pub mod api;
pub mod archive;
pub mod auth;
pub mod body;
pub mod deployment;
pub mod digest;
pub mod error;
pub mod events;
pub mod gc;
pub mod glob;
pub mod handshake;
pub mod layout;
pub mod manifest;
pub mod mirror;
pub mod names;
pub mod namespace_policy;
pub mod platform;
pub mod pulls;
pub mod quota;
pub mod records;
pub mod registry;
pub mod remote;
pub mod retention;
pub mod signing;
pub mod store;
pub mod sync;
pub mod tag_cache;
// The host every test runs on (core's, the shells', the fuzz targets').
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod time;
pub mod upload;
pub mod upload_id;

pub use registry::Registry;
