//! The uncertainty-aware critic (FNAS module 1): a deep ensemble of small MLPs on the
//! one-hot architecture encoding, predicting a reward and the spread of the members'
//! predictions as its uncertainty.
//!
//! Our choices (the paper is silent):
//! - K members (default 5), each with its own initialisation and its own online
//!   bootstrap: every data point gets a Poisson(1) weight per member when it arrives.
//! - Targets are z-scores of the current task's rewards (mean/std of this task's
//!   evaluated rewards); transferred points arrive already normalised per source task,
//!   so tasks on different accuracy scales share one target scale.
//! - Fitting is incremental: each `fit` continues from the current weights for a fixed
//!   number of Adam steps on minibatches.
//! - The network is so small (one hidden layer over ~50 sparse inputs) that it is
//!   written out in plain Rust: burn's per-operation dispatch would cost more than the
//!   arithmetic, and the ablation runs over a thousand searches.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use fnas_core::{Architecture, SearchSpace};

use crate::codec::{f32_bits, f32s, f64_bits};

/// Critic settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CriticConfig {
    /// Ensemble members.
    pub members: usize,
    /// Hidden units per member.
    pub hidden: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Adam steps per `fit`.
    pub steps_per_fit: usize,
    /// Minibatch size.
    pub minibatch: usize,
    /// Decoupled (AdamW) weight decay: every step multiplies each weight by
    /// `1 - lr * weight_decay`.
    pub weight_decay: f64,
    /// With transferred points present, the least share of each minibatch drawn from
    /// the current task's own points (each draw is own with probability
    /// `max(own_share, own / all)`): thousands of transferred points would otherwise
    /// drown the few hundred that say what THIS task rewards.
    pub own_share: f64,
}

impl Default for CriticConfig {
    fn default() -> Self {
        Self {
            members: 5,
            hidden: 32,
            lr: 0.01,
            steps_per_fit: 60,
            minibatch: 32,
            weight_decay: 1e-4,
            own_share: 0.5,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Adam {
    #[serde(with = "f32s")]
    m: Vec<f32>,
    #[serde(with = "f32s")]
    v: Vec<f32>,
}

/// One MLP: inputs are the indices of the active one-hot features.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Member {
    /// `[n_in * hidden]`, row `i` = the hidden pre-activation added by feature `i`.
    #[serde(with = "f32s")]
    w1: Vec<f32>,
    #[serde(with = "f32s")]
    b1: Vec<f32>,
    #[serde(with = "f32s")]
    w2: Vec<f32>,
    #[serde(with = "f32_bits")]
    b2: f32,
    adam: Adam,
    t: u64,
    rng: ChaCha8Rng,
}

impl Member {
    fn new(n_in: usize, n_active: usize, hidden: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a1 = (3.0 / n_active.max(1) as f32).sqrt();
        let a2 = (3.0 / hidden as f32).sqrt();
        let w1 = (0..n_in * hidden)
            .map(|_| rng.random_range(-a1..a1))
            .collect();
        let w2 = (0..hidden).map(|_| rng.random_range(-a2..a2)).collect();
        let n = n_in * hidden + 2 * hidden + 1;
        Self {
            w1,
            b1: vec![0.0; hidden],
            w2,
            b2: 0.0,
            adam: Adam {
                m: vec![0.0; n],
                v: vec![0.0; n],
            },
            t: 0,
            rng,
        }
    }

    fn hidden(&self, x: &[u16], h: &mut [f32]) {
        let hid = self.b1.len();
        h.copy_from_slice(&self.b1);
        for &i in x {
            let row = &self.w1[i as usize * hid..(i as usize + 1) * hid];
            for (a, w) in h.iter_mut().zip(row) {
                *a += w;
            }
        }
    }

    fn forward(&self, x: &[u16], h: &mut [f32]) -> f32 {
        self.hidden(x, h);
        self.b2
            + h.iter()
                .zip(&self.w2)
                .map(|(a, w)| a.max(0.0) * w)
                .sum::<f32>()
    }

    /// One Adam step of mean squared error on a minibatch of (features, target); `g` is
    /// scratch space for the gradient.
    fn step(&mut self, batch: &[(&[u16], f32)], cfg: &CriticConfig, g: &mut Vec<f32>) {
        let hid = self.b1.len();
        let n_w1 = self.w1.len();
        g.clear();
        g.resize(self.adam.m.len(), 0.0);
        let mut h = vec![0.0f32; hid];
        let mut da = vec![0.0f32; hid];
        let scale = 2.0 / batch.len() as f32;
        {
            let (gw1, rest) = g.split_at_mut(n_w1);
            let (gb1, rest) = rest.split_at_mut(hid);
            let (gw2, gb2) = rest.split_at_mut(hid);
            for &(x, target) in batch {
                let y = self.forward(x, &mut h);
                let dy = scale * (y - target);
                for j in 0..hid {
                    gw2[j] += dy * h[j].max(0.0);
                    da[j] = if h[j] > 0.0 { dy * self.w2[j] } else { 0.0 };
                    gb1[j] += da[j];
                }
                for &i in x {
                    let row = &mut gw1[i as usize * hid..(i as usize + 1) * hid];
                    for (r, d) in row.iter_mut().zip(&da) {
                        *r += d;
                    }
                }
                gb2[0] += dy;
            }
        }
        self.t += 1;
        let (b1c, b2c) = (
            1.0 - 0.9f64.powi(self.t as i32),
            1.0 - 0.999f64.powi(self.t as i32),
        );
        let lr = (cfg.lr * b2c.sqrt() / b1c) as f32;
        // decoupled (AdamW) decay: an L2 term added to the gradient would be normalised
        // by Adam into full `lr`-sized steps, driving every weight of an input the data
        // never shows to 0 within a few hundred steps, and with it the members'
        // disagreement (the uncertainty) on architectures that use such an input
        let decay = (cfg.lr * cfg.weight_decay) as f32;
        let (m, v) = (&mut self.adam.m, &mut self.adam.v);
        let mut k0 = 0;
        for p in [
            &mut self.w1[..],
            &mut self.b1[..],
            &mut self.w2[..],
            std::slice::from_mut(&mut self.b2),
        ] {
            let k1 = k0 + p.len();
            for (((p, &gk), m), v) in p
                .iter_mut()
                .zip(&g[k0..k1])
                .zip(&mut m[k0..k1])
                .zip(&mut v[k0..k1])
            {
                *m = 0.9 * *m + 0.1 * gk;
                *v = 0.999 * *v + 0.001 * gk * gk;
                *p -= lr * *m / (v.sqrt() + 1e-8) + decay * *p;
            }
            k0 = k1;
        }
    }
}

/// A training point: active features, target and the per-member bootstrap weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Point {
    x: Vec<u16>,
    /// Raw reward (current task) or z-score (transferred).
    #[serde(with = "f64_bits")]
    y: f64,
    transferred: bool,
    /// Which source a transferred point came from (index into the source weights).
    #[serde(default)]
    source: u32,
    weights: Vec<u8>,
}

/// A prediction in reward units of the current task, plus the spread in z-units.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub mean: f64,
    pub std: f64,
    /// The std divided by the current task's reward std (what the gate compares to tau).
    pub std_z: f64,
}

/// The ensemble and its data; serializable for exact resume.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Critic {
    cfg: CriticConfig,
    offsets: Vec<u16>,
    members: Vec<Member>,
    data: Vec<Point>,
    rng: ChaCha8Rng,
    fits: u64,
    /// Per-source weights of the transferred points in a minibatch (empty: all 1).
    #[serde(default, with = "crate::codec::f64s")]
    source_weights: Vec<f64>,
}

/// Mean and std (floored) of the current task's raw rewards.
fn task_scale(data: &[Point]) -> (f64, f64) {
    let ys: Vec<f64> = data
        .iter()
        .filter(|p| !p.transferred)
        .map(|p| p.y)
        .collect();
    if ys.is_empty() {
        return (0.0, 1.0);
    }
    let n = ys.len() as f64;
    let mean = ys.iter().sum::<f64>() / n;
    let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt().max(1e-6 + 1e-3 * mean.abs()))
}

/// Poisson(1) draw (Knuth), the online bootstrap weight.
fn poisson1(rng: &mut ChaCha8Rng) -> u8 {
    let l = (-1.0f64).exp();
    let mut k = 0u8;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= l || k == u8::MAX {
            return k;
        }
        k += 1;
    }
}

impl Critic {
    pub fn new(space: &SearchSpace, cfg: CriticConfig, seed: u64) -> Self {
        let mut offsets = Vec::new();
        let mut total = 0u16;
        for d in space.decisions() {
            offsets.push(total);
            total += d.choices.len() as u16;
        }
        let n_active = space.decisions().len();
        let members = (0..cfg.members.max(1))
            .map(|k| {
                Member::new(
                    total as usize,
                    n_active,
                    cfg.hidden.max(1),
                    seed.wrapping_mul(31).wrapping_add(k as u64 + 1),
                )
            })
            .collect();
        Self {
            cfg,
            offsets,
            members,
            data: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
            fits: 0,
            source_weights: Vec::new(),
        }
    }

    /// The settings it was built with.
    pub fn config(&self) -> &CriticConfig {
        &self.cfg
    }

    /// Whether this critic's input encoding is that of `space` (same decisions and
    /// choice counts): a restored critic must fit the strategy's space.
    pub fn fits_space(&self, space: &SearchSpace) -> bool {
        let mut total = 0u16;
        let ok = space.decisions().len() == self.offsets.len()
            && space.decisions().iter().zip(&self.offsets).all(|(d, &o)| {
                let same = o == total;
                total += d.choices.len() as u16;
                same
            });
        let n_in = self
            .members
            .first()
            .map_or(0, |m| m.w1.len() / m.b1.len().max(1));
        ok && n_in == total as usize
    }

    /// Fitting rounds done (`fit`/`fit_steps` calls with data).
    pub fn fits(&self) -> u64 {
        self.fits
    }

    fn features(&self, arch: &Architecture) -> Vec<u16> {
        self.offsets
            .iter()
            .zip(arch.choices())
            .map(|(o, c)| o + c)
            .collect()
    }

    fn push(&mut self, arch: &Architecture, y: f64, transferred: bool, source: u32) {
        // a NaN or an infinity would poison every member's fit and the task's scale; the
        // search loop never passes one, this is the last line of defence
        if !y.is_finite() {
            return;
        }
        let weights = (0..self.members.len())
            .map(|_| poisson1(&mut self.rng))
            .collect();
        let x = self.features(arch);
        self.data.push(Point {
            x,
            y,
            transferred,
            source,
            weights,
        });
    }

    /// Adds an evaluated architecture of the current task (raw reward).
    pub fn add(&mut self, arch: &Architecture, reward: f64) {
        self.push(arch, reward, false, 0);
    }

    /// Adds a transferred point whose reward is already normalised per source task.
    pub fn add_transferred(&mut self, arch: &Architecture, z: f64) {
        self.push(arch, z, true, 0);
    }

    /// Adds a transferred point of source number `source` (see
    /// [`Critic::set_source_weights`]).
    pub fn add_transferred_from(&mut self, arch: &Architecture, z: f64, source: u32) {
        self.push(arch, z, true, source);
    }

    /// How much each source's transferred points count in a minibatch (a point of
    /// source `k` is drawn in proportion to `weights[k]`; a source without a weight
    /// counts 1; all zero: only this task's points are drawn).
    pub fn set_source_weights(&mut self, weights: Vec<f64>) {
        self.source_weights = weights;
    }

    /// The current source weights (empty: all 1).
    pub fn source_weights(&self) -> &[f64] {
        &self.source_weights
    }

    /// This task's evaluated points (architecture, raw reward), in the order added.
    pub fn own_data(&self) -> Vec<(Architecture, f64)> {
        self.data
            .iter()
            .filter(|p| !p.transferred)
            .map(|p| {
                let choices = p.x.iter().zip(&self.offsets).map(|(x, o)| x - o).collect();
                (Architecture(choices), p.y)
            })
            .collect()
    }

    fn source_weight(&self, p: &Point) -> f64 {
        let w = self.source_weights.get(p.source as usize).copied();
        w.filter(|w| w.is_finite()).map_or(1.0, |w| w.max(0.0))
    }

    /// Evaluated points of the current task.
    pub fn own_points(&self) -> usize {
        self.data.iter().filter(|p| !p.transferred).count()
    }

    /// Transferred points.
    pub fn transferred_points(&self) -> usize {
        self.data.iter().filter(|p| p.transferred).count()
    }

    /// Fits the ensemble for `steps_per_fit` more steps (a no-op without data).
    pub fn fit(&mut self) {
        self.fit_steps(self.cfg.steps_per_fit);
    }

    /// Fits for a given number of steps (pre-training on transferred data uses more).
    pub fn fit_steps(&mut self, steps: usize) {
        if self.data.is_empty() {
            return;
        }
        let (mu, sd) = task_scale(&self.data);
        let targets: Vec<f32> = self
            .data
            .iter()
            .map(|p| if p.transferred { p.y } else { (p.y - mu) / sd } as f32)
            .collect();
        let cfg = self.cfg.clone();
        let point_weight: Vec<f64> = self.data.iter().map(|p| self.source_weight(p)).collect();
        // equal source weights draw exactly as pooled transfer always did
        let equal = point_weight.iter().all(|w| *w == 1.0);
        let mut g = Vec::new();
        for (k, m) in self.members.iter_mut().enumerate() {
            // bootstrap-weighted indices of the own and of the transferred points
            let (mut own, mut moved) = (Vec::new(), Vec::new());
            for (i, p) in self.data.iter().enumerate() {
                if p.transferred && point_weight[i] <= 0.0 {
                    continue;
                }
                let pool = if p.transferred { &mut moved } else { &mut own };
                pool.extend(std::iter::repeat_n(i, p.weights[k] as usize));
            }
            // cumulative source weights over `moved`, for weighted draws
            let cum: Vec<f64> = if equal {
                Vec::new()
            } else {
                moved
                    .iter()
                    .scan(0.0, |acc, &i| {
                        *acc += point_weight[i];
                        Some(*acc)
                    })
                    .collect()
            };
            let p_moved_share = if equal || moved.is_empty() {
                moved.len() as f64
            } else {
                // the weighted size of the transferred pool
                cum.last().copied().unwrap_or(0.0)
            };
            let p_own = cfg
                .own_share
                .clamp(0.0, 1.0)
                .max(own.len() as f64 / (own.len() as f64 + p_moved_share).max(1.0));
            for _ in 0..steps {
                let batch: Vec<(&[u16], f32)> = (0..cfg.minibatch.max(1))
                    .filter_map(|_| {
                        // one pool empty: no coin is drawn (a search without transfer
                        // samples exactly as before this option existed)
                        let pool = match (own.is_empty(), moved.is_empty()) {
                            (true, true) => return None,
                            (false, true) => &own,
                            (true, false) => &moved,
                            (false, false) if m.rng.random::<f64>() < p_own => &own,
                            (false, false) => &moved,
                        };
                        let i = if equal || !std::ptr::eq(pool, &moved) {
                            pool[m.rng.random_range(0..pool.len())]
                        } else {
                            let total = cum.last().copied().unwrap_or(0.0);
                            let u = m.rng.random::<f64>() * total;
                            pool[cum.partition_point(|c| *c <= u).min(pool.len() - 1)]
                        };
                        Some((self.data[i].x.as_slice(), targets[i]))
                    })
                    .collect();
                if batch.is_empty() {
                    break;
                }
                m.step(&batch, &cfg, &mut g);
            }
        }
        self.fits += 1;
    }

    /// Predicted reward (current task units) and uncertainty.
    pub fn predict(&self, arch: &Architecture) -> Prediction {
        let x = self.features(arch);
        let mut h = vec![0.0f32; self.cfg.hidden.max(1)];
        let zs: Vec<f64> = self
            .members
            .iter()
            .map(|m| f64::from(m.forward(&x, &mut h)))
            .collect();
        let n = zs.len() as f64;
        let mz = zs.iter().sum::<f64>() / n;
        let sz = (zs.iter().map(|z| (z - mz).powi(2)).sum::<f64>() / n).sqrt();
        let (mu, sd) = task_scale(&self.data);
        Prediction {
            mean: mu + sd * mz,
            std: sd * sz,
            std_z: sz,
        }
    }

    /// Normalised prediction (z-units of the current task).
    pub fn predict_z(&self, arch: &Architecture) -> (f64, f64) {
        let p = self.predict(arch);
        let (mu, sd) = task_scale(&self.data);
        ((p.mean - mu) / sd, p.std_z)
    }
}

/// Per-task normalisation for transfer: z-scores of a task's rewards.
pub fn zscores(rewards: &[f64]) -> Vec<f64> {
    let n = rewards.len() as f64;
    if rewards.is_empty() {
        return Vec::new();
    }
    let mean = rewards.iter().sum::<f64>() / n;
    let sd = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sd <= 0.0 {
        return vec![0.0; rewards.len()];
    }
    rewards.iter().map(|r| (r - mean) / sd).collect()
}

#[cfg(test)]
mod critic_tests {
    use super::*;

    fn synthetic(a: &Architecture) -> f64 {
        0.5 + 0.05 * a.choices().iter().filter(|&&c| c == 2).count() as f64
    }

    #[test]
    fn learns_a_simple_function_and_is_less_sure_far_from_data() {
        let space = SearchSpace::nas_bench_201();
        let mut c = Critic::new(&space, CriticConfig::default(), 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let train: Vec<Architecture> = (0..200).map(|_| space.sample(&mut rng)).collect();
        for a in &train {
            c.add(a, synthetic(a));
        }
        for _ in 0..20 {
            c.fit();
        }
        let test: Vec<Architecture> = (0..200).map(|_| space.sample(&mut rng)).collect();
        let err: f64 = test
            .iter()
            .map(|a| (c.predict(a).mean - synthetic(a)).abs())
            .sum::<f64>()
            / 200.0;
        assert!(err < 0.02, "mean abs error {err}");
    }

    #[test]
    fn zscores_are_standardised() {
        let z = zscores(&[1.0, 2.0, 3.0]);
        assert!((z.iter().sum::<f64>()).abs() < 1e-12);
        assert!((z[2] - 1.224744871391589).abs() < 1e-9);
        assert_eq!(zscores(&[0.5, 0.5]), vec![0.0, 0.0]);
    }
}
