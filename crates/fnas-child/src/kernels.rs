//! The fast CPU kernels of `fnas-kernels` as burn custom operations with their own
//! backward, so [`crate::net`] keeps its modules and parameter names and only its
//! forward picks the kernels ([`Kernels`]).
//!
//! Three operations: a bias-free convolution (dense or depthwise), BatchNorm with batch
//! statistics (optionally followed by ReLU, fused, so the mask comes from the output), and
//! an inference-only convolution with bias and optional ReLU (BatchNorm folded into it).
//! They run on burn's Flex backend and on `Autodiff<Flex>`; any other device takes burn's
//! own operations ([`Kernels::for_device`]).

use std::fmt;
use std::str::FromStr;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, Autodiff, AutodiffBackend, Backend, Bytes, DType, Dispatch, DispatchDevice,
    Flex, TensorMetadata,
};
use burn::prelude::*;
use burn_flex::{FlexTensor, Layout};
use fnas_kernels::{BnGeom, ConvGeom, KernelError};

/// Which implementation trains and runs a child's convolutions and BatchNorms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// burn's own operations (any device).
    Burn,
    /// fnas's CPU kernels (the Flex CPU device only); the default on the CPU.
    #[default]
    Fast,
}

impl Kernels {
    /// The kernels a child on `device` uses when none were asked for: fast on the CPU,
    /// burn's on any other device.
    pub fn for_device(device: &Device) -> Kernels {
        if is_flex(device) {
            Kernels::Fast
        } else {
            Kernels::Burn
        }
    }

    /// `requested` if it can run on `device`, else a one-line reason.
    pub fn check(requested: Kernels, device: &Device) -> Result<Kernels, String> {
        if requested == Kernels::Fast && !is_flex(device) {
            return Err(format!(
                "--kernels fast runs on the CPU only; with {device:?} use --kernels burn"
            ));
        }
        Ok(requested)
    }

    /// The kernels `--kernels NAME` asks for (absent: [`Kernels::for_device`]), checked
    /// against `device`.
    pub fn resolve(name: Option<&str>, device: &Device) -> Result<Kernels, String> {
        match name {
            None => Ok(Kernels::for_device(device)),
            Some(n) => Kernels::check(n.parse()?, device),
        }
    }

    /// The names `--kernels` accepts.
    pub const NAMES: [&'static str; 2] = ["burn", "fast"];
}

impl fmt::Display for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kernels::Burn => "burn",
            Kernels::Fast => "fast",
        })
    }
}

impl FromStr for Kernels {
    type Err = String;

    fn from_str(s: &str) -> Result<Kernels, String> {
        match s {
            "burn" => Ok(Kernels::Burn),
            "fast" => Ok(Kernels::Fast),
            other => Err(format!(
                "unknown kernels '{other}': expected one of {}",
                Kernels::NAMES.join(", ")
            )),
        }
    }
}

/// Whether `device` (with or without autodiff) is burn's Flex CPU device, the only one
/// the fast kernels run on.
pub fn is_flex(device: &Device) -> bool {
    matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    )
}

/// The convolution of `x` `[b, cin, h, w]` with `weight` `[cout, cin/groups, k, k]`, if the
/// fast kernels can compute it (groups 1 or depthwise, a square kernel), else `None`.
pub fn conv_geom(
    x: &[usize; 4],
    weight: &[usize; 4],
    stride: usize,
    pad: usize,
) -> Option<ConvGeom> {
    let [batch, cin, h, w] = *x;
    let [cout, cin_per_group, k, k2] = *weight;
    if k != k2 || cin_per_group == 0 || cin % cin_per_group != 0 {
        return None;
    }
    let g = ConvGeom {
        batch,
        cin,
        cout,
        h,
        w,
        kernel: k,
        stride,
        pad,
        groups: cin / cin_per_group,
    };
    g.check().is_ok().then_some(g)
}

/// `conv(x, weight)` without bias, through the fast kernels; the caller checked the shape
/// with [`conv_geom`].
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FastOps>::fast_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        stride,
        pad,
    ))
}

/// Inference `relu?(conv(x, weight) + bias)` (BatchNorm folded into `weight` and `bias`).
pub fn conv2d_bias_act(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    pad: usize,
    relu: bool,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FastOps>::fast_conv2d_bias_act(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        pad,
        relu,
    ))
}

/// Training BatchNorm of `x` `[b, c, h, w]`: `(relu?(bn(x)), batch mean, biased batch
/// variance)`.
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    relu: bool,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let (y, mean, var) = <Dispatch as FastOps>::fast_batch_norm_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        relu,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// The custom operations. Only Flex and `Autodiff<Flex>` implement them; callers reach
/// them through the functions above, after [`Kernels::for_device`] said the device is
/// Flex.
#[backend_extension(Flex, Autodiff)]
pub trait FastOps: Backend {
    /// Bias-free convolution, padding `pad` on every side.
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self>;

    /// Inference convolution with bias and optional ReLU.
    fn fast_conv2d_bias_act(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// BatchNorm with batch statistics, optionally followed by ReLU.
    fn fast_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// A kernel failed on a shape [`conv_geom`] or the BatchNorm caller accepted: a bug in
/// fnas, not bad input, so it stops the process with the kernel's message.
fn must(r: Result<(), KernelError>, op: &str) {
    if let Err(e) = r {
        panic!("fnas fast kernel {op}: {e}");
    }
}

/// The values of a Flex f32 tensor in row-major order (copied only if it is a view).
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    if t.dtype() != DType::F32 {
        panic!("fnas fast kernels take f32 tensors, got {:?}", t.dtype());
    }
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .map(<[f32]>::to_vec)
                .unwrap_or_default(),
        ),
    }
}

/// A zeroed output buffer, zeroed by every thread of the calling pool: a plain
/// `vec![0.0; n]` reuses heap memory and clears it on one thread, which was an eighth of
/// that thread's time in a two-thread training step.
fn zeroed(n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    if n < 1 << 15 {
        return vec![0.0; n];
    }
    rayon::iter::repeat_n(0.0f32, n).collect()
}

fn flex(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.into()),
        DType::F32,
    )
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

fn flex_geom(x: &FlexTensor, w: &FlexTensor, stride: usize, pad: usize) -> ConvGeom {
    match conv_geom(&dims4(x), &dims4(w), stride, pad) {
        Some(g) => g,
        None => panic!(
            "fnas fast conv2d: unsupported shape x {:?} w {:?}",
            x.shape(),
            w.shape()
        ),
    }
}

fn bn_geom(x: &FlexTensor) -> BnGeom {
    let s = x.shape();
    BnGeom {
        batch: s[0],
        channels: s[1],
        hw: s[2..].iter().product(),
    }
}

fn conv_forward(x: &FlexTensor, w: &FlexTensor, stride: usize, pad: usize) -> (ConvGeom, Vec<f32>) {
    let g = flex_geom(x, w, stride, pad);
    let mut y = zeroed(g.y_len());
    must(
        fnas_kernels::conv::forward(&g, &values(x), &values(w), &mut y),
        "conv2d",
    );
    (g, y)
}

impl FastOps for Flex {
    fn fast_conv2d(x: FlexTensor, weight: FlexTensor, stride: usize, pad: usize) -> FlexTensor {
        let (g, y) = conv_forward(&x, &weight, stride, pad);
        flex(y, &[g.batch, g.cout, g.out_h(), g.out_w()])
    }

    fn fast_conv2d_bias_act(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> FlexTensor {
        let (g, mut y) = conv_forward(&x, &weight, stride, pad);
        let bias = values(&bias);
        let plane = g.out_h() * g.out_w();
        for (i, chunk) in y.chunks_mut(plane).enumerate() {
            let b = bias[i % g.cout];
            if relu {
                chunk.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
            } else {
                chunk.iter_mut().for_each(|v| *v += b);
            }
        }
        flex(y, &[g.batch, g.cout, g.out_h(), g.out_w()])
    }

    fn fast_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let g = bn_geom(&x);
        let mut y = zeroed(g.len());
        let mut mean = zeroed(g.channels);
        let mut var = zeroed(g.channels);
        let forward = if relu {
            fnas_kernels::bn::train_forward_relu
        } else {
            fnas_kernels::bn::train_forward
        };
        must(
            forward(
                &g,
                &values(&x),
                &values(&gamma),
                &values(&beta),
                epsilon,
                &mut y,
                &mut mean,
                &mut var,
            ),
            "batch_norm_train",
        );
        let c = g.channels;
        (flex(y, &x.shape()), flex(mean, &[c]), flex(var, &[c]))
    }
}

/// Backward of [`FastOps::fast_conv2d`]: the input and weight gradients through the
/// kernels, each only if its parent is tracked (the image input is not).
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (FlexTensor, FlexTensor, usize, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w, stride, pad) = ops.state;
        let g = flex_geom(&x, &w, stride, pad);
        let dy = values(&grad);
        if let Some(node) = node_x {
            let mut dx = zeroed(g.x_len());
            must(
                fnas_kernels::conv::backward_input(&g, &dy, &values(&w), &mut dx),
                "conv2d dx",
            );
            grads.register::<Flex>(node.id, flex(dx, &x.shape()));
        }
        if let Some(node) = node_w {
            let mut dw = zeroed(g.w_len());
            must(
                fnas_kernels::conv::backward_weight(&g, &values(&x), &dy, &mut dw),
                "conv2d dw",
            );
            grads.register::<Flex>(node.id, flex(dw, &w.shape()));
        }
    }
}

/// Backward of [`FastOps::fast_batch_norm_train`]; with ReLU fused, the output (kept in
/// the state) masks the incoming gradient.
#[derive(Debug)]
struct BnBackward;

impl Backward<Flex, 3> for BnBackward {
    #[allow(clippy::type_complexity)]
    type State = (
        FlexTensor,
        FlexTensor,
        FlexTensor,
        FlexTensor,
        f64,
        Option<FlexTensor>,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, gamma, mean, var, epsilon, relu_out) = ops.state;
        let g = bn_geom(&x);
        let (c, len) = (g.channels, g.len());
        let (mut dx, mut dgamma, mut dbeta) = (zeroed(len), zeroed(c), zeroed(c));
        let (x_v, dy, gamma_v) = (values(&x), values(&grad), values(&gamma));
        let (mean_v, var_v) = (values(&mean), values(&var));
        let r = match &relu_out {
            Some(out) => fnas_kernels::bn::train_backward_relu(
                &g,
                &x_v,
                &values(out),
                &dy,
                &gamma_v,
                &mean_v,
                &var_v,
                epsilon,
                &mut dx,
                &mut dgamma,
                &mut dbeta,
            ),
            None => fnas_kernels::bn::train_backward(
                &g,
                &x_v,
                &dy,
                &gamma_v,
                &mean_v,
                &var_v,
                epsilon,
                &mut dx,
                &mut dgamma,
                &mut dbeta,
            ),
        };
        must(r, "batch_norm_train backward");
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex(dx, &x.shape()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex(dgamma, &[c]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex(dbeta, &[c]));
        }
    }
}

impl<C: CheckpointStrategy> FastOps for Autodiff<Flex, C> {
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node()];
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        let y = Flex::fast_conv2d(x.clone(), weight.clone(), stride, pad);
        match ConvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, weight, stride, pad), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fast_conv2d_bias_act(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> FloatTensor<Self> {
        // Inference only: no gradient flows through the folded weights.
        Self::from_inner(Flex::fast_conv2d_bias_act(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
            stride,
            pad,
            relu,
        ))
    }

    fn fast_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
        let (y, mean, var) = Flex::fast_batch_norm_train(
            x.clone(),
            gamma.clone(),
            beta.into_primitive(),
            epsilon,
            relu,
        );
        let out = match BnBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let relu_out = relu.then(|| y.clone());
                prep.finish((x, gamma, mean.clone(), var.clone(), epsilon, relu_out), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (out, Self::from_inner(mean), Self::from_inner(var))
    }
}
