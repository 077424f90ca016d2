//! pier's native server as a library: the `pier` binary (main.rs) is a thin
//! command line over it, and the integration tests in `tests/` drive the same
//! pieces (stores, configuration, HTTP shell) directly.

pub mod auth;
pub mod background;
pub mod check;
pub mod config;
pub mod copy;
pub mod env;
pub mod gc;
pub mod http;
pub mod metrics;
pub mod remote;
pub mod store;
