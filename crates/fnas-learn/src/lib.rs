//! The learned parts of fnas on burn: the LSTM controller trained with PPO
//! ([`ppo::PpoController`], strategy `ppo`), the MnasNet-style RL baseline; the
//! deep-ensemble critic ([`critic::Critic`]); and the FNAS strategy built from them
//! ([`fnas::FnasStrategy`], strategy `fnas`); and critic-chosen proposals
//! ([`select::SelectStrategy`], strategy `fnas-select`) behind the [`predictor::Predictor`]
//! interface.

// A panic on input is a bug: library code returns errors; a justified exception says why
// it cannot fail, next to an `allow`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod acquisition;
pub mod calibration;
mod codec;
pub mod critic;
pub mod fnas;
pub mod gate;
pub mod normal;
mod policy;
mod policy_grad;
pub mod ppo;
pub mod predictor;
pub mod replay;
pub mod ridge;
pub mod screen;
pub mod select;
pub mod transfer;

pub use fnas::{FnasConfig, FnasStrategy};
pub use ppo::{PpoConfig, PpoController};
pub use select::{SelectConfig, SelectStrategy};

/// The device the learned parts compute on: CUDA GPU 0 with the `cuda` feature,
/// otherwise burn's flex CPU backend.
pub fn device() -> burn::prelude::Device {
    #[cfg(feature = "cuda")]
    {
        burn::prelude::Device::cuda(0)
    }
    #[cfg(not(feature = "cuda"))]
    {
        burn::prelude::Device::flex()
    }
}

#[cfg(test)]
mod tests;
