//! The MnasNet multi-objective reward: `ACC * (LAT / T)^w`.

use serde::{Deserialize, Serialize};

/// Which measured quantity plays the role of LAT in the reward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Measured or tabulated latency.
    Latency,
    /// Parameter count (a proxy for latency).
    Params,
}

impl Objective {
    /// The metric that plays LAT, as [`crate::Metrics`] names it.
    pub fn metric(self) -> &'static str {
        match self {
            Objective::Latency => "latency_ms",
            Objective::Params => "params",
        }
    }
}

/// Reward settings. With no target the reward is plain accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    /// Target T; `None` means accuracy only.
    pub target: Option<f64>,
    /// Exponent when LAT <= T.
    pub alpha: f64,
    /// Exponent when LAT > T.
    pub beta: f64,
    /// What LAT is.
    pub objective: Objective,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            target: None,
            alpha: -0.07,
            beta: -0.07,
            objective: Objective::Latency,
        }
    }
}

impl RewardConfig {
    /// MnasNet's soft constraint (alpha = beta = -0.07).
    pub fn soft(target: f64, objective: Objective) -> Self {
        Self {
            target: Some(target),
            alpha: -0.07,
            beta: -0.07,
            objective,
        }
    }

    /// MnasNet's hard constraint (alpha = 0, beta = -1).
    pub fn hard(target: f64, objective: Objective) -> Self {
        Self {
            target: Some(target),
            alpha: 0.0,
            beta: -1.0,
            objective,
        }
    }

    /// The reward of an accuracy and a LAT value. A missing or non-positive LAT with a
    /// target set cannot be scored, so it yields `None`.
    pub fn reward(&self, accuracy: f64, lat: Option<f64>) -> Option<f64> {
        match self.target {
            None => Some(accuracy),
            Some(t) => {
                let lat = lat.filter(|l| *l > 0.0 && l.is_finite())?;
                let w = if lat <= t { self.alpha } else { self.beta };
                Some(accuracy * (lat / t).powf(w))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_target_is_plain_accuracy() {
        assert_eq!(RewardConfig::default().reward(0.8, None), Some(0.8));
    }

    #[test]
    fn soft_constraint_penalises_slow_and_rewards_fast() {
        let r = RewardConfig::soft(10.0, Objective::Latency);
        let at = r.reward(0.8, Some(10.0)).unwrap();
        assert!((at - 0.8).abs() < 1e-12);
        assert!(r.reward(0.8, Some(20.0)).unwrap() < at);
        assert!(r.reward(0.8, Some(5.0)).unwrap() > at);
        let want = 0.8 * 2f64.powf(-0.07);
        assert!((r.reward(0.8, Some(20.0)).unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn hard_constraint_ignores_fast_and_punishes_slow() {
        let r = RewardConfig::hard(10.0, Objective::Params);
        assert_eq!(r.reward(0.8, Some(5.0)), Some(0.8));
        assert!((r.reward(0.8, Some(20.0)).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(r.reward(0.8, None), None);
    }
}
