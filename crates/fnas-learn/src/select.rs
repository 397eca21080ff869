//! Critic-chosen proposals (strategy `fnas-select`): the FNAS critic decides which
//! architectures are evaluated, the PPO controller is one of its candidate sources and
//! keeps learning from every evaluated architecture.
//!
//! Each round (one `ask`), once `init` architectures are evaluated:
//! 1. **Candidates**: every one-edit neighbour of the `neighbours_of` best evaluated
//!    architectures; two-edit mutants of the `mutate_top` best; draws from the PPO
//!    controller; uniform draws (`candidates` split 60/25/15 over the last three, each
//!    source switchable). De-duplicated by canonical form against everything evaluated
//!    in this search and within the round (a controller draw wins over a copy from
//!    another source, so its log-probability is kept).
//! 2. **Critic**: a [`RidgeEnsemble`] on the space's [`Encoding`], fitted on the normal
//!    scores of the evaluated rewards ([`normal::normal_scores`]): the ranks, not the
//!    values, so a few bad outliers or a long tail do not bend the fit.
//! 3. **Acquisition** ([`Acquisition`], Thompson by default) picks the batch.
//!
//! **PPO learns from all of it.** A controller draw enters the PPO update as in `ppo`
//! (its sampling log-probability, weight 1). An architecture the controller did not
//! draw enters with the current policy's log-probability as its old one (the ratio
//! starts at 1) and the bounded weight `rho = min(c, pi(a) / pi_ref)`, where `pi_ref` is
//! the geometric mean probability of the controller's own draws this round (see
//! [`off_policy_weight`]). Why: the selection's own proposal density is unknown, so the
//! true ratio cannot be formed; against the policy's typical draw, an architecture the
//! policy already finds likely counts fully and one it finds unlikely counts little, so
//! a far-off mutant cannot dominate the gradient through its large log-probability
//! gradient. `PpoLearn::Own` restricts the update to the controller's draws (ablation).
//!
//! Everything that changes is in `state()`; the critic is not stored but refitted on
//! restore from the stored points (a fit is a pure function of points, seed and fit
//! number), so `restore(state())` continues exactly.

use std::collections::BTreeSet;

use fnas_core::space::Encoding;
use fnas_core::strategy::{Outcome, Prediction, Proposal, Strategy, StrategyError};
use fnas_core::{Architecture, SearchSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::acquisition::{choose, Acquisition};
use crate::codec::{f64_bits, opt_f64_bits};
use crate::normal;
use crate::ppo::{self, PpoConfig, PpoController, Sample};
use crate::predictor::{MeanStd, Predictor};
use crate::ridge::{RidgeConfig, RidgeEnsemble};

const STD_EPS: f64 = 1e-8;

/// Which evaluated architectures the controller learns from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PpoLearn {
    /// Every evaluated one (others with [`off_policy_weight`]).
    #[default]
    All,
    /// Only its own draws.
    Own,
}

/// The candidate sources, each switchable for the ablation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sources {
    /// One-edit neighbourhoods of the best.
    pub neighbours: bool,
    /// Two-edit mutants of the best.
    pub mutants: bool,
    /// Draws from the PPO controller.
    pub controller: bool,
    /// Uniform draws.
    pub uniform: bool,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            neighbours: true,
            mutants: true,
            controller: true,
            uniform: true,
        }
    }
}

/// `fnas-select` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectConfig {
    /// The controller.
    pub ppo: PpoConfig,
    /// The critic.
    pub critic: RidgeConfig,
    /// The critic's input.
    pub encoding: Encoding,
    /// How the critic's predictions rank candidates.
    pub acquisition: Acquisition,
    /// The std weight of UCB.
    pub ucb_beta: f64,
    /// Evaluated architectures before the critic chooses; before that the controller's
    /// draws are evaluated as they come.
    pub init: usize,
    /// The full one-edit neighbourhood of this many best architectures is a candidate.
    pub neighbours_of: usize,
    /// Two-edit mutants are made of this many best architectures.
    pub mutate_top: usize,
    /// Drawn candidates per round (mutants, controller and uniform draws; the
    /// neighbourhoods come on top).
    pub candidates: usize,
    pub sources: Sources,
    pub ppo_learn: PpoLearn,
    /// The bound `c` of the off-policy weight.
    pub clip_c: f64,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            ppo: PpoConfig::default(),
            critic: RidgeConfig::default(),
            encoding: Encoding::Structure,
            acquisition: Acquisition::Thompson,
            ucb_beta: 1.0,
            init: 10,
            neighbours_of: 5,
            mutate_top: 10,
            candidates: 100,
            sources: Sources::default(),
            ppo_learn: PpoLearn::All,
            clip_c: 1.0,
        }
    }
}

impl SelectConfig {
    /// The checks a user's settings must pass (one-line messages naming the setting).
    pub fn validate(&self) -> Result<(), String> {
        if self.candidates == 0 {
            return Err("candidates must be at least 1".into());
        }
        if !(self.ucb_beta.is_finite() && self.ucb_beta >= 0.0) {
            return Err("ucb_beta must be a finite number >= 0".into());
        }
        let s = &self.sources;
        if !(s.neighbours || s.mutants || s.controller || s.uniform) {
            return Err("at least one candidate source must be on".into());
        }
        Ok(())
    }

    /// Drawn candidates per source: (mutants, controller, uniform).
    fn split(&self) -> (usize, usize, usize) {
        let s = &self.sources;
        let share = [
            if s.mutants { 0.60 } else { 0.0 },
            if s.controller { 0.25 } else { 0.0 },
            if s.uniform { 0.15 } else { 0.0 },
        ];
        let total: f64 = share.iter().sum();
        if total == 0.0 {
            return (0, 0, 0);
        }
        let n = |x: f64| {
            if x == 0.0 {
                0
            } else {
                ((x / total * self.candidates as f64).round() as usize).max(1)
            }
        };
        (n(share[0]), n(share[1]), n(share[2]))
    }
}

/// The weight of an evaluated architecture the controller did not draw:
/// `min(c, exp(logp_pi - logp_ref))` (module docs); finite and in `(0, c]`.
pub fn off_policy_weight(logp_pi: f64, logp_ref: f64, c: f64) -> f64 {
    let w = (logp_pi - logp_ref).exp();
    if w.is_nan() {
        c.min(1.0)
    } else {
        w.clamp(f64::MIN_POSITIVE, c)
    }
}

/// Where a proposal came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Neighbour,
    Mutant,
    Controller,
    Uniform,
}

/// Counters of a search (what the critic picked from where).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SelectStats {
    pub from_neighbours: u64,
    pub from_mutants: u64,
    pub from_controller: u64,
    pub from_uniform: u64,
    /// Evaluated architectures the controller learnt from without having drawn them.
    pub off_policy: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Point {
    arch: Architecture,
    #[serde(with = "f64_bits")]
    reward: f64,
}

/// Everything of the strategy besides the controller that changes during a search.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    rng: ChaCha8Rng,
    /// Evaluated (canonical architecture, reward), each canonical architecture once.
    points: Vec<Point>,
    /// Canonical forms evaluated or failed in this search.
    seen: BTreeSet<Vec<u16>>,
    /// Mean log-probability of the controller's draws of the last round.
    #[serde(with = "opt_f64_bits")]
    ref_logp: Option<f64>,
    /// Critic fits so far.
    fits: u64,
    /// The critic's seed (a restored strategy refits with the seed it was started with).
    critic_seed: u64,
    stats: SelectStats,
}

#[derive(Serialize)]
struct SavedRef<'a> {
    ppo: &'a ppo::State,
    select: &'a State,
}

#[derive(Deserialize)]
struct Saved {
    ppo: ppo::State,
    select: State,
}

/// The `fnas-select` strategy.
pub struct SelectStrategy {
    space: SearchSpace,
    config: SelectConfig,
    ppo: PpoController,
    critic: RidgeEnsemble,
    st: State,
}

impl SelectStrategy {
    pub fn new(space: SearchSpace, config: SelectConfig, seed: u64) -> Self {
        let ppo = PpoController::new(space.clone(), config.ppo.clone(), seed);
        let critic_seed = seed ^ 0x005e_1ec7;
        let critic = RidgeEnsemble::new(
            space.encoding_len(config.encoding),
            config.critic.clone(),
            critic_seed,
        );
        Self {
            st: State {
                rng: ChaCha8Rng::seed_from_u64(seed ^ 0x00c0_ffee),
                points: Vec::new(),
                seen: BTreeSet::new(),
                ref_logp: None,
                fits: 0,
                critic_seed,
                stats: SelectStats::default(),
            },
            space,
            config,
            ppo,
            critic,
        }
    }

    pub fn config(&self) -> &SelectConfig {
        &self.config
    }

    pub fn stats(&self) -> &SelectStats {
        &self.st.stats
    }

    /// The critic's prediction for `arch` in normal-score units (0 = median of the
    /// evaluated rewards, 1 = one std above).
    pub fn predict_score(&self, arch: &Architecture) -> MeanStd {
        self.critic
            .predict(&self.space.encode(self.config.encoding, arch))
    }

    /// The architecture the critic's mean rates best among the evaluated ones: with a
    /// noisy evaluation, less noisy than the single best measurement.
    pub fn best_by_critic(&self) -> Option<&Architecture> {
        self.st
            .points
            .iter()
            .map(|p| (p, self.predict_score(&p.arch).mean))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| &p.arch)
    }

    fn key(&self, arch: &Architecture) -> Vec<u16> {
        self.space.canonical(arch).0
    }

    /// The evaluated architectures, best first.
    fn ranked(&self) -> Vec<&Architecture> {
        let mut idx: Vec<usize> = (0..self.st.points.len()).collect();
        idx.sort_by(|&a, &b| {
            self.st.points[b]
                .reward
                .total_cmp(&self.st.points[a].reward)
        });
        idx.into_iter().map(|i| &self.st.points[i].arch).collect()
    }

    /// Refits the critic on every point (normal scores of the rewards).
    fn refit(&mut self) {
        let rewards: Vec<f64> = self.st.points.iter().map(|p| p.reward).collect();
        let ys = normal::normal_scores(&rewards);
        let xs: Vec<_> = self
            .st
            .points
            .iter()
            .map(|p| self.space.encode(self.config.encoding, &p.arch))
            .collect();
        self.critic.set_fits(self.st.fits);
        self.critic.fit(&xs, &ys);
        self.st.fits = self.critic.fits();
    }

    /// A normal-score prediction in reward units: through the empirical quantiles of
    /// the evaluated rewards (the inverse of the rank transform).
    /// `sorted`: the evaluated rewards, ascending.
    fn to_reward(sorted: &[f64], p: MeanStd) -> Prediction {
        let r = sorted;
        let at = |z: f64| {
            if r.is_empty() {
                return z;
            }
            let pos = (normal::cdf(z) * r.len() as f64 - 0.5).clamp(0.0, (r.len() - 1) as f64);
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            r[lo] + (r[hi] - r[lo]) * (pos - lo as f64)
        };
        Prediction {
            mean: at(p.mean),
            std: ((at(p.mean + p.std) - at(p.mean - p.std)) / 2.0).max(0.0),
            trusted: false,
        }
    }

    /// The round's candidates with their source and (controller draws) log-probability,
    /// de-duplicated by canonical form against the evaluated ones and each other.
    fn candidates(&mut self) -> Result<Vec<(Architecture, Source, Option<f64>)>, StrategyError> {
        let (n_mut, n_ctl, n_uni) = self.config.split();
        let mut out = Vec::new();
        let mut keys: BTreeSet<Vec<u16>> = BTreeSet::new();
        let mut push = |s: &Self,
                        out: &mut Vec<(Architecture, Source, Option<f64>)>,
                        a: Architecture,
                        src: Source,
                        lp: Option<f64>| {
            let k = s.key(&a);
            if !s.st.seen.contains(&k) && keys.insert(k) {
                out.push((a, src, lp));
            }
        };
        if n_ctl > 0 {
            let drawn = self.ppo.sample(n_ctl)?;
            let lps: Vec<f64> = drawn.iter().map(|d| f64::from(d.1)).collect();
            self.st.ref_logp = Some(lps.iter().sum::<f64>() / lps.len().max(1) as f64);
            for (a, lp) in drawn {
                push(self, &mut out, a, Source::Controller, Some(f64::from(lp)));
            }
        }
        let ranked: Vec<Architecture> = self.ranked().into_iter().cloned().collect();
        if self.config.sources.neighbours {
            for a in ranked.iter().take(self.config.neighbours_of) {
                for b in self.space.neighbours(a) {
                    push(self, &mut out, b, Source::Neighbour, None);
                }
            }
        }
        let top = ranked.len().min(self.config.mutate_top.max(1));
        if n_mut > 0 && top > 0 {
            for i in 0..n_mut {
                let parent = &ranked[i % top];
                if let Some(b) = self.space.mutate(parent, 2, &mut self.st.rng) {
                    push(self, &mut out, b, Source::Mutant, None);
                }
            }
        }
        for _ in 0..n_uni {
            let a = self.space.sample(&mut self.st.rng);
            push(self, &mut out, a, Source::Uniform, None);
        }
        Ok(out)
    }
}

impl Strategy for SelectStrategy {
    fn name(&self) -> &str {
        "fnas-select"
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.st.stats;
        vec![
            ("from_neighbours", s.from_neighbours),
            ("from_mutants", s.from_mutants),
            ("from_controller", s.from_controller),
            ("from_uniform", s.from_uniform),
        ]
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError> {
        if self.st.points.len() < self.config.init.max(1) {
            let drawn = self.ppo.sample(n)?;
            self.st.ref_logp = None;
            self.st.stats.from_controller += drawn.len() as u64;
            return Ok(drawn
                .into_iter()
                .map(|(a, lp)| Proposal::new(a, Some(f64::from(lp))))
                .collect());
        }
        let cands = self.candidates()?;
        let preds: Vec<MeanStd> = cands.iter().map(|c| self.predict_score(&c.0)).collect();
        let mut sorted: Vec<f64> = self.st.points.iter().map(|p| p.reward).collect();
        sorted.sort_by(f64::total_cmp);
        let best = normal::normal_scores(&sorted)
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max);
        let picked = choose(
            self.config.acquisition,
            &preds,
            n,
            best,
            self.config.ucb_beta,
            &mut self.st.rng,
        );
        let mut out = Vec::with_capacity(n);
        for i in picked {
            let (arch, src, lp) = &cands[i];
            let s = &mut self.st.stats;
            match src {
                Source::Neighbour => s.from_neighbours += 1,
                Source::Mutant => s.from_mutants += 1,
                Source::Controller => s.from_controller += 1,
                Source::Uniform => s.from_uniform += 1,
            }
            out.push(Proposal {
                arch: arch.clone(),
                log_prob: *lp,
                prediction: Some(Self::to_reward(&sorted, preds[i])),
            });
        }
        // a space smaller than the batch (or nearly exhausted): fill with uniform draws
        while out.len() < n {
            out.push(Proposal::new(self.space.sample(&mut self.st.rng), None));
            self.st.stats.from_uniform += 1;
        }
        Ok(out)
    }

    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), StrategyError> {
        let used = self.ppo.prepare(outcomes)?;
        let used: Vec<_> = match self.config.ppo_learn {
            PpoLearn::All => used,
            PpoLearn::Own => used
                .into_iter()
                .filter(|u| u.outcome.log_prob.is_some())
                .collect(),
        };
        if !used.is_empty() {
            let rewards: Vec<f64> = used.iter().map(|u| u.reward).collect();
            let (adv, _) = self.ppo.ema_advantages(&rewards);
            // the reference of the off-policy weight: this round's controller draws, or
            // (none drawn) the policy's typical draw as the learnt-from samples show it
            let ref_logp = self.st.ref_logp.unwrap_or_else(|| {
                used.iter().map(|u| f64::from(u.old_logp)).sum::<f64>() / used.len() as f64
            });
            let mut off = 0;
            let samples: Vec<Sample> = used
                .iter()
                .zip(adv)
                .map(|(u, a)| {
                    let weight = if u.outcome.log_prob.is_some() {
                        1.0
                    } else {
                        off += 1;
                        off_policy_weight(f64::from(u.old_logp), ref_logp, self.config.clip_c)
                    };
                    Sample {
                        tokens: u.tokens,
                        old_logp: u.old_logp,
                        advantage: (a as f32).clamp(-1e6, 1e6),
                        weight: weight.max(STD_EPS) as f32,
                    }
                })
                .collect();
            self.st.stats.off_policy += off;
            self.ppo.learn(&samples, rewards.len());
        }
        let mut added = false;
        for o in outcomes.iter().filter(|o| o.evaluated) {
            let key = self.key(&o.arch);
            if !self.st.seen.insert(key.clone()) {
                continue;
            }
            if let Some(r) = o.reward.filter(|r| r.is_finite()) {
                self.st.points.push(Point {
                    arch: Architecture(key),
                    reward: r,
                });
                added = true;
            }
        }
        if added {
            self.refit();
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<u8>, StrategyError> {
        serde_json::to_vec(&SavedRef {
            ppo: self.ppo.raw_state(),
            select: &self.st,
        })
        .map_err(|e| StrategyError::Other(format!("serialising fnas-select state: {e}")))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        let saved: Saved =
            serde_json::from_slice(state).map_err(|e| StrategyError::BadState(e.to_string()))?;
        if let Some(p) = saved
            .select
            .points
            .iter()
            .find(|p| !self.space.is_valid(&p.arch))
        {
            return Err(StrategyError::BadState(format!(
                "fnas-select state holds an architecture outside space {}: {:?}",
                self.space.name(),
                p.arch.0
            )));
        }
        self.ppo.set_raw_state(saved.ppo)?;
        self.st = saved.select;
        self.critic = RidgeEnsemble::new(
            self.space.encoding_len(self.config.encoding),
            self.config.critic.clone(),
            self.st.critic_seed,
        );
        // the critic is a function of the points, seed and fit number: refit as the last did
        if self.st.fits > 0 {
            self.st.fits -= 1;
            self.refit();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic reward on NAS-Bench-201: additive in the ops.
    fn reward(a: &Architecture) -> f64 {
        0.5 + a
            .choices()
            .iter()
            .enumerate()
            .map(|(i, &c)| 0.01 * f64::from(c) * (1.0 + i as f64 / 6.0))
            .sum::<f64>()
    }

    fn round(s: &mut SelectStrategy, n: usize) -> Vec<Proposal> {
        let props = s.ask(n).unwrap();
        let outs: Vec<Outcome> = props
            .iter()
            .map(|p| Outcome {
                arch: p.arch.clone(),
                reward: Some(reward(&p.arch)),
                log_prob: p.log_prob,
                evaluated: true,
            })
            .collect();
        s.tell(&outs).unwrap();
        props
    }

    fn small() -> SelectConfig {
        SelectConfig {
            candidates: 40,
            ..SelectConfig::default()
        }
    }

    #[test]
    fn never_proposes_an_evaluated_architecture_and_finds_the_optimum() {
        let space = SearchSpace::nas_bench_201();
        let mut s = SelectStrategy::new(space.clone(), small(), 3);
        let mut seen = BTreeSet::new();
        let mut best: f64 = 0.0;
        for _ in 0..15 {
            for p in round(&mut s, 8) {
                assert!(space.is_valid(&p.arch));
                let fresh = seen.insert(space.canonical(&p.arch).0);
                // the first rounds are the controller's own draws, which may repeat
                assert!(
                    fresh || s.st.points.len() <= 16,
                    "proposed twice: {:?}",
                    p.arch
                );
                best = best.max(reward(&p.arch));
            }
        }
        let optimum = reward(&Architecture(vec![4; 6]));
        assert!((best - optimum).abs() < 1e-12, "best {best} of {optimum}");
        let st = s.stats();
        assert!(st.from_neighbours + st.from_mutants > 0 && st.off_policy > 0);
    }

    #[test]
    fn off_policy_weights_are_finite_and_bounded() {
        for (pi, r) in [
            (-3.0, -3.0),
            (-50.0, -2.0),
            (-1.0, -40.0),
            (f64::NAN, -1.0),
            (-1e308, 0.0),
        ] {
            let w = off_policy_weight(pi, r, 1.0);
            assert!(w.is_finite() && w > 0.0 && w <= 1.0, "{pi} {r}: {w}");
        }
        assert!((off_policy_weight(-5.0, -4.0, 1.0) - (-1.0f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn an_architecture_the_controller_did_not_draw_moves_the_policy_finitely() {
        let space = SearchSpace::nas_bench_201();
        let mut s = SelectStrategy::new(space.clone(), small(), 1);
        let before = s.ppo.raw_state().clone();
        let a = space.sample(&mut ChaCha8Rng::seed_from_u64(9));
        s.tell(&[Outcome {
            arch: a.clone(),
            reward: Some(0.9),
            log_prob: None,
            evaluated: true,
        }])
        .unwrap();
        assert_eq!(s.stats().off_policy, 1);
        let after = s.ppo.log_prob_cpu(&a).unwrap();
        assert!(after.is_finite());
        assert_ne!(
            serde_json::to_string(&before).unwrap(),
            serde_json::to_string(s.ppo.raw_state()).unwrap()
        );
    }

    #[test]
    fn same_seed_same_search_and_restore_continues_exactly() {
        let space = SearchSpace::nas_bench_graph();
        let mut a = SelectStrategy::new(space.clone(), small(), 7);
        let mut b = SelectStrategy::new(space.clone(), small(), 7);
        for _ in 0..4 {
            assert_eq!(round(&mut a, 8), round(&mut b, 8));
        }
        let saved = a.state().unwrap();
        let next_a: Vec<_> = (0..3).map(|_| round(&mut a, 8)).collect();
        let mut c = SelectStrategy::new(space, small(), 0);
        c.restore(&saved).unwrap();
        let next_c: Vec<_> = (0..3).map(|_| round(&mut c, 8)).collect();
        assert_eq!(next_a, next_c);
    }

    #[test]
    fn bad_settings_are_refused() {
        let c = SelectConfig {
            candidates: 0,
            ..SelectConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("candidates"));
        let c = SelectConfig {
            sources: Sources {
                neighbours: false,
                mutants: false,
                controller: false,
                uniform: false,
            },
            ..SelectConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("source"));
    }
}
