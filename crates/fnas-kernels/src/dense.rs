//! Dense (`groups == 1`) convolution as matrix products, one sample at a time.
//!
//! Per sample the convolution is `y[n] = W · col(x[n])`, with `W` the weight viewed as a
//! `[cout, cin·k·k]` matrix and `col` the `[cin·k·k, out_h·out_w]` im2col unfolding.
//! Where the unfolding is the identity (1×1 stride-1 unpadded kernels, and kernels that
//! cover the whole unpadded input) the sample itself is `col`, so no copy is made. The
//! backward passes are the two other products of the same three matrices:
//! `col(dx[n]) = Wᵀ · dy[n]` (then scattered back by col2im) and
//! `dW = Σₙ dy[n] · col(x[n])ᵀ`; transposes are read through `gemm`'s strides, never
//! copied.
//!
//! Threads: the batch is cut into one chunk per thread of the calling rayon pool, each
//! chunk with its own scratch, and `gemm` runs single-threaded inside (its own threading
//! would split matrices that are far too small to pay for it). On a pool of one thread
//! the samples run in a plain loop with no rayon call at all.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::geom::{ConvGeom, KernelError};

/// `y = conv(x, w)` for `groups == 1`; overwrites `y`.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    // Shape first: the lengths below divide by the stride and subtract the kernel.
    g.check()?;
    g.check_buffers(&[
        ("x", x.len(), g.x_len()),
        ("w", w.len(), g.w_len()),
        ("y", y.len(), g.y_len()),
    ])?;
    let s = Shape::new(g)?;
    let per = samples_per_chunk(g.batch);
    let run = |xc: &[f32], yc: &mut [f32]| {
        with_scratch(s.col_scratch(), |col| {
            for (xn, yn) in xc.chunks_exact(s.x_n).zip(yc.chunks_exact_mut(s.y_n)) {
                let c = s.unfold(xn, col);
                // y[n] (cout × ohw) = W (cout × ckk) · col (ckk × ohw)
                matmul(
                    s.cout,
                    s.ohw,
                    s.ckk,
                    MatMut::row_major(yn, s.ohw),
                    MatRef::row_major(w, s.ckk),
                    MatRef::row_major(c, s.ohw),
                    false,
                );
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
    // Shape first: the lengths below divide by the stride and subtract the kernel.
    g.check()?;
    g.check_buffers(&[
        ("dy", dy.len(), g.y_len()),
        ("w", w.len(), g.w_len()),
        ("dx", dx.len(), g.x_len()),
    ])?;
    let s = Shape::new(g)?;
    let per = samples_per_chunk(g.batch);
    // Wᵀ (ckk × cout): element (r, co) is w[co·ckk + r].
    let wt = MatRef {
        data: w,
        rs: 1,
        cs: s.ckk,
    };
    let run = |dyc: &[f32], dxc: &mut [f32]| {
        with_scratch(s.col_scratch(), |col| {
            for (dyn_, dxn) in dyc.chunks_exact(s.y_n).zip(dxc.chunks_exact_mut(s.x_n)) {
                let dy_m = MatRef::row_major(dyn_, s.ohw);
                if s.direct {
                    // dx[n] is its own col: write the product straight into it.
                    matmul(
                        s.ckk,
                        s.ohw,
                        s.cout,
                        MatMut::row_major(dxn, s.ohw),
                        wt,
                        dy_m,
                        false,
                    );
                } else {
                    matmul(
                        s.ckk,
                        s.ohw,
                        s.cout,
                        MatMut::row_major(col, s.ohw),
                        wt,
                        dy_m,
                        false,
                    );
                    s.fold(col, dxn);
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

/// `dw = d(sum(dy * conv(x, w))) / dw` for `groups == 1`; overwrites `dw`.
///
/// Each chunk of samples sums into its own partial `dw` (the first chunk straight into
/// `dw`), and the partials are added at the end, so threads never share an accumulator.
pub fn backward_weight(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> Result<(), KernelError> {
    // Shape first: the lengths below divide by the stride and subtract the kernel.
    g.check()?;
    g.check_buffers(&[
        ("x", x.len(), g.x_len()),
        ("dy", dy.len(), g.y_len()),
        ("dw", dw.len(), g.w_len()),
    ])?;
    let s = Shape::new(g)?;
    let per = samples_per_chunk(g.batch);
    let run = |xc: &[f32], dyc: &[f32], out: &mut [f32]| {
        with_scratch(s.col_scratch(), |col| {
            for (i, (xn, dyn_)) in xc
                .chunks_exact(s.x_n)
                .zip(dyc.chunks_exact(s.y_n))
                .enumerate()
            {
                let c = s.unfold(xn, col);
                // dW (cout × ckk) += dy[n] (cout × ohw) · colᵀ (ohw × ckk)
                matmul(
                    s.cout,
                    s.ckk,
                    s.ohw,
                    MatMut::row_major(out, s.ckk),
                    MatRef::row_major(dyn_, s.ohw),
                    MatRef {
                        data: c,
                        rs: 1,
                        cs: s.ohw,
                    },
                    i > 0,
                );
            }
        })
    };
    if per >= g.batch {
        run(x, dy, dw);
        return Ok(());
    }
    let (x0, x_rest) = x.split_at(per * s.x_n);
    let (dy0, dy_rest) = dy.split_at(per * s.y_n);
    let w_len = dw.len();
    let ((), partials) = rayon::join(
        || run(x0, dy0, dw),
        || {
            x_rest
                .par_chunks(per * s.x_n)
                .zip(dy_rest.par_chunks(per * s.y_n))
                .map(|(xc, dyc)| {
                    let mut part = vec![0f32; w_len];
                    run(xc, dyc, &mut part);
                    part
                })
                .collect::<Vec<_>>()
        },
    );
    for part in partials {
        for (d, p) in dw.iter_mut().zip(part) {
            *d += p;
        }
    }
    Ok(())
}

/// Samples per rayon task: one chunk per thread of the current pool (at least one
/// sample each), so a pool of one thread gets the whole batch and no task at all.
fn samples_per_chunk(batch: usize) -> usize {
    let threads = rayon::current_num_threads().clamp(1, batch.max(1));
    batch.div_ceil(threads)
}

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
    /// Output positions per channel (`oh·ow`): the columns of `col`.
    ohw: usize,
    /// `cin·k·k`: the rows of `col`, the columns of `W`.
    ckk: usize,
    /// Values per input sample.
    x_n: usize,
    /// Values per output sample.
    y_n: usize,
    /// Whether the im2col unfolding of a sample is the sample itself.
    direct: bool,
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
        Ok(Self {
            cin: g.cin,
            cout: g.cout,
            h: g.h,
            w: g.w,
            k,
            stride: g.stride,
            pad: g.pad,
            ow,
            ohw: oh * ow,
            ckk: g.cin * k * k,
            x_n: g.cin * g.h * g.w,
            y_n: g.cout * oh * ow,
            direct: one_by_one || whole,
        })
    }

    /// Scratch values needed for one sample: its `col`, then (when padded) the
    /// zero-bordered copy of the sample that `col` is gathered from.
    fn col_scratch(&self) -> usize {
        if self.direct {
            0
        } else {
            self.ckk * self.ohw + self.padded_len()
        }
    }

    /// Padded height and width.
    fn padded_hw(&self) -> (usize, usize) {
        (self.h + 2 * self.pad, self.w + 2 * self.pad)
    }

    /// Values in the zero-bordered copy of one sample (none when unpadded: the sample is
    /// read in place).
    fn padded_len(&self) -> usize {
        if self.pad == 0 {
            0
        } else {
            let (hp, wp) = self.padded_hw();
            self.cin * hp * wp
        }
    }

    /// The im2col matrix of one sample (`x_n` values) in `scratch`
    /// (`col_scratch()` values): `x` itself when the unfolding is the identity, else
    /// `col[(ci·k + ky)·k + kx][oy·ow + ox] = xpad[ci][oy·s + ky][ox·s + kx]` with
    /// `xpad` the sample with `pad` zeros around each channel. Gathering from the padded
    /// copy leaves the inner loops without bounds arithmetic: with outputs as narrow as
    /// 7 columns, per-row bookkeeping would cost more than the copying.
    fn unfold<'a>(&self, x: &'a [f32], scratch: &'a mut [f32]) -> &'a [f32] {
        if self.direct {
            return x;
        }
        let (col, padbuf) = scratch.split_at_mut(self.ckk * self.ohw);
        let (hp, wp) = self.padded_hw();
        let src: &[f32] = if self.pad == 0 {
            x
        } else {
            let p = self.pad;
            for (dst, chan) in padbuf
                .chunks_exact_mut(hp * wp)
                .zip(x.chunks_exact(self.h * self.w))
            {
                dst[..p * wp].fill(0.0);
                dst[(p + self.h) * wp..].fill(0.0);
                for (drow, srow) in dst[p * wp..(p + self.h) * wp]
                    .chunks_exact_mut(wp)
                    .zip(chan.chunks_exact(self.w))
                {
                    drow[..p].fill(0.0);
                    drow[p..p + self.w].copy_from_slice(srow);
                    drow[p + self.w..].fill(0.0);
                }
            }
            padbuf
        };
        let (k, s, ow) = (self.k, self.stride, self.ow);
        let span = (ow - 1) * s + 1;
        let mut rows = col.chunks_exact_mut(self.ohw);
        for chan in src.chunks_exact(hp * wp).take(self.cin) {
            for ky in 0..k {
                for kx in 0..k {
                    let Some(dst) = rows.next() else { return col };
                    for (oy, d) in dst.chunks_exact_mut(ow).enumerate() {
                        let start = (oy * s + ky) * wp + kx;
                        let from = &chan[start..start + span];
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
        col
    }

    /// col2im: overwrites `dx` (one sample) with the sum, over every `col` entry, of that
    /// entry at the input position it was unfolded from (padding entries are dropped).
    /// `scratch` is the `col_scratch()` buffer whose first `ckk·ohw` values are `col`;
    /// with padding the sums go to its zero-bordered tail first, mirroring [`Self::unfold`].
    fn fold(&self, scratch: &mut [f32], dx: &mut [f32]) {
        let (col, padbuf) = scratch.split_at_mut(self.ckk * self.ohw);
        let (hp, wp) = self.padded_hw();
        let acc: &mut [f32] = if self.pad == 0 { dx } else { padbuf };
        acc.fill(0.0);
        let (k, s, ow) = (self.k, self.stride, self.ow);
        let span = (ow - 1) * s + 1;
        let mut rows = col.chunks_exact(self.ohw);
        for chan in acc.chunks_exact_mut(hp * wp).take(self.cin) {
            for ky in 0..k {
                for kx in 0..k {
                    let Some(src) = rows.next() else { break };
                    for (oy, c) in src.chunks_exact(ow).enumerate() {
                        let start = (oy * s + ky) * wp + kx;
                        let to = &mut chan[start..start + span];
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
        if self.pad > 0 {
            let p = self.pad;
            for (chan, out) in padbuf
                .chunks_exact(hp * wp)
                .zip(dx.chunks_exact_mut(self.h * self.w))
            {
                for (srow, drow) in chan[p * wp..(p + self.h) * wp]
                    .chunks_exact(wp)
                    .zip(out.chunks_exact_mut(self.w))
                {
                    drow.copy_from_slice(&srow[p..p + self.w]);
                }
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
