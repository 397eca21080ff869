//! Transfer between searches: the critic is pre-trained on earlier experiments'
//! evaluated points (rewards z-scored within each source), and each source's share of
//! the critic's minibatches follows how well it ranks THIS task's evaluated points so
//! far, so a source that describes another reward landscape fades instead of pulling
//! every prediction towards it.
//!
//! Each source is judged by tau, Kendall's rank correlation between a ridge model fitted
//! on the source's points and this task's evaluated rewards, and weighs
//! `max(0, tau) / tau_best`, tau_best the best source's: the source that orders this
//! task's architectures most like this task keeps full weight, the others count in
//! proportion, and one no better than chance (or inverted) gets none. Relative, not
//! absolute, because the critic already balances transferred against own points
//! (`own_share`): with one source, weighting it by its tau measured 1.15x slower to the
//! top 0.1% than pooling on AnalogNAS-Bench, while fading the worse of five sources was
//! 0.9x on NAS-Bench-Graph (docs/transfer-weighting.md). Until [`MIN_OWN_POINTS`] of this
//! task's points are known every source weighs 1 (nothing to judge by yet). Rank
//! correlation, not error, because sources arrive z-scored: only their order compares.
//!
//! The source models are a pure function of the sources' points and the seed, so a
//! restored search rebuilds them instead of storing them.

use fnas_core::space::{Encoding, Features};
use fnas_core::{Architecture, SearchSpace};

use crate::predictor::Predictor;
use crate::ridge::{RidgeConfig, RidgeEnsemble};

/// This task's evaluated points needed before the sources are weighed.
pub const MIN_OWN_POINTS: usize = 8;

/// The points of one source experiment: (architecture, reward z-scored within it).
pub type SourcePoints = Vec<(Architecture, f64)>;

/// Kendall's tau-a between two equally long lists (0 when no pair is ordered in both).
pub fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let (mut c, mut d) = (0i64, 0i64);
    for i in 0..a.len().min(b.len()) {
        for j in i + 1..a.len().min(b.len()) {
            let s = (a[i] - a[j]).signum() * (b[i] - b[j]).signum();
            if s > 0.0 {
                c += 1;
            } else if s < 0.0 {
                d += 1;
            }
        }
    }
    (c - d) as f64 / (c + d).max(1) as f64
}

/// One ridge model per source, to judge the sources by.
pub struct SourceWeigher {
    space: SearchSpace,
    models: Vec<RidgeEnsemble>,
}

/// The encoding the source models read.
const ENCODING: Encoding = Encoding::Structure;

impl SourceWeigher {
    /// Fits one model on each source's valid, finite points.
    pub fn new(space: &SearchSpace, sources: &[SourcePoints], seed: u64) -> Self {
        let dim = space.encoding_len(ENCODING);
        let models = sources
            .iter()
            .enumerate()
            .map(|(k, pts)| {
                let (xs, ys): (Vec<Features>, Vec<f64>) = pts
                    .iter()
                    .filter(|(a, z)| z.is_finite() && space.is_valid(a))
                    .map(|(a, z)| (space.encode(ENCODING, a), *z))
                    .unzip();
                let cfg = RidgeConfig {
                    members: 1,
                    ..RidgeConfig::default()
                };
                let mut m = RidgeEnsemble::new(dim, cfg, seed ^ (k as u64).wrapping_mul(0x9e37));
                m.fit(&xs, &ys);
                m
            })
            .collect();
        Self {
            space: space.clone(),
            models,
        }
    }

    /// Sources weighed.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Each source's weight given this task's evaluated points `own` (module docs).
    pub fn weights(&self, own: &[(Architecture, f64)]) -> Vec<f64> {
        if own.len() < MIN_OWN_POINTS {
            return vec![1.0; self.models.len()];
        }
        let xs: Vec<Features> = own
            .iter()
            .map(|(a, _)| self.space.encode(ENCODING, a))
            .collect();
        let ys: Vec<f64> = own.iter().map(|(_, r)| *r).collect();
        let taus: Vec<f64> = self
            .models
            .iter()
            .map(|m| {
                let pred: Vec<f64> = xs.iter().map(|x| m.predict(x).mean).collect();
                kendall_tau(&pred, &ys).max(0.0)
            })
            .collect();
        let best = taus.iter().copied().fold(0.0, f64::max);
        taus.iter()
            .map(|t| if best > 0.0 { t / best } else { 0.0 })
            .collect()
    }
}
