//! A bootstrapped ridge-regression ensemble over sparse features: the critic that
//! chooses proposals in `fnas-select`. Each member is a ridge fit on its own Bayesian
//! bootstrap of the points (Exp(1) weights), so the members agree where data is dense
//! and spread where it is thin; the spread is the uncertainty.
//!
//! Why ridge and not the MLP ensemble of [`crate::critic`]: on the benchmark spaces a
//! linear model on a rich encoding ranks as well, fits exactly (no step schedule) and in
//! a few milliseconds, which keeps a search's own time far below an evaluation's.
//!
//! A fit is a pure function of (points, seed, fit number): member `k` of fit `t` draws
//! its weights from an RNG seeded by `(seed, t, k)`. Nothing but the points needs to be
//! checkpointed; a restored strategy refits and gets the same model.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use fnas_core::space::Features;

use crate::predictor::{MeanStd, Predictor};

/// Ridge ensemble settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RidgeConfig {
    /// Ensemble members.
    pub members: usize,
    /// L2 penalty on the feature weights (targets are normal scores, features mostly 0/1).
    pub lambda: f64,
}

impl Default for RidgeConfig {
    fn default() -> Self {
        Self {
            members: 5,
            lambda: 1.0,
        }
    }
}

/// The fitted ensemble.
#[derive(Clone, Debug)]
pub struct RidgeEnsemble {
    cfg: RidgeConfig,
    dim: usize,
    seed: u64,
    fits: u64,
    /// Per member: feature weights and intercept.
    members: Vec<(Vec<f64>, f64)>,
}

impl RidgeEnsemble {
    /// An unfitted ensemble over features below `dim`.
    pub fn new(dim: usize, cfg: RidgeConfig, seed: u64) -> Self {
        Self {
            cfg,
            dim,
            seed,
            fits: 0,
            members: Vec::new(),
        }
    }

    /// Fits done so far (the next fit's number).
    pub fn fits(&self) -> u64 {
        self.fits
    }

    /// Sets the fit counter (a restored strategy refits as fit `fits - 1` did).
    pub fn set_fits(&mut self, fits: u64) {
        self.fits = fits;
    }
}

/// Solves `a x = b` for symmetric positive definite `a` (row-major `n x n`) by Cholesky,
/// in place; `None` if `a` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) -> Option<()> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            let (ri, rj) = (i * n, j * n);
            for k in 0..j {
                s -= a[ri + k] * a[rj + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Some(())
}

/// Dot product of two sparse vectors sorted by index ([`SearchSpace::encode`]'s order).
///
/// [`SearchSpace::encode`]: fnas_core::SearchSpace::encode
fn dot(x: &Features, y: &Features) -> f64 {
    let (mut i, mut j, mut s) = (0, 0, 0.0);
    while i < x.len() && j < y.len() {
        match x[i].0.cmp(&y[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += f64::from(x[i].1) * f64::from(y[j].1);
                i += 1;
                j += 1;
            }
        }
    }
    s
}

/// One weighted ridge fit with an unpenalised intercept (targets centred by their
/// weighted mean): the primal system when there are more points than features, the dual
/// (kernel) system otherwise.
fn fit_member(xs: &[Features], ys: &[f64], w: &[f64], dim: usize, lambda: f64) -> (Vec<f64>, f64) {
    let wsum: f64 = w.iter().sum();
    let ybar = if wsum > 0.0 {
        ys.iter().zip(w).map(|(y, w)| y * w).sum::<f64>() / wsum
    } else {
        0.0
    };
    let n = xs.len();
    let lambda = lambda.max(1e-9);
    let mut beta = vec![0.0; dim];
    if n >= dim {
        let mut a = vec![0.0; dim * dim];
        for i in 0..dim {
            a[i * dim + i] = lambda;
        }
        let mut b = vec![0.0; dim];
        for ((x, &y), &wi) in xs.iter().zip(ys).zip(w) {
            for &(p, vp) in x {
                let vp = f64::from(vp) * wi;
                b[p as usize] += vp * (y - ybar);
                for &(q, vq) in x {
                    a[p as usize * dim + q as usize] += vp * f64::from(vq);
                }
            }
        }
        if cholesky_solve(&mut a, &mut b, dim).is_some() {
            beta = b;
        }
    } else {
        // beta = Z^T (Z Z^T + lambda I)^-1 t with Z = sqrt(W) X, t = sqrt(W) (y - ybar)
        let sw: Vec<f64> = w.iter().map(|w| w.sqrt()).collect();
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = sw[i] * sw[j] * dot(&xs[i], &xs[j]);
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
            k[i * n + i] += lambda;
        }
        let mut t: Vec<f64> = (0..n).map(|i| sw[i] * (ys[i] - ybar)).collect();
        if cholesky_solve(&mut k, &mut t, n).is_some() {
            for i in 0..n {
                for &(p, v) in &xs[i] {
                    beta[p as usize] += sw[i] * t[i] * f64::from(v);
                }
            }
        }
    }
    (beta, ybar)
}

impl Predictor for RidgeEnsemble {
    fn fit(&mut self, xs: &[Features], ys: &[f64]) {
        let fit = self.fits;
        self.fits += 1;
        if xs.is_empty() || xs.len() != ys.len() {
            self.members.clear();
            return;
        }
        self.members = (0..self.cfg.members.max(1) as u64)
            .map(|k| {
                let seed = self
                    .seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(fit.wrapping_mul(1_000_003))
                    .wrapping_add(k);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let w: Vec<f64> = xs
                    .iter()
                    .map(|_| -(1.0 - rng.random::<f64>()).ln())
                    .collect();
                fit_member(xs, ys, &w, self.dim, self.cfg.lambda)
            })
            .collect();
    }

    fn predict(&self, x: &Features) -> MeanStd {
        if self.members.is_empty() {
            return MeanStd {
                mean: 0.0,
                std: 1.0,
            };
        }
        let preds: Vec<f64> = self
            .members
            .iter()
            .map(|(beta, b0)| {
                b0 + x
                    .iter()
                    .filter_map(|&(i, v)| beta.get(i as usize).map(|b| b * f64::from(v)))
                    .sum::<f64>()
            })
            .collect();
        let n = preds.len() as f64;
        let mean = preds.iter().sum::<f64>() / n;
        let var = preds.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n;
        MeanStd {
            mean,
            std: var.sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fnas_core::space::Encoding;
    use fnas_core::SearchSpace;

    #[test]
    fn learns_an_additive_function_and_is_less_sure_far_from_data() {
        let space = SearchSpace::nas_bench_201();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let f = |a: &fnas_core::Architecture| {
            a.choices().iter().map(|&c| f64::from(c) * 0.1).sum::<f64>()
        };
        let train: Vec<_> = (0..200).map(|_| space.sample(&mut rng)).collect();
        let xs: Vec<Features> = train
            .iter()
            .map(|a| space.encode(Encoding::OneHot, a))
            .collect();
        let ys: Vec<f64> = train.iter().map(f).collect();
        let mut m = RidgeEnsemble::new(
            space.encoding_len(Encoding::OneHot),
            RidgeConfig {
                lambda: 0.01,
                ..RidgeConfig::default()
            },
            1,
        );
        m.fit(&xs, &ys);
        let test: Vec<_> = (0..100).map(|_| space.sample(&mut rng)).collect();
        let err: f64 = test
            .iter()
            .map(|a| (m.predict(&space.encode(Encoding::OneHot, a)).mean - f(a)).abs())
            .sum::<f64>()
            / 100.0;
        assert!(err < 0.02, "mean abs error {err}");
        // few points: the dual path; the members disagree more than with many
        let mut few = RidgeEnsemble::new(
            space.encoding_len(Encoding::OneHot),
            RidgeConfig::default(),
            1,
        );
        few.fit(&xs[..6], &ys[..6]);
        let far = space.encode(Encoding::OneHot, &test[0]);
        assert!(few.predict(&far).std > m.predict(&far).std);
    }

    #[test]
    fn a_fit_is_a_function_of_points_seed_and_fit_number() {
        let space = SearchSpace::nas_bench_201();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let xs: Vec<Features> = (0..40)
            .map(|_| space.encode(Encoding::Structure, &space.sample(&mut rng)))
            .collect();
        let ys: Vec<f64> = (0..40).map(|i| (i % 7) as f64).collect();
        let dim = space.encoding_len(Encoding::Structure);
        let mut a = RidgeEnsemble::new(dim, RidgeConfig::default(), 9);
        a.fit(&xs, &ys);
        a.fit(&xs, &ys);
        let mut b = RidgeEnsemble::new(dim, RidgeConfig::default(), 9);
        b.set_fits(1);
        b.fit(&xs, &ys);
        assert_eq!(a.predict(&xs[0]), b.predict(&xs[0]));
    }
}
