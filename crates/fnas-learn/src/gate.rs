//! The FNAS critic's train-or-trust gate (FNAS module 1's saving): the rule that
//! decides whether a prediction is trusted instead of evaluated ([`would_trust`]), the
//! bookkeeping every gated search shares ([`record_evaluated`]), and the gate wrapped
//! around any proposer ([`GatedStrategy`], e.g. `evolution-gate`): the proposer
//! proposes, the critic (the MLP ensemble of [`crate::critic`]) scores what this search
//! has not evaluated yet, and a confident prediction that cannot beat the best so far is
//! trusted — the rule, calibration ([`calibration_scale`]) and audit of `fnas`. The
//! proposer is told every outcome, trusted ones with the predicted reward, as PPO is in
//! `fnas`.

use std::collections::BTreeSet;

use fnas_core::strategy::{Outcome, Prediction, Proposal, Strategy, StrategyError};
use fnas_core::SearchSpace;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::calibration::{calibrated, calibration_scale, out_of_sample_residuals};
use crate::critic::{Critic, CriticConfig};
use crate::transfer::{SourcePoints, SourceWeigher};

/// The gate's rule before the audit draw: trust a prediction (mean and std in reward
/// units, `std_z` in z-units of the task's reward std) iff `std_z < tau` and
/// `mean + 2 std < best`, the best reward evaluated so far (`None`: trust nothing).
pub fn would_trust(mean: f64, std: f64, std_z: f64, tau: f64, best: Option<f64>) -> bool {
    std_z < tau && best.is_some_and(|b| mean + 2.0 * std < b)
}

/// The gate's rule with `trust_contenders` on: trust any prediction with `std_z < tau`,
/// once this search has evaluated something (`best` is `Some`).
pub fn would_trust_confident(std_z: f64, tau: f64, best: Option<f64>) -> bool {
    std_z < tau && best.is_some()
}

/// Adds a batch's evaluated outcomes to what a gated search knows: every canonical
/// architecture to `seen` (failed ones too: they are not proposed for evaluation
/// again), every finite reward to the incumbent `best`, and the finite reward of each
/// architecture new to the search to the critic. Returns the points the critic got.
pub(crate) fn record_evaluated(
    space: &SearchSpace,
    seen: &mut BTreeSet<Vec<u16>>,
    best: &mut Option<f64>,
    mut critic: Option<&mut Critic>,
    outcomes: &[Outcome],
) -> usize {
    let mut added = 0;
    for o in outcomes.iter().filter(|o| o.evaluated) {
        let first = seen.insert(space.canonical(&o.arch).0);
        let Some(r) = o.reward.filter(|r| r.is_finite()) else {
            continue;
        };
        *best = Some(best.map_or(r, |b| b.max(r)));
        if let (true, Some(c)) = (first, critic.as_deref_mut()) {
            c.add(&o.arch, r);
            added += 1;
        }
    }
    added
}

/// Gate settings (the defaults of `fnas`'s gate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateConfig {
    pub critic: CriticConfig,
    /// Confidence threshold on the calibrated std, in task reward stds.
    pub tau: f64,
    /// Share of would-be-trusted proposals evaluated anyway.
    pub audit: f64,
    /// Points (evaluated plus transferred) before the critic scores anything.
    pub min_points: usize,
    /// Evaluated points of this task before the critic scores anything (what fixes the
    /// task's reward scale; only matters with transfer).
    pub min_own_points: usize,
    /// Weigh transfer sources by how they rank this task ([`crate::transfer`]).
    pub transfer_weighting: bool,
    /// Fitting steps on the transferred points before the search starts.
    pub pretrain_steps: usize,
    /// Trust nothing before the std is calibrated.
    pub after_calibration: bool,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            critic: CriticConfig::default(),
            tau: 0.4,
            audit: 0.1,
            min_points: 32,
            min_own_points: 8,
            transfer_weighting: true,
            pretrain_steps: 300,
            after_calibration: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    critic: Critic,
    rng: ChaCha8Rng,
    seen: BTreeSet<Vec<u16>>,
    best: Option<f64>,
    #[serde(with = "crate::codec::f32s")]
    residuals: Vec<f32>,
    unfitted: usize,
    trusted: u64,
    audited: u64,
    /// The proposer's own state.
    inner: Vec<u8>,
}

/// A proposer with the critic's gate.
pub struct GatedStrategy {
    name: String,
    space: SearchSpace,
    config: GateConfig,
    inner: Box<dyn Strategy>,
    st: State,
    /// The transfer sources' models (rebuilt from the sources, not stored).
    weigher: Option<SourceWeigher>,
}

impl GatedStrategy {
    /// `inner` gated; `name` is the strategy's name (`evolution-gate`).
    pub fn new(
        name: &str,
        space: SearchSpace,
        inner: Box<dyn Strategy>,
        config: GateConfig,
        seed: u64,
    ) -> Self {
        let critic = Critic::new(&space, config.critic.clone(), seed ^ 0x6a7e);
        Self {
            name: name.into(),
            st: State {
                critic,
                rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6a7e_5eed),
                seen: BTreeSet::new(),
                best: None,
                residuals: Vec::new(),
                unfitted: 0,
                trusted: 0,
                audited: 0,
                inner: Vec::new(),
            },
            space,
            config,
            inner,
            weigher: None,
        }
    }

    /// Like [`GatedStrategy::new`], with the critic pre-trained (`pretrain_steps`) on
    /// earlier searches' points, one list per source (z-scored within it), as `fnas`
    /// does; invalid or non-finite points are skipped. The critic then scores from
    /// `min_own_points` of this task's points on, once `min_points` are known in all.
    pub fn with_transfer(
        name: &str,
        space: SearchSpace,
        inner: Box<dyn Strategy>,
        config: GateConfig,
        seed: u64,
        sources: &[SourcePoints],
    ) -> Self {
        let mut s = Self::new(name, space, inner, config, seed);
        for (k, points) in sources.iter().enumerate() {
            for (a, z) in points
                .iter()
                .filter(|(a, z)| z.is_finite() && s.space.is_valid(a))
            {
                s.st.critic.add_transferred_from(a, *z, k as u32);
            }
        }
        if s.st.critic.transferred_points() > 0 {
            s.st.critic.fit_steps(s.config.pretrain_steps);
            if s.config.transfer_weighting {
                s.weigher = Some(SourceWeigher::new(&s.space, sources, seed ^ 0x7a_5f));
            }
        }
        s
    }

    /// The current weight of each transfer source (empty without weighting).
    pub fn source_weights(&self) -> &[f64] {
        self.st.critic.source_weights()
    }

    fn usable(&self) -> bool {
        let c = &self.st.critic;
        let own = c.own_points();
        own >= self
            .config
            .min_own_points
            .clamp(1, self.config.min_points.max(1))
            && own + c.transferred_points() >= self.config.min_points.max(1)
    }
}

impl Strategy for GatedStrategy {
    fn name(&self) -> &str {
        &self.name
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("trusted", self.st.trusted), ("audited", self.st.audited)]
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError> {
        let mut props = self.inner.ask(n)?;
        if !self.usable() {
            return Ok(props);
        }
        let scale = calibration_scale(&self.st.residuals);
        let may_trust = !self.config.after_calibration || calibrated(&self.st.residuals);
        for p in &mut props {
            if self.st.seen.contains(&self.space.canonical(&p.arch).0) {
                continue;
            }
            let c = self.st.critic.predict(&p.arch);
            let (std, std_z) = (c.std * scale, c.std_z * scale);
            let mut trusted =
                may_trust && would_trust(c.mean, std, std_z, self.config.tau, self.st.best);
            if trusted && self.st.rng.random::<f64>() < self.config.audit {
                self.st.audited += 1;
                trusted = false;
            }
            self.st.trusted += u64::from(trusted);
            p.prediction = Some(Prediction {
                mean: c.mean,
                std,
                trusted,
            });
        }
        Ok(props)
    }

    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), StrategyError> {
        if self.usable() {
            let fresh =
                out_of_sample_residuals(&self.st.critic, &self.space, &self.st.seen, outcomes);
            self.st.residuals.extend(fresh);
        }
        let st = &mut self.st;
        st.unfitted += record_evaluated(
            &self.space,
            &mut st.seen,
            &mut st.best,
            Some(&mut st.critic),
            outcomes,
        );
        if self.st.unfitted >= 8 {
            if let Some(w) = &self.weigher {
                let weights = w.weights(&self.st.critic.own_data());
                self.st.critic.set_source_weights(weights);
            }
            self.st.critic.fit();
            self.st.unfitted = 0;
        }
        self.inner.tell(outcomes)
    }

    fn state(&self) -> Result<Vec<u8>, StrategyError> {
        let mut st = self.st.clone();
        st.inner = self.inner.state()?;
        serde_json::to_vec(&st)
            .map_err(|e| StrategyError::Other(format!("serialising {} state: {e}", self.name)))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        let st: State =
            serde_json::from_slice(state).map_err(|e| StrategyError::BadState(e.to_string()))?;
        if !st.critic.fits_space(&self.space) {
            return Err(StrategyError::BadState(format!(
                "{} state has a critic of another space than {}",
                self.name,
                self.space.name()
            )));
        }
        self.inner.restore(&st.inner)?;
        self.st = st;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fnas_core::strategy::{Evolution, EvolutionConfig};

    fn reward(a: &fnas_core::Architecture) -> f64 {
        0.5 + a
            .choices()
            .iter()
            .map(|&c| 0.01 * f64::from(c))
            .sum::<f64>()
    }

    fn run(s: &mut GatedStrategy, rounds: usize) -> (u64, Vec<Proposal>) {
        let mut all = Vec::new();
        for _ in 0..rounds {
            let props = s.ask(8).unwrap();
            let outs: Vec<Outcome> = props
                .iter()
                .map(|p| {
                    let trusted = p.prediction.is_some_and(|q| q.trusted);
                    Outcome {
                        arch: p.arch.clone(),
                        reward: Some(match p.prediction {
                            Some(q) if trusted => q.mean,
                            _ => reward(&p.arch),
                        }),
                        log_prob: None,
                        evaluated: !trusted,
                    }
                })
                .collect();
            s.tell(&outs).unwrap();
            all.extend(props);
        }
        (s.st.trusted, all)
    }

    fn gated(seed: u64) -> GatedStrategy {
        let space = SearchSpace::nas_bench_201();
        let evo = Evolution::new(space.clone(), EvolutionConfig::default(), seed);
        GatedStrategy::new(
            "evolution-gate",
            space,
            Box::new(evo),
            GateConfig::default(),
            seed,
        )
    }

    #[test]
    fn evolution_with_the_gate_trusts_some_and_restores_exactly() {
        let mut a = gated(2);
        let (trusted, props) = run(&mut a, 30);
        assert!(trusted > 0, "nothing trusted");
        // nothing is scored before the critic has its points
        assert!(props[..32].iter().all(|p| p.prediction.is_none()));
        let saved = a.state().unwrap();
        let (_, next_a) = run(&mut a, 3);
        let mut b = gated(99);
        b.restore(&saved).unwrap();
        let (_, next_b) = run(&mut b, 3);
        assert_eq!(next_a, next_b);
    }

    #[test]
    fn evolution_with_the_gate_takes_transfer_and_weighs_its_sources() {
        use rand::SeedableRng;
        let space = SearchSpace::nas_bench_201();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let source = |sign: f64, rng: &mut ChaCha8Rng| -> SourcePoints {
            let archs: Vec<_> = (0..200).map(|_| space.sample(rng)).collect();
            let raw: Vec<f64> = archs.iter().map(|a| sign * reward(a)).collect();
            archs
                .into_iter()
                .zip(crate::critic::zscores(&raw))
                .collect()
        };
        let sources = vec![source(1.0, &mut rng), source(-1.0, &mut rng)];
        let evo = Evolution::new(space.clone(), EvolutionConfig::default(), 1);
        let cfg = GateConfig::default();
        let mut g =
            GatedStrategy::with_transfer("evolution-gate", space, Box::new(evo), cfg, 1, &sources);
        let (_, props) = run(&mut g, 4);
        // usable after 8 own points instead of 32: the second batch is scored
        assert!(props[..8].iter().all(|p| p.prediction.is_none()));
        assert!(props[8..16].iter().any(|p| p.prediction.is_some()));
        let w = g.source_weights();
        assert!(w.len() == 2 && w[0] == 1.0 && w[1] == 0.0, "weights {w:?}");
    }
}
