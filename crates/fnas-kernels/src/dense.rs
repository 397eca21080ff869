//! Dense (`groups == 1`) convolution as matrix products (`gemm`), sample by sample.
//!
//! Per sample the convolution is `y[n] = W · col(x[n])`, with `W` the weight viewed as a
//! `[cout, cin·k·k]` matrix and `col` the `[cin·k·k, out_h·out_w]` im2col unfolding. The
//! backward passes are the two other products of the same three matrices:
//! `col(dx[n]) = Wᵀ · dy[n]` (then scattered back by col2im) and
//! `dW = Σₙ dy[n] · col(x[n])ᵀ`; transposes are read through `gemm`'s strides, never
//! copied. The ways through, each chosen from the shape alone:
//!
//! - **direct**: where the unfolding is the identity (1×1 stride-1 unpadded kernels, and
//!   kernels that cover the whole unpadded input) the sample itself is `col`. On small
//!   images (7×7) several samples are gathered side by side into one product, because a
//!   49-column product fills gemm's 64-row tiles badly; with one output position per
//!   sample the whole chunk is one product read in place.
//! - **wide**: where enough rows of `col` per output channel pay for it, the padded
//!   sample is split into `stride × stride` phase planes (one plane for stride 1) and
//!   each output row keeps the plane width (the extra columns are junk, dropped from `y`
//!   and zeroed in `dy`), so each row of `col` is one contiguous slice of a plane: one
//!   copy per row instead of one short copy per output row.
//! - **narrow**: otherwise (stems with one input channel, 1×1 strided skips) each output
//!   row of `col` is gathered from a zero-bordered copy of the sample.
//!
//! Where one sample has few columns (14×14 and smaller outputs), wide and narrow
//! unfoldings put several samples side by side in one `col` (`ckk × group·ncol`), and
//! `y`/`dy` go through a gathered `cout × group·ncol` copy: one product of ~256 columns
//! instead of several that fill gemm's 64-row tiles badly (`dW` gets the same grouping,
//! direct unfoldings included, so its products are deeper).
//!
//! With stride 1 (and 8 or more input channels) `backward_input` is instead the forward
//! pass of the transposed convolution (`dy` padded by `k - 1 - pad`, the weight flipped
//! and transposed): a deeper product and no scatter-add. `dW` is summed transposed when
//! `cout < cin·k·k`, so gemm packs the small `dy` per sample rather than the large `col`.
//!
//! Before all of these, `forward` (hence also the stride-1 `backward_input` below) tries
//! the direct AVX-512 kernel of `direct.rs` (k ≥ 2, stride 1 or 2, 8 or more input
//! channels, `avx512f` detected): 1.2-1.6× faster than im2col + gemm on these layers.
//! `backward_weight` likewise tries the direct weight-gradient kernel first (same
//! conditions, k ≤ 7): 1.2-1.6× faster than the gemm sums.
//! With stride 2 (k ≥ 3, 8 or more output channels) `backward_input` runs first the
//! direct kernel per stride phase of `dx` (a stride-1 convolution of `dy` with the
//! phase's flipped sub-kernel): no col2im, 1.5× faster on the k5 and k7 layers.
//!
//! Threads: the batch is cut into a few chunks per thread of the calling rayon pool,
//! each chunk with its own scratch, and `gemm` runs single-threaded inside (its own
//! threading would split matrices that are far too small to pay for it). On a pool of
//! one thread the samples run in a plain loop with no rayon task at all. Scratch
//! buffers are kept per thread between calls (a few MB at most for these shapes).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::geom::{ConvGeom, KernelError};

/// `y = conv(x, w)` for `groups == 1`; overwrites `y`.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    g.check_forward(x, w, y)?;
    let s = Shape::new(g)?;
    if crate::direct::try_forward(g, x, w, y) {
        return Ok(());
    }
    let per = samples_per_chunk(g.batch);
    let run = |xc: &[f32], yc: &mut [f32]| {
        if s.grouped() {
            return s.direct_grouped(s.cout, s.ckk, MatRef::row_major(w, s.ckk), xc, yc);
        }
        with_scratch(s.scratch_len(), |scratch| {
            let (col, padbuf, wide) = s.split(scratch);
            for (xg, yg) in xc
                .chunks(s.group * s.x_n)
                .zip(yc.chunks_mut(s.group * s.y_n))
            {
                let cols = xg.len() / s.x_n * s.ncol;
                let c = s.unfold_group(xg, col, padbuf);
                // y[group] (cout × cols) = W (cout × ckk) · col (ckk × cols)
                let gathered = s.gathers(cols);
                let out = if gathered {
                    &mut wide[..s.cout * cols]
                } else {
                    &mut *yg
                };
                matmul(
                    s.cout,
                    cols,
                    s.ckk,
                    MatMut::row_major(out, cols),
                    MatRef::row_major(w, s.ckk),
                    MatRef::row_major(c, cols),
                    false,
                );
                if gathered {
                    s.scatter(wide, cols, yg);
                }
            }
        })
    };
    if per >= g.batch {
        run(x, y);
    } else {
        x.par_chunks(per * s.x_n)
            .zip(y.par_chunks_mut(per * s.y_n))
            .for_each(|(xc, yc)| run(xc, yc));
    }
    Ok(())
}

/// `dx = d(sum(dy * conv(x, w))) / dx` for `groups == 1`; overwrites `dx`.
pub fn backward_input(
    g: &ConvGeom,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
) -> Result<(), KernelError> {
    g.check_backward_input(dy, w, dx)?;
    let s = Shape::new(g)?;
    if crate::direct::try_backward_input(g, dy, w, dx) {
        return Ok(());
    }
    if s.via_transposed() {
        return forward(&transposed(g), dy, &flipped(g, w), dx);
    }
    let per = samples_per_chunk(g.batch);
    // Wᵀ (ckk × cout): element (r, co) is w[co·ckk + r].
    let wt = MatRef {
        data: w,
        rs: 1,
        cs: s.ckk,
    };
    let run = |dyc: &[f32], dxc: &mut [f32]| {
        if s.grouped() {
            return s.direct_grouped(s.ckk, s.cout, wt, dyc, dxc);
        }
        with_scratch(s.scratch_len(), |scratch| {
            let (col, padbuf, wide) = s.split(scratch);
            // col2im reads the product back: keep it in cache rather than as large as
            // the forward's group.
            let group = if s.direct {
                s.group
            } else {
                s.group.min((FOLD_COL_VALUES / (s.ckk * s.ncol)).max(1))
            };
            for (dyg, dxg) in dyc.chunks(group * s.y_n).zip(dxc.chunks_mut(group * s.x_n)) {
                let cols = dyg.len() / s.y_n * s.ncol;
                let dy_m = MatRef::row_major(s.gather(dyg, wide, cols), cols);
                if s.direct {
                    // dx[n] is its own col (one sample per group here): write the
                    // product straight into it.
                    matmul(
                        s.ckk,
                        cols,
                        s.cout,
                        MatMut::row_major(dxg, cols),
                        wt,
                        dy_m,
                        false,
                    );
                } else {
                    matmul(
                        s.ckk,
                        cols,
                        s.cout,
                        MatMut::row_major(&mut col[..s.ckk * cols], cols),
                        wt,
                        dy_m,
                        false,
                    );
                    s.fold_group(col, cols, padbuf, dxg);
                }
            }
        })
    };
    if per >= g.batch {
        run(dy, dx);
    } else {
        dy.par_chunks(per * s.y_n)
            .zip(dx.par_chunks_mut(per * s.x_n))
            .for_each(|(dyc, dxc)| run(dyc, dxc));
    }
    Ok(())
}

/// The stride-1 convolution whose forward pass is the input gradient of `g`: `dy`
/// padded by `kernel - 1 - pad` and convolved with the flipped, transposed weight.
fn transposed(g: &ConvGeom) -> ConvGeom {
    ConvGeom {
        cin: g.cout,
        cout: g.cin,
        h: g.out_h(),
        w: g.out_w(),
        pad: g.kernel - 1 - g.pad,
        ..*g
    }
}

/// `w'[ci][co][ky][kx] = w[co][ci][k-1-ky][k-1-kx]`: the weight of [`transposed`].
fn flipped(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let (k, kk) = (g.kernel, g.kernel * g.kernel);
    let mut out = vec![0f32; w.len()];
    for (co, wc) in w.chunks_exact(g.cin * kk).enumerate() {
        for (ci, taps) in wc.chunks_exact(kk).enumerate() {
            let dst = &mut out[(ci * g.cout + co) * kk..][..kk];
            for (i, v) in taps.iter().enumerate() {
                let (ky, kx) = (i / k, i % k);
                dst[(k - 1 - ky) * k + (k - 1 - kx)] = *v;
            }
        }
    }
    out
}

/// `dw = d(sum(dy * conv(x, w))) / dw` for `groups == 1`; overwrites `dw`.
///
/// Each chunk of samples sums into its own partial `dw` and the partials are added at the
/// end, so threads never share an accumulator.
pub fn backward_weight(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> Result<(), KernelError> {
    g.check_backward_weight(x, dy, dw)?;
    let s = Shape::new(g)?;
    if crate::direct::try_backward_weight(g, x, dy, dw) {
        return Ok(());
    }
    let per = samples_per_chunk(g.batch);
    // With fewer output channels than col rows, the sum is kept transposed (column-major
    // `[ckk, cout]`): gemm then packs the small dy instead of the large col, and one
    // transpose per chunk puts it back.
    let transposed = s.cout < s.ckk;
    let run = |xc: &[f32], dyc: &[f32], out: &mut [f32]| {
        if s.direct && s.ncol == 1 {
            // One output position per sample: per-sample products would be rank-1
            // updates; the chunk's samples are the depth of one product instead,
            // dW (cout × ckk) = dyᵀ (cout × samples) · x (samples × ckk), read in place.
            let samples = xc.len() / s.x_n;
            return matmul(
                s.cout,
                s.ckk,
                samples,
                MatMut::row_major(out, s.ckk),
                MatRef {
                    data: dyc,
                    rs: 1,
                    cs: s.cout,
                },
                MatRef::row_major(xc, s.ckk),
                false,
            );
        }
        with_scratch(s.scratch_len(), |scratch| {
            let (col, padbuf, wide) = s.split(scratch);
            let mut acc_t = if transposed {
                vec![0f32; s.cout * s.ckk]
            } else {
                Vec::new()
            };
            for (i, (xg, dyg)) in xc
                .chunks(s.group * s.x_n)
                .zip(dyc.chunks(s.group * s.y_n))
                .enumerate()
            {
                let cols = xg.len() / s.x_n * s.ncol;
                let c = s.unfold_group(xg, col, padbuf);
                // dW (cout × ckk) += dy[group] (cout × cols) · colᵀ (cols × ckk); the
                // junk columns of a wide col meet zeros in the gathered dy.
                let dst = if transposed {
                    MatMut {
                        data: &mut acc_t,
                        rs: 1,
                        cs: s.cout,
                    }
                } else {
                    MatMut::row_major(out, s.ckk)
                };
                matmul(
                    s.cout,
                    s.ckk,
                    cols,
                    dst,
                    MatRef::row_major(s.gather(dyg, wide, cols), cols),
                    MatRef {
                        data: c,
                        rs: 1,
                        cs: cols,
                    },
                    i > 0,
                );
            }
            if transposed {
                for (r, src) in acc_t.chunks_exact(s.cout).enumerate() {
                    for (co, v) in src.iter().enumerate() {
                        out[co * s.ckk + r] = *v;
                    }
                }
            }
        })
    };
    if per >= g.batch {
        run(x, dy, dw);
        return Ok(());
    }
    let w_len = dw.len();
    let partials = x
        .par_chunks(per * s.x_n)
        .zip(dy.par_chunks(per * s.y_n))
        .map(|(xc, dyc)| {
            let mut part = vec![0f32; w_len];
            run(xc, dyc, &mut part);
            part
        })
        .collect::<Vec<_>>();
    dw.fill(0.0);
    for part in partials {
        for (d, p) in dw.iter_mut().zip(part) {
            *d += p;
        }
    }
    Ok(())
}

/// Samples per rayon task: the whole batch on a pool of one thread (a plain loop, no
/// task at all), else about four chunks per thread, so that a thread slowed by another
/// process leaves its last chunks to be stolen instead of holding up the call.
fn samples_per_chunk(batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    if threads == 1 {
        batch
    } else {
        batch.div_ceil(4 * threads).max(1)
    }
}

/// Columns aimed at per product when samples are grouped.
const GROUP_COLS: usize = 256;

/// Most values in a grouped `col` that col2im reads back (1 MB, the L2 cache).
const FOLD_COL_VALUES: usize = 1 << 18;

/// Most values in a grouped `col`.
const COL_BUDGET: usize = 1 << 20;

thread_local! {
    /// im2col scratch kept per thread between calls: a training step runs the same
    /// shapes over and over, and a fresh multi-megabyte buffer per call would pay its
    /// page faults every time.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch slice of `len` values (contents unspecified), reusing this
/// thread's buffer unless it is already lent out.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0f32; len]),
    })
}

/// The matrix sizes of one checked dense convolution.
#[derive(Clone, Copy)]
struct Shape {
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ow: usize,
    /// `cin·k·k`: the rows of `col`, the columns of `W`.
    ckk: usize,
    /// Columns of `col`: `oh·ow`, or `oh·wq` when wide.
    ncol: usize,
    /// Values per input sample.
    x_n: usize,
    /// Values per output sample.
    y_n: usize,
    /// Whether the im2col unfolding of a sample is the sample itself.
    direct: bool,
    /// Whether `col` rows are whole contiguous slices of the phase planes.
    wide: bool,
    /// Whether wide rows hold junk columns (`wq > ow`), so `y` and `dy` need copies.
    junk: bool,
    /// Phases per axis of the padded copy: the stride when wide, else 1.
    q: usize,
    /// Height and width of one phase plane: `ceil((h + 2·pad) / q)` and the same for `w`.
    hq: usize,
    wq: usize,
    /// Output positions per channel: `oh·ow`.
    opix: usize,
    /// Samples side by side in one product (`col` is `ckk × group·ncol`): several where
    /// one sample's columns would fill gemm's 64-row tiles badly.
    group: usize,
}

impl Shape {
    fn new(g: &ConvGeom) -> Result<Self, KernelError> {
        if g.groups != 1 {
            return Err(KernelError::Shape(format!(
                "dense convolution needs groups == 1 ({g:?})"
            )));
        }
        let (oh, ow) = (g.out_h(), g.out_w());
        let k = g.kernel;
        let one_by_one = k == 1 && g.stride == 1 && g.pad == 0;
        let whole = g.pad == 0 && k == g.h && k == g.w;
        let direct = one_by_one || whole;
        let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
        let ckk = g.cin * k * k;
        // Wide trades one short copy per (col row, output row) for one per (output
        // channel, output row) (narrowing y, widening dy) plus `wq - ow` junk columns in
        // every product; with ~5 ns per short copy and ~40 flop/ns of gemm that pays
        // when 5·(ckk - cout) > ckk·cout·(wq - ow) / 40. (Stems, with ckk = 9, lose.)
        // Stride-1 rows of 16 or fewer values are fixed-size copies, ~4× cheaper.
        let junk = wp.div_ceil(g.stride) - ow;
        let per_copy = if g.stride == 1 && ow <= 16 { 50 } else { 200 };
        // A kernel narrower than the stride (1×1 strided skips) would leave phase planes
        // unread: the narrow gather reads only what it needs.
        let wide = !direct
            && k >= g.stride
            && ckk > g.cout
            && per_copy * (ckk - g.cout) > ckk * g.cout * junk;
        let q = if wide { g.stride } else { 1 };
        let (hq, wq) = (hp.div_ceil(q), wp.div_ceil(q));
        let ncol = if wide { oh * wq } else { oh * ow };
        // Direct unfoldings group only in `backward_weight` (the other passes have
        // `direct_grouped`), and only where they are small.
        let group = if ncol >= GROUP_COLS || (direct && ncol >= GROUP_COLS / 2) {
            1
        } else {
            let mut group = GROUP_COLS.div_ceil(ncol).min(g.batch);
            while group > 1 && ckk * group * ncol > COL_BUDGET {
                group -= 1;
            }
            group
        };
        Ok(Self {
            cin: g.cin,
            cout: g.cout,
            h: g.h,
            w: g.w,
            k,
            stride: g.stride,
            pad: g.pad,
            ow,
            ckk,
            ncol,
            x_n: g.cin * g.h * g.w,
            y_n: g.cout * oh * ow,
            direct,
            wide,
            junk: wide && junk > 0,
            q,
            hq,
            wq,
            opix: oh * ow,
            group,
        })
    }

    /// Values in the planes of the padded copy, without the spare tail.
    fn planes_len(&self) -> usize {
        self.cin * self.q * self.q * self.hq * self.wq
    }

    /// Lengths of the three scratch parts for one sample: `col`; the zero-bordered copy
    /// of the sample (none when an unpadded narrow unfolding can read the sample in
    /// place; when wide, spare zeros for the last rows' junk columns to read); the wide
    /// `y`/`dy`.
    fn scratch_parts(&self) -> [usize; 3] {
        let gcols = self.group * self.ncol;
        let wide = if self.gathers(gcols) {
            self.cout * gcols
        } else {
            0
        };
        if self.direct {
            let col = if self.group > 1 { self.ckk * gcols } else { 0 };
            return [col, 0, wide];
        }
        let padded = if self.wide {
            self.planes_len() + (self.k - 1) / self.q + 1
        } else if self.pad > 0 {
            self.planes_len()
        } else {
            0
        };
        [self.ckk * gcols, padded, wide]
    }

    fn scratch_len(&self) -> usize {
        self.scratch_parts().iter().sum()
    }

    /// Splits a `scratch_len()` buffer into `(col, padded, wide)`.
    fn split<'a>(&self, scratch: &'a mut [f32]) -> (&'a mut [f32], &'a mut [f32], &'a mut [f32]) {
        let [c, p, _] = self.scratch_parts();
        let (col, rest) = scratch.split_at_mut(c);
        let (padbuf, wide) = rest.split_at_mut(p);
        (col, padbuf, wide)
    }

    /// Whether `backward_input` runs as the forward pass of [`transposed`]: for stride 1
    /// (with `pad < kernel`) that is a product of depth `cout·k·k` with no col2im, where
    /// the col2im way is a product of depth `cout` (store-bound) then a scatter-add
    /// (17% faster on a 3×3 24→24 14×14 layer). With few input channels the transposed
    /// product would have that few rows (a stem's one channel makes it a gemv), so
    /// those keep col2im.
    fn via_transposed(&self) -> bool {
        !self.direct && self.stride == 1 && self.pad < self.k && self.cin >= 8
    }

    /// Whether samples go through [`Self::direct_grouped`]: direct unfoldings with so
    /// few output positions that a per-sample product would waste most of gemm's 64-row
    /// tiles (49 positions at 7×7 use 49 of 64).
    fn grouped(&self) -> bool {
        self.direct && self.ncol < GROUP_COLS / 2
    }

    /// `out[n] (m × ncol) = lhs (m × kdim) · src[n] (kdim × ncol)` for each sample `n` of
    /// a chunk, with several samples side by side in each product: `src` samples are
    /// gathered into `[kdim, group·ncol]`, and the product scattered back. With one
    /// position per sample the chunk is read and written in place through strides.
    fn direct_grouped(&self, m: usize, kdim: usize, lhs: MatRef, src: &[f32], out: &mut [f32]) {
        let ncol = self.ncol;
        if ncol == 1 {
            let samples = src.len() / kdim;
            let dst = MatMut {
                data: out,
                rs: 1,
                cs: m,
            };
            let rhs = MatRef {
                data: src,
                rs: 1,
                cs: kdim,
            };
            return matmul(m, samples, kdim, dst, lhs, rhs, false);
        }
        let group = GROUP_COLS.div_ceil(ncol);
        with_scratch((kdim + m) * group * ncol, |scratch| {
            let (inb, outb) = scratch.split_at_mut(kdim * group * ncol);
            for (sg, og) in src
                .chunks(group * kdim * ncol)
                .zip(out.chunks_mut(group * m * ncol))
            {
                let cols = sg.len() / kdim;
                for (i, smp) in sg.chunks_exact(kdim * ncol).enumerate() {
                    for (r, row) in smp.chunks_exact(ncol).enumerate() {
                        inb[r * cols + i * ncol..][..ncol].copy_from_slice(row);
                    }
                }
                matmul(
                    m,
                    cols,
                    kdim,
                    MatMut::row_major(&mut outb[..m * cols], cols),
                    lhs,
                    MatRef::row_major(&inb[..kdim * cols], cols),
                    false,
                );
                for (i, smp) in og.chunks_exact_mut(m * ncol).enumerate() {
                    for (r, row) in smp.chunks_exact_mut(ncol).enumerate() {
                        row.copy_from_slice(&outb[r * cols + i * ncol..][..ncol]);
                    }
                }
            }
        })
    }

    /// Start of phase plane `(ci, a, b)`: the padded positions `(i·q + a, j·q + b)` of
    /// channel `ci`, at `(i, j)` in a `hq × wq` plane.
    fn plane(&self, ci: usize, a: usize, b: usize) -> usize {
        ((ci * self.q + a) * self.q + b) * self.hq * self.wq
    }

    /// Calls `f(x_row, plane_row, first_ix, first_j)` for every (input row, column
    /// phase): input columns `first_ix, first_ix + q, …` sit at `first_j, first_j + 1, …`
    /// of the plane row.
    fn for_each_row_phase(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let (q, p) = (self.q, self.pad);
        for ci in 0..self.cin {
            for iy in 0..self.h {
                let r = iy + p;
                for b in 0..q {
                    let ix0 = (b + q - p % q) % q;
                    if ix0 >= self.w {
                        continue;
                    }
                    let plane_row = self.plane(ci, r % q, b) + (r / q) * self.wq;
                    f((ci * self.h + iy) * self.w, plane_row, ix0, (ix0 + p) / q);
                }
            }
        }
    }

    /// Writes the sample `x`, with `pad` zeros around each channel, into `padbuf` split
    /// into `q × q` phase planes per channel (zeros everywhere else, spare tail included).
    fn pad_into(&self, x: &[f32], padbuf: &mut [f32]) {
        padbuf.fill(0.0);
        let (q, w) = (self.q, self.w);
        self.for_each_row_phase(|xr, pr, ix0, j0| {
            let n = (w - ix0).div_ceil(q);
            let dst = &mut padbuf[pr + j0..pr + j0 + n];
            if q == 1 {
                dst.copy_from_slice(&x[xr..xr + w]);
            } else {
                let src = &x[xr + ix0..xr + w];
                for (t, d) in dst.iter_mut().enumerate() {
                    *d = src[t * q];
                }
            }
        });
    }

    /// The inverse of [`Self::pad_into`]: copies the positions of the sample from the
    /// phase planes back to an unpadded `dx`.
    fn unpad_into(&self, padbuf: &[f32], dx: &mut [f32]) {
        let (q, w) = (self.q, self.w);
        self.for_each_row_phase(|xr, pr, ix0, j0| {
            let n = (w - ix0).div_ceil(q);
            let src = &padbuf[pr + j0..pr + j0 + n];
            if q == 1 {
                dx[xr..xr + w].copy_from_slice(src);
            } else {
                let dst = &mut dx[xr + ix0..xr + w];
                for (t, v) in src.iter().enumerate() {
                    dst[t * q] = *v;
                }
            }
        });
    }

    /// Where row `(ci, ky, kx)` of `col` starts reading in the padded copy.
    fn row_origin(&self, ci: usize, ky: usize, kx: usize) -> usize {
        let q = self.q;
        self.plane(ci, ky % q, kx % q) + (ky / q) * self.wq + kx / q
    }

    /// The im2col matrix (`ckk × ncol`) of one sample: `x` itself when the unfolding is
    /// the identity, else `col` with `col[(ci·k + ky)·k + kx][oy·ow + ox] =
    /// xpad[ci][oy·s + ky][ox·s + kx]`, `xpad` the sample with `pad` zeros around each
    /// channel. Gathering from a padded copy leaves the inner loops without bounds
    /// arithmetic. Wide, the copy is split into `s × s` phase planes (`xpad[ci][i·s +
    /// a][j·s + b]` at `(i, j)` of plane `(a, b)`), in which each row of `col` (with `ox`
    /// over the whole plane width `wq`) is one contiguous slice: one copy per row rather
    /// than one per output row, which matters with outputs as narrow as 7 columns.
    ///
    /// Row `r` is written at `col[r·ld..]`, so that samples can sit side by side.
    fn unfold_into(&self, x: &[f32], col: &mut [f32], ld: usize, padbuf: &mut [f32]) {
        if self.direct {
            for (r, row) in x.chunks_exact(self.ncol).enumerate() {
                col[r * ld..r * ld + self.ncol].copy_from_slice(row);
            }
            return;
        }
        let src: &[f32] = if padbuf.is_empty() {
            x
        } else {
            self.pad_into(x, padbuf);
            padbuf
        };
        let (k, s, ow, ncol, wq) = (self.k, self.stride, self.ow, self.ncol, self.wq);
        let span = (ow - 1) * s + 1;
        let mut r = 0;
        for ci in 0..self.cin {
            for ky in 0..k {
                for kx in 0..k {
                    let dst = &mut col[r * ld..r * ld + ncol];
                    r += 1;
                    let origin = self.row_origin(ci, ky, kx);
                    if self.wide {
                        dst.copy_from_slice(&src[origin..origin + ncol]);
                        continue;
                    }
                    if s == 1 && ow <= 16 {
                        copy_short_rows(dst, src, origin, ow, wq);
                        continue;
                    }
                    if s == 2 && ow <= 8 {
                        gather_short_rows::<8, 16>(dst, src, origin, ow, 2 * wq);
                        continue;
                    }
                    for (oy, d) in dst.chunks_exact_mut(ow).enumerate() {
                        let start = origin + oy * s * wq;
                        let from = &src[start..start + span];
                        if s == 1 {
                            d.copy_from_slice(from);
                        } else {
                            for (j, o) in d.iter_mut().enumerate() {
                                *o = from[j * s];
                            }
                        }
                    }
                }
            }
        }
    }

    /// The im2col matrix (`ckk × cols`) of a group of samples side by side: a single
    /// direct sample is its own; else each sample is unfolded into its columns of `col`.
    fn unfold_group<'a>(&self, xg: &'a [f32], col: &'a mut [f32], padbuf: &mut [f32]) -> &'a [f32] {
        let samples = xg.len() / self.x_n;
        if self.direct && samples == 1 {
            return xg;
        }
        let cols = samples * self.ncol;
        for (i, xn) in xg.chunks_exact(self.x_n).enumerate() {
            self.unfold_into(xn, &mut col[i * self.ncol..], cols, padbuf);
        }
        &col[..self.ckk * cols]
    }

    /// Whether a product of `cols` columns goes through the `wide` scratch (junk
    /// columns, or several samples side by side) rather than `y`/`dy` in place.
    fn gathers(&self, cols: usize) -> bool {
        self.junk || cols > self.ncol
    }

    /// `dy` of a group of samples as a `cout × cols` matrix: itself (one sample, no junk
    /// columns), or its samples side by side in `wide`, junk columns zeroed (so they add
    /// nothing to `dW` or `dx`).
    fn gather<'a>(&self, dyg: &'a [f32], wide: &'a mut [f32], cols: usize) -> &'a [f32] {
        if !self.gathers(cols) {
            return dyg;
        }
        let (ncol, ow, wq) = (self.ncol, self.ow, self.wq);
        for (i, dyn_) in dyg.chunks_exact(self.y_n).enumerate() {
            for (co, src) in dyn_.chunks_exact(self.opix).enumerate() {
                let dst = &mut wide[co * cols + i * ncol..][..ncol];
                if self.junk {
                    for (d, s) in dst.chunks_exact_mut(wq).zip(src.chunks_exact(ow)) {
                        d[..ow].copy_from_slice(s);
                        d[ow..].fill(0.0);
                    }
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }
        &wide[..self.cout * cols]
    }

    /// The inverse of [`Self::gather`]: copies a `cout × cols` product to the samples of
    /// `yg`, dropping junk columns.
    fn scatter(&self, wide: &[f32], cols: usize, yg: &mut [f32]) {
        let (ncol, ow, wq) = (self.ncol, self.ow, self.wq);
        for (i, yn) in yg.chunks_exact_mut(self.y_n).enumerate() {
            for (co, dst) in yn.chunks_exact_mut(self.opix).enumerate() {
                let src = &wide[co * cols + i * ncol..][..ncol];
                if self.junk {
                    for (d, s) in dst.chunks_exact_mut(ow).zip(src.chunks_exact(wq)) {
                        d.copy_from_slice(&s[..ow]);
                    }
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }
    }

    /// col2im of each sample of a group (its columns of a `ckk × cols` `col`) into `dxg`.
    fn fold_group(&self, col: &[f32], cols: usize, padbuf: &mut [f32], dxg: &mut [f32]) {
        for (i, dxn) in dxg.chunks_exact_mut(self.x_n).enumerate() {
            self.fold_into(&col[i * self.ncol..], cols, padbuf, dxn);
        }
    }

    /// col2im: overwrites `dx` (one sample) with the sum, over every `col` entry, of that
    /// entry at the input position it was unfolded from (padding entries are dropped).
    /// Mirrors [`Self::unfold`]: sums go to the padded copy when there is one (wide junk
    /// columns hold zeros and land harmlessly), then its sample positions to `dx`.
    /// Row `r` of `col` is read at `col[r·ld..]`.
    fn fold_into(&self, col: &[f32], ld: usize, padbuf: &mut [f32], dx: &mut [f32]) {
        let padded = !padbuf.is_empty();
        let acc: &mut [f32] = if padded { padbuf } else { dx };
        acc.fill(0.0);
        let (k, s, ow, ncol, wq) = (self.k, self.stride, self.ow, self.ncol, self.wq);
        let span = (ow - 1) * s + 1;
        let mut r = 0;
        for ci in 0..self.cin {
            for ky in 0..k {
                for kx in 0..k {
                    let src = &col[r * ld..r * ld + ncol];
                    r += 1;
                    let origin = self.row_origin(ci, ky, kx);
                    if self.wide {
                        for (o, v) in acc[origin..origin + ncol].iter_mut().zip(src) {
                            *o += *v;
                        }
                        continue;
                    }
                    if s == 1 && ow <= 8 {
                        add_short_rows::<8, 8>(acc, src, origin, ow, wq);
                        continue;
                    }
                    if s == 1 && ow <= 16 {
                        add_short_rows::<16, 16>(acc, src, origin, ow, wq);
                        continue;
                    }
                    if s == 2 && ow <= 8 {
                        add_short_rows::<8, 16>(acc, src, origin, ow, 2 * wq);
                        continue;
                    }
                    for (oy, c) in src.chunks_exact(ow).enumerate() {
                        let start = origin + oy * s * wq;
                        let to = &mut acc[start..start + span];
                        if s == 1 {
                            for (o, v) in to.iter_mut().zip(c) {
                                *o += *v;
                            }
                        } else {
                            for (j, v) in c.iter().enumerate() {
                                to[j * s] += *v;
                            }
                        }
                    }
                }
            }
        }
        if padded {
            self.unpad_into(padbuf, dx);
        }
    }
}

/// `dst[oy·ow..][..ow] = src[origin + oy·wq..][..ow]` for every row `oy` of `dst`, with
/// `ow <= 16`: rows this short would be one `memcpy` call each, so each is a fixed-size
/// copy of 8 or 16 values instead (the overshoot lands in the next row, rewritten next;
/// rows too close to an end take the exact copy).
fn copy_short_rows(dst: &mut [f32], src: &[f32], origin: usize, ow: usize, wq: usize) {
    fn rows<const B: usize>(dst: &mut [f32], src: &[f32], origin: usize, ow: usize, wq: usize) {
        for oy in 0..dst.len() / ow {
            let (d, f) = (oy * ow, origin + oy * wq);
            if d + B <= dst.len() && f + B <= src.len() {
                let block: &[f32; B] = src[f..f + B].try_into().unwrap_or(&[0.0; B]);
                dst[d..d + B].copy_from_slice(block);
            } else {
                dst[d..d + ow].copy_from_slice(&src[f..f + ow]);
            }
        }
    }
    if ow <= 8 {
        rows::<8>(dst, src, origin, ow, wq);
    } else {
        rows::<16>(dst, src, origin, ow, wq);
    }
}

/// `dst[oy·ow + j] = src[origin + oy·step + j·S]` for `j < ow <= B` and every row `oy`
/// of `dst`, with `S = BS / B`: each row a fixed-size block (the overshoot lands in the
/// next row, rewritten next; rows too close to an end take the exact loop).
fn gather_short_rows<const B: usize, const BS: usize>(
    dst: &mut [f32],
    src: &[f32],
    origin: usize,
    ow: usize,
    step: usize,
) {
    let stride = BS / B;
    for oy in 0..dst.len() / ow {
        let (d, f) = (oy * ow, origin + oy * step);
        if d + B <= dst.len() && f + BS <= src.len() {
            let block: &[f32; BS] = src[f..f + BS].try_into().unwrap_or(&[0.0; BS]);
            let picked: [f32; B] = std::array::from_fn(|j| block[j * stride]);
            dst[d..d + B].copy_from_slice(&picked);
        } else {
            for j in 0..ow {
                dst[d + j] = src[f + j * stride];
            }
        }
    }
}

/// `acc[origin + oy·step + j·S] += src[oy·ow + j]` for `j < ow <= B` and every row `oy`
/// of `src`, with `S = BS / B`: each row one fixed-size read-add-write of `BS` values
/// (lanes past `ow`, and between strided lanes, add zero).
fn add_short_rows<const B: usize, const BS: usize>(
    acc: &mut [f32],
    src: &[f32],
    origin: usize,
    ow: usize,
    step: usize,
) {
    let stride = BS / B;
    for (oy, c) in src.chunks_exact(ow).enumerate() {
        let f = origin + oy * step;
        if f + BS <= acc.len() {
            let mut add = [0f32; BS];
            for (j, v) in c.iter().enumerate() {
                add[j * stride] = *v;
            }
            for (o, v) in acc[f..f + BS].iter_mut().zip(add) {
                *o += v;
            }
        } else {
            for (j, v) in c.iter().enumerate() {
                acc[f + j * stride] += *v;
            }
        }
    }
}

/// A read-only strided matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct MatRef<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// A writable strided matrix: element `(i, j)` is `data[i·rs + j·cs]`.
struct MatMut<'a> {
    data: &'a mut [f32],
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    fn row_major(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }
}

impl<'a> MatMut<'a> {
    fn row_major(data: &'a mut [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }
}

/// Whether every element of a `rows × cols` matrix with strides `rs`, `cs` lies inside
/// a slice of `len` values.
fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// `dst (m × n) = [dst +] a (m × k) · b (k × n)`, single-threaded `gemm`.
///
/// Panics if a view does not fit its slice: callers build the views from checked shapes,
/// so that would be a bug here, and the check is what makes the raw-pointer call sound.
fn matmul(m: usize, n: usize, k: usize, dst: MatMut, a: MatRef, b: MatRef, accumulate: bool) {
    assert!(
        fits(dst.data.len(), m, n, dst.rs, dst.cs)
            && fits(a.data.len(), m, k, a.rs, a.cs)
            && fits(b.data.len(), k, n, b.rs, b.cs),
        "matrix view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    let strides = [dst.rs, dst.cs, a.rs, a.cs, b.rs, b.cs].map(|v| v as isize);
    // SAFETY: the assert above keeps every element `gemm` reads or writes inside its
    // slice (non-negative strides, sizes checked with `fits`); `dst` is borrowed mutably
    // and so cannot alias `a` or `b`; `Parallelism::None` keeps the call on this thread.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            strides[1],
            strides[0],
            accumulate,
            a.data.as_ptr(),
            strides[3],
            strides[2],
            b.data.as_ptr(),
            strides[5],
            strides[4],
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    fn geom(
        batch: usize,
        cin: usize,
        cout: usize,
        hw: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> ConvGeom {
        ConvGeom {
            batch,
            cin,
            cout,
            h: hw,
            w: hw,
            kernel: k,
            stride: s,
            pad: p,
            groups: 1,
        }
    }

    /// Each way through the kernels, named by a shape that takes it, against the
    /// reference: the integration tests cover shapes, this makes sure they cover paths.
    #[test]
    fn every_path_is_taken_and_matches_reference() {
        type Path = fn(&Shape) -> bool;
        let cases: [(&str, ConvGeom, Path); 13] = [
            (
                "narrow, stride 1, rows of 9 to 16",
                geom(2, 1, 8, 12, 3, 1, 1),
                |s| !s.direct && !s.wide && s.stride == 1 && s.ow > 8 && s.ow <= 16,
            ),
            (
                "narrow, stride 2, k7 on 7x7",
                geom(3, 2, 40, 7, 7, 2, 3),
                |s| !s.wide && s.stride == 2 && s.group > 1,
            ),
            (
                "wide, samples grouped, last group partial",
                geom(9, 8, 8, 7, 5, 1, 2),
                |s| s.wide && s.junk && s.group > 1 && 9 % s.group != 0,
            ),
            ("direct, per sample", geom(3, 16, 24, 14, 1, 1, 0), |s| {
                s.direct && !s.grouped()
            }),
            ("direct, grouped", geom(9, 12, 20, 7, 1, 1, 0), |s| {
                s.grouped() && s.ncol > 1
            }),
            ("direct, one position", geom(5, 8, 6, 3, 3, 1, 0), |s| {
                s.direct && s.ncol == 1
            }),
            (
                "wide, stride 1, dx as a forward",
                geom(2, 8, 8, 6, 3, 1, 1),
                |s| s.wide && s.q == 1 && s.junk && s.via_transposed(),
            ),
            (
                "wide, stride 1, dx by col2im",
                geom(2, 4, 2, 6, 3, 1, 1),
                |s| s.wide && s.q == 1 && !s.via_transposed(),
            ),
            ("stride 1, pad >= kernel", geom(2, 8, 4, 3, 3, 1, 3), |s| {
                !s.direct && !s.via_transposed()
            }),
            ("wide, stride 2", geom(2, 8, 8, 9, 3, 2, 1), |s| {
                s.wide && s.q == 2
            }),
            (
                "narrow, stride 1, padded",
                geom(2, 1, 16, 6, 3, 1, 1),
                |s| !s.direct && !s.wide && s.stride == 1 && s.pad == 1,
            ),
            (
                "narrow, stride 2, unpadded",
                geom(2, 1, 16, 7, 3, 2, 0),
                |s| !s.direct && !s.wide && s.stride == 2 && s.pad == 0,
            ),
            ("narrow, 1x1 stride 2", geom(2, 16, 8, 7, 1, 2, 0), |s| {
                !s.direct && !s.wide
            }),
        ];
        for (name, g, takes) in cases {
            let s = Shape::new(&g).unwrap();
            assert!(takes(&s), "{name}: {g:?} takes another path");
            let x: Vec<f32> = (0..g.x_len())
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let w: Vec<f32> = (0..g.w_len())
                .map(|i| ((i * 5 % 13) as f32 - 6.0) / 6.0)
                .collect();
            let dy: Vec<f32> = (0..g.y_len())
                .map(|i| ((i * 3 % 7) as f32 - 3.0) / 3.0)
                .collect();
            let (mut y, mut y_ref) = (vec![1.0; g.y_len()], vec![0.0; g.y_len()]);
            let (mut dx, mut dx_ref) = (vec![1.0; g.x_len()], vec![0.0; g.x_len()]);
            let (mut dw, mut dw_ref) = (vec![1.0; g.w_len()], vec![0.0; g.w_len()]);
            forward(&g, &x, &w, &mut y).unwrap();
            backward_input(&g, &dy, &w, &mut dx).unwrap();
            backward_weight(&g, &x, &dy, &mut dw).unwrap();
            reference::conv_forward(&g, &x, &w, &mut y_ref).unwrap();
            reference::conv_backward_input(&g, &dy, &w, &mut dx_ref).unwrap();
            reference::conv_backward_weight(&g, &x, &dy, &mut dw_ref).unwrap();
            for (what, a, b) in [
                ("y", &y, &y_ref),
                ("dx", &dx, &dx_ref),
                ("dw", &dw, &dw_ref),
            ] {
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                let err = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
                assert!(err <= 1e-4, "{name}: {what} error {err}");
            }
        }
    }
}
