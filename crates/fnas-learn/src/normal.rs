//! The standard normal distribution's few functions the acquisitions and the rank
//! transform need (no statistics crate for four formulas).

use rand::Rng;

/// Density of N(0, 1).
pub fn pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Distribution function of N(0, 1) (W. J. Cody's erfc via a rational fit; absolute
/// error below 1e-7, far below what a ranking can see).
pub fn cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    // Numerical Recipes' erfcc: fractional error < 1.2e-7 everywhere
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Quantile function of N(0, 1) (Acklam's rational approximation, relative error
/// below 1.2e-9); `p` is clamped into (0, 1).
pub fn quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// One N(0, 1) draw (Box-Muller, one of the pair).
pub fn draw<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Normal scores of `ys`: each value's mid-rank `r` (ties share the mean rank) mapped
/// to `quantile((r - 0.5) / n)`. Order-preserving, scale-free, and it spreads the top of
/// a long-tailed accuracy distribution as much as the middle.
pub fn normal_scores(ys: &[f64]) -> Vec<f64> {
    let n = ys.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| ys[a].total_cmp(&ys[b]));
    let mut out = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && ys[idx[j + 1]] == ys[idx[i]] {
            j += 1;
        }
        // ranks i+1..=j+1 share their mean
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let z = quantile((rank - 0.5) / n as f64);
        for &k in &idx[i..=j] {
            out[k] = z;
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_and_quantile_agree_with_known_values() {
        assert!((cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((cdf(1.959_963_985) - 0.975).abs() < 1e-6);
        assert!((quantile(0.975) - 1.959_963_985).abs() < 1e-6);
        for p in [0.001, 0.02, 0.3, 0.5, 0.9, 0.999] {
            assert!((cdf(quantile(p)) - p).abs() < 1e-6, "{p}");
        }
    }

    #[test]
    fn normal_scores_keep_order_and_share_ties() {
        let z = normal_scores(&[0.3, 0.9, 0.5, 0.5]);
        assert!(z[0] < z[2] && z[2] < z[1]);
        assert_eq!(z[2], z[3]);
        assert!((z.iter().sum::<f64>()).abs() < 1e-9);
    }
}
