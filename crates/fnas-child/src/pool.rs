//! The knowledge pool as a search uses it: the policy recorded with an experiment
//! ([`PoolPolicy`], held by the evaluator's [`crate::evaluator::PoolSettings`]).

use serde::{Deserialize, Serialize};

use crate::evaluator::{default_warm_epochs, DEFAULT_WARM_LR_SCALE, DEFAULT_WARM_MAX_DISTANCE};

/// Default [`PoolPolicy::limit_mb`].
pub const DEFAULT_POOL_LIMIT_MB: u64 = 2048;

/// Default [`PoolPolicy::min_networks`].
pub const DEFAULT_MIN_NETWORKS: usize = 8;

/// How children use the knowledge pool: which entries may warm-start a child, how it
/// then trains, and how large the pool may grow. A search records it with its settings
/// (the stored form is these fields as they are), and the evaluator follows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolPolicy {
    /// Epochs of a child initialised from the pool (a fraction stops the last epoch
    /// early; experiments recorded before fractions were allowed hold whole numbers).
    pub warm_epochs: f64,
    /// Fairness: the one budget class (training images behind an entry's weights) every
    /// child is initialised from; `None`: one from-scratch training of the task's proxy
    /// (a search fixes it when it starts).
    pub budget_class: Option<u64>,
    /// Size limit of the pool's files in MB (least recently used networks are evicted).
    pub limit_mb: u64,
    /// Warm starts begin once the budget class holds this many networks; until then
    /// children train from scratch and seed the pool (so a new search does not start all
    /// its children from the first one or two networks).
    pub min_networks: usize,
    /// Choose each block from any stored network (block-level) instead of all blocks
    /// from the most similar network (the default: the blocks of one network keep the
    /// channel meanings they were trained with, which transfers better).
    pub per_block: bool,
    /// Peak learning rate of a warm-started child relative to the task's (no warm-up):
    /// transferred weights are fine-tuned, not retrained.
    pub warm_lr_scale: f64,
    /// A child whose sources are farther than this (mean block distance without the
    /// other-task term) trains from scratch instead: far transfers lose accuracy.
    /// `None`: no limit, every child with a usable source is warm-started.
    pub max_distance: Option<f64>,
    /// Also warm-start from entries trained on another task (their classifier is
    /// dropped). Off by default: at half the proxy such children scored 3.5 points below
    /// the same architectures from scratch
    /// (docs/results/transfer-between-tasks-other-tasks.txt).
    pub other_tasks: bool,
}

impl PoolPolicy {
    /// The measured defaults for a task whose proxy trains `proxy_epochs`: half the
    /// proxy's epochs at 0.3x its learning rate, network-level sources within distance
    /// 1.0 of this task, from 8 networks on.
    pub fn new(proxy_epochs: usize) -> Self {
        Self {
            warm_epochs: default_warm_epochs(proxy_epochs),
            budget_class: None,
            limit_mb: DEFAULT_POOL_LIMIT_MB,
            min_networks: DEFAULT_MIN_NETWORKS,
            per_block: false,
            warm_lr_scale: DEFAULT_WARM_LR_SCALE,
            max_distance: Some(DEFAULT_WARM_MAX_DISTANCE),
            other_tasks: false,
        }
    }

    /// [`Self::limit_mb`] in bytes.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_mb.saturating_mul(1 << 20)
    }
}
