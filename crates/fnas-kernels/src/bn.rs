//! BatchNorm on NCHW `f32` slices: training (batch statistics, biased variance) forward
//! and backward, the same with a fused ReLU, and inference with given statistics.
//!
//! Training kernels run one rayon task per channel, and each task does all of its
//! channel's passes back to back: the statistics pass (or the gradient-sum pass) and the
//! output pass. A channel of a typical child activation (64 x 28 x 28 values, 200 KB)
//! stays in L2 between the two, so `x` comes from memory once. The channel's output
//! chunks are not contiguous in NCHW; `by_channel` hands each task its own chunks
//! (plain `chunks_mut`, no unsafe).
//!
//! Sums: within one `(sample, channel)` chunk in 32 `f32` lanes (vectorised), across
//! chunks in `f64`. The statistics use one pass over values shifted by `K`, the mean of
//! the channel's first chunk, so `E[(x-K)^2] - E[x-K]^2` does not cancel when the mean
//! is large compared with the standard deviation (tested with mean/std up to 5e4).

use rayon::prelude::*;

use crate::depthwise::Isa;
use crate::geom::KernelError;
use crate::reference::BnGeom;

/// Lanes of the partial sums: two AVX-512 registers per sum, so the additions form
/// independent chains instead of one latency-bound chain.
const LANES: usize = 32;

/// Splits an activation-shaped buffer into its `channels` groups of `batch` chunks of
/// `hw` values (channel `ch` of sample `n` is `buf[(n * C + ch) * hw..][..hw]`).
fn by_channel<'a>(g: &BnGeom, buf: &'a mut [f32]) -> Vec<Vec<&'a mut [f32]>> {
    let mut groups: Vec<Vec<&mut [f32]>> = (0..g.channels)
        .map(|_| Vec::with_capacity(g.batch))
        .collect();
    for (i, chunk) in buf.chunks_exact_mut(g.hw).enumerate() {
        groups[i % g.channels].push(chunk);
    }
    groups
}

/// The `hw` values of channel `ch` of sample `n`.
#[inline(always)]
fn chunk<'a>(g: &BnGeom, buf: &'a [f32], n: usize, ch: usize) -> &'a [f32] {
    &buf[(n * g.channels + ch) * g.hw..][..g.hw]
}

/// `(sum(x - k), sum((x - k)^2))` over one chunk.
#[inline(always)]
fn shifted_sums(x: &[f32], k: f32) -> (f64, f64) {
    let (mut s, mut q) = ([0f32; LANES], [0f32; LANES]);
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            let d = c[l] - k;
            s[l] += d;
            q[l] += d * d;
        }
    }
    let (mut s64, mut q64) = (0f64, 0f64);
    for &v in it.remainder() {
        let d = f64::from(v - k);
        s64 += d;
        q64 += d * d;
    }
    for l in 0..LANES {
        s64 += f64::from(s[l]);
        q64 += f64::from(q[l]);
    }
    (s64, q64)
}

/// `dy` where the ReLU output `y` is positive, else 0. Branch-free (a bit mask):
/// about half the outputs of a ReLU are zero in no predictable pattern, and a branch
/// mispredicted on every other value made the ReLU backward 5x slower.
#[inline(always)]
fn relu_grad(dy: f32, y: f32) -> f32 {
    f32::from_bits(dy.to_bits() & u32::from(y > 0.0).wrapping_neg())
}

/// `(sum(dy'), sum(dy' * (x - mu)))` over one chunk, where `dy' = dy` or, with `y`
/// given, `dy` masked to where `y > 0` (the ReLU gradient).
#[inline(always)]
fn grad_sums(x: &[f32], dy: &[f32], y: Option<&[f32]>, mu: f32) -> (f64, f64) {
    let (mut s, mut q) = ([0f32; LANES], [0f32; LANES]);
    let mut s64 = 0f64;
    let mut q64 = 0f64;
    match y {
        None => {
            let mut xi = x.chunks_exact(LANES);
            let mut gi = dy.chunks_exact(LANES);
            for (xc, gc) in (&mut xi).zip(&mut gi) {
                for l in 0..LANES {
                    s[l] += gc[l];
                    q[l] += gc[l] * (xc[l] - mu);
                }
            }
            for (&xv, &gv) in xi.remainder().iter().zip(gi.remainder()) {
                s64 += f64::from(gv);
                q64 += f64::from(gv) * f64::from(xv - mu);
            }
        }
        Some(y) => {
            let mut xi = x.chunks_exact(LANES);
            let mut gi = dy.chunks_exact(LANES);
            let mut yi = y.chunks_exact(LANES);
            for ((xc, gc), yc) in (&mut xi).zip(&mut gi).zip(&mut yi) {
                for l in 0..LANES {
                    let gv = relu_grad(gc[l], yc[l]);
                    s[l] += gv;
                    q[l] += gv * (xc[l] - mu);
                }
            }
            for ((&xv, &gv), &yv) in xi
                .remainder()
                .iter()
                .zip(gi.remainder())
                .zip(yi.remainder())
            {
                let gv = relu_grad(gv, yv);
                s64 += f64::from(gv);
                q64 += f64::from(gv) * f64::from(xv - mu);
            }
        }
    }
    for l in 0..LANES {
        s64 += f64::from(s[l]);
        q64 += f64::from(q[l]);
    }
    (s64, q64)
}

/// `y = ((x - mu_hi) - mu_lo) * a + b`, optionally through a ReLU. The mean is split
/// into an `f32` pair so `x - mean` keeps its precision when the mean is large.
#[inline(always)]
fn affine<const RELU: bool>(x: &[f32], y: &mut [f32], mu_hi: f32, mu_lo: f32, a: f32, b: f32) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        let v = ((xv - mu_hi) - mu_lo) * a + b;
        *yv = if RELU { v.max(0.0) } else { v };
    }
}

#[allow(clippy::too_many_arguments)]
fn train_forward_impl<const RELU: bool>(
    g: &BnGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    y: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
    isa: Isa,
) -> Result<(), KernelError> {
    let (len, c) = (g.len(), g.channels);
    g.check_buffers(&[
        ("x", x.len(), len),
        ("y", y.len(), len),
        ("gamma", gamma.len(), c),
        ("beta", beta.len(), c),
        ("mean", mean.len(), c),
        ("var", var.len(), c),
    ])?;
    let m = (g.batch * g.hw) as f64;
    by_channel(g, y)
        .into_par_iter()
        .zip(mean.par_iter_mut())
        .zip(var.par_iter_mut())
        .enumerate()
        .for_each(|(ch, ((ys, mean_c), var_c))| {
            isa.run(
                #[inline(always)]
                || {
                    // The shift: the mean of the first sample's values, within a few
                    // standard deviations of the batch mean for any sane activation (a
                    // single value could be an outlier), for 1/batch of an extra pass.
                    let first = chunk(g, x, 0, ch);
                    let k = (shifted_sums(first, 0.0).0 / g.hw as f64) as f32;
                    let (mut s, mut q) = (0f64, 0f64);
                    for n in 0..g.batch {
                        let (a, b) = shifted_sums(chunk(g, x, n, ch), k);
                        s += a;
                        q += b;
                    }
                    let ds = s / m;
                    let mu = f64::from(k) + ds;
                    let v = (q / m - ds * ds).max(0.0);
                    let inv = 1.0 / (v + eps).sqrt();
                    let a = (f64::from(gamma[ch]) * inv) as f32;
                    let mu_hi = mu as f32;
                    let mu_lo = (mu - f64::from(mu_hi)) as f32;
                    for (n, yc) in ys.into_iter().enumerate() {
                        affine::<RELU>(chunk(g, x, n, ch), yc, mu_hi, mu_lo, a, beta[ch]);
                    }
                    *mean_c = mu as f32;
                    *var_c = v as f32;
                },
            )
        });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn train_backward_impl(
    g: &BnGeom,
    x: &[f32],
    y: Option<&[f32]>,
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    isa: Isa,
) -> Result<(), KernelError> {
    let m = (g.batch * g.hw) as f64;
    by_channel(g, dx)
        .into_par_iter()
        .zip(dgamma.par_iter_mut())
        .zip(dbeta.par_iter_mut())
        .enumerate()
        .for_each(|(ch, ((dxs, dgamma_c), dbeta_c))| {
            isa.run(
                #[inline(always)]
                || {
                    let inv = 1.0 / (f64::from(var[ch]) + eps).sqrt();
                    let mu = mean[ch];
                    let (mut sdy, mut sdyx) = (0f64, 0f64);
                    for n in 0..g.batch {
                        let yc = y.map(|y| chunk(g, y, n, ch));
                        let (a, b) = grad_sums(chunk(g, x, n, ch), chunk(g, dy, n, ch), yc, mu);
                        sdy += a;
                        sdyx += b;
                    }
                    // dgamma = sum(dy * xhat); dx = gamma * inv / m * (m dy - sdy - xhat dgamma)
                    //        = A dy + B (x - mu) + C.
                    let dg = sdyx * inv;
                    let gi = f64::from(gamma[ch]) * inv;
                    let a = gi as f32;
                    let b = (-gi * inv * dg / m) as f32;
                    let c = (-gi * sdy / m) as f32;
                    for (n, dxc) in dxs.into_iter().enumerate() {
                        let xc = chunk(g, x, n, ch);
                        let dyc = chunk(g, dy, n, ch);
                        match y {
                            None => {
                                for ((d, &gv), &xv) in dxc.iter_mut().zip(dyc).zip(xc) {
                                    *d = a * gv + b * (xv - mu) + c;
                                }
                            }
                            Some(y) => {
                                let yc = chunk(g, y, n, ch);
                                for (((d, &gv), &xv), &yv) in
                                    dxc.iter_mut().zip(dyc).zip(xc).zip(yc)
                                {
                                    let gv = relu_grad(gv, yv);
                                    *d = a * gv + b * (xv - mu) + c;
                                }
                            }
                        }
                    }
                    *dgamma_c = dg as f32;
                    *dbeta_c = sdy as f32;
                },
            )
        });
    Ok(())
}

/// Training BatchNorm; same contract as [`crate::reference::bn_train_forward`]: batch
/// mean and biased variance per channel into `mean`/`var`,
/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`.
#[allow(clippy::too_many_arguments)]
pub fn train_forward(
    g: &BnGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    y: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
) -> Result<(), KernelError> {
    train_forward_impl::<false>(g, x, gamma, beta, eps, y, mean, var, Isa::detect())
}

/// [`train_forward`] followed by a ReLU, in the same pass: `y = max(0, bn(x))`.
#[allow(clippy::too_many_arguments)]
pub fn train_forward_relu(
    g: &BnGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    y: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
) -> Result<(), KernelError> {
    train_forward_impl::<true>(g, x, gamma, beta, eps, y, mean, var, Isa::detect())
}

/// Gradients of [`train_forward`]; same contract as
/// [`crate::reference::bn_train_backward`].
#[allow(clippy::too_many_arguments)]
pub fn train_backward(
    g: &BnGeom,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Result<(), KernelError> {
    g.check_backward(x, dy, gamma, mean, var, dx, dgamma, dbeta)?;
    train_backward_impl(
        g,
        x,
        None,
        dy,
        gamma,
        mean,
        var,
        eps,
        dx,
        dgamma,
        dbeta,
        Isa::detect(),
    )
}

/// Gradients of [`train_forward_relu`]: `dy` is masked to where the output
/// `y_after_relu` is positive (the ReLU's gradient), then goes through the BatchNorm
/// backward, without materialising the masked gradient.
#[allow(clippy::too_many_arguments)]
pub fn train_backward_relu(
    g: &BnGeom,
    x: &[f32],
    y_after_relu: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Result<(), KernelError> {
    g.check_backward(x, dy, gamma, mean, var, dx, dgamma, dbeta)?;
    g.check_buffers(&[("y_after_relu", y_after_relu.len(), g.len())])?;
    train_backward_impl(
        g,
        x,
        Some(y_after_relu),
        dy,
        gamma,
        mean,
        var,
        eps,
        dx,
        dgamma,
        dbeta,
        Isa::detect(),
    )
}

/// Inference BatchNorm with given (running) statistics:
/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`. One pass, parallel over
/// `(sample, channel)` chunks.
#[allow(clippy::too_many_arguments)]
pub fn inference_forward(
    g: &BnGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    y: &mut [f32],
) -> Result<(), KernelError> {
    let (len, c) = (g.len(), g.channels);
    g.check_buffers(&[
        ("x", x.len(), len),
        ("y", y.len(), len),
        ("gamma", gamma.len(), c),
        ("beta", beta.len(), c),
        ("mean", mean.len(), c),
        ("var", var.len(), c),
    ])?;
    let coef: Vec<f32> = (0..c)
        .map(|ch| (f64::from(gamma[ch]) / (f64::from(var[ch]) + eps).sqrt()) as f32)
        .collect();
    let isa = Isa::detect();
    y.par_chunks_mut(g.hw)
        .zip(x.par_chunks(g.hw))
        .enumerate()
        .with_min_len((8192 / g.hw).max(1))
        .for_each(|(i, (yc, xc))| {
            let ch = i % c;
            isa.run(
                #[inline(always)]
                || affine::<false>(xc, yc, mean[ch], 0.0, coef[ch], beta[ch]),
            );
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set this CPU has gives the same bits as the baseline build
    /// (the public functions only ever run the widest one).
    #[test]
    fn instruction_sets_agree() {
        let mut isas = vec![Isa::Base];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                isas.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                isas.push(Isa::Avx512);
            }
        }
        let g = BnGeom {
            batch: 3,
            channels: 5,
            hw: 77,
        };
        let val = |n: usize, m: usize| -> Vec<f32> {
            (0..n).map(|i| ((i * m % 23) as f32 - 11.0) / 7.0).collect()
        };
        let (x, dy) = (val(g.len(), 7), val(g.len(), 5));
        let (gamma, beta) = (val(5, 3), val(5, 2));
        let run = |isa| {
            let mut out = Vec::new();
            for relu in [false, true] {
                let (mut y, mut mean, mut var) = (vec![0.0; g.len()], [0.0; 5], [0.0; 5]);
                if relu {
                    train_forward_impl::<true>(
                        &g, &x, &gamma, &beta, 1e-5, &mut y, &mut mean, &mut var, isa,
                    )
                    .unwrap();
                } else {
                    train_forward_impl::<false>(
                        &g, &x, &gamma, &beta, 1e-5, &mut y, &mut mean, &mut var, isa,
                    )
                    .unwrap();
                }
                let (mut dx, mut dg, mut db) = (vec![0.0; g.len()], [0.0; 5], [0.0; 5]);
                let yr = relu.then_some(y.as_slice());
                train_backward_impl(
                    &g, &x, yr, &dy, &gamma, &mean, &var, 1e-5, &mut dx, &mut dg, &mut db, isa,
                )
                .unwrap();
                out.push((y.clone(), mean, var, dx, dg, db));
            }
            out
        };
        let base = run(Isa::Base);
        for &isa in &isas[1..] {
            assert_eq!(run(isa), base, "{isa:?}");
        }
    }
}
