//! What evaluating an architecture returns and costs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Architecture, SearchSpace};

/// Measured quantities of one architecture. Accuracies are fractions in [0, 1].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Accuracy on the validation split: what the search optimises.
    pub val_accuracy: f64,
    /// Accuracy on the test split where known; reported, never optimised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Latency in milliseconds where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Parameter count where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<f64>,
    /// Multiply-adds where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    /// Any further columns a benchmark provides (e.g. AnalogNAS's ptq/qat accuracies).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

/// What an evaluation consumed: the ledger every speed-up claim is measured on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Architectures actually evaluated (a tabular query or a trained child): the
    /// budget unit. Served-from-store or critic-scored samples cost 0.
    pub evaluations: u64,
    /// Training images processed (real training only).
    #[serde(default)]
    pub images: u64,
    /// Training epochs (real training only).
    #[serde(default)]
    pub epochs: f64,
    /// CPU seconds spent.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Wall-clock seconds spent.
    #[serde(default)]
    pub wall_seconds: f64,
}

impl Cost {
    /// The cost of one tabular query.
    pub fn query() -> Self {
        Self {
            evaluations: 1,
            ..Self::default()
        }
    }

    /// Adds another cost to this one.
    pub fn add(&mut self, other: &Cost) {
        self.evaluations += other.evaluations;
        self.images += other.images;
        self.epochs += other.epochs;
        self.cpu_seconds += other.cpu_seconds;
        self.wall_seconds += other.wall_seconds;
    }
}

/// One evaluation's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub metrics: Metrics,
    pub cost: Cost,
}

/// Why an evaluation failed. `Failed` is a property of the architecture (the trial is
/// marked failed and the search goes on); `Fatal` stops the search.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("evaluation failed: {reason}")]
    Failed { reason: String, cost: Cost },
    #[error("{0}")]
    Fatal(String),
}

/// Turns an architecture into measured metrics: a tabular lookup or real training.
pub trait Evaluator: Send + Sync {
    /// The space the evaluator understands.
    fn space(&self) -> &SearchSpace;
    /// A short name of the task, e.g. `nas-bench-graph/cora`.
    fn task(&self) -> String;
    /// Evaluates one (canonical) architecture.
    fn evaluate(&self, arch: &Architecture) -> Result<Evaluation, EvalError>;

    /// How many architectures this evaluator evaluates at once (`evaluate_many` gets
    /// chunks of this size, so results are stored as each chunk finishes).
    fn parallelism(&self) -> usize {
        1
    }

    /// Evaluates several architectures of one batch, in order. The default evaluates
    /// them one after another; an evaluator that can train several children at once
    /// (one per worker) overrides it.
    fn evaluate_many(&self, archs: &[Architecture]) -> Vec<Result<Evaluation, EvalError>> {
        archs.iter().map(|a| self.evaluate(a)).collect()
    }
}
