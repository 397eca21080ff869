//! Online calibration of the critic's std: every reported and gated std is the raw
//! ensemble std times a scale fitted on this search's own out-of-sample errors, so a
//! "±2 std" means what it says. Shared by `fnas` and every gated proposer.

use std::collections::BTreeSet;

use fnas_core::strategy::Outcome;
use fnas_core::SearchSpace;

use crate::critic::Critic;

/// Residuals a calibration scale needs before it replaces 1.
pub const CALIBRATION_MIN_RESIDUALS: usize = 16;

/// Whether `residuals` hold enough finite errors for [`calibration_scale`] to be fitted.
pub fn calibrated(residuals: &[f32]) -> bool {
    residuals.iter().filter(|x| x.is_finite()).count() >= CALIBRATION_MIN_RESIDUALS
}

/// The online calibration scale of the critic's std: with `residuals` the standardised
/// out-of-sample errors `|R - mean| / std` of this search's evaluated predictions so far,
/// `s = q95(residuals) / 1.96`, clamped to `[0.5, 20]` (1 with fewer than
/// [`CALIBRATION_MIN_RESIDUALS`]). A Gaussian with the right std gives `s = 1`; the raw
/// ensemble's +-2 std covered only 78-92% of the truths on NAS-Bench-Graph (it is
/// over-confident), which is what the scale corrects (split-conformal style, but online:
/// each prediction uses only errors measured before it).
pub fn calibration_scale(residuals: &[f32]) -> f64 {
    let mut r: Vec<f32> = residuals
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if !calibrated(&r) {
        return 1.0;
    }
    r.sort_by(f32::total_cmp);
    let i = ((r.len() as f64 * 0.95).ceil() as usize).clamp(1, r.len()) - 1;
    (f64::from(r[i]) / 1.96).clamp(0.5, 20.0)
}

/// The standardised errors `|R - mean| / std_raw` of the evaluated outcomes whose
/// canonical architecture is new to this search (not in `seen`, first in the batch) and
/// whose reward is finite. Called before the points are added, so each error is out of
/// sample.
pub(crate) fn out_of_sample_residuals(
    critic: &Critic,
    space: &SearchSpace,
    seen: &BTreeSet<Vec<u16>>,
    outcomes: &[Outcome],
) -> Vec<f32> {
    let mut fresh = Vec::new();
    let mut batch = BTreeSet::new();
    for o in outcomes.iter().filter(|o| o.evaluated) {
        let key = space.canonical(&o.arch).0;
        if seen.contains(&key) || !batch.insert(key) {
            continue;
        }
        let Some(r) = o.reward.filter(|r| r.is_finite()) else {
            continue;
        };
        let p = critic.predict(&o.arch);
        if p.std > 0.0 {
            fresh.push(((r - p.mean).abs() / p.std) as f32);
        }
    }
    fresh
}
