//! Plain loops, one output value at a time: the definitions the fast kernels are tested
//! against. Slow on purpose; nothing in training calls them.

use crate::geom::{ConvGeom, KernelError};

/// Calls `f(n, co, oy, ox, ci, ky, kx, x_index, w_index)` for every product term of the
/// convolution whose input position lies inside the image (padding contributes zero).
fn for_each_term(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let cpg = g.cin / g.groups;
    let opg = g.cout / g.groups;
    for n in 0..g.batch {
        for co in 0..g.cout {
            let grp = co / opg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let y_i = ((n * g.cout + co) * oh + oy) * ow + ox;
                    for cl in 0..cpg {
                        let ci = grp * cpg + cl;
                        for ky in 0..g.kernel {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            for kx in 0..g.kernel {
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                if ix < 0 || ix >= g.w as isize {
                                    continue;
                                }
                                let x_i =
                                    ((n * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize;
                                let w_i = ((co * cpg + cl) * g.kernel + ky) * g.kernel + kx;
                                f(y_i, x_i, w_i);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y = conv(x, w)`.
pub fn conv_forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    g.check_forward(x, w, y)?;
    y.fill(0.0);
    for_each_term(g, |yi, xi, wi| y[yi] += x[xi] * w[wi]);
    Ok(())
}

/// `dx = d(sum(dy * conv(x, w))) / dx`.
pub fn conv_backward_input(
    g: &ConvGeom,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
) -> Result<(), KernelError> {
    g.check_backward_input(dy, w, dx)?;
    dx.fill(0.0);
    for_each_term(g, |yi, xi, wi| dx[xi] += dy[yi] * w[wi]);
    Ok(())
}

/// `dw = d(sum(dy * conv(x, w))) / dw`.
pub fn conv_backward_weight(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> Result<(), KernelError> {
    g.check_backward_weight(x, dy, dw)?;
    let mut acc = vec![0f64; dw.len()];
    for_each_term(g, |yi, xi, wi| {
        acc[wi] += f64::from(dy[yi]) * f64::from(x[xi])
    });
    for (d, a) in dw.iter_mut().zip(acc) {
        *d = a as f32;
    }
    Ok(())
}

/// The `[batch, channels, hw]` sizes of a BatchNorm input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnGeom {
    pub batch: usize,
    pub channels: usize,
    /// Spatial positions per channel (height x width).
    pub hw: usize,
}

impl BnGeom {
    /// Values in the input.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.hw
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`BnGeom::check_buffers`] for the BatchNorm backward's common buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn check_backward(
        &self,
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        mean: &[f32],
        var: &[f32],
        dx: &[f32],
        dgamma: &[f32],
        dbeta: &[f32],
    ) -> Result<(), KernelError> {
        let (len, c) = (self.len(), self.channels);
        self.check_buffers(&[
            ("x", x.len(), len),
            ("dy", dy.len(), len),
            ("dx", dx.len(), len),
            ("gamma", gamma.len(), c),
            ("mean", mean.len(), c),
            ("var", var.len(), c),
            ("dgamma", dgamma.len(), c),
            ("dbeta", dbeta.len(), c),
        ])
    }

    /// Checks that every size is positive and each buffer has the implied length
    /// (`len()` for activations, `channels` for per-channel vectors).
    pub fn check_buffers(&self, bufs: &[(&'static str, usize, usize)]) -> Result<(), KernelError> {
        if self.batch == 0 || self.channels == 0 || self.hw == 0 {
            return Err(KernelError::Shape(format!(
                "a BatchNorm size is zero ({self:?})"
            )));
        }
        for &(name, got, want) in bufs {
            if got != want {
                return Err(KernelError::Buffer { name, got, want });
            }
        }
        Ok(())
    }
}

/// Training BatchNorm: per channel, the batch mean and biased variance over
/// `batch x hw` values, `y = (x - mean) / sqrt(var + eps) * gamma + beta`.
#[allow(clippy::too_many_arguments)]
pub fn bn_train_forward(
    g: &BnGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    y: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
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
    for ch in 0..c {
        let idx = |n: usize, p: usize| (n * c + ch) * g.hw + p;
        let mut s = 0f64;
        for n in 0..g.batch {
            for p in 0..g.hw {
                s += f64::from(x[idx(n, p)]);
            }
        }
        let mu = s / m;
        let mut v = 0f64;
        for n in 0..g.batch {
            for p in 0..g.hw {
                let d = f64::from(x[idx(n, p)]) - mu;
                v += d * d;
            }
        }
        let v = v / m;
        let inv = 1.0 / (v + eps).sqrt();
        for n in 0..g.batch {
            for p in 0..g.hw {
                let i = idx(n, p);
                y[i] = ((f64::from(x[i]) - mu) * inv * f64::from(gamma[ch]) + f64::from(beta[ch]))
                    as f32;
            }
        }
        mean[ch] = mu as f32;
        var[ch] = v as f32;
    }
    Ok(())
}

/// Gradients of [`bn_train_forward`] with respect to `x`, `gamma` and `beta`, given
/// `dy` and the `mean`/`var` it returned.
#[allow(clippy::too_many_arguments)]
pub fn bn_train_backward(
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
    let c = g.channels;
    let m = (g.batch * g.hw) as f64;
    for ch in 0..c {
        let idx = |n: usize, p: usize| (n * c + ch) * g.hw + p;
        let inv = 1.0 / (f64::from(var[ch]) + eps).sqrt();
        let mu = f64::from(mean[ch]);
        let (mut sdy, mut sdyx) = (0f64, 0f64);
        for n in 0..g.batch {
            for p in 0..g.hw {
                let i = idx(n, p);
                let xhat = (f64::from(x[i]) - mu) * inv;
                sdy += f64::from(dy[i]);
                sdyx += f64::from(dy[i]) * xhat;
            }
        }
        dbeta[ch] = sdy as f32;
        dgamma[ch] = sdyx as f32;
        let k = f64::from(gamma[ch]) * inv / m;
        for n in 0..g.batch {
            for p in 0..g.hw {
                let i = idx(n, p);
                let xhat = (f64::from(x[i]) - mu) * inv;
                dx[i] = (k * (m * f64::from(dy[i]) - sdy - xhat * sdyx)) as f32;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finite differences on a tiny strided, padded, grouped case: the reference
    /// backward really is the derivative of the reference forward.
    #[test]
    fn reference_backward_matches_finite_differences() {
        for groups in [1, 3] {
            let g = ConvGeom {
                batch: 2,
                cin: 3,
                cout: 3,
                h: 5,
                w: 4,
                kernel: 3,
                stride: 2,
                pad: 1,
                groups,
            };
            let x: Vec<f32> = (0..g.x_len())
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let w: Vec<f32> = (0..g.w_len())
                .map(|i| ((i * 5 % 13) as f32 - 6.0) / 6.0)
                .collect();
            let dy: Vec<f32> = (0..g.y_len())
                .map(|i| ((i * 3 % 7) as f32 - 3.0) / 3.0)
                .collect();
            let loss = |x: &[f32], w: &[f32]| {
                let mut y = vec![0.0; g.y_len()];
                conv_forward(&g, x, w, &mut y).unwrap();
                y.iter()
                    .zip(&dy)
                    .map(|(a, b)| f64::from(a * b))
                    .sum::<f64>()
            };
            let mut dx = vec![0.0; g.x_len()];
            let mut dw = vec![0.0; g.w_len()];
            conv_backward_input(&g, &dy, &w, &mut dx).unwrap();
            conv_backward_weight(&g, &x, &dy, &mut dw).unwrap();
            let h = 1e-2f32;
            for i in 0..x.len() {
                let (mut a, mut b) = (x.clone(), x.clone());
                a[i] += h;
                b[i] -= h;
                let fd = (loss(&a, &w) - loss(&b, &w)) / f64::from(2.0 * h);
                assert!(
                    (fd - f64::from(dx[i])).abs() < 1e-3,
                    "dx[{i}] {fd} vs {}",
                    dx[i]
                );
            }
            for i in 0..w.len() {
                let (mut a, mut b) = (w.clone(), w.clone());
                a[i] += h;
                b[i] -= h;
                let fd = (loss(&x, &a) - loss(&x, &b)) / f64::from(2.0 * h);
                assert!(
                    (fd - f64::from(dw[i])).abs() < 1e-3,
                    "dw[{i}] {fd} vs {}",
                    dw[i]
                );
            }
        }
    }

    #[test]
    fn bn_backward_matches_finite_differences() {
        let g = BnGeom {
            batch: 3,
            channels: 2,
            hw: 5,
        };
        let x: Vec<f32> = (0..g.len())
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let gamma = [0.7f32, 1.3];
        let beta = [0.1f32, -0.2];
        let dy: Vec<f32> = (0..g.len())
            .map(|i| ((i * 3 % 7) as f32 - 3.0) / 3.0)
            .collect();
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
            let (mut y, mut m, mut v) = (vec![0.0; g.len()], [0.0; 2], [0.0; 2]);
            bn_train_forward(&g, x, gamma, beta, 1e-5, &mut y, &mut m, &mut v).unwrap();
            y.iter()
                .zip(&dy)
                .map(|(a, b)| f64::from(a * b))
                .sum::<f64>()
        };
        let (mut y, mut m, mut v) = (vec![0.0; g.len()], [0.0; 2], [0.0; 2]);
        bn_train_forward(&g, &x, &gamma, &beta, 1e-5, &mut y, &mut m, &mut v).unwrap();
        let (mut dx, mut dg, mut db) = (vec![0.0; g.len()], [0.0; 2], [0.0; 2]);
        bn_train_backward(&g, &x, &dy, &gamma, &m, &v, 1e-5, &mut dx, &mut dg, &mut db).unwrap();
        let h = 1e-2f32;
        for i in 0..x.len() {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[i] += h;
            b[i] -= h;
            let fd = (loss(&a, &gamma, &beta) - loss(&b, &gamma, &beta)) / f64::from(2.0 * h);
            assert!(
                (fd - f64::from(dx[i])).abs() < 2e-3,
                "dx[{i}] {fd} vs {}",
                dx[i]
            );
        }
        for ch in 0..2 {
            let (mut a, mut b) = (gamma, gamma);
            a[ch] += h;
            b[ch] -= h;
            let fd = (loss(&x, &a, &beta) - loss(&x, &b, &beta)) / f64::from(2.0 * h);
            assert!((fd - f64::from(dg[ch])).abs() < 2e-3);
            let (mut a, mut b) = (beta, beta);
            a[ch] += h;
            b[ch] -= h;
            let fd = (loss(&x, &gamma, &a) - loss(&x, &gamma, &b)) / f64::from(2.0 * h);
            assert!((fd - f64::from(db[ch])).abs() < 2e-3);
        }
    }
}
