//! pier's native server as a library: the `pier` binary (main.rs) is a thin
//! command line over `cmd`, one module per command; the rest are the adapters
//! the commands run on (stores, the HTTP shell and the connections it is
//! served on, TLS, the environment, outgoing HTTP, background tasks, metrics), which the integration tests in `tests/`
//! drive directly. Only the commands read `config`.

pub mod background;
pub mod cmd;
pub mod config;
pub mod env;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod remote;
pub mod store;
pub mod tls;
