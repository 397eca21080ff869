//! The burn network of a [`ChildPlan`].
//!
//! Module field names are the parameter names (`blocks.3.layers.1.dw.conv.weight`,
//! `blocks.3.layers.1.dw.bn.running_mean`, `classifier.bias`, ...), because the knowledge
//! pool moves weights between architectures by name. That is why a layer is one struct
//! with optional parts rather than an enum: burn's derive puts an enum's variant name into
//! the path, while `Option` and `Vec` are transparent (`Vec` adds only the index). Every
//! conv+BN pair is a [`ConvBn`], so the `conv` op's parameters are
//! `blocks.{i}.layers.{j}.conv.conv.weight` and `...conv.bn.*`, like `...dw.conv.weight`
//! and `...dw.bn.*`.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::store::ModuleSnapshot;
use burn::tensor::activation::{self, relu, sigmoid};

use crate::kernels::{self, Kernels};
use crate::plan::{ChildPlan, LayerOp, LayerPlan, SePlan, SkipKind};

/// A bias-free conv followed by BatchNorm (`conv.*`, `bn.*`); activation is the caller's,
/// since projections and pointwise convs have none.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    /// Whether [`Kernels::Fast`] computes it (see [`ChildNet::with_kernels`]).
    pub fast: bool,
}

impl ConvBn {
    /// kxk conv with padding k/2.
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> ConvBn {
        let p = kernel / 2;
        ConvBn {
            conv: Conv2dConfig::new([cin, cout], [kernel, kernel])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(cout).init(device),
            fast: Kernels::for_device(device) == Kernels::Fast,
        }
    }

    /// conv then BN.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_act(x, false)
    }

    /// conv, BN, then ReLU if `relu` (fused into the BN with the fast kernels).
    pub fn forward_act(&self, x: Tensor<4>, relu: bool) -> Tensor<4> {
        let weight = self.conv.weight.val();
        let (k, stride) = (weight.dims()[2], self.conv.stride[0]);
        let geom = kernels::conv_geom(&x.dims(), &weight.dims(), stride, k / 2);
        if !self.fast || geom.is_none() || !kernels::is_flex(&x.device()) {
            let y = self.bn.forward(self.conv.forward(x));
            return if relu { activation::relu(y) } else { y };
        }
        let bn = &self.bn;
        if x.device().is_autodiff() && bn.training.is_enabled() {
            let h = kernels::conv2d(x, weight, stride, k / 2);
            let (y, mean, var) =
                kernels::batch_norm_train(h, bn.gamma.val(), bn.beta.val(), bn.epsilon, relu);
            // The running statistics as burn's BatchNorm keeps them.
            let device = y.device();
            let m = bn.momentum;
            let running_mean = bn.running_mean.value_sync().to_device(&device);
            let running_var = bn.running_var.value_sync().to_device(&device);
            bn.running_mean.update(
                running_mean
                    .mul_scalar(1.0 - m)
                    .add(mean.detach().mul_scalar(m))
                    .detach(),
            );
            bn.running_var.update(
                running_var
                    .mul_scalar(1.0 - m)
                    .add(var.detach().mul_scalar(m))
                    .detach(),
            );
            y
        } else {
            // Inference: BN folded into the convolution's weight and a bias.
            let device = x.device();
            let mean = bn.running_mean.value().to_device(&device);
            let var = bn.running_var.value().to_device(&device);
            let scale = bn.gamma.val() / var.add_scalar(bn.epsilon).sqrt();
            let cout = scale.dims()[0];
            let bias = bn.beta.val() - mean * scale.clone();
            let weight = weight * scale.reshape([cout, 1, 1, 1]);
            kernels::conv2d_bias_act(x, weight, bias, stride, k / 2, relu)
        }
    }
}

/// Squeeze-excitation (`reduce.*`, `expand.*`, both 1x1 convs with bias).
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    pub reduce: Conv2d,
    pub expand: Conv2d,
}

impl SqueezeExcite {
    /// SE on `se.channels` channels squeezed to `se.reduced`.
    pub fn new(se: &SePlan, device: &Device) -> SqueezeExcite {
        SqueezeExcite {
            reduce: Conv2dConfig::new([se.channels, se.reduced], [1, 1]).init(device),
            expand: Conv2dConfig::new([se.reduced, se.channels], [1, 1]).init(device),
        }
    }

    /// `x * sigmoid(expand(relu(reduce(mean_hw(x)))))`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = x.clone().mean_dim(3).mean_dim(2);
        let s = sigmoid(self.expand.forward(relu(self.reduce.forward(s))));
        x * s
    }
}

/// One layer. Which parts exist depends on the op: conv has `conv`; dwsep has `dw`, `pw`;
/// mbconv has `expand`, `dw`, `project`; any may have `se` and a `skip` projection.
#[derive(Module, Debug)]
pub struct Layer {
    pub expand: Option<ConvBn>,
    pub conv: Option<ConvBn>,
    pub dw: Option<ConvBn>,
    pub se: Option<SqueezeExcite>,
    pub pw: Option<ConvBn>,
    pub project: Option<ConvBn>,
    pub skip: Option<ConvBn>,
    /// `out + x` (no parameters).
    pub identity: bool,
}

impl Layer {
    /// The layer of `plan` on `device`.
    pub fn new(plan: &LayerPlan, device: &Device) -> Layer {
        let (k, s) = (plan.kernel, plan.stride);
        let m = plan.hidden();
        let mut layer = Layer {
            expand: None,
            conv: None,
            dw: None,
            se: plan.se.as_ref().map(|se| SqueezeExcite::new(se, device)),
            pw: None,
            project: None,
            skip: (plan.skip == SkipKind::Project)
                .then(|| ConvBn::new(plan.cin, plan.cout, 1, s, 1, device)),
            identity: plan.skip == SkipKind::Identity,
        };
        match plan.op {
            LayerOp::Conv => layer.conv = Some(ConvBn::new(plan.cin, plan.cout, k, s, 1, device)),
            LayerOp::DwSep => {
                layer.dw = Some(ConvBn::new(m, m, k, s, m, device));
                layer.pw = Some(ConvBn::new(m, plan.cout, 1, 1, 1, device));
            }
            LayerOp::MbConv { .. } => {
                layer.expand = Some(ConvBn::new(plan.cin, m, 1, 1, 1, device));
                layer.dw = Some(ConvBn::new(m, m, k, s, m, device));
                layer.project = Some(ConvBn::new(m, plan.cout, 1, 1, 1, device));
            }
        }
        layer
    }

    /// Whether its conv+BN parts use the fast kernels ([`ChildNet::with_kernels`]).
    pub fn set_fast(&mut self, fast: bool) {
        for part in [
            &mut self.expand,
            &mut self.conv,
            &mut self.dw,
            &mut self.pw,
            &mut self.project,
            &mut self.skip,
        ]
        .into_iter()
        .flatten()
        {
            part.fast = fast;
        }
    }

    /// Runs the parts present in op order: expand+ReLU, conv+ReLU, dw+ReLU, SE, pw,
    /// project, then the residual.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = x.clone();
        for part in [&self.expand, &self.conv, &self.dw].into_iter().flatten() {
            h = part.forward_act(h, true);
        }
        if let Some(se) = &self.se {
            h = se.forward(h);
        }
        for part in [&self.pw, &self.project].into_iter().flatten() {
            h = part.forward(h);
        }
        if self.identity {
            h + x
        } else if let Some(skip) = &self.skip {
            h + skip.forward(x)
        } else {
            h
        }
    }
}

/// One block: its layers (`layers.{j}`).
#[derive(Module, Debug)]
pub struct Block {
    pub layers: Vec<Layer>,
}

/// The child network: stem, blocks, head, global average pool, classifier.
#[derive(Module, Debug)]
pub struct ChildNet {
    pub stem: ConvBn,
    pub blocks: Vec<Block>,
    pub head: ConvBn,
    pub classifier: Linear,
    /// Input channels, so [`crate::latency`] can make an input without the plan.
    pub in_channels: usize,
    /// Input resolution the plan was made for.
    pub resolution: usize,
}

impl ChildNet {
    /// Builds the network of `plan` with freshly initialised weights on `device` (pass
    /// `device.autodiff()` for training). burn initialises parameters lazily, on first
    /// use.
    pub fn new(plan: &ChildPlan, device: &Device) -> ChildNet {
        let stem = &plan.stem;
        let head = &plan.head;
        ChildNet {
            stem: ConvBn::new(stem.cin, stem.cout, stem.kernel, stem.stride, 1, device),
            blocks: plan
                .blocks
                .iter()
                .map(|b| Block {
                    layers: b.layers.iter().map(|l| Layer::new(l, device)).collect(),
                })
                .collect(),
            head: ConvBn::new(head.cin, head.cout, 1, 1, 1, device),
            classifier: LinearConfig::new(head.cout, plan.classes).init(device),
            in_channels: plan.in_channels,
            resolution: plan.resolution,
        }
    }

    /// `[batch, channels, R, R]` images to `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = self.stem.forward_act(x, true);
        for block in &self.blocks {
            for layer in &block.layers {
                h = layer.forward(h);
            }
        }
        let h = self.head.forward_act(h, true);
        let [b, c, _, _] = h.dims();
        let pooled = h.mean_dim(3).mean_dim(2).reshape([b, c]);
        self.classifier.forward(pooled)
    }

    /// The same network computed by `kernels` (the fast kernels only where the device
    /// is the CPU: [`Kernels::check`]).
    pub fn with_kernels(mut self, kernels: Kernels) -> ChildNet {
        let fast = kernels == Kernels::Fast;
        self.stem.fast = fast;
        self.head.fast = fast;
        for layer in self.blocks.iter_mut().flat_map(|b| b.layers.iter_mut()) {
            layer.set_fast(fast);
        }
        self
    }

    /// Trainable parameters: [`Module::num_params`] minus BN running statistics, which
    /// burn counts too. Equals [`ChildPlan::params`].
    pub fn num_trainable(&self) -> usize {
        self.collect(None, None, false)
            .iter()
            .filter(|t| !t.name.ends_with(".running_mean") && !t.name.ends_with(".running_var"))
            .map(|t| t.shape.num_elements())
            .sum()
    }
}
