//! One entry point per convolution direction: picks the kernel for the shape.

use crate::geom::{ConvGeom, KernelError};
use crate::{dense, depthwise};

/// `y = conv(x, w)`.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    if g.is_depthwise() {
        return depthwise::forward(g, x, w, y);
    }
    dense::forward(g, x, w, y)
}

/// The gradient of the input.
pub fn backward_input(
    g: &ConvGeom,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
) -> Result<(), KernelError> {
    if g.is_depthwise() {
        return depthwise::backward_input(g, dy, w, dx);
    }
    dense::backward_input(g, dy, w, dx)
}

/// The gradient of the weight.
pub fn backward_weight(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> Result<(), KernelError> {
    if g.is_depthwise() {
        return depthwise::backward_weight(g, x, dy, dw);
    }
    dense::backward_weight(g, x, dy, dw)
}
