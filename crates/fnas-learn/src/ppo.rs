//! The vanilla MnasNet-style RL baseline: an LSTM controller that emits one token per
//! decision of the space, trained with PPO (clipped surrogate, entropy bonus) against an
//! exponential-moving-average reward baseline.
//!
//! - **Sampling** (`ask`) runs the policy in plain Rust on the flat `f32` weights (tiny
//!   matrix-vector products; burn's per-op overhead would dominate) and draws each token
//!   from the softmax with the controller's own seeded ChaCha8 RNG. An architecture the
//!   space rejects (`SearchSpace::is_valid`, e.g. NAS-Bench-Graph's all-skip cells) is
//!   thrown away and sampled again; the recorded `log_prob` is `sum_t log pi(token_t)` of
//!   the returned tokens under the unconstrained policy (the renormalisation over the
//!   valid set is ignored: it cancels in PPO's ratio up to `P_new(valid)/P_old(valid)`).
//! - **Learning** (`tell`) teacher-forces the batch through the same network and takes
//!   the gradient of the PPO loss with a hand-written backward pass in plain Rust
//!   (module `policy_grad`; burn's autodiff gave the same gradient up to rounding but
//!   spent most of its time on per-op bookkeeping for these tiny tensors, and remains
//!   the tests' oracle). It applies Adam to the flat weights itself, so the whole state
//!   (weights, Adam moments, RNG, baseline statistics, counters) is plain data and
//!   `restore(state())` continues bit-identically.
//!
//! Reward processing in `tell`, per batch of outcomes (in order):
//! - a failed evaluation (`reward: None`) counts as `failed_reward` (default 0, the
//!   worst value of the MnasNet reward), or is left out when that is `None`; a
//!   non-finite reward is left out; a batch with nothing left changes nothing;
//! - an outcome without `log_prob` (not proposed by this controller) uses the current
//!   policy's log-probability as its old one (ratio 1 at the first epoch);
//! - the advantage is `A = (R - b) / (sigma + 1e-8)` where `b` is the EMA baseline
//!   *before* this batch and `sigma` the standard deviation of ALL rewards seen so far
//!   in this search, this batch included (Welford). Dividing by a std is our choice
//!   (MnasNet uses the raw difference): it makes the step size and the weight of the
//!   entropy bonus independent of the reward's scale. A cumulative std, not a running
//!   one, because a running std shrinks as the policy concentrates, which inflates the
//!   advantages of tiny reward differences and collapses the policy onto a handful of
//!   architectures (measured on NAS-Bench-Graph: about 250 distinct architectures, then
//!   only repeats). The first batch initialises `b` to its mean (so identical rewards
//!   give A = 0, leaving only the entropy bonus);
//! - then the baseline is updated per sample of the batch: `b <- d b + (1 - d) R`
//!   (`d` = `baseline_decay`; not for the first batch, which set it);
//! - finally `epochs` full-batch PPO epochs:
//!   `loss = -mean(min(r A, clip(r, 1-eps, 1+eps) A)) - entropy_coef * mean(entropy)`,
//!   `r = exp(log pi_new(a) - log pi_old(a))`, entropy = mean over decisions of the
//!   entropy of each decision's distribution.
//!
//! The pieces are reusable by the FNAS strategy ([`crate::fnas`]), which keeps this
//! controller's sampling and update but plugs in its own advantages and adds replayed
//! samples: `tell` = [`PpoController::prepare`] (reward processing above) +
//! [`PpoController::ema_advantages`] (the EMA baseline) + [`PpoController::learn`] (the
//! PPO epochs on per-sample `(tokens, old log-prob, advantage, weight)`). A sample's
//! weight `w` multiplies its clipped surrogate term:
//! `loss = -mean(w * min(r A, clip(r, 1-eps, 1+eps) A)) - entropy_coef * mean(entropy)`;
//! the plain controller's samples all have `w = 1` (multiplying by 1 is exact, so its
//! arithmetic is exactly the unweighted one).

use burn::prelude::*;
use fnas_core::strategy::{Outcome, Proposal, Strategy, StrategyError};
use fnas_core::{Architecture, SearchSpace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::codec::{f32s, f64_bits};
use crate::policy::{forward_batch, rollout, Layout};
use crate::policy_grad::ppo_loss_gradient;

/// Draws per architecture before `ask` gives up on finding a valid one.
const MAX_RESAMPLE: usize = 10_000;
const ADAM_BETA1: f32 = 0.9;
const ADAM_BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;
const STD_EPS: f64 = 1e-8;

/// Hyper-parameters of the PPO controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PpoConfig {
    /// LSTM hidden size (also the token embedding size).
    pub hidden: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// PPO epochs (full-batch gradient steps) per `tell`.
    pub epochs: usize,
    /// PPO clip range epsilon.
    pub clip: f64,
    /// Weight of the entropy bonus.
    pub entropy_coef: f64,
    /// Decay of the EMA reward baseline (and of the EMA reward variance).
    pub baseline_decay: f64,
    /// Reward given to failed evaluations; `None` leaves them out of the update.
    pub failed_reward: Option<f64>,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            hidden: 64,
            lr: 0.001,
            epochs: 4,
            clip: 0.2,
            entropy_coef: 0.02,
            baseline_decay: 0.9,
            failed_reward: Some(0.0),
        }
    }
}

/// EMA statistics of the rewards.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Baseline {
    #[serde(with = "f64_bits")]
    mean: f64,
    /// Rewards seen (Welford count, mean and sum of squared deviations).
    #[serde(with = "f64_bits")]
    count: f64,
    #[serde(with = "f64_bits")]
    all_mean: f64,
    #[serde(with = "f64_bits")]
    m2: f64,
}

/// Everything that changes during a search; serialised by `state()`.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct State {
    #[serde(with = "f32s")]
    theta: Vec<f32>,
    #[serde(with = "f32s")]
    adam_m: Vec<f32>,
    #[serde(with = "f32s")]
    adam_v: Vec<f32>,
    /// Adam steps taken (for bias correction).
    adam_t: u64,
    rng: ChaCha8Rng,
    baseline: Option<Baseline>,
    /// Architectures proposed so far (valid ones returned by `ask`).
    proposed: u64,
    /// Rewards used for learning so far.
    rewards_seen: u64,
    /// `tell` calls that updated the policy.
    updates: u64,
}

/// One sample of a PPO update.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample<'a> {
    pub tokens: &'a [u16],
    /// `log pi_old(a)`: the log-probability the ratio is taken against.
    pub old_logp: f32,
    pub advantage: f32,
    /// Multiplies the sample's clipped surrogate term (no gradient flows through it).
    pub weight: f32,
}

/// An outcome prepared for learning by [`PpoController::prepare`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prepared<'a> {
    pub outcome: &'a Outcome,
    pub tokens: &'a [u16],
    /// The reward used for learning (`failed_reward` for a failed evaluation).
    pub reward: f64,
    /// The sampling-time log-probability (the current policy's when the outcome has
    /// none).
    pub old_logp: f32,
}

/// The EMA baseline and reward scale that [`PpoController::ema_advantages`] used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale {
    /// `b` before this batch's EMA update.
    pub baseline: f64,
    /// Cumulative reward std, this batch included.
    pub sigma: f64,
}

impl Scale {
    /// `(r - b) / (sigma + 1e-8)`.
    pub fn advantage(&self, r: f64) -> f64 {
        (r - self.baseline) / (self.sigma + STD_EPS)
    }
}

/// The LSTM + PPO controller (strategy name `ppo`).
pub struct PpoController {
    space: SearchSpace,
    config: PpoConfig,
    layout: Layout,
    device: Device,
    st: State,
}

impl PpoController {
    /// A controller for `space`, with weights drawn from a ChaCha8 RNG seeded by `seed`.
    pub fn new(space: SearchSpace, config: PpoConfig, seed: u64) -> Self {
        let choices = space.decisions().iter().map(|d| d.choices.len()).collect();
        let layout = Layout::new(choices, config.hidden.max(1));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let theta = layout.init(&mut rng);
        let n = theta.len();
        Self {
            space,
            config,
            layout,
            device: crate::device(),
            st: State {
                theta,
                adam_m: vec![0.0; n],
                adam_v: vec![0.0; n],
                adam_t: 0,
                rng,
                baseline: None,
                proposed: 0,
                rewards_seen: 0,
                updates: 0,
            },
        }
    }

    pub fn config(&self) -> &PpoConfig {
        &self.config
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.layout.total
    }

    /// The current EMA reward baseline (`None` before the first `tell`).
    pub fn baseline(&self) -> Option<f64> {
        self.st.baseline.as_ref().map(|b| b.mean)
    }

    /// Number of policy updates (`tell` calls that changed the weights).
    pub fn updates(&self) -> u64 {
        self.st.updates
    }

    /// `sum_t log pi(a_t)` of each architecture under the current weights, computed by
    /// the batched, teacher-forced burn forward pass (the tests' autodiff oracle for the
    /// PPO gradient).
    pub fn log_probs(&self, archs: &[Architecture]) -> Result<Vec<f64>, StrategyError> {
        let toks = self.check_archs(archs.iter())?;
        if toks.is_empty() {
            return Ok(Vec::new());
        }
        let theta = self.theta_tensor(&self.device, false);
        let (logp, _) = forward_batch(&self.layout, theta, &toks, &self.device);
        let v = logp
            .try_into_vec_as::<f32>()
            .map_err(|e| StrategyError::Other(format!("reading log-probs: {e:?}")))?;
        Ok(v.into_iter().map(f64::from).collect())
    }

    /// `sum_t log pi(a_t)` computed by the plain-Rust pass that `ask` uses.
    pub fn log_prob_cpu(&self, arch: &Architecture) -> Result<f64, StrategyError> {
        let toks = self.check_archs(std::iter::once(arch))?;
        Ok(f64::from(self.log_prob_tokens(toks[0])))
    }

    fn check_archs<'a>(
        &self,
        archs: impl Iterator<Item = &'a Architecture>,
    ) -> Result<Vec<&'a [u16]>, StrategyError> {
        archs
            .map(|a| {
                let ok = a.0.len() == self.layout.choices.len()
                    && a.0
                        .iter()
                        .zip(&self.layout.choices)
                        .all(|(&c, &n)| (c as usize) < n);
                if ok {
                    Ok(a.0.as_slice())
                } else {
                    Err(StrategyError::Other(format!(
                        "architecture {:?} does not fit space {}",
                        a.0,
                        self.space.name()
                    )))
                }
            })
            .collect()
    }

    fn theta_tensor(&self, device: &Device, grad: bool) -> Tensor<1> {
        let t = Tensor::<1>::from_data(
            TensorData::new(self.st.theta.clone(), [self.layout.total]),
            device,
        );
        if grad {
            t.require_grad()
        } else {
            t
        }
    }

    /// Advantages of `rewards` under the EMA baseline (see the module docs); updates the
    /// EMA statistics. Also returns the baseline and scale it used.
    pub(crate) fn ema_advantages(&mut self, rewards: &[f64]) -> (Vec<f64>, Scale) {
        let d = self.config.baseline_decay;
        let n = rewards.len() as f64;
        let (mut b, first) = match self.st.baseline.take() {
            None => {
                let mean = rewards.iter().sum::<f64>() / n;
                (
                    Baseline {
                        mean,
                        count: 0.0,
                        all_mean: 0.0,
                        m2: 0.0,
                    },
                    true,
                )
            }
            Some(b) => (b, false),
        };
        for r in rewards {
            b.count += 1.0;
            let delta = r - b.all_mean;
            b.all_mean += delta / b.count;
            b.m2 += delta * (r - b.all_mean);
        }
        let sigma = (b.m2 / b.count.max(1.0)).max(0.0).sqrt();
        let scale = Scale {
            baseline: b.mean,
            sigma,
        };
        let adv = rewards.iter().map(|&r| scale.advantage(r)).collect();
        if !first {
            for r in rewards {
                b.mean = d * b.mean + (1.0 - d) * r;
            }
        }
        self.st.baseline = Some(b);
        (adv, scale)
    }

    /// `epochs` PPO steps on one batch.
    fn update(&mut self, samples: &[Sample]) {
        for _ in 0..self.config.epochs {
            let g = self.loss_gradient(samples);
            self.adam_step(&g);
        }
    }

    /// The gradient of the PPO loss (module docs) at the current weights, the ratio taken
    /// against each sample's `old_logp`, by the plain-Rust backward pass.
    pub(crate) fn loss_gradient(&self, samples: &[Sample]) -> Vec<f32> {
        ppo_loss_gradient(
            &self.layout,
            &self.st.theta,
            samples,
            self.config.clip as f32,
            self.config.entropy_coef as f32,
        )
    }

    /// The same gradient by burn's autodiff through [`forward_batch`]: the reference the
    /// tests compare [`Self::loss_gradient`] with (it was the update's gradient before the
    /// hand-written pass replaced it).
    #[cfg(test)]
    pub(crate) fn burn_loss_gradient(&self, samples: &[Sample]) -> Vec<f32> {
        let ad = self.device.clone().autodiff();
        let bsz = samples.len();
        let archs: Vec<&[u16]> = samples.iter().map(|s| s.tokens).collect();
        let col = |f: fn(&Sample) -> f32| {
            let v: Vec<f32> = samples.iter().map(f).collect();
            Tensor::<2>::from_data(TensorData::new(v, [bsz, 1]), &ad)
        };
        let old = col(|s| s.old_logp);
        let advt = col(|s| s.advantage);
        let clip = self.config.clip as f32;
        let theta = self.theta_tensor(&ad, true);
        let (logp, ent) = forward_batch(&self.layout, theta.clone(), &archs, &ad);
        let ratio = (logp - old).exp();
        let s1 = ratio.clone() * advt.clone();
        let s2 = ratio.clamp(1.0 - clip, 1.0 + clip) * advt;
        let mut surrogate = s1.min_pair(s2);
        // all weights 1 (the plain controller): leave the arithmetic exactly unweighted
        if samples.iter().any(|s| s.weight != 1.0) {
            surrogate = surrogate * col(|s| s.weight);
        }
        let loss = surrogate.mean().neg() - ent.mean().mul_scalar(self.config.entropy_coef as f32);
        let grads = loss.backward();
        theta
            .grad(&grads)
            .and_then(|g| g.try_into_vec_as::<f32>().ok())
            .unwrap_or_else(|| vec![0.0; self.layout.total])
    }

    /// Counts `rewards` rewards as seen and runs the `epochs` PPO steps on `samples`
    /// (one policy update; nothing when `samples` is empty or `epochs` is 0).
    pub(crate) fn learn(&mut self, samples: &[Sample], rewards: usize) {
        self.st.rewards_seen += rewards as u64;
        if self.config.epochs > 0 && !samples.is_empty() {
            self.update(samples);
            self.st.updates += 1;
        }
    }

    /// The reward processing of `tell` (module docs): the outcomes that count, with their
    /// reward, tokens and old log-probability.
    pub(crate) fn prepare<'a>(
        &self,
        outcomes: &'a [Outcome],
    ) -> Result<Vec<Prepared<'a>>, StrategyError> {
        let used: Vec<(&Outcome, f64)> = outcomes
            .iter()
            .filter_map(|o| o.reward.or(self.config.failed_reward).map(|r| (o, r)))
            .filter(|(_, r)| r.is_finite())
            .collect();
        let archs = self.check_archs(used.iter().map(|(o, _)| &o.arch))?;
        Ok(used
            .iter()
            .zip(archs)
            .map(|(&(outcome, reward), tokens)| Prepared {
                outcome,
                tokens,
                reward,
                old_logp: match outcome.log_prob {
                    Some(lp) => lp as f32,
                    None => self.log_prob_tokens(tokens),
                },
            })
            .collect())
    }

    /// `n` architectures sampled from the policy with their sampling log-probabilities
    /// (what `ask` returns).
    pub(crate) fn sample(&mut self, n: usize) -> Result<Vec<(Architecture, f32)>, StrategyError> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let mut found = None;
            for _ in 0..MAX_RESAMPLE {
                let (toks, lp) =
                    rollout(&self.layout, &self.st.theta, None, Some(&mut self.st.rng));
                let arch = Architecture(toks);
                if self.space.is_valid(&arch) {
                    found = Some((arch, lp));
                    break;
                }
            }
            let (arch, lp) = found.ok_or_else(|| {
                StrategyError::Other(format!(
                    "ppo: no valid architecture of space {} in {MAX_RESAMPLE} samples",
                    self.space.name()
                ))
            })?;
            self.st.proposed += 1;
            out.push((arch, lp));
        }
        Ok(out)
    }

    /// `sum_t log pi(a_t)` of checked tokens by the plain-Rust pass `ask` uses.
    pub(crate) fn log_prob_tokens(&self, tokens: &[u16]) -> f32 {
        rollout::<ChaCha8Rng>(&self.layout, &self.st.theta, Some(tokens), None).1
    }

    pub(crate) fn raw_state(&self) -> &State {
        &self.st
    }

    /// Replaces the state after checking that its weights fit this controller.
    pub(crate) fn set_raw_state(&mut self, st: State) -> Result<(), StrategyError> {
        let n = self.layout.total;
        if st.theta.len() != n || st.adam_m.len() != n || st.adam_v.len() != n {
            return Err(StrategyError::BadState(format!(
                "ppo state has {} weights, this controller ({} decisions, hidden {}) has {n}",
                st.theta.len(),
                self.layout.choices.len(),
                self.layout.hidden
            )));
        }
        self.st = st;
        Ok(())
    }

    fn adam_step(&mut self, g: &[f32]) {
        let st = &mut self.st;
        st.adam_t += 1;
        let t = st.adam_t.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - ADAM_BETA1.powi(t);
        let bc2 = 1.0 - ADAM_BETA2.powi(t);
        let lr = self.config.lr as f32;
        for (((p, m), v), &gi) in st
            .theta
            .iter_mut()
            .zip(st.adam_m.iter_mut())
            .zip(st.adam_v.iter_mut())
            .zip(g)
        {
            *m = ADAM_BETA1 * *m + (1.0 - ADAM_BETA1) * gi;
            *v = ADAM_BETA2 * *v + (1.0 - ADAM_BETA2) * gi * gi;
            let mh = *m / bc1;
            let vh = *v / bc2;
            *p -= lr * mh / (vh.sqrt() + ADAM_EPS);
        }
    }
}

impl Strategy for PpoController {
    fn name(&self) -> &str {
        "ppo"
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError> {
        Ok(self
            .sample(n)?
            .into_iter()
            .map(|(arch, lp)| Proposal::new(arch, Some(f64::from(lp))))
            .collect())
    }

    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), StrategyError> {
        let used = self.prepare(outcomes)?;
        if used.is_empty() {
            return Ok(());
        }
        let rewards: Vec<f64> = used.iter().map(|u| u.reward).collect();
        let (adv, _) = self.ema_advantages(&rewards);
        let samples: Vec<Sample> = used
            .iter()
            .zip(adv)
            .map(|(u, a)| Sample {
                tokens: u.tokens,
                old_logp: u.old_logp,
                advantage: a as f32,
                weight: 1.0,
            })
            .collect();
        self.learn(&samples, rewards.len());
        Ok(())
    }

    fn state(&self) -> Result<Vec<u8>, StrategyError> {
        serde_json::to_vec(&self.st)
            .map_err(|e| StrategyError::Other(format!("serialising ppo state: {e}")))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        let st: State =
            serde_json::from_slice(state).map_err(|e| StrategyError::BadState(e.to_string()))?;
        self.set_raw_state(st)
    }

    /// The next batch may be sampled from the current policy before the last batch's
    /// rewards are in: `tell` learns from each proposal's recorded sampling log-prob, so
    /// a batch drawn one update earlier is an off-policy batch that PPO's clipped ratio
    /// is built for.
    fn asynchronous(&self) -> bool {
        true
    }
}
