//! Depthwise convolution (`groups == cin == cout`, weight `[c, 1, k, k]`), forward and
//! both backwards, written directly on each `(sample, channel)` plane.
//!
//! Why not im2col or a per-group GEMM: a depthwise plane has `k * k` multiply-adds per
//! output, far too little work for a GEMM to amortise its packing. Instead every kernel
//! tap `(ky, kx)` becomes one `axpy` along an output row, over the range of output
//! columns whose input column lies inside the image. That range is computed once per tap
//! ([`ColTap`]), so the inner loop has no bounds tests and autovectorises.
//!
//! Strided convolutions would make that `axpy` read every `s`-th input value, which
//! does not vectorise well; the input plane is therefore first split into `s` column
//! phases (column `ix` goes to phase `ix % s`, position `ix / s`), after which every tap
//! reads a contiguous run of one phase. `backward_input` scatters into such a phase plane
//! and interleaves it back. With stride 1 the plane is used as it is (no copy).
//!
//! Parallelism: `forward` and `backward_input` over `(sample, channel)` planes,
//! `backward_weight` over channels (each task owns its weights, so no reduction).

use rayon::prelude::*;

use crate::geom::{ConvGeom, KernelError};

/// One kernel column `kx`: which input phase it reads, and the output columns
/// `lo..hi` it touches, reading phase positions `start..start + (hi - lo)`.
#[derive(Debug, Clone, Copy)]
struct ColTap {
    phase: usize,
    lo: usize,
    hi: usize,
    start: usize,
}

/// Everything a plane kernel needs, derived once per call.
#[derive(Debug)]
struct Plan {
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    /// Row length of a phase plane (`ceil(w / s)`); `w` with stride 1.
    cw: usize,
    taps: Vec<ColTap>,
}

impl Plan {
    fn new(g: &ConvGeom) -> Self {
        let (w, s, pad) = (g.w, g.stride, g.pad);
        let ow = g.out_w();
        let cw = w.div_ceil(s);
        let taps = (0..g.kernel)
            .map(|kx| {
                // Input column of output column ox: ox * s + kx - pad = (ox + off) * s + phase.
                let d = kx as isize - pad as isize;
                let si = s as isize;
                let phase = d.rem_euclid(si) as usize;
                let off = d.div_euclid(si);
                // Columns of this phase inside the image.
                let ncols = if phase < w {
                    (w - phase).div_ceil(s)
                } else {
                    0
                } as isize;
                let lo = (-off).max(0);
                let hi = (ncols - off).min(ow as isize);
                if hi <= lo {
                    ColTap {
                        phase,
                        lo: 0,
                        hi: 0,
                        start: 0,
                    }
                } else {
                    ColTap {
                        phase,
                        lo: lo as usize,
                        hi: hi as usize,
                        start: (lo + off) as usize,
                    }
                }
            })
            .collect();
        Plan {
            h: g.h,
            w,
            k: g.kernel,
            s,
            pad,
            oh: g.out_h(),
            ow,
            cw,
            taps,
        }
    }

    /// The input row of output row `oy` and kernel row `ky`, if inside the image.
    #[inline]
    fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.s + ky)
            .checked_sub(self.pad)
            .filter(|&iy| iy < self.h)
    }

    fn phase_len(&self) -> usize {
        self.s * self.h * self.cw
    }

    /// Splits an input plane into its column phases (strided convolutions only).
    fn split(&self, x: &[f32], xs: &mut Vec<f32>) {
        xs.clear();
        xs.resize(self.phase_len(), 0.0);
        let (h, w, s, cw) = (self.h, self.w, self.s, self.cw);
        for (p, dst) in xs.chunks_exact_mut(h * cw).enumerate() {
            for (xrow, drow) in x.chunks_exact(w).zip(dst.chunks_exact_mut(cw)) {
                for (d, v) in drow.iter_mut().zip(xrow.iter().skip(p).step_by(s)) {
                    *d = *v;
                }
            }
        }
    }

    /// The inverse of [`Plan::split`]: writes the phases back into one plane.
    fn merge(&self, xs: &[f32], x: &mut [f32]) {
        let (h, w, s, cw) = (self.h, self.w, self.s, self.cw);
        for (p, src) in xs.chunks_exact(h * cw).enumerate() {
            for (xrow, srow) in x.chunks_exact_mut(w).zip(src.chunks_exact(cw)) {
                for (d, v) in xrow.iter_mut().skip(p).step_by(s).zip(srow) {
                    *d = *v;
                }
            }
        }
    }

    /// One output plane: `y = sum over taps of w[tap] * shifted x`.
    /// `xs` is the input plane (stride 1) or its phase split.
    fn forward_plane(&self, xs: &[f32], wk: &[f32], y: &mut [f32]) {
        let (k, ow, cw, hcw) = (self.k, self.ow, self.cw, self.h * self.cw);
        for (oy, yrow) in y.chunks_exact_mut(ow).enumerate() {
            yrow.fill(0.0);
            for ky in 0..k {
                let Some(iy) = self.in_row(oy, ky) else {
                    continue;
                };
                for (t, &wv) in self.taps.iter().zip(&wk[ky * k..(ky + 1) * k]) {
                    let n = t.hi - t.lo;
                    let src = &xs[t.phase * hcw + iy * cw + t.start..][..n];
                    for (yv, xv) in yrow[t.lo..t.hi].iter_mut().zip(src) {
                        *yv += wv * *xv;
                    }
                }
            }
        }
    }

    /// One input-gradient plane (in phase layout for strided convolutions), scattered
    /// from `dy` through the taps. `dxs` must be zero on entry.
    fn backward_input_plane(&self, dy: &[f32], wk: &[f32], dxs: &mut [f32]) {
        let (k, ow, cw, hcw) = (self.k, self.ow, self.cw, self.h * self.cw);
        for (oy, dyrow) in dy.chunks_exact(ow).enumerate() {
            for ky in 0..k {
                let Some(iy) = self.in_row(oy, ky) else {
                    continue;
                };
                for (t, &wv) in self.taps.iter().zip(&wk[ky * k..(ky + 1) * k]) {
                    let n = t.hi - t.lo;
                    let dst = &mut dxs[t.phase * hcw + iy * cw + t.start..][..n];
                    for (d, g) in dst.iter_mut().zip(&dyrow[t.lo..t.hi]) {
                        *d += wv * *g;
                    }
                }
            }
        }
    }

    /// Adds `dy * shifted x` of one plane into per-tap row accumulators
    /// `acc[tap * ow + ox]` (elementwise, so it vectorises without reassociation).
    fn backward_weight_plane(&self, xs: &[f32], dy: &[f32], acc: &mut [f32]) {
        let (k, ow, cw, hcw) = (self.k, self.ow, self.cw, self.h * self.cw);
        for (oy, dyrow) in dy.chunks_exact(ow).enumerate() {
            for ky in 0..k {
                let Some(iy) = self.in_row(oy, ky) else {
                    continue;
                };
                for (kx, t) in self.taps.iter().enumerate() {
                    let n = t.hi - t.lo;
                    let src = &xs[t.phase * hcw + iy * cw + t.start..][..n];
                    let arow = &mut acc[(ky * k + kx) * ow..][t.lo..t.hi];
                    for ((a, g), xv) in arow.iter_mut().zip(&dyrow[t.lo..t.hi]).zip(src) {
                        *a += *g * *xv;
                    }
                }
            }
        }
    }
}

fn check_depthwise(g: &ConvGeom) -> Result<(), KernelError> {
    g.check()?;
    if g.groups != g.cin || g.groups != g.cout {
        return Err(KernelError::Shape(format!(
            "depthwise kernels need groups == cin == cout ({g:?})"
        )));
    }
    Ok(())
}

/// Planes per rayon task, so that tiny planes (1x1, 7x7) are not one task each.
fn min_planes(work_per_plane: usize) -> usize {
    (16_384 / work_per_plane.max(1)).max(1)
}

/// `y = depthwise_conv(x, w)`; see [`crate::reference::conv_forward`].
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    check_depthwise(g)?;
    g.check_buffers(&[
        ("x", x.len(), g.x_len()),
        ("w", w.len(), g.w_len()),
        ("y", y.len(), g.y_len()),
    ])?;
    let plan = Plan::new(g);
    let (c, hw, kk, ohw) = (g.cin, g.h * g.w, g.kernel * g.kernel, plan.oh * plan.ow);
    y.par_chunks_mut(ohw)
        .enumerate()
        .with_min_len(min_planes(ohw * kk))
        .for_each_init(Vec::new, |xs, (i, yp)| {
            let xp = &x[i * hw..(i + 1) * hw];
            let wk = &w[(i % c) * kk..(i % c + 1) * kk];
            if plan.s == 1 {
                plan.forward_plane(xp, wk, yp);
            } else {
                plan.split(xp, xs);
                plan.forward_plane(xs, wk, yp);
            }
        });
    Ok(())
}

/// `dx = d(sum(dy * depthwise_conv(x, w))) / dx`; see
/// [`crate::reference::conv_backward_input`].
pub fn backward_input(
    g: &ConvGeom,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
) -> Result<(), KernelError> {
    check_depthwise(g)?;
    g.check_buffers(&[
        ("dy", dy.len(), g.y_len()),
        ("w", w.len(), g.w_len()),
        ("dx", dx.len(), g.x_len()),
    ])?;
    let plan = Plan::new(g);
    let (c, hw, kk, ohw) = (g.cin, g.h * g.w, g.kernel * g.kernel, plan.oh * plan.ow);
    dx.par_chunks_mut(hw)
        .enumerate()
        .with_min_len(min_planes(ohw * kk))
        .for_each_init(Vec::new, |dxs, (i, dxp)| {
            let dyp = &dy[i * ohw..(i + 1) * ohw];
            let wk = &w[(i % c) * kk..(i % c + 1) * kk];
            if plan.s == 1 {
                dxp.fill(0.0);
                plan.backward_input_plane(dyp, wk, dxp);
            } else {
                dxs.clear();
                dxs.resize(plan.phase_len(), 0.0);
                plan.backward_input_plane(dyp, wk, dxs);
                plan.merge(dxs, dxp);
            }
        });
    Ok(())
}

/// `dw = d(sum(dy * depthwise_conv(x, w))) / dw`; see
/// [`crate::reference::conv_backward_weight`]. Products are summed in `f32` within one
/// sample's plane (at most `out_h` terms per accumulator) and across samples in `f64`.
pub fn backward_weight(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> Result<(), KernelError> {
    check_depthwise(g)?;
    g.check_buffers(&[
        ("x", x.len(), g.x_len()),
        ("dy", dy.len(), g.y_len()),
        ("dw", dw.len(), g.w_len()),
    ])?;
    let plan = Plan::new(g);
    let (c, hw, kk, ohw) = (g.cin, g.h * g.w, g.kernel * g.kernel, plan.oh * plan.ow);
    let ow = plan.ow;
    dw.par_chunks_mut(kk).enumerate().for_each_init(
        || (Vec::new(), vec![0f32; kk * ow]),
        |(xs, acc), (ch, dwc)| {
            let mut total = vec![0f64; kk];
            for n in 0..g.batch {
                let i = n * c + ch;
                let xp = &x[i * hw..(i + 1) * hw];
                let dyp = &dy[i * ohw..(i + 1) * ohw];
                acc.fill(0.0);
                if plan.s == 1 {
                    plan.backward_weight_plane(xp, dyp, acc);
                } else {
                    plan.split(xp, xs);
                    plan.backward_weight_plane(xs, dyp, acc);
                }
                for (t, arow) in total.iter_mut().zip(acc.chunks_exact(ow)) {
                    *t += arow.iter().map(|&a| f64::from(a)).sum::<f64>();
                }
            }
            for (d, t) in dwc.iter_mut().zip(total) {
                *d = t as f32;
            }
        },
    );
    Ok(())
}
