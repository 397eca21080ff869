//! Core of fnas: search spaces as data, architectures, the multi-objective reward,
//! the traits every strategy/evaluator/store implements, the classic strategies
//! (random search, regularized evolution) and the search loop.
//!
//! Nothing here depends on an ML framework, so the loop and the spaces can be read and
//! tested on their own.

// A panic on input is a bug: library code returns errors; a justified exception says why
// it cannot fail, next to an `allow`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod arch;
pub mod crash;
pub mod eval;
pub mod names;
pub mod pool;
pub mod reward;
pub mod search;
pub mod space;
pub mod store;
pub mod strategy;

pub use arch::Architecture;
pub use eval::{Cost, EvalError, Evaluation, Evaluator, Metrics};
pub use reward::{Objective, RewardConfig};
pub use space::{Decision, SearchSpace, SpaceError};
pub use store::{Store, StoreError};
pub use strategy::{Outcome, Prediction, Proposal, Strategy, StrategyError};
