//! `pier`: the native registry server and its admin commands (`cmd`).

use clap::Parser;
use pier_server::cmd::{self, Cli};

fn main() -> std::process::ExitCode {
    match cmd::run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pier: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
