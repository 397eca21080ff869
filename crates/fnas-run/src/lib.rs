//! A search as a library call. An experiment records its spec (space, task or
//! benchmark, strategy and its settings, reward, budget, pool settings) in a store;
//! this crate turns that spec into the strategy, evaluator and search configuration that
//! `fnas_core::search::run_search` runs, so `fnas search` (new or resumed), `fnas
//! worker`, tests and other programs build a search the same way:
//!
//! - [`NewSearch`] checks a new search's options and turns them into the
//!   [`SearchSettings`] recorded with it, then records and prepares it
//!   ([`NewSearch::start`]; in steps: [`NewSearch::draft`], [`Draft::record`]);
//! - [`prepare()`] builds a recorded experiment's [`PreparedSearch`] (strategy, evaluator,
//!   search configuration), [`prepare_evaluator`] only its evaluator (what a worker
//!   needs); [`resume()`] prepares one to continue with the user's options;
//! - [`PreparedSearch::run`] runs it, riding out a store server's restart;
//! - [`migrate`] reads stored settings of any version this build knows;
//! - [`export()`] writes one trial's architecture, weights and standalone PyTorch model.
//!
//! Progress display is the caller's: the training evaluator takes a progress hook
//! ([`Target::set_progress`]) and the search loop a callback per trial.

// A panic on input is a bug: library code returns errors; a justified exception says why
// it cannot fail, next to an `allow`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod artifacts;
pub mod error;
pub mod export;
pub mod new_search;
pub mod prepare;
pub mod resume;
pub mod settings;
pub mod stores;
pub mod strategy;
pub mod target;
pub mod task;
pub mod transfer;

pub use artifacts::Artifacts;
pub use error::{Result, RunError};
pub use export::{export, ExportError, ExportOptions, ExportReport, TrialChoice};
pub use fnas_child::PoolPolicy;
pub use new_search::{
    default_name, BudgetOptions, CriticOptions, Draft, NewSearch, PoolMode, PoolOptions,
    RewardOptions, SearchOptions, SelectOptions, Started, TaskOptions, TrialOptions, WorkerOptions,
};
pub use prepare::{
    prepare, prepare_evaluator, settings_of, PrepareOptions, PreparedEvaluator, PreparedSearch,
    RECONNECT_SECONDS,
};
pub use resume::{find_resumable, resume, Resumed};
pub use settings::{migrate, SearchSettings, TrainingConfig, TransferSource, TrialCommandConfig};
pub use strategy::{make_strategy, StrategyKind};
pub use target::{SearchEvaluator, Target};
