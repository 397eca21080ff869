//! Direct (no im2col) dense convolution forward pass and weight gradient with AVX-512
//! register tiles.
//!
//! The weight is repacked once per call to `[block group][cin][k][k][16·nb]`: blocks of
//! 16 output channels (the last one zero-padded), taken one or two at a time (`nb`),
//! so one 512-bit register holds 16 output channels of one tap. Each sample is copied
//! once into a zero-bordered buffer (wide and tall enough for the tiles' junk
//! positions), then for every block group and every tile of `R × P` output positions
//! (R rows of P columns) an accumulator tile `nb × R × P` zmm registers sums over
//! `cin × k × k`: one weight load per block and one broadcast input value per position
//! and tap. The tile goes through a small buffer to the NCHW output (positions past the
//! output edge and channels past `cout` are dropped).
//!
//! The weight gradient ([`try_backward_weight`]) is tiled the other way round: `dy` is
//! transposed per sample to `[oh·ow][16 output channels]` and each tile keeps
//! `blocks × input channels × one kernel row` accumulators (≤ 28 zmm), summing over
//! every output position one `dy` vector per block times one broadcast input value per
//! (channel, tap); the sums stay packed `[block group][cin][k][k][16·nb]` across the
//! samples of a chunk and are unpacked to `[cout][cin][k][k]` once. Input channels are
//! padded with zero planes to a multiple of the tile's channel count.
//!
//! The stride-2 input gradient ([`try_backward_input`]) reuses the forward tiles, one
//! plan per stride phase of `dx`: a stride-1 convolution of `dy` (placed at a signed
//! offset in its zero-bordered buffer) with the phase's `⌈k/2⌉ × ⌊k/2⌋`-style
//! sub-kernel, each output written to every second row and column of `dx`. A last block
//! of ≤ 8 output channels runs on 256-bit registers (forward and weight gradient).
//!
//! Used only where `avx512f` is detected at run time; otherwise (and for shapes it does
//! not take: 1×1 kernels, strides other than 1 and 2) [`try_forward`] returns `false`
//! and the caller keeps its im2col + gemm path. Threads as in `dense`: chunks of the
//! batch per rayon task of the calling pool, a plain loop on a pool of one thread; the
//! weight gradient one chunk per thread (each sums into its own packed copy) with up to
//! 16 samples per tile call, so the sums stay in registers across samples.

use crate::geom::ConvGeom;

/// Runs `y = conv(x, w)` directly and returns `true` where the CPU and the shape suit
/// the direct kernel; returns `false` (leaving `y` untouched) otherwise. The shape and
/// buffer lengths must already be checked (`groups == 1`).
pub(crate) fn try_forward(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !is_x86_feature_detected!("avx512f") {
            return false;
        }
        let Some(plan) = avx512::Plan::new(g) else {
            return false;
        };
        plan.run(x, w, y);
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, x, w, y);
        false
    }
}

/// Runs the stride-2 input gradient `dx` directly and returns `true` where the CPU and
/// the shape suit it (k ≥ 3, 8 or more output channels); returns `false` (leaving `dx`
/// untouched) otherwise. Each of the four stride phases of `dx` (rows and columns of
/// one parity) is a stride-1 convolution of `dy` with the phase's taps of the kernel,
/// flipped and transposed, run by the forward kernel and written to the phase's
/// positions. The shape and buffer lengths must already be checked (`groups == 1`).
pub(crate) fn try_backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !is_x86_feature_detected!("avx512f") {
            return false;
        }
        avx512::backward_input_phases(g, dy, w, dx)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, dy, w, dx);
        false
    }
}

/// Runs `dw = Σ dy ⋆ x` (the weight gradient) directly and returns `true` where the CPU
/// and the shape suit the direct kernel; returns `false` (leaving `dw` untouched)
/// otherwise. The shape and buffer lengths must already be checked (`groups == 1`).
pub(crate) fn try_backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !is_x86_feature_detected!("avx512f") {
            return false;
        }
        let Some(plan) = avx512::WPlan::new(g) else {
            return false;
        };
        plan.run(x, dy, dw);
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, x, dy, dw);
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    use rayon::prelude::*;

    use crate::geom::ConvGeom;

    /// Lanes of one zmm register.
    const L: usize = 16;

    /// One tile kernel: see [`tile`].
    type TileFn = unsafe fn(&TileArgs, *mut f32);

    /// Runtime sizes of one tile call.
    struct TileArgs {
        /// Padded input at the tile's first tap (channel 0).
        x: *const f32,
        /// Packed weight of the block group (`[cin][kh][kw][16·nb]`).
        w: *const f32,
        cin: usize,
        kh: usize,
        kw: usize,
        /// Row length and channel plane size of the padded input.
        wp: usize,
        plane: usize,
    }

    /// Accumulates one `CB × R × P` tile of 16-channel vectors over `cin × k × k`
    /// and stores it to `out` as `[CB][R][P][16]`.
    ///
    /// # Safety
    /// `avx512f` must be available; `a.x` must be readable at every
    /// `ci·plane + (r·S + ky)·wp + c·S + kx` for `ci < cin`, `r < R`, `c < P`,
    /// `ky < kh`, `kx < kw`; `a.w` readable for `cin·kh·kw·16·CB` values; `out` writable for
    /// `CB·R·P·16` values.
    #[target_feature(enable = "avx512f")]
    // Indices over the three accumulator axes read as the tile they address.
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile<const CB: usize, const R: usize, const P: usize, const S: usize>(
        a: &TileArgs,
        out: *mut f32,
    ) {
        let mut acc = [[[_mm512_setzero_ps(); P]; R]; CB];
        let (kh, kw, wp) = (a.kh, a.kw, a.wp);
        let mut wq = a.w;
        for ci in 0..a.cin {
            // SAFETY: in bounds of the padded sample by the caller's contract.
            let xc = unsafe { a.x.add(ci * a.plane) };
            for ky in 0..kh {
                // SAFETY: as above.
                let xrow = unsafe { xc.add(ky * wp) };
                for kx in 0..kw {
                    let mut wv = [_mm512_setzero_ps(); CB];
                    for (b, v) in wv.iter_mut().enumerate() {
                        // SAFETY: `wq` walks the group's `cin·kh·kw·16·CB` packed values.
                        *v = unsafe { _mm512_loadu_ps(wq.add(b * L)) };
                    }
                    for r in 0..R {
                        for c in 0..P {
                            // SAFETY: tap (ky, kx) of position (r, c), within the contract.
                            let xv = unsafe { *xrow.add(r * S * wp + c * S + kx) };
                            let bv = _mm512_set1_ps(xv);
                            for b in 0..CB {
                                acc[b][r][c] = _mm512_fmadd_ps(wv[b], bv, acc[b][r][c]);
                            }
                        }
                    }
                    // SAFETY: stays within (or one past) the group's packed weight.
                    wq = unsafe { wq.add(CB * L) };
                }
            }
        }
        for (b, rows) in acc.iter().enumerate() {
            for (r, cols) in rows.iter().enumerate() {
                for (c, v) in cols.iter().enumerate() {
                    // SAFETY: `out` holds CB·R·P·16 values by the contract.
                    unsafe { _mm512_storeu_ps(out.add(((b * R + r) * P + c) * L), *v) };
                }
            }
        }
    }

    /// Tile shapes `(R, P)` compiled for one and two blocks (`R·P ≤ 14`).
    macro_rules! kernels {
        ($key:expr; pairs: $(($r2:literal, $p2:literal)),*; singles: $(($r1:literal, $p1:literal)),*) => {
            match $key {
                $(
                    (1, $r2, $p2, 1) => Some(tile::<1, $r2, $p2, 1> as TileFn),
                    (1, $r2, $p2, 2) => Some(tile::<1, $r2, $p2, 2> as TileFn),
                    (2, $r2, $p2, 1) => Some(tile::<2, $r2, $p2, 1> as TileFn),
                    (2, $r2, $p2, 2) => Some(tile::<2, $r2, $p2, 2> as TileFn),
                )*
                $(
                    (1, $r1, $p1, 1) => Some(tile::<1, $r1, $p1, 1> as TileFn),
                    (1, $r1, $p1, 2) => Some(tile::<1, $r1, $p1, 2> as TileFn),
                )*
                _ => None,
            }
        };
    }

    /// Tile shapes for two blocks (also compiled for one block).
    const PAIRS: [(usize, usize); 7] = [(1, 14), (2, 7), (1, 12), (2, 6), (3, 4), (1, 8), (2, 4)];
    /// Extra tile shapes for one block only (`R·P ≤ 28`).
    const SINGLES: [(usize, usize); 6] = [(2, 14), (4, 7), (2, 12), (3, 8), (4, 4), (1, 16)];

    fn kernel(cb: usize, r: usize, p: usize, s: usize) -> Option<TileFn> {
        kernels!((cb, r, p, s);
            pairs: (1, 14), (2, 7), (1, 12), (2, 6), (3, 4), (1, 8), (2, 4);
            singles: (2, 14), (4, 7), (2, 12), (3, 8), (4, 4), (1, 16))
    }

    /// [`tile`] for one block of which only the first 8 output channels are real: 256-bit
    /// accumulators (half the FMA work of a 16-lane block), same packed weight and same
    /// `[R][P][16]` output layout (lanes 8..16 left as they were).
    ///
    /// # Safety
    /// As for [`tile`] with `CB = 1`, and `avx512vl` must be available.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile_half<const R: usize, const P: usize, const S: usize>(
        a: &TileArgs,
        out: *mut f32,
    ) {
        let mut acc = [[_mm256_setzero_ps(); P]; R];
        let (kh, kw, wp) = (a.kh, a.kw, a.wp);
        let mut wq = a.w;
        for ci in 0..a.cin {
            // SAFETY: in bounds of the padded sample by the caller's contract.
            let xc = unsafe { a.x.add(ci * a.plane) };
            for ky in 0..kh {
                // SAFETY: as above.
                let xrow = unsafe { xc.add(ky * wp) };
                for kx in 0..kw {
                    // SAFETY: `wq` walks the block's `cin·kh·kw·16` packed values.
                    let wv = unsafe { _mm256_loadu_ps(wq) };
                    for r in 0..R {
                        for c in 0..P {
                            // SAFETY: tap (ky, kx) of position (r, c), within the contract.
                            let xv = unsafe { *xrow.add(r * S * wp + c * S + kx) };
                            acc[r][c] = _mm256_fmadd_ps(wv, _mm256_set1_ps(xv), acc[r][c]);
                        }
                    }
                    // SAFETY: stays within (or one past) the block's packed weight.
                    wq = unsafe { wq.add(L) };
                }
            }
        }
        for (r, cols) in acc.iter().enumerate() {
            for (c, v) in cols.iter().enumerate() {
                // SAFETY: `out` holds R·P·16 values by the contract.
                unsafe { _mm256_storeu_ps(out.add((r * P + c) * L), *v) };
            }
        }
    }

    /// The half-block kernel of a tile shape (any of [`kernel`]'s shapes).
    fn kernel_half(r: usize, p: usize, s: usize) -> Option<TileFn> {
        macro_rules! pick {
            ($(($r:literal, $p:literal)),*) => {
                match (r, p, s) {
                    $(
                        ($r, $p, 1) => Some(tile_half::<$r, $p, 1> as TileFn),
                        ($r, $p, 2) => Some(tile_half::<$r, $p, 2> as TileFn),
                    )*
                    _ => None,
                }
            };
        }
        pick!(
            (1, 14),
            (2, 7),
            (1, 12),
            (2, 6),
            (3, 4),
            (1, 8),
            (2, 4),
            (2, 14),
            (4, 7),
            (2, 12),
            (3, 8),
            (4, 4),
            (1, 16)
        )
    }

    /// Sizes of one direct convolution: `cin` input planes of `h × w` placed at
    /// `(pad_y, pad_x)` (negative: cropped) in a zero buffer, a `kh × kw` kernel at stride
    /// `s`, `oh × ow` outputs written to `y[co·o_plane + (o_y0 + oy·o_s)·o_rs + o_x0 +
    /// ox·o_s]` of each sample.
    pub(super) struct Dims {
        pub(super) cin: usize,
        pub(super) cout: usize,
        pub(super) h: usize,
        pub(super) w: usize,
        pub(super) kh: usize,
        pub(super) kw: usize,
        pub(super) s: usize,
        pub(super) pad_y: isize,
        pub(super) pad_x: isize,
        pub(super) oh: usize,
        pub(super) ow: usize,
        pub(super) o_plane: usize,
        pub(super) o_rs: usize,
        pub(super) o_s: usize,
        pub(super) o_y0: usize,
        pub(super) o_x0: usize,
    }

    impl Dims {
        /// The plain forward pass of `g`.
        fn forward(g: &ConvGeom) -> Self {
            let (oh, ow) = (g.out_h(), g.out_w());
            Self {
                cin: g.cin,
                cout: g.cout,
                h: g.h,
                w: g.w,
                kh: g.kernel,
                kw: g.kernel,
                s: g.stride,
                pad_y: g.pad as isize,
                pad_x: g.pad as isize,
                oh,
                ow,
                o_plane: oh * ow,
                o_rs: ow,
                o_s: 1,
                o_y0: 0,
                o_x0: 0,
            }
        }
    }

    /// The tiling of one convolution.
    pub(super) struct Plan {
        d: Dims,
        /// Tile rows and columns.
        r: usize,
        p: usize,
        /// Blocks per group (1 or 2) and blocks of 16 output channels.
        cb: usize,
        nblk: usize,
        /// Padded buffer height, width.
        hp: usize,
        wp: usize,
        full: TileFn,
        /// The one-block kernel of the same tile, for an odd last block.
        single: TileFn,
        /// The 8-lane kernel of the same tile, for a last block of ≤ 8 channels (which
        /// then is a group of its own).
        half: Option<TileFn>,
    }

    impl Plan {
        pub(super) fn new(g: &ConvGeom) -> Option<Self> {
            let (k, s) = (g.kernel, g.stride);
            // Few input channels (stems) leave too little work per tile: the gemm
            // path is faster there (0.39 against 0.64 ms on a 3×3 1→16 28×28 stem).
            if k < 2 || g.cin < 8 || !(s == 1 || s == 2) || g.groups != 1 {
                return None;
            }
            Self::with_dims(Dims::forward(g))
        }

        pub(super) fn with_dims(d: Dims) -> Option<Self> {
            let (oh, ow, s) = (d.oh, d.ow, d.s);
            let nblk = d.cout.div_ceil(L);
            // A last block of 8 or fewer channels runs alone on 256-bit accumulators;
            // the full blocks before it pair up as usual.
            let half_ok =
                (1..=L / 2).contains(&(d.cout % L)) && is_x86_feature_detected!("avx512vl");
            let nfull = if half_ok { nblk - 1 } else { nblk };
            let cb = if nfull >= 2 { 2 } else { 1 };
            let cands: Vec<(usize, usize)> = if cb == 2 {
                PAIRS.to_vec()
            } else {
                PAIRS.iter().chain(SINGLES.iter()).copied().collect()
            };
            // Cost: FMA cycles of every tile (junk positions included) plus a few per
            // tap of each tile for the weight loads and loop.
            let (r, p) = cands.into_iter().min_by_key(|&(r, p)| {
                let tiles = oh.div_ceil(r) * ow.div_ceil(p);
                tiles * (cb * r * p + 2)
            })?;
            let full = kernel(cb, r, p, s)?;
            let single = kernel(1, r, p, s)?;
            let half = if half_ok {
                Some(kernel_half(r, p, s)?)
            } else {
                None
            };
            // Every tap of every tile position (junk ones included) is inside the
            // buffer; input rows and columns past it are never read and are dropped.
            let hp = (oh.div_ceil(r) * r - 1) * s + d.kh;
            let wp = (ow.div_ceil(p) * p - 1) * s + d.kw;
            Some(Self {
                d,
                r,
                p,
                cb,
                nblk,
                hp,
                wp,
                full,
                single,
                half,
            })
        }

        /// Packs `w` (`[cout][cin][kh][kw]`) as `[group][cin][kh][kw][16·nb]`, zeros
        /// past `cout`; group `gi` starts at block `gi·cb`, value `gi·cb·16·cin·kh·kw`.
        pub(super) fn pack(&self, w: &[f32]) -> Vec<f32> {
            let kk = self.d.kh * self.d.kw;
            let cin = self.d.cin;
            let per_block = L * cin * kk;
            let mut out = vec![0f32; self.nblk * per_block];
            let mut b0 = 0;
            while b0 < self.nblk {
                let nb = self.cb.min(self.nblk - b0);
                let base = b0 * per_block;
                for co in b0 * L..((b0 + nb) * L).min(self.d.cout) {
                    let (b, lane) = (co / L - b0, co % L);
                    for ci in 0..cin {
                        for t in 0..kk {
                            out[base + (ci * kk + t) * nb * L + b * L + lane] =
                                w[(co * cin + ci) * kk + t];
                        }
                    }
                }
                b0 += nb;
            }
            out
        }

        fn padded_len(&self) -> usize {
            self.d.cin * self.hp * self.wp
        }

        pub(super) fn run(self, x: &[f32], w: &[f32], y: &mut [f32]) {
            let packed = self.pack(w);
            let x_n = self.d.cin * self.d.h * self.d.w;
            let y_n = self.d.cout * self.d.o_plane;
            run_plans(&[(self, packed)], x, x_n, y, y_n);
        }

        /// One sample: pad into `xp` (whose border is already zero unless `clear`),
        /// then every tile.
        fn sample(&self, x: &[f32], packed: &[f32], xp: &mut [f32], clear: bool, y: &mut [f32]) {
            let d = &self.d;
            let plane = self.hp * self.wp;
            if clear {
                xp.fill(0.0);
            }
            // Source columns `c0..c1` land at `c + pad_x` in `0..wp`.
            let c0 = (-d.pad_x).max(0) as usize;
            let c1 = (self.wp as isize - d.pad_x).clamp(0, d.w as isize) as usize;
            for (src, dst) in x.chunks_exact(d.h * d.w).zip(xp.chunks_exact_mut(plane)) {
                for (r, srow) in src.chunks_exact(d.w).enumerate() {
                    let dr = r as isize + d.pad_y;
                    if dr < 0 || dr >= self.hp as isize || c0 >= c1 {
                        continue;
                    }
                    let at = dr as usize * self.wp;
                    let dc = (c0 as isize + d.pad_x) as usize;
                    dst[at + dc..at + dc + (c1 - c0)].copy_from_slice(&srow[c0..c1]);
                }
            }
            let (r, p, s) = (self.r, self.p, d.s);
            let kk = d.kh * d.kw;
            let per_block = L * d.cin * kk;
            let mut tmp = [0f32; 2 * 28 * L];
            let mut b0 = 0;
            while b0 < self.nblk {
                let nb = self.cb.min(self.nblk - b0);
                let f = match self.half {
                    Some(h) if nb == 1 && b0 + 1 == self.nblk => h,
                    _ if nb == self.cb => self.full,
                    _ => self.single,
                };
                let wg = &packed[b0 * per_block..(b0 + nb) * per_block];
                for oy0 in (0..d.oh).step_by(r) {
                    for ox0 in (0..d.ow).step_by(p) {
                        let off = oy0 * s * self.wp + ox0 * s;
                        let args = TileArgs {
                            x: xp[off..].as_ptr(),
                            w: wg.as_ptr(),
                            cin: d.cin,
                            kh: d.kh,
                            kw: d.kw,
                            wp: self.wp,
                            plane,
                        };
                        // SAFETY: avx512f was detected in `try_forward` or
                        // `try_backward_input` (and avx512vl in `with_dims` where the half
                        // kernel exists). The padded buffer holds `hp = (⌈oh/r⌉·r − 1)·s
                        // + kh` rows and `wp = (⌈ow/p⌉·p − 1)·s + kw` columns per channel,
                        // so every tap of every tile position is inside it; `wg` is the
                        // group's `cin·kh·kw·16·nb` values; `tmp` holds 2·28·16 ≥
                        // nb·r·p·16.
                        unsafe { f(&args, tmp.as_mut_ptr()) };
                        let rows = r.min(d.oh - oy0);
                        let cols = p.min(d.ow - ox0);
                        for b in 0..nb {
                            for lane in 0..L {
                                let co = (b0 + b) * L + lane;
                                if co >= d.cout {
                                    break;
                                }
                                let yc = &mut y[co * d.o_plane..][..d.o_plane];
                                for rr in 0..rows {
                                    let t = &tmp[((b * r + rr) * p) * L + lane..];
                                    let yr = d.o_y0 + (oy0 + rr) * d.o_s;
                                    let yr = &mut yc[yr * d.o_rs + d.o_x0 + ox0 * d.o_s..];
                                    for c in 0..cols {
                                        yr[c * d.o_s] = t[c * L];
                                    }
                                }
                            }
                        }
                    }
                }
                b0 += nb;
            }
        }
    }

    /// One stride-2 phase along one axis: positions `i = 2q + a − pad` (`0 ≤ i < n`) take
    /// the taps `2m + a` of `dy[q − m]`. Returns the taps `ka`, the first `q` and the
    /// count of positions.
    fn phase(k: usize, pad: usize, n: usize, a: usize) -> (usize, usize, usize) {
        let ka = (k - a).div_ceil(2);
        let q_lo = pad.saturating_sub(a).div_ceil(2);
        let q_hi = (n + pad - a).div_ceil(2);
        (ka, q_lo, q_hi.saturating_sub(q_lo))
    }

    /// See [`super::try_backward_input`].
    pub(super) fn backward_input_phases(
        g: &ConvGeom,
        dy: &[f32],
        w: &[f32],
        dx: &mut [f32],
    ) -> bool {
        let k = g.kernel;
        if g.stride != 2 || k < 3 || g.cout < 8 || g.groups != 1 {
            return false;
        }
        let (oh, ow, kk) = (g.out_h(), g.out_w(), k * k);
        let mut plans = Vec::with_capacity(4);
        for a in 0..2 {
            for b in 0..2 {
                let (kha, qa, pha) = phase(k, g.pad, g.h, a);
                let (kwb, qb, pwb) = phase(k, g.pad, g.w, b);
                if pha == 0 || pwb == 0 {
                    continue;
                }
                // w'[ci][co][my][mx] = w[co][ci][2(kha−1−my) + a][2(kwb−1−mx) + b]
                let mut wsub = vec![0f32; g.cin * g.cout * kha * kwb];
                for (co, wc) in w.chunks_exact(g.cin * kk).enumerate() {
                    for (ci, taps) in wc.chunks_exact(kk).enumerate() {
                        let dst = &mut wsub[(ci * g.cout + co) * kha * kwb..][..kha * kwb];
                        for my in 0..kha {
                            for mx in 0..kwb {
                                dst[my * kwb + mx] =
                                    taps[(2 * (kha - 1 - my) + a) * k + 2 * (kwb - 1 - mx) + b];
                            }
                        }
                    }
                }
                let d = Dims {
                    cin: g.cout,
                    cout: g.cin,
                    h: oh,
                    w: ow,
                    kh: kha,
                    kw: kwb,
                    s: 1,
                    pad_y: kha as isize - 1 - qa as isize,
                    pad_x: kwb as isize - 1 - qb as isize,
                    oh: pha,
                    ow: pwb,
                    o_plane: g.h * g.w,
                    o_rs: g.w,
                    o_s: 2,
                    o_y0: 2 * qa + a - g.pad,
                    o_x0: 2 * qb + b - g.pad,
                };
                let Some(plan) = Plan::with_dims(d) else {
                    return false;
                };
                let packed = plan.pack(&wsub);
                plans.push((plan, packed));
            }
        }
        run_plans(&plans, dy, g.cout * oh * ow, dx, g.cin * g.h * g.w);
        true
    }

    /// Runs several plans over the same input samples, each writing its part of the same
    /// output samples: the batch in chunks per rayon task (a plain loop on one thread).
    pub(super) fn run_plans(
        plans: &[(Plan, Vec<f32>)],
        x: &[f32],
        x_n: usize,
        y: &mut [f32],
        y_n: usize,
    ) {
        let batch = x.len() / x_n;
        let threads = rayon::current_num_threads().max(1);
        let len = plans.iter().map(|(p, _)| p.padded_len()).max().unwrap_or(0);
        // One plan keeps its zero border from sample to sample; several re-zero it.
        let clear = plans.len() > 1;
        let run = |xc: &[f32], yc: &mut [f32]| {
            with_scratch(len, |xp| {
                xp.fill(0.0);
                for (xs, ys) in xc.chunks_exact(x_n).zip(yc.chunks_exact_mut(y_n)) {
                    for (plan, packed) in plans {
                        let xp = &mut xp[..plan.padded_len()];
                        plan.sample(xs, packed, xp, clear, ys);
                    }
                }
            })
        };
        if threads == 1 {
            run(x, y);
        } else {
            let per = batch.div_ceil(4 * threads).max(1);
            x.par_chunks(per * x_n)
                .zip(y.par_chunks_mut(per * y_n))
                .for_each(|(xc, yc)| run(xc, yc));
        }
    }

    /// One weight-gradient tile kernel: see [`wtile`].
    type WTileFn = unsafe fn(&WTileArgs);

    /// Runtime sizes of one weight-gradient tile call.
    struct WTileArgs {
        /// Padded sample at the tile's first channel, kernel row `ky`, column 0.
        x: *const f32,
        /// The group's transposed `dy`: `[oh·ow][16·CB]`.
        dy: *const f32,
        /// The group's packed sums at the tile's first channel, row `ky`, column 0
        /// (`[ci][k][k][16·CB]`, `ci_stride` values per channel).
        acc: *mut f32,
        ci_stride: usize,
        /// Samples, and the distance between two samples in `x` and in `dy`.
        ns: usize,
        xs: usize,
        ds: usize,
        oh: usize,
        ow: usize,
        wp: usize,
        plane: usize,
    }

    /// Adds to the packed sums of `CB` blocks of 16 output channels, `CI` input
    /// channels and the `T` taps of one kernel row the products of every output
    /// position: one `dy` vector per block and one broadcast input value per channel
    /// and tap.
    ///
    /// # Safety
    /// `avx512f` must be available; `a.x` readable at every
    /// `n·xs + j·plane + oy·S·wp + ox·S + t` (`n < ns`, `j < CI`, `oy < oh`, `ox < ow`,
    /// `t < T`); `a.dy` readable for `oh·ow·16·CB` values from each `n·ds`; `a.acc` readable and writable at every
    /// `j·ci_stride + t·16·CB + b·16 + lane`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn wtile<const CB: usize, const CI: usize, const T: usize, const S: usize>(
        a: &WTileArgs,
    ) {
        let mut acc = [[[_mm512_setzero_ps(); T]; CI]; CB];
        for b in 0..CB {
            for j in 0..CI {
                for t in 0..T {
                    // SAFETY: within the sums by the caller's contract.
                    acc[b][j][t] =
                        unsafe { _mm512_loadu_ps(a.acc.add(j * a.ci_stride + (t * CB + b) * L)) };
                }
            }
        }
        for n in 0..a.ns {
            // SAFETY: sample `n` of the tile, within the contract.
            let (xn, mut dq) = unsafe { (a.x.add(n * a.xs), a.dy.add(n * a.ds)) };
            for oy in 0..a.oh {
                // SAFETY: row `oy·S` of the tile's window, within the contract.
                let xrow = unsafe { xn.add(oy * S * a.wp) };
                for ox in 0..a.ow {
                    // SAFETY: as above.
                    let xq = unsafe { xrow.add(ox * S) };
                    let mut dv = [_mm512_setzero_ps(); CB];
                    for (b, v) in dv.iter_mut().enumerate() {
                        // SAFETY: `dq` walks the group's `oh·ow·16·CB` values.
                        *v = unsafe { _mm512_loadu_ps(dq.add(b * L)) };
                    }
                    for j in 0..CI {
                        for t in 0..T {
                            // SAFETY: channel `j`, tap `t` of this position, in the contract.
                            let bv = _mm512_set1_ps(unsafe { *xq.add(j * a.plane + t) });
                            for b in 0..CB {
                                acc[b][j][t] = _mm512_fmadd_ps(dv[b], bv, acc[b][j][t]);
                            }
                        }
                    }
                    // SAFETY: stays within (or one past) the group's values.
                    dq = unsafe { dq.add(CB * L) };
                }
            }
        }
        for b in 0..CB {
            for j in 0..CI {
                for t in 0..T {
                    // SAFETY: as for the loads above.
                    unsafe {
                        _mm512_storeu_ps(
                            a.acc.add(j * a.ci_stride + (t * CB + b) * L),
                            acc[b][j][t],
                        )
                    };
                }
            }
        }
    }

    /// The weight-gradient kernel of `cb` blocks, kernel size `k` and stride `s`, with
    /// its channels per tile (`cb·CI·k ≤ 28` accumulators).
    fn wkernel(cb: usize, k: usize, s: usize) -> Option<(usize, WTileFn)> {
        macro_rules! pick {
            ($(($cb:literal, $k:literal, $ci:literal)),*) => {
                match (cb, k, s) {
                    $(
                        ($cb, $k, 1) => Some(($ci, wtile::<$cb, $ci, $k, 1> as WTileFn)),
                        ($cb, $k, 2) => Some(($ci, wtile::<$cb, $ci, $k, 2> as WTileFn)),
                    )*
                    _ => None,
                }
            };
        }
        pick!(
            (1, 2, 8),
            (1, 3, 8),
            (1, 4, 6),
            (1, 5, 5),
            (1, 6, 4),
            (1, 7, 4),
            (2, 2, 4),
            (2, 3, 4),
            (2, 4, 3),
            (2, 5, 2),
            (2, 6, 2),
            (2, 7, 2)
        )
    }

    /// [`wtile`] for one block of which only the first 8 output channels are real:
    /// 256-bit `dy` vectors and sums (lanes 8..16 of the packed sums left as they were).
    ///
    /// # Safety
    /// As for [`wtile`] with `CB = 1`, and `avx512vl` must be available.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn wtile_half<const CI: usize, const T: usize, const S: usize>(a: &WTileArgs) {
        let mut acc = [[_mm256_setzero_ps(); T]; CI];
        for j in 0..CI {
            for t in 0..T {
                // SAFETY: within the sums by the caller's contract.
                acc[j][t] = unsafe { _mm256_loadu_ps(a.acc.add(j * a.ci_stride + t * L)) };
            }
        }
        for n in 0..a.ns {
            // SAFETY: sample `n` of the tile, within the contract.
            let (xn, mut dq) = unsafe { (a.x.add(n * a.xs), a.dy.add(n * a.ds)) };
            for oy in 0..a.oh {
                // SAFETY: row `oy·S` of the tile's window, within the contract.
                let xrow = unsafe { xn.add(oy * S * a.wp) };
                for ox in 0..a.ow {
                    // SAFETY: as above.
                    let xq = unsafe { xrow.add(ox * S) };
                    // SAFETY: `dq` walks the block's `oh·ow·16` values.
                    let dv = unsafe { _mm256_loadu_ps(dq) };
                    for j in 0..CI {
                        for t in 0..T {
                            // SAFETY: channel `j`, tap `t` of this position, in the contract.
                            let bv = _mm256_set1_ps(unsafe { *xq.add(j * a.plane + t) });
                            acc[j][t] = _mm256_fmadd_ps(dv, bv, acc[j][t]);
                        }
                    }
                    // SAFETY: stays within (or one past) the block's values.
                    dq = unsafe { dq.add(L) };
                }
            }
        }
        for j in 0..CI {
            for t in 0..T {
                // SAFETY: as for the loads above.
                unsafe { _mm256_storeu_ps(a.acc.add(j * a.ci_stride + t * L), acc[j][t]) };
            }
        }
    }

    /// The half-block weight-gradient kernel of kernel size `k` and stride `s`, with its
    /// channels per tile.
    fn wkernel_half(k: usize, s: usize) -> Option<(usize, WTileFn)> {
        macro_rules! pick {
            ($(($k:literal, $ci:literal)),*) => {
                match (k, s) {
                    $(
                        ($k, 1) => Some(($ci, wtile_half::<$ci, $k, 1> as WTileFn)),
                        ($k, 2) => Some(($ci, wtile_half::<$ci, $k, 2> as WTileFn)),
                    )*
                    _ => None,
                }
            };
        }
        pick!((2, 8), (3, 8), (4, 6), (5, 5), (6, 4), (7, 4))
    }

    /// Bytes of prepared samples per weight-gradient tile call.
    const BATCH_BYTES: usize = 512 << 10;

    /// The tiling of one weight gradient: per sample, `x` is zero-bordered and `dy`
    /// transposed to `[group][oh·ow][16·nb]`, then every (block group, channel group,
    /// kernel row) tile adds its products into packed sums `[group][ci][k][k][16·nb]`.
    pub(super) struct WPlan {
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        k: usize,
        pad: usize,
        oh: usize,
        ow: usize,
        cb: usize,
        nblk: usize,
        /// Channels padded to a multiple of each tile's channel count (the larger).
        cinp: usize,
        hp: usize,
        wp: usize,
        full: (usize, WTileFn),
        single: (usize, WTileFn),
        /// The 8-lane tile for a last block of ≤ 8 channels (then a group of its own).
        half: Option<(usize, WTileFn)>,
    }

    impl WPlan {
        pub(super) fn new(g: &ConvGeom) -> Option<Self> {
            let (k, s) = (g.kernel, g.stride);
            if k < 2 || g.cin < 8 || !(s == 1 || s == 2) || g.groups != 1 {
                return None;
            }
            let nblk = g.cout.div_ceil(L);
            // A last block of 8 or fewer channels runs alone on 256-bit sums.
            let half_ok =
                (1..=L / 2).contains(&(g.cout % L)) && is_x86_feature_detected!("avx512vl");
            let nfull = if half_ok { nblk - 1 } else { nblk };
            let cb = if nfull >= 2 { 2 } else { 1 };
            let full = wkernel(cb, k, s)?;
            let single = wkernel(1, k, s)?;
            let half = if half_ok {
                Some(wkernel_half(k, s)?)
            } else {
                None
            };
            let cinp = [Some(full), Some(single), half]
                .into_iter()
                .flatten()
                .map(|(ci, _)| g.cin.next_multiple_of(ci))
                .max()
                .unwrap_or(g.cin);
            Some(Self {
                cin: g.cin,
                cout: g.cout,
                h: g.h,
                w: g.w,
                k,
                pad: g.pad,
                oh: g.out_h(),
                ow: g.out_w(),
                cb,
                nblk,
                cinp,
                hp: g.h + 2 * g.pad,
                wp: g.w + 2 * g.pad,
                full,
                single,
                half,
            })
        }

        fn xp_len(&self) -> usize {
            self.cinp * self.hp * self.wp
        }

        fn dyt_len(&self) -> usize {
            self.nblk * L * self.oh * self.ow
        }

        fn sums_len(&self) -> usize {
            self.nblk * L * self.cinp * self.k * self.k
        }

        pub(super) fn run(&self, x: &[f32], dy: &[f32], dw: &mut [f32]) {
            let x_n = self.cin * self.h * self.w;
            let y_n = self.cout * self.oh * self.ow;
            let batch = x.len() / x_n;
            let threads = rayon::current_num_threads().max(1);
            let (xp_len, dyt_len) = (self.xp_len(), self.dyt_len());
            // Samples per tile call: the sums stay in registers over all of them; their
            // buffers (about 512 KB) stay in cache.
            let per_tile = (BATCH_BYTES / (4 * (xp_len + dyt_len))).clamp(1, 16);
            let run = |xc: &[f32], dyc: &[f32]| {
                let mut sums = vec![0f32; self.sums_len()];
                let ns = per_tile.min(xc.len() / x_n);
                with_scratch(ns * (xp_len + dyt_len), |buf| {
                    buf.fill(0.0);
                    let (xp, dyt) = buf.split_at_mut(ns * xp_len);
                    for (xg, dg) in xc.chunks(ns * x_n).zip(dyc.chunks(ns * y_n)) {
                        let n = xg.len() / x_n;
                        for (i, (xs, ds)) in
                            xg.chunks_exact(x_n).zip(dg.chunks_exact(y_n)).enumerate()
                        {
                            self.prepare(
                                xs,
                                ds,
                                &mut xp[i * xp_len..][..xp_len],
                                &mut dyt[i * dyt_len..][..dyt_len],
                            );
                        }
                        self.tiles(xp, dyt, n, &mut sums);
                    }
                });
                sums
            };
            let sums = if threads == 1 {
                run(x, dy)
            } else {
                // One chunk per thread: each chunk sums into its own packed copy of
                // `dw`, which costs more to allocate and add than an uneven split.
                let per = batch.div_ceil(threads).max(1);
                let parts: Vec<Vec<f32>> = x
                    .par_chunks(per * x_n)
                    .zip(dy.par_chunks(per * y_n))
                    .map(|(xc, dyc)| run(xc, dyc))
                    .collect();
                let mut total = vec![0f32; self.sums_len()];
                for part in parts {
                    for (t, p) in total.iter_mut().zip(part) {
                        *t += p;
                    }
                }
                total
            };
            self.unpack(&sums, dw);
        }

        /// `dw[co][ci][t]` from the packed sums.
        fn unpack(&self, sums: &[f32], dw: &mut [f32]) {
            let kk = self.k * self.k;
            let per_block = L * self.cinp * kk;
            for co in 0..self.cout {
                let blk = co / L;
                let b0 = blk - blk % self.cb;
                let nb = self.cb.min(self.nblk - b0);
                let base = b0 * per_block;
                let (b, lane) = (blk - b0, co % L);
                for ci in 0..self.cin {
                    for t in 0..kk {
                        dw[(co * self.cin + ci) * kk + t] =
                            sums[base + (ci * kk + t) * nb * L + b * L + lane];
                    }
                }
            }
        }

        /// One sample: pad `x` into `xp` and transpose `dy` into `dyt` (both zero past
        /// the real values).
        fn prepare(&self, x: &[f32], dy: &[f32], xp: &mut [f32], dyt: &mut [f32]) {
            let plane = self.hp * self.wp;
            for (src, dst) in x
                .chunks_exact(self.h * self.w)
                .zip(xp.chunks_exact_mut(plane))
            {
                for (srow, drow) in src
                    .chunks_exact(self.w)
                    .zip(dst[self.pad * self.wp..].chunks_mut(self.wp))
                {
                    drow[self.pad..self.pad + self.w].copy_from_slice(srow);
                }
            }
            let opix = self.oh * self.ow;
            for (co, src) in dy.chunks_exact(opix).enumerate() {
                let blk = co / L;
                let b0 = blk - blk % self.cb;
                let nb = self.cb.min(self.nblk - b0);
                let dst = &mut dyt[b0 * L * opix..][..nb * L * opix];
                let lane = (blk - b0) * L + co % L;
                for (p, v) in src.iter().enumerate() {
                    dst[p * nb * L + lane] = *v;
                }
            }
        }

        /// Every tile over `ns` prepared samples (`xp`, `dyt` their buffers, one after
        /// the other).
        fn tiles(&self, xp: &[f32], dyt: &[f32], ns: usize, sums: &mut [f32]) {
            let plane = self.hp * self.wp;
            let opix = self.oh * self.ow;
            let (xs, ds) = (self.xp_len(), self.dyt_len());
            let kk = self.k * self.k;
            let per_block = L * self.cinp * kk;
            let mut b0 = 0;
            while b0 < self.nblk {
                let nb = self.cb.min(self.nblk - b0);
                let (ci_step, f) = match self.half {
                    Some(h) if nb == 1 && b0 + 1 == self.nblk => h,
                    _ if nb == self.cb => self.full,
                    _ => self.single,
                };
                // The group's values of the first sample; later samples `ds` further.
                let dg = &dyt[b0 * L * opix..];
                let sg = &mut sums[b0 * per_block..][..nb * per_block];
                for ci0 in (0..self.cin.next_multiple_of(ci_step)).step_by(ci_step) {
                    for ky in 0..self.k {
                        let args = WTileArgs {
                            x: xp[ci0 * plane + ky * self.wp..].as_ptr(),
                            dy: dg.as_ptr(),
                            acc: sg[(ci0 * kk + ky * self.k) * nb * L..].as_mut_ptr(),
                            ci_stride: kk * nb * L,
                            ns,
                            xs,
                            ds,
                            oh: self.oh,
                            ow: self.ow,
                            wp: self.wp,
                            plane,
                        };
                        // SAFETY: avx512f was detected in `try_backward_weight` (and
                        // avx512vl in `WPlan::new` where the half tile exists). `xp`
                        // holds `ns` samples `xs` apart (`dyt` likewise, `ds` apart), each
                        // `cinp` planes of `hp × wp` with `(oh−1)·s + k ≤ hp` and
                        // `(ow−1)·s + k ≤ wp`, so every tap of every position of
                        // channels `ci0..ci0 + ci_step ≤ cinp` (the largest of the
                        // paddings) is inside it; `dg` is the
                        // group's `oh·ow·16·nb` values; `sg` holds `cinp·k·k·16·nb`
                        // sums, of which the tile touches channels `ci0..ci0 + ci_step`,
                        // row `ky`.
                        unsafe { f(&args) };
                    }
                }
                b0 += nb;
            }
        }
    }

    thread_local! {
        /// Padded-sample scratch kept per thread between calls.
        static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

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
}
