//! The experience buffer with off-policy correction (FNAS module 3). Every evaluated
//! outcome is kept with the log-probability of the policy that sampled it; a PPO update
//! mixes a share of replayed samples into its batch, each weighted by the truncated
//! importance ratio of the current policy to the sampling one.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::codec::f64_bits;

/// Truncated importance weight of a replayed sample: `min(c, exp(logp_pi - logp_mu))`,
/// or 1 with the correction off. A NaN ratio counts as `c`.
pub fn importance_weight(logp_pi: f64, logp_mu: f64, c: f64, correction: bool) -> f64 {
    if !correction {
        return 1.0;
    }
    (logp_pi - logp_mu).exp().min(c)
}

/// One entry of the experience buffer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Experience {
    pub tokens: Vec<u16>,
    /// The reward used for learning.
    #[serde(with = "f64_bits")]
    pub reward: f64,
    /// `log mu(a)`: the log-probability under the sampling policy.
    #[serde(with = "f64_bits")]
    pub log_mu: f64,
    /// Policy updates before the sampling policy.
    pub version: u64,
}

/// The buffer (serialised as the plain list of its entries).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct ReplayBuffer(Vec<Experience>);

impl ReplayBuffer {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn push(&mut self, e: Experience) {
        self.0.push(e);
    }

    /// The entries replayed beside `fresh` fresh samples: `round(f / (1 - f) * fresh)`
    /// of them (`f = fraction`, clamped to `[0, 0.9]`), drawn uniformly without
    /// replacement. An empty buffer draws nothing (and takes nothing from `rng`).
    pub fn draw(&self, fresh: usize, fraction: f64, rng: &mut impl Rng) -> Vec<&Experience> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let f = fraction.clamp(0.0, 0.9);
        let k = ((f / (1.0 - f)) * fresh as f64).round() as usize;
        let k = k.min(self.0.len());
        rand::seq::index::sample(rng, self.0.len(), k)
            .iter()
            .map(|i| &self.0[i])
            .collect()
    }
}
