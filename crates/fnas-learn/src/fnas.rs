//! The FNAS strategy (strategy name `fnas`): the PPO controller of [`crate::ppo`] plus
//! the RL-side FNAS modules, each switchable so the ablation can add them one by one.
//! With every module off ([`FnasConfig::vanilla`]) it is exactly the vanilla PPO
//! controller: same proposals, same log-probabilities, same updates.
//!
//! This file composes the parts, each in a module of its own: the gate's rule
//! ([`crate::gate`], which also wraps any other proposer), the std's calibration
//! ([`crate::calibration`]), the experience buffer ([`crate::replay`]), the screen
//! ([`crate::screen`]) and the weighing of transfer sources ([`crate::transfer`]).
//! `tell` is their sequence: measure calibration, PPO update (value + replay), remember
//! the batch, record the evaluated points, refit the critic.
//!
//! - **Uncertainty-aware critic** (`critic`, a [`Critic`] deep ensemble). It learns from
//!   every architecture evaluated in this search (each canonical architecture once; a
//!   failed evaluation is not a reward and is left out) and, with
//!   [`FnasStrategy::with_transfer`], from earlier searches' records (rewards z-scored
//!   per source task), pre-trained for `pretrain_steps` steps before the search starts;
//!   each source's share of the critic's minibatches then follows how well it ranks
//!   this task's evaluated points (`transfer_weighting`, [`crate::transfer`]).
//!   It is refitted (`steps_per_fit` more steps) at the end of a `tell` once
//!   `refit_points` (default 8, a batch) new points have arrived since its last fit.
//!   - *Usable* once it has at least `min_own_points` (default 8) evaluated points of this
//!     task AND at least `min_points` (default 32) points in all, transferred included:
//!     without transfer it waits for 32 of its own (four batches of 8); with transfer,
//!     for 8 own points, which is what fixes the current task's reward scale (the critic
//!     predicts z-scores; the task's mean and std turn them into rewards). Before that
//!     it scores nothing, trusts nothing and is not used as the value function.
//!   - *Scoring*: once usable, every proposal whose canonical architecture has not been
//!     evaluated yet in this search gets a [`Prediction`] (mean, std in reward units,
//!     `trusted`), whether or not the gate is on, so calibration is known for every
//!     variant. An already-evaluated architecture is not scored: the loop serves it
//!     from the store, and scoring it would put in-sample predictions in calibration.
//!   - *Gate* (`gate`): a prediction is trusted (the loop does not evaluate it, its
//!     reward is the predicted mean at cost 0) iff the ensemble std in z-units of the
//!     task's reward std is below `tau`, AND `mean + 2 std` is below the best reward
//!     evaluated so far in this search (our choice: an architecture that the critic
//!     thinks might beat the incumbent is always evaluated, so a trusted prediction can
//!     never hide a winner), AND the audit draw does not pick it: a fraction `audit` of
//!     the would-be-trusted samples is evaluated anyway (drawn with the strategy's RNG),
//!     which measures the critic's error where it is confident. See [`would_trust`].
//!     With `trust_contenders` the incumbent condition is dropped (FNAS.md's plain
//!     rule, [`would_trust_confident`]). Until [`CALIBRATION_MIN_RESIDUALS`] errors
//!     are measured the gate compares the raw ensemble std; with
//!     `gate_after_calibration` it trusts nothing before
//!     ([`FnasStrategy::gate_calibrated`]).
//!   - *Value function* (`critic_value`): the advantage of a sample is
//!     `A = (R - V) / sigma`, sigma = the cumulative reward std of [`crate::ppo`], V
//!     from the critic as it was before this batch's points are added (out of sample
//!     for new architectures); otherwise (or while the critic is not usable) the EMA
//!     baseline of [`crate::ppo`]. The EMA statistics are kept up to date in both cases,
//!     so sigma is the same and the switch is seamless. Which V (`value_baseline`):
//!     [`ValueBaseline::Architecture`] (default, as FNAS.md states it): `V = V(a)`, the
//!     critic's prediction for the sampled architecture itself. Beware: in this
//!     one-step setting V(a) is a per-action baseline, so the better the critic, the
//!     closer every advantage is to 0 (a trusted sample's is exactly 0: its reward IS
//!     V(a)) and the policy learns only from the critic's errors. Measured on the
//!     synthetic NB201 rewards (`synthetic_ablation`), it roughly doubles the cost to the
//!     optimum compared with vanilla PPO. [`ValueBaseline::PolicyMean`] subtracts the
//!     critic's mean prediction over the other samples of the batch instead (an
//!     action-independent estimate of the policy's expected reward): as good as the
//!     EMA baseline there, not better.
//! - **Experience buffer with off-policy correction** (`replay`, `correction`). Every
//!   evaluated outcome (a real reward, or `failed_reward` for a failed evaluation; not a
//!   trusted prediction) is kept with its tokens, the reward used for learning, `log mu`
//!   (its log-probability under the policy that sampled it) and that policy's version
//!   (number of updates before it). Each PPO update uses the fresh outcomes of the batch
//!   (evaluated and trusted) plus `round(f / (1 - f) * fresh)` replayed ones,
//!   `f = replay_fraction` (default 0.5: half the batch), drawn uniformly without
//!   replacement from the buffer as it was before this batch. A replayed sample's old
//!   log-probability (the one the PPO ratio is taken against) is its log-probability
//!   under the policy at the start of the update, and its clipped surrogate term is
//!   multiplied by the truncated importance weight
//!   `rho = min(c, pi_theta(a) / mu(a))` (`c = clip_c`, default 1), computed once at the
//!   start of the update (no gradient flows through it); with `correction` off,
//!   `rho = 1` (see [`importance_weight`]). Its advantage uses the same baseline and
//!   sigma as the fresh samples (the EMA statistics are not updated by replays).
//!
//! - **Critic-ranked proposals** (`screen`, our extension; off by default, so `fnas` is
//!   the paper's method). Once the critic is usable, `ask(n)` draws `screen * n`
//!   architectures from the policy and keeps the `n` not yet evaluated in this search
//!   with the highest `mean + screen_beta * std` ([`screen_order`]); the gate then
//!   decides on those as usual. The dropped draws are never evaluated nor learnt from,
//!   so PPO learns from a critic-filtered sample of its policy (biased towards what the
//!   critic rates well; each kept sample's log-probability is still its own).
//!
//! Everything that changes (controller, critic with its data and RNGs, buffer, the
//! strategy's RNG, the incumbent, the set of evaluated architectures, counters) is in
//! `state()`, with floats stored bit-exactly, so `restore(state())` continues exactly.
//!
//! **tau** (default 0.4) was chosen on the synthetic NB201 rewards (additive, and
//! additive plus pairwise interactions, with noise; 10 seeds each; `synthetic_ablation`):
//! the largest value on the grid 0.15 / 0.25 / 0.4 / 0.6 / 1.0 at which neither the
//! gate-only nor the full (EMA-baseline) variant missed the optimum in any seed and the
//! mean error of the trusted predictions stayed within twice the noise std. The cost to
//! the optimum falls steadily with tau there (vanilla PPO ~170; gate 0.15: ~150-165;
//! 0.4: ~80). The raw ensemble's ±2 std covers only ~80% of the truths (over-confident),
//! so by default (`calibrate`) every std is multiplied by [`calibration_scale`], fitted
//! online on this search's own out-of-sample errors: on NAS-Bench-Graph and
//! AnalogNAS-Bench (20 seeds) the calibrated ±2 std covers 94-97%, and the gate then
//! trusts 24-118 of 500 proposals instead of 140-250.
//!
//! **Speed** (release build, on a loaded 2-core machine): a 500-evaluation search in
//! batches of 8 (capped at 2,000 proposals, 250 PPO updates) takes 2.5-4.7 s with every
//! module on versus 2.0-3.8 s for vanilla (NAS-Bench-201, NAS-Bench-Graph); a PPO update
//! costs ~10 ms at batch 8 or 16 (burn's per-operation overhead dominates, so replay
//! doubling the batch is nearly free); one critic `fit` (5 members x 60 steps x
//! minibatch 32) at 500 points 2.5-4 ms, one prediction 3-4 us. Run
//! `cargo test --release -p fnas-learn -- --ignored --nocapture speed_of_a_500`.

use std::collections::BTreeSet;

use fnas_core::strategy::{Outcome, Prediction, Proposal, Strategy, StrategyError};
use fnas_core::{Architecture, SearchSpace};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::calibration::out_of_sample_residuals;
pub use crate::calibration::{calibrated, calibration_scale, CALIBRATION_MIN_RESIDUALS};
use crate::codec::opt_f64_bits;
use crate::critic::{Critic, CriticConfig};
use crate::gate::record_evaluated;
pub use crate::gate::{would_trust, would_trust_confident};
use crate::ppo::{self, PpoConfig, PpoController, Prepared, Sample};
pub use crate::replay::importance_weight;
use crate::replay::{Experience, ReplayBuffer};
pub use crate::screen::screen_order;
use crate::transfer::{SourcePoints, SourceWeigher};

const STD_EPS: f64 = 1e-8;

/// FNAS settings. `Default` is full FNAS (critic as value and gate, replay with
/// correction); [`FnasConfig::vanilla`] is everything off (= vanilla PPO).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FnasConfig {
    /// The controller.
    pub ppo: PpoConfig,
    /// The critic; `None` turns it (and with it the value function and the gate) off.
    pub critic: Option<CriticConfig>,
    /// Use the critic as PPO's value function (`A = (R - V) / sigma`, V per
    /// `value_baseline`).
    pub critic_value: bool,
    /// Which critic value is subtracted.
    pub value_baseline: ValueBaseline,
    /// Skip the evaluation of confidently predicted architectures.
    pub gate: bool,
    /// Gate threshold on the ensemble std, in z-units of the task's reward std
    /// (default 0.4; how it was chosen: module docs).
    pub tau: f64,
    /// Fraction of would-be-trusted samples that are evaluated anyway.
    pub audit: f64,
    /// Trust confident predictions even when they might beat the best so far (FNAS.md's
    /// plain rule, [`would_trust_confident`]). Off by default (our choice,
    /// [`would_trust`]): late in a search nearly every proposal might beat the best, so
    /// off, the gate saves little there; on, it can hide a winner.
    pub trust_contenders: bool,
    /// The gate trusts nothing until the std is calibrated (see
    /// [`FnasStrategy::gate_calibrated`]). Off by default: the strict rule removed every
    /// trust on real training and transfer's gain on the benchmarks (README figures).
    pub gate_after_calibration: bool,
    /// Calibrate the ensemble's std online (see [`calibration_scale`]): every reported
    /// and gated std is the raw ensemble std times a scale fitted on this search's own
    /// out-of-sample errors so far.
    pub calibrate: bool,
    /// Points (own + transferred) the critic needs before it is used at all.
    pub min_points: usize,
    /// Evaluated points of the current task the critic needs before it is used at all.
    pub min_own_points: usize,
    /// Fitting steps on the transferred points before the search starts.
    pub pretrain_steps: usize,
    /// The critic is refitted (`steps_per_fit` more steps) once this many new evaluated
    /// points have arrived since its last fit.
    pub refit_points: usize,
    /// Mix replayed samples from the experience buffer into each PPO update.
    pub replay: bool,
    /// Share of the PPO batch that is replayed (clamped to `[0, 0.9]`).
    pub replay_fraction: f64,
    /// Weight replayed samples by the truncated importance ratio (off: weight 1).
    pub correction: bool,
    /// Truncation `c` of the importance ratio.
    pub clip_c: f64,
    /// Critic-ranked proposals (our extension, not in FNAS.md; 1 = off): once the critic
    /// is usable, `ask(n)` draws `screen * n` architectures from the policy and returns
    /// the `n` not yet evaluated in this search with the highest `mean + screen_beta *
    /// std` (calibrated std), so the trained children are the ones the critic rates
    /// best. The rest are dropped unseen (no reward, no PPO update). See [`screen_order`].
    pub screen: usize,
    /// The weight of the std in the screen's score (an upper confidence bound).
    pub screen_beta: f64,
    /// Weigh each transfer source by how well it ranks this task's evaluated points
    /// ([`crate::transfer`]); off: every transferred point counts alike. Settings
    /// stored without this field predate it and keep the pooled transfer (fnas-run's
    /// `migrate` sets it off for them).
    pub transfer_weighting: bool,
}

impl Default for FnasConfig {
    fn default() -> Self {
        Self {
            ppo: PpoConfig::default(),
            critic: Some(CriticConfig::default()),
            critic_value: true,
            value_baseline: ValueBaseline::default(),
            gate: true,
            tau: 0.4,
            audit: 0.1,
            trust_contenders: false,
            gate_after_calibration: false,
            calibrate: true,
            min_points: 32,
            min_own_points: 8,
            pretrain_steps: 300,
            refit_points: 8,
            replay: true,
            replay_fraction: 0.5,
            correction: true,
            clip_c: 1.0,
            screen: 1,
            screen_beta: 1.0,
            transfer_weighting: true,
        }
    }
}

impl FnasConfig {
    /// Every module off: vanilla PPO.
    pub fn vanilla() -> Self {
        Self {
            critic: None,
            critic_value: false,
            gate: false,
            replay: false,
            correction: false,
            ..Self::default()
        }
    }
}

/// The value V subtracted from a reward when the critic is PPO's value function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueBaseline {
    /// `V = V(a)`, the critic's prediction for the sampled architecture itself (the
    /// literal A = R(a) - V(a); measured slower than the EMA baseline: a good critic
    /// drives every advantage to 0).
    Architecture,
    /// `V` = the mean of the critic's predictions for the OTHER fresh samples of the
    /// batch (leave-one-out; all of them for a replayed sample): the policy's expected
    /// reward as the critic sees it, independent of the sample's own action. Default:
    /// on NAS-Bench-Graph (3 datasets x 4 seeds) it turned critic-as-value from 0.5-0.9x
    /// into 1.0-1.5x of vanilla PPO's cost-to-target ratio.
    #[default]
    PolicyMean,
}

/// Counters of what the FNAS modules did (part of the state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FnasStats {
    /// Transferred points the critic was pre-trained on.
    pub transferred: u64,
    /// Transferred points rejected (architecture not of this space, non-finite score).
    pub transfer_rejected: u64,
    /// Proposals the critic scored.
    pub scored: u64,
    /// Proposals the gate trusted (not evaluated).
    pub trusted: u64,
    /// Would-be-trusted proposals evaluated anyway (audit).
    pub audited: u64,
    /// Replayed samples used in PPO updates.
    pub replayed: u64,
    /// Drawn architectures the screen dropped (never evaluated nor learnt from).
    #[serde(default)]
    pub screened_out: u64,
    /// PPO updates whose advantages came from the critic.
    pub value_updates: u64,
}

/// The FNAS part of the state.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Extra {
    critic: Option<Critic>,
    buffer: ReplayBuffer,
    rng: ChaCha8Rng,
    /// Best evaluated reward so far.
    #[serde(with = "opt_f64_bits")]
    best: Option<f64>,
    /// Canonical architectures evaluated so far (successfully or not).
    seen: BTreeSet<Vec<u16>>,
    /// Points added to the critic since its last fit.
    unfitted: usize,
    stats: FnasStats,
    /// `|R - mean| / std_raw` of every scored-then-evaluated proposal (calibration).
    #[serde(default, with = "crate::codec::f32s")]
    residuals: Vec<f32>,
}

#[derive(Serialize)]
struct SavedRef<'a> {
    ppo: &'a ppo::State,
    fnas: &'a Extra,
}

#[derive(Deserialize)]
struct Saved {
    ppo: ppo::State,
    fnas: Extra,
}

/// The FNAS strategy (name `fnas`).
pub struct FnasStrategy {
    space: SearchSpace,
    config: FnasConfig,
    ppo: PpoController,
    ex: Extra,
    /// The transfer sources' models (rebuilt, not stored: a pure function of the sources).
    weigher: Option<SourceWeigher>,
}

impl FnasStrategy {
    /// A strategy for `space`; the controller gets `seed`, the critic and the strategy's
    /// own RNG seeds derived from it.
    pub fn new(space: SearchSpace, config: FnasConfig, seed: u64) -> Self {
        let ppo = PpoController::new(space.clone(), config.ppo.clone(), seed);
        let critic = config
            .critic
            .clone()
            .map(|c| Critic::new(&space, c, seed ^ 0xc1_7e_c0_de));
        Self {
            ex: Extra {
                critic,
                buffer: ReplayBuffer::default(),
                rng: ChaCha8Rng::seed_from_u64(seed ^ 0x00fa_5fa5),
                best: None,
                seen: BTreeSet::new(),
                unfitted: 0,
                stats: FnasStats::default(),
                residuals: Vec::new(),
            },
            space,
            config,
            ppo,
            weigher: None,
        }
    }

    /// Like [`FnasStrategy::new`], with the critic pre-trained (`pretrain_steps` steps)
    /// on the points of earlier searches, one list per source experiment (architecture,
    /// reward z-scored within its source). Points whose architecture does not fit the
    /// space or whose score is not finite are rejected (counted in
    /// [`FnasStats::transfer_rejected`]); with the critic off, nothing is transferred.
    /// With `transfer_weighting`, each source then counts as much as it ranks this
    /// task's evaluated points ([`crate::transfer`]).
    pub fn with_transfer(
        space: SearchSpace,
        config: FnasConfig,
        seed: u64,
        sources: &[SourcePoints],
    ) -> Self {
        let mut s = Self::new(space, config, seed);
        if let Some(critic) = s.ex.critic.as_mut() {
            for (k, points) in sources.iter().enumerate() {
                for (a, z) in points {
                    if s.space.is_valid(a) && z.is_finite() {
                        critic.add_transferred_from(a, *z, k as u32);
                        s.ex.stats.transferred += 1;
                    } else {
                        s.ex.stats.transfer_rejected += 1;
                    }
                }
            }
            if s.ex.stats.transferred > 0 {
                critic.fit_steps(s.config.pretrain_steps);
                if s.config.transfer_weighting {
                    s.weigher = Some(SourceWeigher::new(&s.space, sources, seed ^ 0x7a_5f));
                }
            }
        }
        s
    }

    pub fn config(&self) -> &FnasConfig {
        &self.config
    }

    pub fn stats(&self) -> &FnasStats {
        &self.ex.stats
    }

    /// The controller.
    pub fn controller(&self) -> &PpoController {
        &self.ppo
    }

    /// The critic (`None` when off).
    pub fn critic(&self) -> Option<&Critic> {
        self.ex.critic.as_ref()
    }

    /// Entries in the experience buffer.
    pub fn buffer_len(&self) -> usize {
        self.ex.buffer.len()
    }

    /// The current calibration scale of the critic's std (1 when `calibrate` is off).
    pub fn std_scale(&self) -> f64 {
        if self.config.calibrate {
            calibration_scale(&self.ex.residuals)
        } else {
            1.0
        }
    }

    /// Whether the gate may trust yet. With `gate_after_calibration` (and `calibrate`)
    /// on, only once the std it compares is the calibrated one
    /// ([`CALIBRATION_MIN_RESIDUALS`] out-of-sample errors of this search); until then
    /// every scored proposal is evaluated, so the errors arrive at once. Before, the
    /// gate compares the raw ensemble std, which on real training was 1.7-5.6x too small
    /// (the scale fitted on the first 16 errors of six searches: the ensemble sees none
    /// of the training noise).
    pub fn gate_calibrated(&self) -> bool {
        !(self.config.gate_after_calibration && self.config.calibrate)
            || calibrated(&self.ex.residuals)
    }

    /// Best evaluated reward so far.
    pub fn best_evaluated(&self) -> Option<f64> {
        self.ex.best
    }

    /// The critic, when it is on and has enough data to be used (module docs).
    fn usable_critic(&self) -> Option<&Critic> {
        self.ex.critic.as_ref().filter(|c| {
            let own = c.own_points();
            own >= self.config.min_own_points.max(1)
                && own + c.transferred_points() >= self.config.min_points
        })
    }

    /// The gate's decision for one scored proposal: [`would_trust`], then the audit draw
    /// (made only for would-be-trusted proposals, with the strategy's RNG).
    fn decide(&mut self, mean: f64, std: f64, std_z: f64) -> bool {
        if !self.gate_calibrated() {
            return false;
        }
        let cfg = &self.config;
        let rule = if cfg.trust_contenders {
            would_trust_confident(std_z, cfg.tau, self.ex.best)
        } else {
            would_trust(mean, std, std_z, cfg.tau, self.ex.best)
        };
        if !(cfg.gate && rule) {
            return false;
        }
        if self.ex.rng.random::<f64>() < cfg.audit {
            self.ex.stats.audited += 1;
            return false;
        }
        self.ex.stats.trusted += 1;
        true
    }

    /// `n` architectures with their log-probabilities: the policy's draws, or with the
    /// screen on and the critic usable, the best `n` of `screen * n` draws
    /// ([`screen_order`]; a repeat of an earlier draw of this call counts as evaluated).
    fn draw(&mut self, n: usize, scale: f64) -> Result<Vec<(Architecture, f32)>, StrategyError> {
        let k = self.config.screen.max(1);
        if k == 1 || self.usable_critic().is_none() {
            return self.ppo.sample(n);
        }
        let drawn = self.ppo.sample(n.saturating_mul(k))?;
        let keep = {
            // still usable (sampling does not touch the critic); checked again for the borrow
            let Some(c) = self.usable_critic() else {
                return Ok(drawn);
            };
            let mut batch = BTreeSet::new();
            let scores: Vec<Option<f64>> = drawn
                .iter()
                .map(|(arch, _)| {
                    let key = self.canonical(arch);
                    let fresh = !self.ex.seen.contains(&key) && batch.insert(key);
                    fresh.then(|| {
                        let p = c.predict(arch);
                        p.mean + self.config.screen_beta * p.std * scale
                    })
                })
                .collect();
            screen_order(&scores, n)
        };
        self.ex.stats.screened_out += (drawn.len() - keep.len()) as u64;
        let mut drawn: Vec<Option<(Architecture, f32)>> = drawn.into_iter().map(Some).collect();
        Ok(keep.into_iter().filter_map(|i| drawn[i].take()).collect())
    }

    /// Calibration: the out-of-sample errors of this batch's new architectures. The
    /// critic has not changed since `ask`, so its prediction now is the one the proposal
    /// got.
    fn measure_calibration(&mut self, outcomes: &[Outcome]) {
        if let Some(c) = self.usable_critic() {
            let fresh = out_of_sample_residuals(c, &self.space, &self.ex.seen, outcomes);
            self.ex.residuals.extend(fresh);
        }
    }

    /// One PPO update on the batch's samples plus replayed ones, each sample's advantage
    /// against the critic's value (when it is PPO's value function) or the EMA baseline.
    fn learn(&mut self, used: &[Prepared]) {
        if used.is_empty() {
            return;
        }
        let rewards: Vec<f64> = used.iter().map(|u| u.reward).collect();
        let (ema_adv, scale) = self.ppo.ema_advantages(&rewards);
        let use_value = self.config.critic_value && self.usable_critic().is_some();
        let critic = self.ex.critic.as_ref().filter(|_| use_value);
        let value = |tokens: &[u16], c: &Critic| c.predict(&Architecture(tokens.to_vec())).mean;
        // the critic's values of the fresh samples
        let values: Option<Vec<f64>> =
            critic.map(|c| used.iter().map(|u| value(u.tokens, c)).collect());
        let n = used.len() as f64;
        let sum_v = values.as_ref().map_or(0.0, |v| v.iter().sum::<f64>());
        let mode = self.config.value_baseline;
        let fresh_baseline = |i: usize| match (&values, mode) {
            (None, _) => None,
            (Some(v), ValueBaseline::Architecture) => Some(v[i]),
            (Some(v), ValueBaseline::PolicyMean) if n > 1.0 => Some((sum_v - v[i]) / (n - 1.0)),
            (Some(_), ValueBaseline::PolicyMean) => None,
        };
        let to_adv = |r: f64, b: Option<f64>| match b {
            Some(b) => (r - b) / (scale.sigma + STD_EPS),
            None => scale.advantage(r),
        };
        let mut samples: Vec<Sample> = used
            .iter()
            .zip(&ema_adv)
            .enumerate()
            .map(|(i, (u, &a))| Sample {
                tokens: u.tokens,
                old_logp: u.old_logp,
                advantage: match fresh_baseline(i) {
                    Some(b) => to_adv(u.reward, Some(b)),
                    None => a,
                } as f32,
                weight: 1.0,
            })
            .collect();
        if self.config.replay {
            let replayed =
                self.ex
                    .buffer
                    .draw(used.len(), self.config.replay_fraction, &mut self.ex.rng);
            for e in replayed {
                // rho and the ratio's reference: the policy at the start of the update
                let lp_pi = self.ppo.log_prob_tokens(&e.tokens);
                let rho = importance_weight(
                    f64::from(lp_pi),
                    e.log_mu,
                    self.config.clip_c,
                    self.config.correction,
                );
                let b = critic.map(|c| match mode {
                    ValueBaseline::Architecture => value(&e.tokens, c),
                    ValueBaseline::PolicyMean => sum_v / n,
                });
                samples.push(Sample {
                    tokens: &e.tokens,
                    old_logp: lp_pi,
                    advantage: to_adv(e.reward, b) as f32,
                    weight: rho as f32,
                });
            }
            self.ex.stats.replayed += (samples.len() - used.len()) as u64;
        }
        if use_value {
            self.ex.stats.value_updates += 1;
        }
        self.ppo.learn(&samples, rewards.len());
    }

    /// The batch's evaluated outcomes go to the experience buffer (trusted ones do not:
    /// their reward is the critic's).
    fn remember(&mut self, used: &[Prepared], version: u64) {
        for u in used.iter().filter(|u| u.outcome.evaluated) {
            self.ex.buffer.push(Experience {
                tokens: u.tokens.to_vec(),
                reward: u.reward,
                log_mu: f64::from(u.old_logp),
                version,
            });
        }
    }

    /// Refits the critic once `refit_points` new points have arrived, first re-weighing
    /// the transfer sources on this task's points.
    fn refit(&mut self) {
        if self.ex.unfitted < self.config.refit_points.max(1) {
            return;
        }
        if let Some(c) = self.ex.critic.as_mut() {
            if let Some(w) = &self.weigher {
                c.set_source_weights(w.weights(&c.own_data()));
            }
            c.fit();
            self.ex.unfitted = 0;
        }
    }

    /// The current weight of each transfer source (empty without weighting).
    pub fn source_weights(&self) -> &[f64] {
        self.ex.critic.as_ref().map_or(&[], |c| c.source_weights())
    }

    fn canonical(&self, arch: &Architecture) -> Vec<u16> {
        self.space.canonical(arch).0
    }
}

impl Strategy for FnasStrategy {
    fn name(&self) -> &str {
        "fnas"
    }

    /// The next batch may be drawn from the current policy (and scored by the current
    /// critic) before the last batch's rewards are in: `tell` learns from each
    /// proposal's recorded sampling log-prob, and the experience buffer keeps it as the
    /// behaviour probability of its importance weight.
    fn asynchronous(&self) -> bool {
        true
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.ex.stats;
        let mut c = vec![("replayed", s.replayed), ("audited", s.audited)];
        if self.config.screen > 1 {
            c.push(("screened_out", s.screened_out));
        }
        c
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError> {
        let scale = self.std_scale();
        let drawn = self.draw(n, scale)?;
        let mut out = Vec::with_capacity(drawn.len());
        for (arch, lp) in drawn {
            let log_prob = Some(f64::from(lp));
            let pred = match self.usable_critic() {
                Some(c) if !self.ex.seen.contains(&self.canonical(&arch)) => Some(c.predict(&arch)),
                _ => None,
            };
            let prediction = pred.map(|p| {
                self.ex.stats.scored += 1;
                let (std, std_z) = (p.std * scale, p.std_z * scale);
                Prediction {
                    mean: p.mean,
                    std,
                    trusted: self.decide(p.mean, std, std_z),
                }
            });
            out.push(Proposal {
                arch,
                log_prob,
                prediction,
            });
        }
        Ok(out)
    }

    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), StrategyError> {
        self.measure_calibration(outcomes);
        let used = self.ppo.prepare(outcomes)?;
        let version = self.ppo.updates();
        self.learn(&used);
        self.remember(&used, version);
        let ex = &mut self.ex;
        ex.unfitted += record_evaluated(
            &self.space,
            &mut ex.seen,
            &mut ex.best,
            ex.critic.as_mut(),
            outcomes,
        );
        self.refit();
        Ok(())
    }

    fn state(&self) -> Result<Vec<u8>, StrategyError> {
        serde_json::to_vec(&SavedRef {
            ppo: self.ppo.raw_state(),
            fnas: &self.ex,
        })
        .map_err(|e| StrategyError::Other(format!("serialising fnas state: {e}")))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        let saved: Saved =
            serde_json::from_slice(state).map_err(|e| StrategyError::BadState(e.to_string()))?;
        match (&saved.fnas.critic, &self.ex.critic) {
            (Some(c), Some(_)) if !c.fits_space(&self.space) => {
                return Err(StrategyError::BadState(format!(
                    "fnas state has a critic of another space than {}",
                    self.space.name()
                )))
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(StrategyError::BadState(
                    "fnas state and configuration disagree on whether the critic is on".into(),
                ))
            }
            _ => {}
        }
        self.ppo.set_raw_state(saved.ppo)?;
        self.ex = saved.fnas;
        Ok(())
    }
}

#[cfg(test)]
#[path = "fnas_tests.rs"]
mod tests;
