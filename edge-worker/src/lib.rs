//! pier-edge: pier's registry core as a Cloudflare Worker.
//!
//! The Worker is a thin shell: it translates requests and responses between the
//! Workers runtime and the core's `http` types, implements the storage port on
//! R2, puts the Cache API and KV in front of immutable objects, and reads its
//! settings from the deployment's vars. Everything a registry decides lives in
//! pier-core, shared with the native server.
//!
//! The crate only has content on wasm32: on other targets it compiles to an
//! empty library so `cargo build --workspace` keeps working.

#[cfg(target_arch = "wasm32")]
mod archive;
#[cfg(target_arch = "wasm32")]
mod background;
#[cfg(target_arch = "wasm32")]
mod cache;
#[cfg(target_arch = "wasm32")]
mod config;
#[cfg(target_arch = "wasm32")]
mod counted;
#[cfg(target_arch = "wasm32")]
mod deployment;
#[cfg(target_arch = "wasm32")]
mod entry;
#[cfg(target_arch = "wasm32")]
mod env;
#[cfg(target_arch = "wasm32")]
mod events;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod gc;
#[cfg(target_arch = "wasm32")]
mod hot_blobs;
#[cfg(target_arch = "wasm32")]
mod http_shell;
#[cfg(target_arch = "wasm32")]
mod js_body;
#[cfg(target_arch = "wasm32")]
mod js_error;
#[cfg(target_arch = "wasm32")]
mod per_isolate;
#[cfg(target_arch = "wasm32")]
mod r2;
#[cfg(target_arch = "wasm32")]
mod streams;
#[cfg(target_arch = "wasm32")]
mod sync;
#[cfg(all(target_arch = "wasm32", feature = "test-endpoints"))]
mod test_routes;
