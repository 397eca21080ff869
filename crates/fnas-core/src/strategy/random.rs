//! Uniform random search: the baseline every other strategy must beat.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{from_state, to_state, Outcome, Proposal, Strategy, StrategyError};
use crate::SearchSpace;

/// Samples architectures uniformly over the space's valid raw specs.
pub struct RandomSearch {
    space: SearchSpace,
    rng: ChaCha8Rng,
}

impl RandomSearch {
    pub fn new(space: SearchSpace, seed: u64) -> Self {
        Self {
            space,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Strategy for RandomSearch {
    fn name(&self) -> &str {
        "random"
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError> {
        Ok((0..n)
            .map(|_| Proposal {
                arch: self.space.sample(&mut self.rng),
                log_prob: None,
                prediction: None,
            })
            .collect())
    }

    fn tell(&mut self, _outcomes: &[Outcome]) -> Result<(), StrategyError> {
        Ok(())
    }

    fn state(&self) -> Result<Vec<u8>, StrategyError> {
        to_state(&self.rng)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        self.rng = from_state(state)?;
        Ok(())
    }

    /// Random proposals never depend on results.
    fn asynchronous(&self) -> bool {
        true
    }
}
