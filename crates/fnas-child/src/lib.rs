//! Real child training: an architecture of the MNAS space becomes a burn network
//! ([`plan`] describes it layer by layer, [`net`] builds it), is trained on a proxy task
//! ([`task`] draws the seeded data splits from IDX files read by [`idx`] or image folders read by [`folder`], [`train`] runs
//! the recipe) and measured ([`latency`], FLOPs and params from [`plan`]). [`warm`]
//! initialises a child from the knowledge pool, adapting stored weights with the rules of
//! [`transfer`], and splits a trained child into pool entries; [`pool`] holds the policy
//! a search records for the pool and the figures each trained child reports. [`command`]
//! trains children with the user's own script instead (a trial folder per child).

// A panic on input is a bug: library code returns errors; a justified exception says why
// it cannot fail, next to an `allow`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod command;
pub mod evaluator;
pub mod export;
pub mod folder;
#[cfg(test)]
mod fuzz;
pub mod idx;
pub mod kernels;
pub mod latency;
pub mod net;
pub mod plan;
pub mod pool;
pub mod task;
pub mod train;
pub mod transfer;
pub mod warm;

pub use evaluator::{TrainingEvaluator, TrainingSettings};
pub use pool::{PoolFigures, PoolPolicy};
