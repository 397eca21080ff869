//! Search strategies behind one small trait: `ask` for proposals, `tell` the outcomes,
//! `state`/`restore` for exact resume.

mod evolution;
mod random;

use serde::{Deserialize, Serialize};

use crate::Architecture;

pub use evolution::{Evolution, EvolutionConfig};
pub use random::RandomSearch;

/// A critic's prediction of a proposal's reward, made when it was proposed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted reward.
    pub mean: f64,
    /// Uncertainty (std of the ensemble), in reward units.
    pub std: f64,
    /// `true`: the gate trusts the prediction and the loop does NOT evaluate the
    /// architecture (its reward is the prediction, its cost 0, and it never counts as
    /// found). `false`: the architecture is evaluated and the prediction is recorded
    /// beside the truth (calibration).
    pub trusted: bool,
}

/// One proposed architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    pub arch: Architecture,
    /// Log-probability under the sampling policy (policy-based strategies only).
    pub log_prob: Option<f64>,
    /// The critic's prediction and gate decision (FNAS only).
    pub prediction: Option<Prediction>,
}

impl Proposal {
    /// A proposal without a critic prediction.
    pub fn new(arch: Architecture, log_prob: Option<f64>) -> Self {
        Self {
            arch,
            log_prob,
            prediction: None,
        }
    }
}

/// What happened to a proposal.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub arch: Architecture,
    /// The reward; `None` when the evaluation failed.
    pub reward: Option<f64>,
    pub log_prob: Option<f64>,
    /// `true` when `reward` comes from a real evaluation (now, or earlier in this
    /// experiment and served from the store); `false` when it is the critic's trusted
    /// prediction.
    pub evaluated: bool,
}

/// Strategy errors.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    #[error("cannot restore strategy state: {0}")]
    BadState(String),
    #[error("{0}")]
    Other(String),
}

/// A search strategy. Given the same seed and the same outcomes it proposes the same
/// sequence of architectures, and `restore(state())` continues exactly where it was.
pub trait Strategy: Send {
    /// Short name (`random`, `evolution`, `ppo`, ...).
    fn name(&self) -> &str;
    /// The next `n` proposals.
    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError>;
    /// Outcomes of the last `ask`, in proposal order.
    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), StrategyError>;
    /// Serialized state (weights, optimizer, RNG, population...).
    fn state(&self) -> Result<Vec<u8>, StrategyError>;
    /// Restores a state produced by `state`.
    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError>;
    /// Counters worth showing while the search runs (e.g. FNAS's replayed samples).
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Whether `ask` may run before the previous batch is told (its proposals do not
    /// wait for the latest results): the loop then keeps workers busy across batch
    /// boundaries. `tell` still gets each batch's outcomes, in batch order.
    fn asynchronous(&self) -> bool {
        false
    }
}

pub(crate) fn to_state<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StrategyError> {
    serde_json::to_vec(v).map_err(|e| StrategyError::Other(format!("serialising state: {e}")))
}

pub(crate) fn from_state<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StrategyError> {
    serde_json::from_slice(b).map_err(|e| StrategyError::BadState(e.to_string()))
}
