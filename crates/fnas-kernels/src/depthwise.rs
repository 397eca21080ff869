//! Depthwise convolution (`groups == cin == cout`, weight `[c, 1, k, k]`), forward and
//! both backwards, written directly on each `(sample, channel)` plane.
//!
//! Why not im2col or a per-group GEMM: a depthwise plane has only `k * k`
//! multiply-adds per output, far too little work for a GEMM to amortise its packing.
//!
//! How: each input plane is first copied into a zero-padded, column-phase-split buffer
//! (`Padded`; column `c` of the padded plane goes to phase `c % s`, position `c / s`),
//! with spare zero columns on the right. In that buffer every tap of every output is
//! in range and every tap reads a contiguous run, so the convolution has no bounds
//! logic in its loops: `R = 4` output rows by `LANES = 16` output columns are
//! accumulated in registers over all `k * k` taps (unrolled for k = 3, 5, 7) and
//! stored once. The padded copy costs one pass over the (L1-resident) plane; its
//! zeros are reused between planes.
//!
//! - `backward_input`, stride 1: the convolution of `dy`, padded by `k - 1 - pad`, with
//!   the flipped kernel (the same code as the forward).
//! - `backward_input`, other strides: each of the `s * s` phases of `dx` gathers from a
//!   padded `dy` through its own subset of the taps (`Gather`), so there is no
//!   scatter and no multiplication by inserted zeros.
//! - `backward_weight`: for each kernel row, `k` lane accumulators (registers) collect
//!   `dy * shifted x` over a plane; `f32` lanes are folded into `f64` every few samples.
//!
//! The loops are compiled three times (baseline, AVX2, AVX-512; see `Isa`) and the
//! widest the CPU has is picked at run time; all give bit-identical results.
//!
//! Parallelism: `forward` and `backward_input` over `(sample, channel)` planes,
//! `backward_weight` over channels (each task owns its weights, so no reduction, and
//! the result does not depend on the number of threads).

use rayon::prelude::*;

use crate::geom::{ConvGeom, KernelError};

/// The widest vector instructions the CPU offers, detected once per call.
///
/// Why: the crate is built for baseline x86-64 (SSE2, 4 lanes), but the children run on
/// machines with AVX2 or AVX-512. The same loops compiled for AVX-512 measured 1.2-1.6x
/// faster on the depthwise shapes of `examples/bench_dwbn` and 1.3-2x on BatchNorm (the
/// AMD EPYC build machine, one thread). They use plain multiply and add (FMA measured
/// no faster), so every instruction set gives bit-identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Base,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Base
    }

    /// Runs `f` compiled for this instruction set. `f` should be an
    /// `#[inline(always)]` closure whose helpers are `#[inline(always)]` too: only code
    /// inlined into the wrappers below is compiled with their features.
    #[inline]
    pub(crate) fn run<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            // SAFETY: `Isa::detect` returned this variant only after checking that the
            // CPU supports the instructions the callee is compiled with.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { run_avx512(f) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { run_avx2(f) },
            Isa::Base => f(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Output columns computed together: one accumulator of `LANES` values stays in
/// registers across all `k * k` taps, so each output is stored once.
const LANES: usize = 16;

/// A zero-padded copy of one plane, split into column phases, with enough zero columns
/// at the right that every tap of every `LANES`-wide output chunk can be read without
/// a bounds test: the "valid" convolution of this buffer is the padded convolution.
#[derive(Debug)]
struct Padded {
    s: usize,
    k: usize,
    /// Padded rows (`h + 2 * pad`).
    ph: usize,
    /// Row length of one phase: the output width rounded up to `LANES`, plus the
    /// largest in-phase tap offset.
    cw: usize,
    /// Per kernel column `kx`: where its phase starts plus its in-phase offset, so the
    /// inner loops do no division.
    tapcol: Vec<usize>,
}

impl Padded {
    fn new(h: usize, s: usize, k: usize, pad: usize, ow: usize) -> Self {
        let (ph, cw) = (h + 2 * pad, ow.div_ceil(LANES) * LANES + (k - 1) / s);
        Padded {
            s,
            k,
            ph,
            cw,
            tapcol: (0..k).map(|kx| (kx % s) * ph * cw + kx / s).collect(),
        }
    }

    fn len(&self) -> usize {
        self.s * self.ph * self.cw
    }

    /// Fills `buf` with plane `x` (`h x w`) padded by `pad` and phase-split. A buffer
    /// of the right length is assumed to come from an earlier `fill` with the same
    /// geometry: the plane lands on the same positions, so its zeros are still in place
    /// and only the plane is copied.
    fn fill(&self, x: &[f32], w: usize, pad: usize, buf: &mut Vec<f32>) {
        if buf.len() != self.len() {
            buf.clear();
            buf.resize(self.len(), 0.0);
        }
        let (s, cw, ph) = (self.s, self.cw, self.ph);
        if s <= 2 {
            // The common strides without a strided gather (which does not vectorise):
            // a row copy, or a deinterleave of column pairs into the two phases.
            let (lo, hi) = buf.split_at_mut(ph * cw);
            for (iy, xrow) in x.chunks_exact(w).enumerate() {
                let row = (iy + pad) * cw;
                if s == 1 {
                    if let Some(dst) = lo.get_mut(row + pad..row + pad + w) {
                        dst.copy_from_slice(xrow);
                    }
                    continue;
                }
                // x[2m] lands in phase pad % 2 at m + pad / 2, x[2m + 1] in the other
                // phase at m + (pad + 1) / 2; positions past `cw` are never read.
                let (Some(p0), Some(p1)) = (lo.get_mut(row..row + cw), hi.get_mut(row..row + cw))
                else {
                    continue;
                };
                let (even, odd) = if pad % 2 == 1 { (p1, p0) } else { (p0, p1) };
                let (je, jo) = (pad / 2, pad.div_ceil(2));
                let pairs = xrow.chunks_exact(2);
                if let Some(&last) = pairs.remainder().first() {
                    if let Some(d) = even.get_mut(je + w / 2) {
                        *d = last;
                    }
                }
                for ((e, o), pair) in even[je.min(cw)..]
                    .iter_mut()
                    .zip(odd[jo.min(cw)..].iter_mut())
                    .zip(pairs)
                {
                    *e = pair[0];
                    *o = pair[1];
                }
            }
            return;
        }
        for (iy, xrow) in x.chunks_exact(w).enumerate() {
            let prow = iy + pad;
            for p in 0..s {
                // Padded column c = ix + pad has phase c % s and position c / s.
                let first = (p + s - pad % s) % s; // first ix with (ix + pad) % s == p
                if first >= w {
                    continue;
                }
                let j0 = (first + pad) / s;
                let start = (p * ph + prow) * cw;
                let Some(dst) = buf.get_mut(start + j0..start + cw) else {
                    continue;
                };
                for (d, v) in dst.iter_mut().zip(xrow[first..].iter().step_by(s)) {
                    *d = *v;
                }
            }
        }
    }

    /// `y[oy][ox] = sum over taps of wk[ky][kx] * padded[oy * s + ky][ox * s + kx]`,
    /// `R` output rows at a time so that `R` independent accumulators hide the latency
    /// of the additions (one accumulator chain per row would stall on it).
    #[inline(always)]
    fn conv_body(&self, xs: &[f32], wk: &[f32], ow: usize, y: &mut [f32]) {
        // The kernel sizes children use get their tap loops unrolled.
        match self.k {
            3 => self.conv_all::<3>(xs, wk, ow, y),
            5 => self.conv_all::<5>(xs, wk, ow, y),
            7 => self.conv_all::<7>(xs, wk, ow, y),
            _ => self.conv_all::<0>(xs, wk, ow, y),
        }
    }

    /// `K` is the kernel size, or 0 for "read it from `self.k`".
    #[inline(always)]
    fn conv_all<const K: usize>(&self, xs: &[f32], wk: &[f32], ow: usize, y: &mut [f32]) {
        if ow <= LANES / 2 {
            // Narrow planes (7x7): half-width chunks waste fewer lanes.
            self.conv_rows_all::<K, { LANES / 2 }>(xs, wk, ow, y);
        } else {
            self.conv_rows_all::<K, LANES>(xs, wk, ow, y);
        }
    }

    #[inline(always)]
    fn conv_rows_all<const K: usize, const L: usize>(
        &self,
        xs: &[f32],
        wk: &[f32],
        ow: usize,
        y: &mut [f32],
    ) {
        const R: usize = 4;
        let oh = y.len() / ow;
        let mut oy = 0;
        while oy + R <= oh {
            self.conv_rows::<R, K, L>(xs, wk, ow, oy, y);
            oy += R;
        }
        while oy < oh {
            self.conv_rows::<1, K, L>(xs, wk, ow, oy, y);
            oy += 1;
        }
    }

    #[inline(always)]
    fn conv_rows<const R: usize, const K: usize, const L: usize>(
        &self,
        xs: &[f32],
        wk: &[f32],
        ow: usize,
        oy: usize,
        y: &mut [f32],
    ) {
        let (s, cw) = (self.s, self.cw);
        let k = if K == 0 { self.k } else { K };
        let (Some(cols), Some(wk)) = (self.tapcol.get(..k), wk.get(..k * k)) else {
            return;
        };
        for c0 in (0..ow).step_by(L) {
            let mut acc = [[0f32; L]; R];
            for (ky, wrow) in wk.chunks_exact(k).enumerate() {
                for (&col, &wv) in cols.iter().zip(wrow) {
                    for (r, a) in acc.iter_mut().enumerate() {
                        let off = ((oy + r) * s + ky) * cw + c0 + col;
                        let Some(src) = xs.get(off..).and_then(|v| v.first_chunk::<L>()) else {
                            continue;
                        };
                        for l in 0..L {
                            a[l] += wv * src[l];
                        }
                    }
                }
            }
            let n = L.min(ow - c0);
            for (r, a) in acc.iter().enumerate() {
                let start = (oy + r) * ow + c0;
                if let Some(dst) = y.get_mut(start..start + n) {
                    dst.copy_from_slice(&a[..n]);
                }
            }
        }
    }

    /// `acc[ky * k + kx][lane] += sum over outputs in that lane of
    /// dy[oy][ox] * padded[oy*s+ky][ox*s+kx]`; `dy` rows are `ow.div_ceil(LANES) * LANES`
    /// long with zeros past `ow`. Each `dy` chunk is loaded once and multiplied into
    /// all `k * k` tap accumulators (independent, so no addition-latency chain); the
    /// caller folds `acc` into `f64` every few samples.
    #[inline(always)]
    fn weight_body(&self, xs: &[f32], dyp: &[f32], oh: usize, ow: usize, acc: &mut [[f32; LANES]]) {
        match self.k {
            3 => self.weight_width::<3>(xs, dyp, oh, ow, acc),
            5 => self.weight_width::<5>(xs, dyp, oh, ow, acc),
            7 => self.weight_width::<7>(xs, dyp, oh, ow, acc),
            _ => self.weight_any(xs, dyp, oh, acc),
        }
    }

    /// Narrow planes (7x7) in half-width chunks, which waste fewer lanes.
    #[inline(always)]
    fn weight_width<const K: usize>(
        &self,
        xs: &[f32],
        dyp: &[f32],
        oh: usize,
        ow: usize,
        acc: &mut [[f32; LANES]],
    ) {
        if ow <= LANES / 2 {
            self.weight_fixed::<K, { LANES / 2 }>(xs, dyp, oh, ow, acc)
        } else {
            self.weight_fixed::<K, LANES>(xs, dyp, oh, ow, acc)
        }
    }

    /// [`Padded::weight_body`] for a kernel size known at compile time: one kernel row
    /// at a time, its `K` accumulators stay in registers over the whole plane (the
    /// `dy` plane is read `K` times from L1 instead of `K * K` accumulators going
    /// through memory).
    #[inline(always)]
    fn weight_fixed<const K: usize, const L: usize>(
        &self,
        xs: &[f32],
        dyp: &[f32],
        oh: usize,
        ow: usize,
        acc: &mut [[f32; LANES]],
    ) {
        let (s, cw) = (self.s, self.cw);
        let owc = cw - (K - 1) / s;
        let Some(cols) = self.tapcol.first_chunk::<K>() else {
            return;
        };
        for (ky, arow) in acc.chunks_exact_mut(K).enumerate() {
            let mut a = [[0f32; L]; K];
            for oy in 0..oh {
                let rowbase = (oy * s + ky) * cw;
                for c0 in (0..ow).step_by(L) {
                    let Some(d) = dyp.get(oy * owc + c0..).and_then(|v| v.first_chunk::<L>())
                    else {
                        continue;
                    };
                    for (t, &col) in a.iter_mut().zip(cols) {
                        let Some(src) = xs
                            .get(rowbase + c0 + col..)
                            .and_then(|v| v.first_chunk::<L>())
                        else {
                            continue;
                        };
                        for l in 0..L {
                            t[l] += d[l] * src[l];
                        }
                    }
                }
            }
            for (dst, t) in arow.iter_mut().zip(&a) {
                for l in 0..L {
                    dst[l] += t[l];
                }
            }
        }
    }

    #[inline(always)]
    fn weight_any(&self, xs: &[f32], dyp: &[f32], oh: usize, acc: &mut [[f32; LANES]]) {
        let (s, k, cw) = (self.s, self.k, self.cw);
        let owc = cw - (k - 1) / s;
        for oy in 0..oh {
            for c0 in (0..owc).step_by(LANES) {
                let Some(d) = dyp
                    .get(oy * owc + c0..)
                    .and_then(|v| v.first_chunk::<LANES>())
                else {
                    continue;
                };
                for (ky, arow) in acc.chunks_exact_mut(k).enumerate() {
                    let rowbase = (oy * s + ky) * cw + c0;
                    for (&col, t) in self.tapcol.iter().zip(arow.iter_mut()) {
                        let Some(src) = xs
                            .get(rowbase + col..)
                            .and_then(|v| v.first_chunk::<LANES>())
                        else {
                            continue;
                        };
                        for l in 0..LANES {
                            t[l] += d[l] * src[l];
                        }
                    }
                }
            }
        }
    }
}

impl Padded {
    fn conv(&self, isa: Isa, xs: &[f32], wk: &[f32], ow: usize, y: &mut [f32]) {
        match isa {
            // SAFETY: `Isa::detect` returned this variant only after checking that the
            // CPU supports the instructions the callee is compiled with.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.conv_avx512(xs, wk, ow, y) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { self.conv_avx2(xs, wk, ow, y) },
            Isa::Base => self.conv_body(xs, wk, ow, y),
        }
    }

    fn weight(
        &self,
        isa: Isa,
        xs: &[f32],
        dyp: &[f32],
        oh: usize,
        ow: usize,
        total: &mut [[f32; LANES]],
    ) {
        match isa {
            // SAFETY: `Isa::detect` returned this variant only after checking that the
            // CPU supports the instructions the callee is compiled with.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.weight_avx512(xs, dyp, oh, ow, total) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { self.weight_avx2(xs, dyp, oh, ow, total) },
            Isa::Base => self.weight_body(xs, dyp, oh, ow, total),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn conv_avx512(&self, xs: &[f32], wk: &[f32], ow: usize, y: &mut [f32]) {
        self.conv_body(xs, wk, ow, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn conv_avx2(&self, xs: &[f32], wk: &[f32], ow: usize, y: &mut [f32]) {
        self.conv_body(xs, wk, ow, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn weight_avx512(
        &self,
        xs: &[f32],
        dyp: &[f32],
        oh: usize,
        ow: usize,
        total: &mut [[f32; LANES]],
    ) {
        self.weight_body(xs, dyp, oh, ow, total)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn weight_avx2(
        &self,
        xs: &[f32],
        dyp: &[f32],
        oh: usize,
        ow: usize,
        total: &mut [[f32; LANES]],
    ) {
        self.weight_body(xs, dyp, oh, ow, total)
    }
}

/// `backward_input` for strides above 1 (and padding of `kernel` or more), as a
/// gather: input position `iy = qy * s + py` receives exactly the taps `ky` with
/// `ky = py + pad (mod s)`, from output row `qy + (py + pad - ky) / s`, and likewise
/// for columns. So each of the `s * s` phases `(py, px)` of `dx` is a stride-1 sum of
/// shifted copies of `dy` (one zero-padded copy serves all phases) with its own few
/// taps, computed like the forward: `R` rows by `LANES` columns of accumulators in
/// registers, each `dx` value written once. The `k * k` taps are split among the
/// phases, so the work is the forward's, with no multiplication by inserted zeros.
#[derive(Debug)]
struct Gather {
    s: usize,
    /// `dy` rows and row length in the padded copy, and where `dy` starts in it.
    rows: usize,
    width: usize,
    top: usize,
    left: usize,
    phases: Vec<Phase>,
}

/// One `(py, px)` phase of `dx`: its size and its taps as (row shift, column shift,
/// weight index) into the padded `dy`.
#[derive(Debug)]
struct Phase {
    py: usize,
    px: usize,
    nqy: usize,
    nqx: usize,
    taps: Vec<(usize, usize, usize)>,
}

impl Gather {
    fn new(g: &ConvGeom) -> Self {
        let (s, k, pad) = (g.stride, g.kernel, g.pad as isize);
        let (oh, ow) = (g.out_h(), g.out_w());
        // Valid taps of phase p along one axis: (kernel index, offset into dy).
        let axis = |p: usize| -> Vec<(usize, isize)> {
            (0..k)
                .filter(|&kk| (p as isize + pad - kk as isize).rem_euclid(s as isize) == 0)
                .map(|kk| (kk, (p as isize + pad - kk as isize) / s as isize))
                .collect()
        };
        let offs: Vec<isize> = (0..s)
            .flat_map(|p| axis(p).into_iter().map(|t| t.1))
            .collect();
        let lo = offs.iter().copied().min().unwrap_or(0).min(0);
        let hi = offs.iter().copied().max().unwrap_or(0).max(0);
        let (top, left) = ((-lo) as usize, (-lo) as usize);
        let (nqy, nqx) = (g.h.div_ceil(s), g.w.div_ceil(s));
        let rows = (top + oh).max(nqy + hi as usize + top);
        let width = (left + ow).max(nqx.div_ceil(LANES) * LANES + hi as usize + left);
        let mut phases = Vec::new();
        for py in 0..s.min(g.h) {
            for px in 0..s.min(g.w) {
                let mut taps = Vec::new();
                for &(ky, oy) in &axis(py) {
                    for &(kx, ox) in &axis(px) {
                        taps.push((
                            (oy + top as isize) as usize,
                            (ox + left as isize) as usize,
                            ky * k + kx,
                        ));
                    }
                }
                phases.push(Phase {
                    py,
                    px,
                    nqy: (g.h - py).div_ceil(s),
                    nqx: (g.w - px).div_ceil(s),
                    taps,
                });
            }
        }
        Gather {
            s,
            rows,
            width,
            top,
            left,
            phases,
        }
    }

    /// Copies `dy` (`oh x ow`) into the zero-padded buffer (zeros kept between calls,
    /// as in [`Padded::fill`]).
    fn fill(&self, dy: &[f32], ow: usize, buf: &mut Vec<f32>) {
        if buf.len() != self.rows * self.width {
            buf.clear();
            buf.resize(self.rows * self.width, 0.0);
        }
        for (oy, src) in dy.chunks_exact(ow).enumerate() {
            let start = (oy + self.top) * self.width + self.left;
            if let Some(dst) = buf.get_mut(start..start + ow) {
                dst.copy_from_slice(src);
            }
        }
    }

    #[inline(always)]
    fn body(&self, dyp: &[f32], wk: &[f32], w: usize, dx: &mut [f32]) {
        const R: usize = 4;
        for ph in &self.phases {
            let mut qy = 0;
            while qy + R <= ph.nqy {
                self.rows_body::<R>(ph, dyp, wk, w, qy, dx);
                qy += R;
            }
            while qy < ph.nqy {
                self.rows_body::<1>(ph, dyp, wk, w, qy, dx);
                qy += 1;
            }
        }
    }

    #[inline(always)]
    fn rows_body<const R: usize>(
        &self,
        ph: &Phase,
        dyp: &[f32],
        wk: &[f32],
        w: usize,
        qy: usize,
        dx: &mut [f32],
    ) {
        let (s, width) = (self.s, self.width);
        for c0 in (0..ph.nqx).step_by(LANES) {
            let mut acc = [[0f32; LANES]; R];
            for &(ry, rx, wi) in &ph.taps {
                let wv = wk[wi];
                for (r, a) in acc.iter_mut().enumerate() {
                    let off = (qy + r + ry) * width + c0 + rx;
                    let Some(src) = dyp.get(off..).and_then(|v| v.first_chunk::<LANES>()) else {
                        continue;
                    };
                    for l in 0..LANES {
                        a[l] += wv * src[l];
                    }
                }
            }
            let n = LANES.min(ph.nqx - c0);
            for (r, a) in acc.iter().enumerate() {
                let start = ((qy + r) * s + ph.py) * w + c0 * s + ph.px;
                if let Some(row) = dx.get_mut(start..) {
                    for (d, v) in row.iter_mut().step_by(s).zip(&a[..n]) {
                        *d = *v;
                    }
                }
            }
        }
    }

    fn run(&self, isa: Isa, dyp: &[f32], wk: &[f32], w: usize, dx: &mut [f32]) {
        isa.run(
            #[inline(always)]
            || self.body(dyp, wk, w, dx),
        )
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
    forward_isa(g, x, w, y, Isa::detect())
}

fn forward_isa(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    isa: Isa,
) -> Result<(), KernelError> {
    check_depthwise(g)?;
    g.check_forward(x, w, y)?;
    let (c, hw, kk) = (g.cin, g.h * g.w, g.kernel * g.kernel);
    let (oh, ow) = (g.out_h(), g.out_w());
    let pd = Padded::new(g.h, g.stride, g.kernel, g.pad, ow);
    y.par_chunks_mut(oh * ow)
        .enumerate()
        .with_min_len(min_planes(oh * ow * kk))
        .for_each_init(Vec::new, |buf, (i, yp)| {
            let xp = &x[i * hw..(i + 1) * hw];
            let wk = &w[(i % c) * kk..(i % c + 1) * kk];
            pd.fill(xp, g.w, g.pad, buf);
            pd.conv(isa, buf, wk, ow, yp);
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
    backward_input_isa(g, dy, w, dx, Isa::detect())
}

fn backward_input_isa(
    g: &ConvGeom,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    isa: Isa,
) -> Result<(), KernelError> {
    check_depthwise(g)?;
    g.check_backward_input(dy, w, dx)?;
    let (c, hw, kk) = (g.cin, g.h * g.w, g.kernel * g.kernel);
    let (oh, ow) = (g.out_h(), g.out_w());
    let ohw = oh * ow;
    let min_len = min_planes(ohw * kk);
    if g.stride == 1 && g.pad < g.kernel {
        // Stride 1: dx is the convolution of dy, padded by k - 1 - pad, with the
        // flipped kernel, so the register-blocked forward body does it.
        let pd = Padded::new(oh, 1, g.kernel, g.kernel - 1 - g.pad, g.w);
        let wflip: Vec<f32> = w
            .chunks_exact(kk)
            .flat_map(|wk| wk.iter().rev().copied())
            .collect();
        dx.par_chunks_mut(hw)
            .enumerate()
            .with_min_len(min_len)
            .for_each_init(Vec::new, |buf, (i, dxp)| {
                let dyp = &dy[i * ohw..(i + 1) * ohw];
                let wk = &wflip[(i % c) * kk..(i % c + 1) * kk];
                pd.fill(dyp, ow, g.kernel - 1 - g.pad, buf);
                pd.conv(isa, buf, wk, g.w, dxp);
            });
        return Ok(());
    }
    let ga = Gather::new(g);
    dx.par_chunks_mut(hw)
        .enumerate()
        .with_min_len(min_len)
        .for_each_init(Vec::new, |buf, (i, dxp)| {
            let dyp = &dy[i * ohw..(i + 1) * ohw];
            let wk = &w[(i % c) * kk..(i % c + 1) * kk];
            ga.fill(dyp, ow, buf);
            ga.run(isa, buf, wk, g.w, dxp);
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
    backward_weight_isa(g, x, dy, dw, Isa::detect())
}

fn backward_weight_isa(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    isa: Isa,
) -> Result<(), KernelError> {
    check_depthwise(g)?;
    g.check_backward_weight(x, dy, dw)?;
    let (c, hw, kk) = (g.cin, g.h * g.w, g.kernel * g.kernel);
    let (oh, ow) = (g.out_h(), g.out_w());
    let pd = Padded::new(g.h, g.stride, g.kernel, g.pad, ow);
    let owc = ow.div_ceil(LANES) * LANES;
    // Products are summed in f32 lanes for this many samples (about 256 terms per
    // lane), then folded into f64.
    let flush = (256 / (oh * owc / LANES).max(1)).max(1);
    // Each task owns a group of adjacent channels and walks the samples in order, so
    // for each sample it reads the group's planes, which are contiguous (one channel
    // at a time would jump by a whole sample between planes, and the hardware
    // prefetcher loses the stream at every plane). Enough groups for every thread.
    let group = (c / (4 * rayon::current_num_threads())).clamp(1, 8);
    dw.par_chunks_mut(kk * group).enumerate().for_each_init(
        || (Vec::new(), vec![0f32; oh * owc]),
        |(buf, dyp), (gi, dwg)| {
            let nch = dwg.len() / kk;
            let mut total = vec![0f64; kk * nch];
            let mut lanes = vec![[0f32; LANES]; kk * nch];
            let mut since_flush = 0;
            for n in 0..g.batch {
                for (j, lanes_c) in lanes.chunks_exact_mut(kk).enumerate() {
                    let i = n * c + gi * group + j;
                    pd.fill(&x[i * hw..(i + 1) * hw], g.w, g.pad, buf);
                    // dy rows padded to whole chunks with zeros.
                    for (d, s) in dyp
                        .chunks_exact_mut(owc)
                        .zip(dy[i * oh * ow..(i + 1) * oh * ow].chunks_exact(ow))
                    {
                        d[..ow].copy_from_slice(s);
                    }
                    pd.weight(isa, buf, dyp, oh, ow, lanes_c);
                }
                // The same samples for every channel, whatever the grouping: the result
                // does not depend on the number of threads.
                since_flush += 1;
                if since_flush == flush || n + 1 == g.batch {
                    since_flush = 0;
                    for (t, l) in total.iter_mut().zip(lanes.iter_mut()) {
                        *t += l.iter().map(|&a| f64::from(a)).sum::<f64>();
                        *l = [0.0; LANES];
                    }
                }
            }
            for (d, t) in dwg.iter_mut().zip(total) {
                *d = t as f32;
            }
        },
    );
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
        for (c, h, w, k, s) in [
            (3, 9, 11, 3, 1),
            (5, 7, 7, 5, 2),
            (2, 8, 19, 7, 1),
            (3, 1, 1, 3, 1),
        ] {
            let g = ConvGeom {
                batch: 3,
                cin: c,
                cout: c,
                h,
                w,
                kernel: k,
                stride: s,
                pad: k / 2,
                groups: c,
            };
            let val = |n: usize, m: usize| -> Vec<f32> {
                (0..n).map(|i| ((i * m % 23) as f32 - 11.0) / 7.0).collect()
            };
            let (x, wt, dy) = (val(g.x_len(), 7), val(g.w_len(), 5), val(g.y_len(), 3));
            let run = |isa| {
                let mut y = vec![0.0; g.y_len()];
                let mut dx = vec![0.0; g.x_len()];
                let mut dw = vec![0.0; g.w_len()];
                forward_isa(&g, &x, &wt, &mut y, isa).unwrap();
                backward_input_isa(&g, &dy, &wt, &mut dx, isa).unwrap();
                backward_weight_isa(&g, &x, &dy, &mut dw, isa).unwrap();
                (y, dx, dw)
            };
            let base = run(Isa::Base);
            let mut y = vec![0.0; g.y_len()];
            crate::reference::conv_forward(&g, &x, &wt, &mut y).unwrap();
            let err = base
                .0
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{g:?}: {err}");
            for &isa in &isas[1..] {
                assert_eq!(run(isa), base, "{isa:?} {g:?}");
            }
        }
    }
}
