//! Real child training: an architecture of the MNAS space becomes a burn network
//! ([`plan`] describes it layer by layer, [`net`] builds it), is trained on a proxy task
//! ([`task`] draws the seeded data splits from IDX files read by [`idx`], [`train`] runs
//! the recipe) and measured ([`latency`], FLOPs and params from [`plan`]).

pub mod evaluator;
pub mod idx;
pub mod latency;
pub mod net;
pub mod plan;
pub mod task;
pub mod train;

pub use evaluator::{TrainingEvaluator, TrainingSettings};
