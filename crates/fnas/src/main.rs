//! `fnas`: fast neural architecture search from the command line.

mod bench;
mod cli;
mod commands;
mod progress;
mod setup;
mod training;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        // one line per cause, no backtrace: errors here are user-facing
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
