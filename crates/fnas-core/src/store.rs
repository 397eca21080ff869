//! The knowledge store's contract. The SQLite implementation lives in `fnas-store`;
//! any other backend must pass the same conformance suite there.
//!
//! # Contract (what is atomic)
//! - `create_experiment` either creates the experiment with all its fields or nothing;
//!   names are unique per store.
//! - `begin_batch` inserts all proposals of one batch as `pending` trials AND saves the
//!   strategy checkpoint taken right after `ask`, in one transaction: after a crash
//!   either the whole batch (with the checkpoint that produced it) exists or none of it.
//! - `finish_trial` moves one trial from `pending` to `done`/`failed` with its result,
//!   in one transaction. A finished trial is immutable: finishing it again is an error
//!   (`StoreError::AlreadyFinished`), so a resumed search can never record a trial twice.
//! - `end_batch` saves the checkpoint taken after `tell` and marks the batch closed,
//!   in one transaction; it fails if any trial of the batch is still pending.
//! - Readers never see a half-written trial, batch or checkpoint.

use serde::{Deserialize, Serialize};

use crate::{Cost, Metrics, Prediction};

/// Store-wide id of a trial.
pub type TrialId = i64;

/// What an experiment is, fixed at creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    /// Unique name in the store.
    pub name: String,
    /// Search space name.
    pub space: String,
    /// Task, e.g. `nas-bench-graph/cora`.
    pub task: String,
    /// Strategy name.
    pub strategy: String,
    pub seed: u64,
    /// Budget in cost units (evaluations).
    pub budget: u64,
    /// Everything else needed to re-create the search on resume (JSON).
    pub config: serde_json::Value,
}

/// An experiment as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: i64,
    pub spec: ExperimentSpec,
    /// `running` or `finished`.
    pub status: String,
    /// Seconds since the Unix epoch.
    pub created_at: f64,
}

/// A listing row: the experiment plus counts, computed by the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSummary {
    pub experiment: Experiment,
    pub trials: u64,
    pub finished_trials: u64,
    /// Sum of `Cost::evaluations` of finished trials.
    pub cost: u64,
    pub best_reward: Option<f64>,
}

/// Lifecycle of a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    Pending,
    Done,
    Failed,
}

impl TrialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Where a finished trial's metrics came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialSource {
    /// Actually evaluated (a query or a training run); costs.
    Evaluated,
    /// The same canonical architecture was already evaluated in this experiment; free.
    Cached,
    /// Not evaluated: the critic's trusted prediction is the reward; free, and never
    /// counted as found.
    Critic,
}

/// A proposal to record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTrial {
    /// Text form as proposed.
    pub arch: String,
    /// Text form of the canonical architecture (the dedup key).
    pub canonical: String,
    /// Log-probability under the sampling policy, where the strategy has one.
    pub log_prob: Option<f64>,
    /// The critic's prediction at proposal time (FNAS), kept for calibration.
    pub prediction: Option<Prediction>,
}

/// A finished trial's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// `Done` or `Failed`.
    pub status: TrialStatus,
    pub source: TrialSource,
    pub metrics: Option<Metrics>,
    pub reward: Option<f64>,
    pub cost: Cost,
    /// Failure reason.
    pub error: Option<String>,
}

/// A trial as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub id: TrialId,
    pub experiment_id: i64,
    /// Batch number within the experiment (0-based).
    pub batch: u64,
    /// Position within the batch.
    pub index: u32,
    pub arch: String,
    pub canonical: String,
    pub log_prob: Option<f64>,
    /// The critic's prediction at proposal time (FNAS).
    pub prediction: Option<Prediction>,
    pub status: TrialStatus,
    pub source: Option<TrialSource>,
    pub metrics: Option<Metrics>,
    pub reward: Option<f64>,
    pub cost: Cost,
    pub error: Option<String>,
    pub created_at: f64,
    pub finished_at: Option<f64>,
}

/// The latest strategy checkpoint of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The batch this checkpoint belongs to.
    pub batch: u64,
    /// `true`: taken after `ask` (the batch's trials exist and may be pending);
    /// `false`: taken after `tell` (the batch is closed).
    pub open: bool,
    /// The strategy's serialized state.
    pub state: Vec<u8>,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("experiment `{0}` already exists in the store (use --resume to continue it, or another --name)")]
    Exists(String),
    #[error("no experiment `{0}` in the store")]
    NotFound(String),
    #[error("trial {0} is already finished; a finished trial is never recorded twice")]
    AlreadyFinished(TrialId),
    #[error("batch {batch} of experiment {experiment} still has pending trials")]
    BatchIncomplete { experiment: i64, batch: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("store {path}: {message}")]
    Backend { path: String, message: String },
}

/// Persistent experiments, trials and strategy checkpoints. See the module docs for the
/// atomicity contract.
pub trait Store {
    fn create_experiment(&mut self, spec: &ExperimentSpec) -> Result<Experiment, StoreError>;
    fn experiment(&self, name: &str) -> Result<Option<Experiment>, StoreError>;
    fn list_experiments(&self) -> Result<Vec<ExperimentSummary>, StoreError>;
    /// Marks an experiment `finished` (or back to `running`).
    fn set_experiment_status(&mut self, experiment: i64, status: &str) -> Result<(), StoreError>;
    /// Changes an experiment's budget, so a search (finished or not) can be resumed with
    /// more (or less) to spend; the trials already run are untouched.
    fn set_experiment_budget(&mut self, experiment: i64, budget: u64) -> Result<(), StoreError>;
    /// Records a batch of proposals and the post-`ask` checkpoint atomically; returns the
    /// new trial ids in proposal order.
    fn begin_batch(
        &mut self,
        experiment: i64,
        batch: u64,
        trials: &[NewTrial],
        checkpoint: &[u8],
    ) -> Result<Vec<TrialId>, StoreError>;
    fn finish_trial(&mut self, trial: TrialId, result: &TrialResult) -> Result<(), StoreError>;
    /// Closes a batch with the post-`tell` checkpoint.
    fn end_batch(
        &mut self,
        experiment: i64,
        batch: u64,
        checkpoint: &[u8],
    ) -> Result<(), StoreError>;
    fn checkpoint(&self, experiment: i64) -> Result<Option<Checkpoint>, StoreError>;
    /// All trials of an experiment ordered by (batch, index).
    fn trials(&self, experiment: i64) -> Result<Vec<Trial>, StoreError>;
    /// The trials of one batch ordered by index.
    fn batch_trials(&self, experiment: i64, batch: u64) -> Result<Vec<Trial>, StoreError>;
    /// A finished trial (done or failed) of this experiment with this canonical form whose
    /// result came from a real evaluation (source `evaluated`), if any.
    fn find_evaluated(&self, experiment: i64, canonical: &str)
        -> Result<Option<Trial>, StoreError>;
}
