//! CPU kernels for the layers fnas children are made of, on contiguous NCHW `f32` slices:
//! dense convolution ([`dense`]), depthwise convolution ([`depthwise`]) and BatchNorm with
//! batch statistics ([`bn`]), each forward and backward. No tensor library: `fnas-child`
//! plugs them into burn as custom operations with their own backward. [`reference`] holds
//! the plain loops every kernel is tested against.
//!
//! Every function overwrites its outputs (it never accumulates into them) and
//! parallelises with rayon on the pool it is called from, so a child trained on a pool of
//! one thread stays on one thread.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bn;
pub mod conv;
pub mod dense;
pub mod depthwise;
mod direct;
mod geom;
pub mod reference;

pub use reference::BnGeom;

pub use geom::{ConvGeom, KernelError};
