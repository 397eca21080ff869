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
//! - At most two batches are open: an asynchronous strategy may begin the next batch
//!   (a lookahead) while the last one's children are still evaluated. Batches end in
//!   order, and the checkpoint always names the latest batch begun (open while it is),
//!   with the latest state: a resumed search finishes every open batch, oldest first.
//! - Readers never see a half-written trial, batch or checkpoint.
//!
//! # Trials as a queue (many workers)
//! - The driver (the process that runs the strategy) `queue_trials` the pending trials
//!   that need a real evaluation; any worker, in the driver's process or another one,
//!   `claim_trial`s one: atomically, the oldest queued trial without a live lease gets a
//!   lease (a random token, its holder, a deadline) and its attempt count goes up by one.
//! - `heartbeat` pushes a lease's deadline on; `finish_leased` records the result only
//!   while the lease is the trial's current one: a worker whose lease was taken over gets
//!   `StoreError::LeaseLost` and nothing is written (no trial is recorded twice).
//! - `reap_expired` takes back the leases past their deadline (or whose holder is known
//!   dead): the trial is claimable again, or failed with the reason once it has used
//!   `max_attempts`.
//! - One driver per experiment: `acquire_driver` succeeds when no other driver holds a
//!   live driver lease, and otherwise says who holds it and since when.
//! - Deadlines are in the store's clock (seconds since the Unix epoch), so processes on
//!   machines whose clocks disagree still agree on who holds what.

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
    /// Best finite reward of a finished trial that was not a critic prediction.
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
    /// Leases taken on it so far (claims by workers).
    #[serde(default)]
    pub attempts: u32,
    /// Queued for a real evaluation by a worker.
    #[serde(default)]
    pub queued: bool,
    /// Who holds or last held its lease ([`Holder::encode`]): for a finished trial, the
    /// process that evaluated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// When its latest lease was taken (seconds since the Unix epoch, the store's clock):
    /// `finished_at - claimed_at` is the time a worker spent on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<f64>,
    /// A worker holds a lease on it now (pending trials only).
    #[serde(default)]
    pub leased: bool,
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

/// Who holds a lease: enough to tell a user which process to look for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// What kind of process: `driver`, `worker`, ...
    pub role: String,
}

impl Holder {
    /// This process, in `role`.
    pub fn this_process(role: &str) -> Self {
        Self {
            host: host_name(),
            pid: std::process::id(),
            role: role.to_string(),
        }
    }

    /// `host:pid:role`, as stored.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.host, self.pid, self.role)
    }

    /// The inverse of [`Holder::encode`] (`None` for anything else).
    pub fn decode(s: &str) -> Option<Self> {
        let mut it = s.rsplitn(3, ':');
        let role = it.next()?.to_string();
        let pid = it.next()?.parse().ok()?;
        let host = it.next()?.to_string();
        Some(Self { host, pid, role })
    }

    /// Whether this holder is a process of this machine that no longer runs (its lease
    /// can be taken back at once instead of waiting for the deadline).
    pub fn is_dead_here(&self) -> bool {
        self.host == host_name()
            && self.pid != 0
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {} on {})", self.role, self.pid, self.host)
    }
}

/// This machine's name (the kernel's, as `hostname` prints it).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A claimed trial's lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub trial: TrialId,
    /// Random per claim: a later claim of the same trial has another token.
    pub token: i64,
    /// This claim's attempt number (1 for the first).
    pub attempt: u32,
}

/// The driver lease of an experiment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverLease {
    pub experiment: i64,
    pub token: i64,
}

/// Who drives an experiment (the answer to a refused `acquire_driver`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriverInfo {
    pub holder: Holder,
    /// Seconds since the Unix epoch.
    pub since: f64,
    pub deadline: f64,
}

/// What `reap_expired` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Trials claimable again.
    pub requeued: u64,
    /// Trials failed after `max_attempts` leases expired.
    pub failed: u64,
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
    #[error("the lease on trial {0} was lost (it expired and the trial was taken back); the result is not recorded")]
    LeaseLost(TrialId),
    #[error("{0}")]
    Invalid(String),
    #[error("store {path}: {message}")]
    Backend { path: String, message: String },
    /// The store's server cannot be reached right now (closed connection, server
    /// restarting); the next call reconnects, so a caller may wait and try again.
    #[error("store {path}: unavailable: {message}")]
    Unavailable { path: String, message: String },
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
    /// The batches of an experiment that are open, oldest first (at most two).
    fn open_batches(&self, experiment: i64) -> Result<Vec<u64>, StoreError>;
    /// All trials of an experiment ordered by (batch, index).
    fn trials(&self, experiment: i64) -> Result<Vec<Trial>, StoreError>;
    /// The trials of one batch ordered by index.
    fn batch_trials(&self, experiment: i64, batch: u64) -> Result<Vec<Trial>, StoreError>;
    /// A finished trial (done or failed) of this experiment with this canonical form whose
    /// result came from a real evaluation (source `evaluated`), if any.
    fn find_evaluated(&self, experiment: i64, canonical: &str)
        -> Result<Option<Trial>, StoreError>;

    /// Marks pending trials as needing a real evaluation (claimable); idempotent.
    fn queue_trials(&mut self, trials: &[TrialId]) -> Result<(), StoreError>;
    /// Claims the oldest queued trial of `experiment` without a live lease (module docs).
    fn claim_trial(
        &mut self,
        experiment: i64,
        holder: &Holder,
        lease_seconds: f64,
    ) -> Result<Option<(Trial, Lease)>, StoreError>;
    /// Extends a lease to `lease_seconds` from now; `LeaseLost` if it is not the trial's
    /// current lease any more.
    fn heartbeat(&mut self, lease: &Lease, lease_seconds: f64) -> Result<(), StoreError>;
    /// Finishes a claimed trial (as `finish_trial`), only under its current lease.
    fn finish_leased(&mut self, lease: &Lease, result: &TrialResult) -> Result<(), StoreError>;
    /// Takes back expired leases, and those whose holder `dead` says is gone; a trial
    /// that has had `max_attempts` leases is failed with the reason instead.
    fn reap_expired(
        &mut self,
        experiment: i64,
        max_attempts: u32,
        dead: &dyn Fn(&Holder) -> bool,
    ) -> Result<Reaped, StoreError>;
    /// The driver lease: `Ok(Ok(lease))` when no other live driver holds it (an expired
    /// one, or one whose holder `dead` says is gone, is taken over), `Ok(Err(info))`
    /// naming the live holder otherwise.
    fn acquire_driver(
        &mut self,
        experiment: i64,
        holder: &Holder,
        lease_seconds: f64,
        dead: &dyn Fn(&Holder) -> bool,
    ) -> Result<Result<DriverLease, DriverInfo>, StoreError>;
    /// Extends the driver lease; `LeaseLost`-like `Invalid` error if it was taken over.
    fn renew_driver(&mut self, lease: &DriverLease, lease_seconds: f64) -> Result<(), StoreError>;
    /// Gives the driver lease up (a no-op if it was taken over).
    fn release_driver(&mut self, lease: &DriverLease) -> Result<(), StoreError>;
}
