//! Integration tests of the `fnas` binary, built as one test binary: burn is linked once
//! for all of them instead of once per file. Each module is one area, run as a user would.

mod common;

mod cli;
mod export;
mod faults;
mod report;
mod slurm;
mod training;
mod trial_command;
mod workers;
