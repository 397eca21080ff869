//! The predictor interface of the critic: fit on evaluated points, predict a mean and an
//! uncertainty (the shape of Archai's `Predictor.fit/predict -> MeanVar`). Strategies
//! that choose or filter with a critic talk to this, not to one model.

use fnas_core::space::Features;

/// A prediction in the units of the targets the predictor was fitted on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanStd {
    pub mean: f64,
    /// The spread of the prediction (for an ensemble: of its members' predictions).
    pub std: f64,
}

/// A model of the reward over sparse architecture features.
pub trait Predictor: Send {
    /// Fits on `xs` with targets `ys` (same length), replacing any earlier fit.
    fn fit(&mut self, xs: &[Features], ys: &[f64]);
    /// The prediction for `x`; before any fit, mean 0 and std 1 (know nothing).
    fn predict(&self, x: &Features) -> MeanStd;
}
