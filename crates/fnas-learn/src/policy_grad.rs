//! The gradient of the PPO loss over the flat parameter vector, by a plain-Rust forward
//! pass and a hand-written backward pass (backpropagation through time of the LSTM in
//! [`crate::policy`]).
//!
//! Why not burn's autodiff: the tensors are tiny (a batch of a few dozen architectures,
//! hidden 64, under about 30 decisions), so burn's per-op graph bookkeeping and
//! allocations cost far more than the arithmetic; the update took about half the CPU
//! time of a whole search. The burn pass ([`crate::policy::forward_batch`]) stays as the
//! oracle the tests compare this gradient with.
//!
//! The loss, for a batch of `B` samples and `T` decisions (module docs of [`crate::ppo`]):
//! ```text
//! L = -1/B sum_k w_k min(r_k A_k, clamp(r_k, 1-eps, 1+eps) A_k)
//!     - coef/B sum_k 1/T sum_t H_{k,t},        r_k = exp(sum_t logp_{k,t} - old_k)
//! ```
//! The non-smooth points follow burn's autodiff exactly, so that the two gradients agree
//! up to rounding: `min_pair(s1, s2)` is `where(s2 < s1, s2, s1)`, so a tie takes the
//! gradient of the unclipped `s1`; `clamp` is `mask_fill` twice, so the gradient passes
//! for `1-eps <= r <= 1+eps` (bounds included) and is zero outside.
//!
//! Per decision, with `p = softmax(logits)`, `l = log p` and `H = -sum_i p_i l_i`:
//! `d l_a / d logits_i = [i = a] - p_i` and `d H / d logits_i = -p_i (l_i + H)`.
//!
//! **Prefix tree.** The LSTM state at decision `t`, and so decision `t`'s distribution,
//! depends only on the first `t` tokens. Samples that share them share one *node*, which
//! is computed once; its logit gradient is the sum of theirs. This is exact (only the
//! order of the sums changes) and saves much: every batch shares the single node of
//! decision 0, decision 1 has at most `C_0` nodes, and so on, and a concentrated policy
//! repeats whole architectures.
//!
//! The rest is three matrix products per decision over that decision's nodes (`h W_hh`
//! forward, `dz W_hh^T` backward, and `h^T dz` for `W_hh`'s gradient, done once over all
//! decisions at the end), plus the input side once per distinct input token; all by
//! [`Gemm`], whose plain loops the compiler vectorises. Every buffer is allocated once
//! per call.

use std::collections::HashMap;

use crate::policy::{add_vec_mat, sigm, Layout};
use crate::ppo::Sample;

/// Rows and columns of the tile of the product that [`Gemm`] keeps in registers.
const MR: usize = 4;
const NR: usize = 8;

/// A strided matrix operand: element `(i, j)` is `data[i * rs + j * cs]` (`rs = cols,
/// cs = 1` is row-major; swapping them reads the transpose without copying).
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `[_, cols]` matrix.
    fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major `[_, cols]` matrix.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// The right operand `[k, n]` of a product as zero-padded panels of `NR` columns: panel
/// `jb` holds columns `jb * NR..`, one `[f32; NR]` per row. Packed once per call for the
/// weights every decision multiplies by.
#[derive(Default)]
struct Packed {
    panels: Vec<[f32; NR]>,
    k: usize,
    n: usize,
}

impl Packed {
    fn new(b: Mat, k: usize, n: usize) -> Self {
        let mut p = Self::default();
        p.pack(b, k, n);
        p
    }

    fn pack(&mut self, b: Mat, k: usize, n: usize) {
        self.panels.clear();
        self.k = k;
        self.n = n;
        for j0 in (0..n).step_by(NR) {
            let nr = NR.min(n - j0);
            for p in 0..k {
                let mut v = [0f32; NR];
                if b.cs == 1 {
                    let start = p * b.rs + j0;
                    v[..nr].copy_from_slice(&b.data[start..start + nr]);
                } else {
                    for (q, x) in v[..nr].iter_mut().enumerate() {
                        *x = b.at(p, j0 + q);
                    }
                }
                self.panels.push(v);
            }
        }
    }
}

/// `sum_p a_panel[p] (x) b_panel[p]`: one register tile of a product. Out of line so
/// that the compiler vectorises it on its own (inlined into the packing code it came out
/// scalar, with the tile spilled to the stack).
#[inline(never)]
fn tile_product(a_panel: &[[f32; MR]], b_panel: &[[f32; NR]]) -> [[f32; NR]; MR] {
    let mut tile = [[0f32; NR]; MR];
    for (av, bv) in a_panel.iter().zip(b_panel) {
        for (row, &ar) in tile.iter_mut().zip(av) {
            for (x, &bq) in row.iter_mut().zip(bv) {
                *x += ar * bq;
            }
        }
    }
    tile
}

/// Small dense matrix products, with packing buffers reused across the calls of one
/// gradient.
///
/// Why packed tiles: an `MR x NR` tile of the result stays in registers for the whole
/// inner loop, fed from contiguous, zero-padded panels of `a` (`MR` rows) and `b` (`NR`
/// columns), so every loaded value serves several products and the edges need no
/// special case; a plain row-times-matrix loop stores and reloads its accumulator row
/// for every product and is bound by loads and stores.
#[derive(Default)]
struct Gemm {
    a_pack: Vec<[f32; MR]>,
    b_pack: Packed,
}

impl Gemm {
    /// `c += a b` for a row-major `c` of shape `[m, b.n]` and `a` of shape `[m, b.k]`.
    fn acc_packed(&mut self, c: &mut [f32], a: Mat, m: usize, b: &Packed) {
        let (k, n) = (b.k, b.n);
        if m == 0 || k == 0 || n == 0 {
            return;
        }
        self.a_pack.clear();
        for i0 in (0..m).step_by(MR) {
            let mr = MR.min(m - i0);
            for p in 0..k {
                let mut v = [0f32; MR];
                if a.rs == 1 {
                    let start = i0 + p * a.cs;
                    v[..mr].copy_from_slice(&a.data[start..start + mr]);
                } else {
                    for (r, x) in v[..mr].iter_mut().enumerate() {
                        *x = a.at(i0 + r, p);
                    }
                }
                self.a_pack.push(v);
            }
        }
        for (ib, a_panel) in self.a_pack.chunks_exact(k).enumerate() {
            let i0 = ib * MR;
            let mr = MR.min(m - i0);
            for (jb, b_panel) in b.panels.chunks_exact(k).enumerate() {
                let j0 = jb * NR;
                let nr = NR.min(n - j0);
                let tile = tile_product(a_panel, b_panel);
                for (r, row) in tile.iter().enumerate().take(mr) {
                    let c_row = &mut c[(i0 + r) * n + j0..(i0 + r) * n + j0 + nr];
                    for (x, &v) in c_row.iter_mut().zip(row) {
                        *x += v;
                    }
                }
            }
        }
    }

    /// `c += a b` for a row-major `c` of shape `[m, n]`, `a` of shape `[m, k]` and `b` of
    /// shape `[k, n]`.
    fn acc(&mut self, c: &mut [f32], a: Mat, m: usize, b: Mat, k: usize, n: usize) {
        let mut packed = std::mem::take(&mut self.b_pack);
        packed.pack(b, k, n);
        self.acc_packed(c, a, m, &packed);
        self.b_pack = packed;
    }
}

/// The gradient of the clipped PPO loss with entropy bonus (module docs) with respect
/// to `theta`, laid out as `layout`, for `samples` whose tokens fit the layout (checked
/// by the controller before they get here). `clip` is epsilon and `entropy_coef` the
/// weight of the entropy bonus. An empty batch has a zero gradient.
pub(crate) fn ppo_loss_gradient(
    layout: &Layout,
    theta: &[f32],
    samples: &[Sample],
    clip: f32,
    entropy_coef: f32,
) -> Vec<f32> {
    let mut grad = vec![0f32; layout.total];
    let bsz = samples.len();
    let steps = layout.choices.len();
    if bsz == 0 || steps == 0 {
        // nothing depends on theta (burn returns no gradient, which the controller read
        // as zeros)
        return grad;
    }
    let hsz = layout.hidden;
    let h4 = 4 * hsz;
    let emb = &theta[layout.emb..layout.emb + layout.n_tokens * hsz];
    let w_ih = &theta[layout.w_ih..layout.w_ih + hsz * h4];
    let w_hh = &theta[layout.w_hh..layout.w_hh + hsz * h4];
    let bias = &theta[layout.b..layout.b + h4];

    // ---- the prefix tree ----
    // Nodes are numbered decision by decision (`node_off[t]..node_off[t + 1]` are those
    // of decision t); `node_of[t * B + k]` is sample k's node at decision t. A node of
    // decision t > 0 is (its parent at t - 1, the token chosen there). Its input token is
    // kept as a slot into the list of distinct input tokens, `used`.
    let mut node_of = Vec::with_capacity(steps * bsz);
    let mut node_off = Vec::with_capacity(steps + 1);
    let mut parent = Vec::new();
    let mut node_slot = Vec::new();
    let mut slot_of = vec![usize::MAX; layout.n_tokens];
    let mut used = Vec::new();
    let mut children: HashMap<(usize, u16), usize> = HashMap::with_capacity(bsz);
    node_off.push(0);
    for t in 0..steps {
        children.clear();
        for (k, s) in samples.iter().enumerate() {
            let key = if t == 0 {
                (usize::MAX, 0)
            } else {
                (node_of[(t - 1) * bsz + k], s.tokens[t - 1])
            };
            let node = *children.entry(key).or_insert_with(|| {
                let prev = if t == 0 { None } else { Some(key.1) };
                let tok = layout.input_token(t, prev);
                if slot_of[tok] == usize::MAX {
                    slot_of[tok] = used.len();
                    used.push(tok);
                }
                parent.push(key.0);
                node_slot.push(slot_of[tok]);
                parent.len() - 1
            });
            node_of.push(node);
        }
        node_off.push(parent.len());
    }
    let n_nodes = parent.len();

    let mut gemm = Gemm::default();
    let w_hh_p = Packed::new(Mat::rows(w_hh, h4), hsz, h4);
    let w_hh_t_p = Packed::new(Mat::transposed(w_hh, h4), h4, hsz);

    // `emb[tok] W_ih + b` per distinct input token
    let n_used = used.len();
    let mut x_used = Vec::with_capacity(n_used * hsz);
    for &tok in &used {
        x_used.extend_from_slice(&emb[tok * hsz..(tok + 1) * hsz]);
    }
    let mut xw = Vec::with_capacity(n_used * h4);
    for _ in 0..n_used {
        xw.extend_from_slice(bias);
    }
    gemm.acc(
        &mut xw,
        Mat::rows(&x_used, hsz),
        n_used,
        Mat::rows(w_ih, h4),
        hsz,
        h4,
    );

    // Where each node's probabilities start in `probs`/`logsm` (`C_t` each).
    let mut prob_at = Vec::with_capacity(n_nodes);
    let mut n_probs = 0;
    for (t, &nc) in layout.choices.iter().enumerate() {
        for _ in node_off[t]..node_off[t + 1] {
            prob_at.push(n_probs);
            n_probs += nc;
        }
    }

    // ---- forward over the nodes: keep what the backward pass needs ----
    let mut h_in = vec![0f32; n_nodes * hsz]; // the parent's h (zero at decision 0)
    let mut gates = vec![0f32; n_nodes * h4]; // activated i, f, g, o
    let mut cs = vec![0f32; n_nodes * hsz];
    let mut tcs = vec![0f32; n_nodes * hsz]; // tanh(c)
    let mut hs = vec![0f32; n_nodes * hsz];
    let mut probs = vec![0f32; n_probs];
    let mut logsm = vec![0f32; n_probs];
    let mut ents = vec![0f32; n_nodes];
    let mut logits = vec![0f32; layout.choices.iter().copied().max().unwrap_or(0)];
    for (t, &nc) in layout.choices.iter().enumerate() {
        let (n0, n1) = (node_off[t], node_off[t + 1]);
        for n in n0..n1 {
            let sl = node_slot[n];
            gates[n * h4..(n + 1) * h4].copy_from_slice(&xw[sl * h4..(sl + 1) * h4]);
        }
        if t > 0 {
            for n in n0..n1 {
                let p = parent[n];
                h_in[n * hsz..(n + 1) * hsz].copy_from_slice(&hs[p * hsz..(p + 1) * hsz]);
            }
            gemm.acc_packed(
                &mut gates[n0 * h4..n1 * h4],
                Mat::rows(&h_in[n0 * hsz..n1 * hsz], hsz),
                n1 - n0,
                &w_hh_p,
            );
        }
        let head_w = &theta[layout.head_w[t]..layout.head_w[t] + hsz * nc];
        let head_b = &theta[layout.head_b[t]..layout.head_b[t] + nc];
        for n in n0..n1 {
            let z = &mut gates[n * h4..(n + 1) * h4];
            for v in &mut z[..2 * hsz] {
                *v = sigm(*v);
            }
            for v in &mut z[2 * hsz..3 * hsz] {
                *v = v.tanh();
            }
            for v in &mut z[3 * hsz..] {
                *v = sigm(*v);
            }
            for j in 0..hsz {
                let (i_g, f_g, g_g, o_g) = (z[j], z[hsz + j], z[2 * hsz + j], z[3 * hsz + j]);
                let c = if t > 0 {
                    f_g * cs[parent[n] * hsz + j] + i_g * g_g
                } else {
                    i_g * g_g
                };
                let tc = c.tanh();
                cs[n * hsz + j] = c;
                tcs[n * hsz + j] = tc;
                hs[n * hsz + j] = o_g * tc;
            }
            let lg = &mut logits[..nc];
            lg.copy_from_slice(head_b);
            add_vec_mat(lg, &hs[n * hsz..(n + 1) * hsz], head_w);
            // log-softmax: x - max - ln(sum(exp(x - max)))
            let m = lg.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = lg.iter().map(|l| (l - m).exp()).sum::<f32>().ln();
            let po = prob_at[n];
            let mut ent = 0f32;
            for i in 0..nc {
                let l = lg[i] - m - lse;
                let p = l.exp();
                logsm[po + i] = l;
                probs[po + i] = p;
                ent -= p * l;
            }
            ents[n] = ent;
        }
    }
    // log pi(a) of each sample, summed in decision order
    let mut logp = vec![0f32; bsz];
    for t in 0..steps {
        for (k, s) in samples.iter().enumerate() {
            logp[k] += logsm[prob_at[node_of[t * bsz + k]] + usize::from(s.tokens[t])];
        }
    }

    // ---- the loss's gradient with respect to each sample's log-probability ----
    let (lo, hi) = (1.0 - clip, 1.0 + clip);
    let inv_b = 1.0 / bsz as f32;
    let g_logp: Vec<f32> = samples
        .iter()
        .zip(&logp)
        .map(|(s, &lp)| {
            let ratio = (lp - s.old_logp).exp();
            let a = s.advantage;
            let s1 = ratio * a;
            let s2 = ratio.clamp(lo, hi) * a;
            // burn's min_pair: the clipped term only when strictly smaller; its clamp:
            // no gradient strictly outside the bounds
            let d_ratio = if s2 < s1 && (ratio > hi || ratio < lo) {
                0.0
            } else {
                a
            };
            -inv_b * s.weight * d_ratio * ratio
        })
        .collect();
    // d loss / d H of one sample's decision: every sample contributes its own copy
    let g_ent = -entropy_coef * inv_b / steps as f32;

    // Per node: the sum of its samples' `g_logp` per chosen token (`sel`, laid out like
    // `probs`), over all its samples (`g_sum`), and how many samples it has.
    let mut sel = vec![0f32; n_probs];
    let mut g_sum = vec![0f32; n_nodes];
    let mut count = vec![0f32; n_nodes];
    for t in 0..steps {
        for (k, s) in samples.iter().enumerate() {
            let n = node_of[t * bsz + k];
            sel[prob_at[n] + usize::from(s.tokens[t])] += g_logp[k];
            g_sum[n] += g_logp[k];
            count[n] += 1.0;
        }
    }

    // ---- backward through time, decision by decision ----
    let mut dzs = vec![0f32; n_nodes * h4]; // d loss / d z of every node
    let mut dh = vec![0f32; n_nodes * hsz]; // d loss / d h, summed over the children
    let mut dc = vec![0f32; n_nodes * hsz]; // d loss / d c, summed over the children
    let mut dh_par = vec![0f32; bsz * hsz]; // dz W_hh^T of one decision's nodes
    let mut dlog = vec![0f32; logits.len()];
    for (t, &nc) in layout.choices.iter().enumerate().rev() {
        let (n0, n1) = (node_off[t], node_off[t + 1]);
        let head_w = &theta[layout.head_w[t]..layout.head_w[t] + hsz * nc];
        for n in n0..n1 {
            // log-softmax, gather and entropy -> logits
            let po = prob_at[n];
            let (gs, ent_w) = (g_sum[n], count[n] * g_ent);
            let dl = &mut dlog[..nc];
            for (i, d) in dl.iter_mut().enumerate() {
                let p = probs[po + i];
                *d = sel[po + i] - gs * p - ent_w * p * (logsm[po + i] + ents[n]);
            }
            // the head: logits = h W_t + b_t
            let gb = &mut grad[layout.head_b[t]..layout.head_b[t] + nc];
            for (g, d) in gb.iter_mut().zip(dl.iter()) {
                *g += d;
            }
            let h_row = &hs[n * hsz..(n + 1) * hsz];
            let dh_n = &mut dh[n * hsz..(n + 1) * hsz];
            let gw = &mut grad[layout.head_w[t]..layout.head_w[t] + hsz * nc];
            for ((g_row, w_row), (&hv, dhv)) in gw
                .chunks_exact_mut(nc)
                .zip(head_w.chunks_exact(nc))
                .zip(h_row.iter().zip(dh_n.iter_mut()))
            {
                let mut acc = 0f32;
                for ((g, &w), &d) in g_row.iter_mut().zip(w_row).zip(dl.iter()) {
                    *g += hv * d;
                    acc += w * d;
                }
                *dhv += acc;
            }

            // the cell: h = o tanh(c), c = f c_prev + i g
            let gt = &gates[n * h4..(n + 1) * h4];
            let dz = &mut dzs[n * h4..(n + 1) * h4];
            let (dzi, rest) = dz.split_at_mut(hsz);
            let (dzf, rest) = rest.split_at_mut(hsz);
            let (dzg, dzo) = rest.split_at_mut(hsz);
            for j in 0..hsz {
                let (i_g, f_g, g_g, o_g) = (gt[j], gt[hsz + j], gt[2 * hsz + j], gt[3 * hsz + j]);
                let tc = tcs[n * hsz + j];
                let dh_j = dh[n * hsz + j];
                let d_c = dc[n * hsz + j] + dh_j * o_g * (1.0 - tc * tc);
                dzo[j] = dh_j * tc * o_g * (1.0 - o_g);
                dzi[j] = d_c * g_g * i_g * (1.0 - i_g);
                dzg[j] = d_c * i_g * (1.0 - g_g * g_g);
                if t > 0 {
                    let p = parent[n];
                    dzf[j] = d_c * cs[p * hsz + j] * f_g * (1.0 - f_g);
                    dc[p * hsz + j] += d_c * f_g;
                }
            }
        }
        // z = xw[token] + h_parent W_hh: on to the parents' h
        if t > 0 {
            let dh_t = &mut dh_par[..(n1 - n0) * hsz];
            dh_t.iter_mut().for_each(|v| *v = 0.0);
            gemm.acc_packed(
                dh_t,
                Mat::rows(&dzs[n0 * h4..n1 * h4], h4),
                n1 - n0,
                &w_hh_t_p,
            );
            for (n, d_row) in (n0..n1).zip(dh_t.chunks_exact(hsz)) {
                let p = parent[n];
                for (g, &d) in dh[p * hsz..(p + 1) * hsz].iter_mut().zip(d_row) {
                    *g += d;
                }
            }
        }
    }
    // W_hh: the sum over the nodes past decision 0 of h_parent^T dz, one product
    let n_rec = n_nodes - node_off[1];
    if n_rec > 0 {
        let gw_hh = &mut grad[layout.w_hh..layout.w_hh + hsz * h4];
        let h_par = Mat::transposed(&h_in[node_off[1] * hsz..], hsz);
        let dz_rec = Mat::rows(&dzs[node_off[1] * h4..], h4);
        gemm.acc(gw_hh, h_par, hsz, dz_rec, n_rec, h4);
    }

    // ---- the input side, once per distinct token: z = emb[tok] W_ih + b ----
    let mut dz_used = vec![0f32; n_used * h4];
    for (dz, &sl) in dzs.chunks_exact(h4).zip(&node_slot) {
        for (a, &d) in dz_used[sl * h4..(sl + 1) * h4].iter_mut().zip(dz) {
            *a += d;
        }
    }
    let gb = &mut grad[layout.b..layout.b + h4];
    for dz in dz_used.chunks_exact(h4) {
        for (g, &d) in gb.iter_mut().zip(dz) {
            *g += d;
        }
    }
    let gw_ih = &mut grad[layout.w_ih..layout.w_ih + hsz * h4];
    let dz_used_m = Mat::rows(&dz_used, h4);
    let x_used_t = Mat::transposed(&x_used, hsz);
    gemm.acc(gw_ih, x_used_t, hsz, dz_used_m, n_used, h4);
    let mut dx_used = vec![0f32; n_used * hsz];
    let w_ih_t = Mat::transposed(w_ih, h4);
    gemm.acc(&mut dx_used, dz_used_m, n_used, w_ih_t, h4, hsz);
    for (&tok, dx) in used.iter().zip(dx_used.chunks_exact(hsz)) {
        let ge = &mut grad[layout.emb + tok * hsz..layout.emb + (tok + 1) * hsz];
        for (g, &d) in ge.iter_mut().zip(dx) {
            *g += d;
        }
    }
    grad
}
