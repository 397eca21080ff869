//! `fnas`: fast neural architecture search from the command line.

// A panic on input is a bug: library code returns errors; a justified exception says why
// it cannot fail, next to an `allow`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bench;
mod cli;
mod commands;
mod progress;
mod report;

use clap::Parser;

fn main() {
    // `fnas show ... | head`: a closed pipe ends the process quietly, as for other CLI
    // tools, instead of a panic in println! (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        // one line per cause, no backtrace: errors here are user-facing
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
