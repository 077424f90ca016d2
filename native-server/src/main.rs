//! `pier`: the native registry server and its admin commands (`cmd`).

use clap::Parser;
use pier_server::cmd::{self, Cli};

/// The static (musl) build's allocator: musl's own serialises threads, a
/// third of the glibc build's throughput under load (native-server/Cargo.toml).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match cmd::run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pier: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
