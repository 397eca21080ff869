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
    check_names(&cli.command)?;
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

/// Refuses, before any work, an experiment name that could point outside the folder it
/// is joined to (see [`fnas_core::names`]); new names are checked more strictly when the
/// experiment is recorded.
fn check_names(command: &Command) -> Result<()> {
    let names: Vec<&str> = match command {
        Command::Search(a) => {
            let mut v: Vec<&str> = a.name.as_deref().into_iter().collect();
            if let Some(from) = a.critic.transfer_from.as_deref().filter(|f| *f != "all") {
                v.extend(from.split(',').map(str::trim));
            }
            v
        }
        Command::Show(a) => vec![a.name.as_str()],
        Command::Worker(a) => vec![a.experiment.as_str()],
        Command::Slurm(a) => vec![a.experiment.as_str()],
        Command::Export(a) => vec![a.experiment.as_str()],
        Command::Report(a) => a.experiments.iter().map(String::as_str).collect(),
        Command::Train(a) => vec![a.pool_experiment.as_str()],
        _ => Vec::new(),
    };
    for n in names {
        // the standalone `fnas train` files its pool entries under the empty name
        if n.is_empty() && matches!(command, Command::Train(_)) {
            continue;
        }
        fnas_core::names::check_lookup("experiment", n)?;
    }
    Ok(())
}
