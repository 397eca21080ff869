//! Regularized evolution (Real et al., 2019): tournament selection, one-decision
//! mutation, and removal of the oldest member (aging).

use std::collections::VecDeque;

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{from_state, to_state, Outcome, Proposal, Strategy, StrategyError};
use crate::{Architecture, SearchSpace};

/// Population and tournament sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvolutionConfig {
    /// Members kept alive; the first `population` proposals are random.
    pub population: usize,
    /// Members drawn per tournament; the best becomes the parent.
    pub sample: usize,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        Self {
            population: 50,
            sample: 10,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    rng: ChaCha8Rng,
    /// Oldest first.
    population: VecDeque<(Architecture, f64)>,
    /// Proposals handed out so far (the first `population` are random).
    proposed: usize,
}

/// Regularized evolution over any [`SearchSpace`].
pub struct Evolution {
    space: SearchSpace,
    config: EvolutionConfig,
    st: State,
}

impl Evolution {
    pub fn new(space: SearchSpace, config: EvolutionConfig, seed: u64) -> Self {
        Self {
            space,
            config,
            st: State {
                rng: ChaCha8Rng::seed_from_u64(seed),
                population: VecDeque::new(),
                proposed: 0,
            },
        }
    }

    /// Changes one decision to a different choice, keeping the architecture valid.
    fn mutate(&mut self, parent: &Architecture) -> Architecture {
        let d = self.space.decisions();
        let mutable: Vec<usize> = (0..d.len()).filter(|&i| d[i].choices.len() > 1).collect();
        if mutable.is_empty() {
            return parent.clone();
        }
        loop {
            let i = mutable[self.st.rng.random_range(0..mutable.len())];
            let n = d[i].choices.len() as u16;
            let mut child = parent.clone();
            let shift = self.st.rng.random_range(1..n);
            child.0[i] = (parent.0[i] + shift) % n;
            if self.space.is_valid(&child) {
                return child;
            }
        }
    }
}

impl Strategy for Evolution {
    fn name(&self) -> &str {
        "evolution"
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let arch = if self.st.proposed < self.config.population || self.st.population.is_empty()
            {
                self.space.sample(&mut self.st.rng)
            } else {
                let pop = &self.st.population;
                let k = self.config.sample.clamp(1, pop.len());
                let parent = sample(&mut self.st.rng, pop.len(), k)
                    .iter()
                    .map(|i| &pop[i])
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|m| m.0.clone())
                    .unwrap_or_else(|| pop[0].0.clone());
                self.mutate(&parent)
            };
            self.st.proposed += 1;
            out.push(Proposal {
                arch,
                log_prob: None,
                prediction: None,
            });
        }
        Ok(out)
    }

    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), StrategyError> {
        for o in outcomes {
            // a non-finite reward never enters the population (it would win every
            // tournament as NaN does in `max_by`, or poison the comparison)
            if let Some(r) = o.reward.filter(|r| r.is_finite()) {
                self.st.population.push_back((o.arch.clone(), r));
                while self.st.population.len() > self.config.population {
                    self.st.population.pop_front();
                }
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<u8>, StrategyError> {
        to_state(&self.st)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        self.st = from_state(state)?;
        Ok(())
    }

    /// Regularized evolution samples parents from whatever population it has, as in
    /// its asynchronous original (Real et al.).
    fn asynchronous(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(a: &Architecture) -> f64 {
        a.0.iter().map(|&c| f64::from(c)).sum()
    }

    #[test]
    fn evolution_climbs_a_simple_objective_and_beats_its_random_start() {
        let space = SearchSpace::nas_bench_201();
        let mut evo = Evolution::new(
            space,
            EvolutionConfig {
                population: 20,
                sample: 5,
            },
            1,
        );
        let mut first = Vec::new();
        let mut best = 0.0f64;
        for step in 0..60 {
            let props = evo.ask(5).unwrap();
            let outs: Vec<Outcome> = props
                .iter()
                .map(|p| Outcome {
                    arch: p.arch.clone(),
                    reward: Some(score(&p.arch)),
                    log_prob: None,
                    evaluated: true,
                })
                .collect();
            if step < 4 {
                first.extend(outs.iter().map(|o| o.reward.unwrap()));
            }
            best = outs.iter().fold(best, |b, o| b.max(o.reward.unwrap()));
            evo.tell(&outs).unwrap();
        }
        let first_best = first.iter().cloned().fold(0.0, f64::max);
        assert!(
            best > first_best,
            "best {best} vs random start {first_best}"
        );
        assert_eq!(best, 24.0, "all edges at the highest op index");
    }

    #[test]
    fn restore_continues_the_same_sequence() {
        let space = SearchSpace::nas_bench_201();
        let mut a = Evolution::new(
            space.clone(),
            EvolutionConfig {
                population: 4,
                sample: 2,
            },
            9,
        );
        let run = |e: &mut Evolution| {
            let p = e.ask(3).unwrap();
            let o: Vec<Outcome> = p
                .iter()
                .map(|p| Outcome {
                    arch: p.arch.clone(),
                    reward: Some(score(&p.arch)),
                    log_prob: None,
                    evaluated: true,
                })
                .collect();
            e.tell(&o).unwrap();
            p
        };
        for _ in 0..3 {
            run(&mut a);
        }
        let saved = a.state().unwrap();
        let next_a: Vec<_> = (0..3).map(|_| run(&mut a)).collect();
        let mut b = Evolution::new(
            space,
            EvolutionConfig {
                population: 4,
                sample: 2,
            },
            0,
        );
        b.restore(&saved).unwrap();
        let next_b: Vec<_> = (0..3).map(|_| run(&mut b)).collect();
        assert_eq!(next_a, next_b);
    }
}
