//! One module per command.

mod export;
mod report;
mod search;
pub mod show;
mod slurm;
mod space;
mod train;
mod worker;

use anyhow::Result;

use crate::cli::{Cli, Command, SpaceCommand};

/// Dispatches a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Search(a) => search::run(a),
        Command::Ls(a) => show::ls(a),
        Command::Show(a) => show::show(a),
        Command::Space {
            command: SpaceCommand::Show { space, json },
        } => space::show(&space, json),
        Command::Space {
            command: SpaceCommand::Sample { space, seed, count },
        } => space::sample(&space, seed, count),
        Command::Bench(a) => crate::bench::run(a),
        Command::Train(a) => train::run(a),
        Command::Worker(a) => worker::run(a),
        Command::Slurm(a) => slurm::run(a),
        Command::Export(a) => export::run(a),
        Command::Report(a) => report::run(a),
    }
}
