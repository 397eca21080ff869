//! Acquisition functions: how a critic's mean and uncertainty rank candidates.

use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::normal;
use crate::predictor::MeanStd;

/// How candidates are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acquisition {
    /// Independent Thompson sampling: one normal draw per candidate from its mean and
    /// std (BANANAS, NPENAS): exploration in proportion to the uncertainty, and a batch
    /// that spreads without any batch logic.
    #[default]
    Thompson,
    /// Upper confidence bound `mean + beta * std`.
    Ucb,
    /// Expected improvement over the best target so far.
    Ei,
}

/// Acquisition names, as the command line spells them.
pub const ACQUISITIONS: &[&str] = &["thompson", "ucb", "ei"];

impl FromStr for Acquisition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "thompson" | "ts" => Ok(Acquisition::Thompson),
            "ucb" => Ok(Acquisition::Ucb),
            "ei" => Ok(Acquisition::Ei),
            _ => Err(format!(
                "unknown acquisition `{s}` (known: {})",
                ACQUISITIONS.join(", ")
            )),
        }
    }
}

impl Acquisition {
    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Acquisition::Thompson => "thompson",
            Acquisition::Ucb => "ucb",
            Acquisition::Ei => "ei",
        }
    }

    /// The score of one prediction (higher = evaluate sooner). `best` is the best target
    /// so far (EI), `beta` the std weight (UCB); Thompson draws from `rng`.
    pub fn score<R: Rng + ?Sized>(self, p: MeanStd, best: f64, beta: f64, rng: &mut R) -> f64 {
        match self {
            Acquisition::Thompson => p.mean + p.std * normal::draw(rng),
            Acquisition::Ucb => p.mean + beta * p.std,
            Acquisition::Ei => {
                let gain = p.mean - best;
                if p.std <= 0.0 {
                    return gain.max(0.0);
                }
                let u = gain / p.std;
                gain * normal::cdf(u) + p.std * normal::pdf(u)
            }
        }
    }
}

/// The indices of the `n` best-scored predictions, best first (ties and NaN scores in
/// input order, NaN last).
pub fn choose<R: Rng + ?Sized>(
    acq: Acquisition,
    preds: &[MeanStd],
    n: usize,
    best: f64,
    beta: f64,
    rng: &mut R,
) -> Vec<usize> {
    let scores: Vec<f64> = preds
        .iter()
        .map(|&p| acq.score(p, best, beta, rng))
        .collect();
    let mut idx: Vec<usize> = (0..preds.len()).collect();
    idx.sort_by(|&a, &b| match (scores[a].is_nan(), scores[b].is_nan()) {
        (false, false) => scores[b].total_cmp(&scores[a]),
        (x, y) => x.cmp(&y),
    });
    idx.truncate(n);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn p(mean: f64, std: f64) -> MeanStd {
        MeanStd { mean, std }
    }

    #[test]
    fn ucb_prefers_the_higher_mean_at_equal_std_and_the_higher_std_at_equal_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let preds = [p(0.1, 0.5), p(0.3, 0.5)];
        assert_eq!(
            choose(Acquisition::Ucb, &preds, 1, 0.0, 1.0, &mut rng),
            vec![1]
        );
        let preds = [p(0.2, 0.9), p(0.2, 0.1)];
        assert_eq!(
            choose(Acquisition::Ucb, &preds, 1, 0.0, 1.0, &mut rng),
            vec![0]
        );
    }

    #[test]
    fn ei_prefers_the_higher_mean_and_the_higher_std_too() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let preds = [p(0.1, 0.5), p(0.3, 0.5)];
        assert_eq!(
            choose(Acquisition::Ei, &preds, 1, 0.5, 1.0, &mut rng),
            vec![1]
        );
        let preds = [p(0.2, 0.1), p(0.2, 0.9)];
        assert_eq!(
            choose(Acquisition::Ei, &preds, 1, 0.5, 1.0, &mut rng),
            vec![1]
        );
    }

    #[test]
    fn thompson_follows_the_mean_when_sure_and_explores_when_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let sure = [p(0.0, 1e-6), p(1.0, 1e-6)];
        for _ in 0..20 {
            assert_eq!(
                choose(Acquisition::Thompson, &sure, 1, 0.0, 1.0, &mut rng),
                vec![1]
            );
        }
        let unsure = [p(0.0, 2.0), p(0.1, 2.0)];
        let firsts: usize = (0..200)
            .filter(|_| choose(Acquisition::Thompson, &unsure, 1, 0.0, 1.0, &mut rng)[0] == 0)
            .count();
        assert!((40..160).contains(&firsts), "{firsts}");
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        assert_eq!("ei".parse::<Acquisition>().unwrap(), Acquisition::Ei);
        let e = "greedy".parse::<Acquisition>().unwrap_err();
        assert!(e.contains("unknown acquisition `greedy`") && e.contains("thompson"));
    }
}
