//! The LSTM policy: parameter layout over one flat `Vec<f32>`, a plain-Rust forward pass
//! for sampling (tiny matrix-vector products, no framework overhead) and the batched,
//! teacher-forced burn forward pass (used for [`crate::PpoController::log_probs`], and by
//! the tests as the autodiff oracle of the hand-written PPO gradient in
//! [`crate::policy_grad`]).
//!
//! Network, per decision `t` of the space (`C_t` choices):
//! ```text
//! x_t   = emb[token_{t-1}]                     (token_{-1} = the start token)
//! z     = x_t W_ih + b + h W_hh                (gate order i, f, g, o)
//! c     = sigmoid(f) * c + sigmoid(i) * tanh(g)
//! h     = sigmoid(o) * tanh(c)
//! logits_t = h W_t + b_t                       (a head per decision, C_t wide)
//! ```
//! Each decision has its own output head of exactly `C_t` logits, which is the same as
//! one `max_choices` projection with the invalid choices masked out, without the large
//! negative constants. The embedding table has a start token plus one row per
//! (decision, choice).

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid};
use rand::Rng;

/// Offsets of every parameter block inside the flat parameter vector.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub hidden: usize,
    /// Choices per decision.
    pub choices: Vec<usize>,
    /// Token index of choice 0 of each decision (token 0 is the start token).
    pub token_offset: Vec<usize>,
    pub n_tokens: usize,
    pub emb: usize,
    pub w_ih: usize,
    pub w_hh: usize,
    pub b: usize,
    /// Per decision: offset of its `[hidden, C_t]` head weight and of its `[C_t]` bias.
    pub head_w: Vec<usize>,
    pub head_b: Vec<usize>,
    pub total: usize,
}

impl Layout {
    pub fn new(choices: Vec<usize>, hidden: usize) -> Self {
        let mut token_offset = Vec::with_capacity(choices.len());
        let mut n_tokens = 1;
        for &c in &choices {
            token_offset.push(n_tokens);
            n_tokens += c;
        }
        let h4 = 4 * hidden;
        let emb = 0;
        let w_ih = emb + n_tokens * hidden;
        let w_hh = w_ih + hidden * h4;
        let b = w_hh + hidden * h4;
        let mut at = b + h4;
        let (mut head_w, mut head_b) = (Vec::new(), Vec::new());
        for &c in &choices {
            head_w.push(at);
            at += hidden * c;
            head_b.push(at);
            at += c;
        }
        Self {
            hidden,
            choices,
            token_offset,
            n_tokens,
            emb,
            w_ih,
            w_hh,
            b,
            head_w,
            head_b,
            total: at,
        }
    }

    /// Initial parameters: every entry uniform in ±1/sqrt(hidden), drawn from `rng`
    /// (never from burn's global RNG, so parallel searches stay deterministic).
    pub fn init<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f32> {
        let s = 1.0 / (self.hidden as f32).sqrt();
        (0..self.total).map(|_| rng.random_range(-s..s)).collect()
    }

    /// Input token of step `t` given the previous decision's choice.
    pub fn input_token(&self, t: usize, prev: Option<u16>) -> usize {
        match (t, prev) {
            (0, _) | (_, None) => 0,
            (t, Some(c)) => self.token_offset[t - 1] + c as usize,
        }
    }
}

pub(crate) fn sigm(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `out += x · W` for a row-major `W` of shape `[x.len(), out.len()]`.
pub(crate) fn add_vec_mat(out: &mut [f32], x: &[f32], w: &[f32]) {
    let n = out.len();
    for (xk, row) in x.iter().zip(w.chunks_exact(n)) {
        for (o, wv) in out.iter_mut().zip(row) {
            *o += xk * wv;
        }
    }
}

/// Runs the policy on the CPU for one architecture: samples each choice with `rng`
/// when `forced` is `None`, else scores the forced choices. Returns the choices and
/// `sum_t log pi(choice_t)` (summed in `f32`, in step order, as the burn pass does).
pub(crate) fn rollout<R: Rng + ?Sized>(
    layout: &Layout,
    theta: &[f32],
    forced: Option<&[u16]>,
    mut rng: Option<&mut R>,
) -> (Vec<u16>, f32) {
    let hsz = layout.hidden;
    let h4 = 4 * hsz;
    let w_ih = &theta[layout.w_ih..layout.w_ih + hsz * h4];
    let w_hh = &theta[layout.w_hh..layout.w_hh + hsz * h4];
    let bias = &theta[layout.b..layout.b + h4];
    let mut h = vec![0f32; hsz];
    let mut c = vec![0f32; hsz];
    let mut z = vec![0f32; h4];
    let mut hw = vec![0f32; h4];
    let mut out = Vec::with_capacity(layout.choices.len());
    let mut logp_sum = 0f32;
    let mut prev = None;
    for (t, &nc) in layout.choices.iter().enumerate() {
        let tok = layout.input_token(t, prev);
        let x = &theta[layout.emb + tok * hsz..layout.emb + (tok + 1) * hsz];
        z.iter_mut().for_each(|v| *v = 0.0);
        add_vec_mat(&mut z, x, w_ih);
        for (zv, bv) in z.iter_mut().zip(bias) {
            *zv += bv;
        }
        if t > 0 {
            hw.iter_mut().for_each(|v| *v = 0.0);
            add_vec_mat(&mut hw, &h, w_hh);
            for (zv, hv) in z.iter_mut().zip(&hw) {
                *zv += hv;
            }
        }
        for j in 0..hsz {
            let i_g = sigm(z[j]);
            let f_g = sigm(z[hsz + j]);
            let g_g = z[2 * hsz + j].tanh();
            let o_g = sigm(z[3 * hsz + j]);
            c[j] = if t > 0 {
                f_g * c[j] + i_g * g_g
            } else {
                i_g * g_g
            };
            h[j] = o_g * c[j].tanh();
        }
        let hw_off = layout.head_w[t];
        let mut logits = theta[layout.head_b[t]..layout.head_b[t] + nc].to_vec();
        let mut hl = vec![0f32; nc];
        add_vec_mat(&mut hl, &h, &theta[hw_off..hw_off + hsz * nc]);
        for (l, v) in logits.iter_mut().zip(&hl) {
            *l += v;
        }
        // log-softmax: x - max - ln(sum(exp(x - max)))
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = logits.iter().map(|l| (l - m).exp()).sum();
        let lse = sum.ln();
        let logp: Vec<f32> = logits.iter().map(|l| l - m - lse).collect();
        let choice = match (forced, rng.as_deref_mut()) {
            (Some(f), _) => f[t] as usize,
            (None, Some(r)) => sample_index(&logp, r),
            (None, None) => unreachable!("rollout needs forced choices or an rng"),
        };
        logp_sum += logp[choice];
        out.push(choice as u16);
        prev = Some(choice as u16);
    }
    (out, logp_sum)
}

/// Draws an index from the distribution `exp(logp)` with one uniform number.
fn sample_index<R: Rng + ?Sized>(logp: &[f32], rng: &mut R) -> usize {
    let u: f64 = rng.random();
    let mut cum = 0f64;
    let mut last = 0;
    for (j, &lp) in logp.iter().enumerate() {
        let p = f64::from(lp.exp());
        if p > 0.0 {
            last = j;
        }
        cum += p;
        if u < cum {
            return j;
        }
    }
    last
}

/// The batched, teacher-forced burn forward pass over `archs` (batch dimension = number
/// of architectures, unrolled over decisions). `theta` is the flat parameter tensor.
/// Returns `sum_t log pi(a_t)` and the mean over steps of the per-step entropy, both
/// `[B, 1]`. PPO no longer differentiates it (see [`crate::policy_grad`]); the tests do,
/// as the reference for the hand-written gradient.
pub(crate) fn forward_batch(
    layout: &Layout,
    theta: Tensor<1>,
    archs: &[&[u16]],
    device: &Device,
) -> (Tensor<2>, Tensor<2>) {
    let hsz = layout.hidden;
    let h4 = 4 * hsz;
    let bsz = archs.len();
    let steps = layout.choices.len();
    let part = |off: usize, len: usize| theta.clone().slice(off..off + len);
    let emb = part(layout.emb, layout.n_tokens * hsz).reshape([layout.n_tokens, hsz]);
    let w_ih = part(layout.w_ih, hsz * h4).reshape([hsz, h4]);
    let w_hh = part(layout.w_hh, hsz * h4).reshape([hsz, h4]);
    let bias = part(layout.b, h4).reshape([1, h4]);

    // All input tokens at once, step-major: row t * B + k is step t of architecture k.
    let mut tokens = Vec::with_capacity(steps * bsz);
    for t in 0..steps {
        for a in archs {
            let prev = if t == 0 { None } else { Some(a[t - 1]) };
            tokens.push(layout.input_token(t, prev) as i64);
        }
    }
    let tokens = Tensor::<1, Int>::from_data(TensorData::new(tokens, [steps * bsz]), device);
    // Input projections of every step in one matmul.
    let xw = emb.select(0, tokens).matmul(w_ih) + bias;

    let mut h: Option<Tensor<2>> = None;
    let mut c: Option<Tensor<2>> = None;
    let mut logp_sum: Option<Tensor<2>> = None;
    let mut ent_sum: Option<Tensor<2>> = None;
    for (t, &nc) in layout.choices.iter().enumerate() {
        let mut z = xw.clone().slice([t * bsz..(t + 1) * bsz, 0..h4]);
        if let Some(h) = &h {
            z = z + h.clone().matmul(w_hh.clone());
        }
        let s = sigmoid(z.clone());
        let i_g = s.clone().narrow(1, 0, hsz);
        let f_g = s.clone().narrow(1, hsz, hsz);
        let o_g = s.narrow(1, 3 * hsz, hsz);
        let g_g = z.narrow(1, 2 * hsz, hsz).tanh();
        let c_new = match c.take() {
            Some(c) => f_g * c + i_g * g_g,
            None => i_g * g_g,
        };
        let h_new = o_g * c_new.clone().tanh();
        let w_t = part(layout.head_w[t], hsz * nc).reshape([hsz, nc]);
        let b_t = part(layout.head_b[t], nc).reshape([1, nc]);
        let logits = h_new.clone().matmul(w_t) + b_t;
        let lsm = log_softmax(logits, 1);
        let chosen: Vec<i64> = archs.iter().map(|a| i64::from(a[t])).collect();
        let chosen = Tensor::<2, Int>::from_data(TensorData::new(chosen, [bsz, 1]), device);
        let lp = lsm.clone().gather(1, chosen);
        let ent = (lsm.clone().exp() * lsm).sum_dim(1).neg();
        logp_sum = Some(match logp_sum {
            Some(s) => s + lp,
            None => lp,
        });
        ent_sum = Some(match ent_sum {
            Some(s) => s + ent,
            None => ent,
        });
        h = Some(h_new);
        c = Some(c_new);
    }
    let zeros = || Tensor::<2>::zeros([bsz, 1], device);
    let logp = logp_sum.unwrap_or_else(zeros);
    let ent = ent_sum
        .unwrap_or_else(zeros)
        .div_scalar(steps.max(1) as f32);
    (logp, ent)
}
