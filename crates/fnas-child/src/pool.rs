//! The knowledge pool as a search uses it: the policy recorded with an experiment
//! ([`PoolPolicy`], held by the evaluator's [`crate::evaluator::PoolSettings`]) and what
//! it did for each trained child ([`PoolFigures`], kept in the child's metrics).

use fnas_core::Metrics;
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

/// The `Metrics.extra` keys of [`PoolFigures`]: stores in the field hold them, so they
/// never change.
mod key {
    pub const WARM_START: &str = "warm_start";
    pub const HIT_RATIO: &str = "pool_hit_ratio";
    pub const DISTANCE: &str = "pool_distance";
    pub const MAX_DISTANCE: &str = "pool_max_distance";
    pub const DECLINED_DISTANCE: &str = "pool_declined_distance";
    pub const CLASS: &str = "pool_class";
    pub const BUDGET_IMAGES: &str = "budget_images";
    pub const ERROR: &str = "pool_error";
}

/// What the knowledge pool did for one trained child of an evaluator with a pool. The
/// evaluator writes it into the child's metrics ([`PoolFigures::write`]) and reports
/// read it back from there ([`PoolFigures::from_metrics`]), so nothing else spells the
/// keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolFigures {
    /// Initialised from the pool (else trained from scratch).
    pub warm_start: bool,
    /// Blocks that found a source / blocks requested (0 without a warm start).
    pub hit_ratio: f64,
    /// Mean block distance to the sources (0 without a warm start).
    pub mean_distance: f64,
    /// Largest block distance to the sources.
    pub max_distance: f64,
    /// Trained from scratch because the sources were this far (mean block distance),
    /// beyond [`PoolPolicy::max_distance`].
    pub declined_distance: Option<f64>,
    /// The budget class the child was initialised from (or would have been).
    pub class: u64,
    /// Training images behind the child's weights: its sources' and its own.
    pub budget_images: u64,
    /// The pool could not serve or store this child (it trained from scratch, or its
    /// blocks are not stored).
    pub error: bool,
}

impl PoolFigures {
    /// Records the figures in `metrics` (numbers only: flags as 1/0; the declined
    /// distance and the error only when they apply).
    pub fn write(&self, metrics: &mut Metrics) {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let extra = &mut metrics.extra;
        extra.insert(key::HIT_RATIO.into(), self.hit_ratio);
        extra.insert(key::DISTANCE.into(), self.mean_distance);
        extra.insert(key::MAX_DISTANCE.into(), self.max_distance);
        extra.insert(key::WARM_START.into(), flag(self.warm_start));
        if let Some(d) = self.declined_distance {
            extra.insert(key::DECLINED_DISTANCE.into(), d);
        }
        extra.insert(key::CLASS.into(), self.class as f64);
        extra.insert(key::BUDGET_IMAGES.into(), self.budget_images as f64);
        if self.error {
            extra.insert(key::ERROR.into(), 1.0);
        }
    }

    /// The figures recorded in `metrics`; `None` when the child was trained without the
    /// pool (or the metrics are not a trained child's).
    pub fn from_metrics(metrics: &Metrics) -> Option<Self> {
        let extra = &metrics.extra;
        let get = |k: &str| extra.get(k).copied();
        // every child of an evaluator with a pool records all of these together
        if ![key::WARM_START, key::HIT_RATIO, key::DISTANCE]
            .iter()
            .any(|k| extra.contains_key(*k))
        {
            return None;
        }
        Some(Self {
            warm_start: get(key::WARM_START).is_some_and(|w| w > 0.0),
            hit_ratio: get(key::HIT_RATIO).unwrap_or(0.0),
            mean_distance: get(key::DISTANCE).unwrap_or(0.0),
            max_distance: get(key::MAX_DISTANCE).unwrap_or(0.0),
            declined_distance: get(key::DECLINED_DISTANCE),
            class: get(key::CLASS).map_or(0, |c| c as u64),
            budget_images: get(key::BUDGET_IMAGES).map_or(0, |b| b as u64),
            error: get(key::ERROR).is_some_and(|e| e > 0.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_round_trip_under_the_stored_keys() {
        let f = PoolFigures {
            warm_start: true,
            hit_ratio: 0.75,
            mean_distance: 0.4,
            max_distance: 0.9,
            declined_distance: None,
            class: 90_000,
            budget_images: 135_000,
            error: false,
        };
        let mut m = Metrics::default();
        assert_eq!(PoolFigures::from_metrics(&m), None);
        f.write(&mut m);
        let keys: Vec<&str> = m.extra.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "budget_images",
                "pool_class",
                "pool_distance",
                "pool_hit_ratio",
                "pool_max_distance",
                "warm_start"
            ]
        );
        assert_eq!(m.extra["warm_start"], 1.0);
        assert_eq!(PoolFigures::from_metrics(&m), Some(f.clone()));
        let declined = PoolFigures {
            warm_start: false,
            declined_distance: Some(2.5),
            error: true,
            ..f
        };
        let mut m = Metrics::default();
        declined.write(&mut m);
        assert_eq!(m.extra["pool_declined_distance"], 2.5);
        assert_eq!(m.extra["pool_error"], 1.0);
        assert_eq!(m.extra["warm_start"], 0.0);
        assert_eq!(PoolFigures::from_metrics(&m), Some(declined));
    }
}
