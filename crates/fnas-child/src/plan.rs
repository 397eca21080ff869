//! A child network as plain data: which layers an architecture of the MNAS space turns
//! into, with every channel count, stride and spatial size resolved.
//!
//! The plan is the single place where the network specification
//! (`/work/notes/child-spec.md`) is interpreted. [`crate::net`] builds burn modules from
//! it, FLOPs and parameter counts are computed from it analytically (no tensors needed),
//! and it serialises to JSON so a stored result can say exactly what was trained.

use fnas_core::space::MnasSpec;
use fnas_core::{Architecture, SearchSpace};
use serde::{Deserialize, Serialize};

/// Decisions per block, in the order the space lists them (`op, kernel, se, skip, width,
/// layers`).
pub const DECISIONS_PER_BLOCK: usize = 6;

const DECISION_NAMES: [&str; DECISIONS_PER_BLOCK] =
    ["op", "kernel", "se", "skip", "width", "layers"];

/// Why an architecture cannot be turned into a plan.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The architecture was made for a space with a different number of decisions.
    #[error(
        "architecture has {got} choices but space `{space}` has {expected} decisions \
         ({DECISIONS_PER_BLOCK} per block)"
    )]
    WrongLength {
        space: String,
        got: usize,
        expected: usize,
    },
    /// A choice index points past the end of its decision's choice list.
    #[error(
        "decision `{decision}`: choice index {index} is out of range (it has {count} choices)"
    )]
    ChoiceOutOfRange {
        decision: String,
        index: u16,
        count: usize,
    },
    /// The spec holds a value the network builder cannot use (only possible for a spec
    /// built by hand: files read through `SearchSpace` are validated).
    #[error("space `{space}`: field `{field}`: {message}")]
    InvalidSpec {
        space: String,
        field: String,
        message: String,
    },
    /// A resolution override of zero.
    #[error("input resolution must be at least 1, got {0}")]
    ZeroResolution(usize),
    /// [`ChildPlan::from_space`] was given a space that is not an MNAS space.
    #[error("space `{0}` is not an MNAS space; child networks exist only for MNAS spaces")]
    NotMnas(String),
}

/// The conv op of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerOp {
    /// Full kxk conv + BN + ReLU (then SE on its output).
    Conv,
    /// Depthwise kxk + BN + ReLU, SE, pointwise 1x1 + BN.
    DwSep,
    /// Inverted bottleneck: 1x1 expand to `cin * expansion` + BN + ReLU, depthwise kxk +
    /// BN + ReLU, SE, 1x1 project + BN.
    MbConv { expansion: usize },
}

impl LayerOp {
    /// Parses a space op name (`conv`, `dwsep`, `mbconv<e>`).
    pub fn from_name(name: &str) -> Option<LayerOp> {
        match name {
            "conv" => Some(LayerOp::Conv),
            "dwsep" => Some(LayerOp::DwSep),
            _ => {
                let e: usize = name.strip_prefix("mbconv")?.parse().ok()?;
                (e >= 1).then_some(LayerOp::MbConv { expansion: e })
            }
        }
    }

    /// The space's name for the op, the inverse of [`LayerOp::from_name`].
    pub fn name(&self) -> String {
        match self {
            LayerOp::Conv => "conv".into(),
            LayerOp::DwSep => "dwsep".into(),
            LayerOp::MbConv { expansion } => format!("mbconv{expansion}"),
        }
    }
}

/// What a layer adds to its output from its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// No residual connection.
    None,
    /// `out + x` (shapes match).
    Identity,
    /// `out + bn(conv1x1_stride(x))` (shapes differ and the spec asks for a projection).
    Project,
}

/// One convolution (or the classifier seen as a 1x1 conv at 1x1 spatial size), enough to
/// count its parameters and multiply-adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvPlan {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    /// Spatial size (height = width) of the input.
    pub in_res: usize,
    /// Spatial size of the output: `(in_res + 2*(kernel/2) - kernel) / stride + 1`.
    pub out_res: usize,
    /// Whether the conv has a bias (only SE convs and the classifier do).
    pub bias: bool,
    /// Whether a BatchNorm follows (adds 2*cout trainable parameters).
    pub bn: bool,
}

impl ConvPlan {
    fn new(cin: usize, cout: usize, kernel: usize, stride: usize, in_res: usize) -> ConvPlan {
        ConvPlan {
            cin,
            cout,
            kernel,
            stride,
            groups: 1,
            in_res,
            out_res: conv_out(in_res, kernel, stride),
            bias: false,
            bn: true,
        }
    }

    fn depthwise(c: usize, kernel: usize, stride: usize, in_res: usize) -> ConvPlan {
        ConvPlan {
            groups: c,
            ..ConvPlan::new(c, c, kernel, stride, in_res)
        }
    }

    /// A 1x1 conv with bias at 1x1 spatial size and no BN: SE convs and the classifier.
    fn dense(cin: usize, cout: usize) -> ConvPlan {
        ConvPlan {
            bias: true,
            bn: false,
            ..ConvPlan::new(cin, cout, 1, 1, 1)
        }
    }

    /// Trainable parameters: weight, bias if any, BN gamma and beta if any.
    pub fn params(&self) -> u64 {
        let w = prod(&[self.kernel, self.kernel, self.cin / self.groups, self.cout]);
        let b = if self.bias { self.cout as u64 } else { 0 };
        let bn = if self.bn { 2 * self.cout as u64 } else { 0 };
        w + b + bn
    }

    /// Multiply-adds: `k*k*(cin/groups)*cout*Hout*Wout`.
    pub fn flops(&self) -> u64 {
        prod(&[
            self.kernel,
            self.kernel,
            self.cin / self.groups,
            self.cout,
            self.out_res,
            self.out_res,
        ])
    }
}

/// Squeeze-excitation on `channels` channels, squeezing to `reduced`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SePlan {
    pub channels: usize,
    /// `max(1, floor(channels * ratio))`.
    pub reduced: usize,
}

/// One layer of a block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPlan {
    pub op: LayerOp,
    pub kernel: usize,
    /// The block's stride on its first layer, 1 on the others.
    pub stride: usize,
    pub cin: usize,
    pub cout: usize,
    pub se: Option<SePlan>,
    pub skip: SkipKind,
    pub in_res: usize,
    pub out_res: usize,
}

impl LayerPlan {
    /// Channels inside the layer, where the kxk conv's output and SE live: `cout` for
    /// conv, `cin` for dwsep, `cin * expansion` for mbconv.
    pub fn hidden(&self) -> usize {
        match self.op {
            LayerOp::Conv => self.cout,
            LayerOp::DwSep => self.cin,
            LayerOp::MbConv { expansion } => self.cin.saturating_mul(expansion),
        }
    }

    /// The layer's convolutions, named by their path inside the layer (`expand`, `dw`,
    /// `se.reduce`, ...), in forward order. This is what costs are computed from.
    pub fn convs(&self) -> Vec<(&'static str, ConvPlan)> {
        let (k, s, r) = (self.kernel, self.stride, self.in_res);
        let m = self.hidden();
        let mut v = Vec::new();
        match self.op {
            LayerOp::Conv => v.push(("conv", ConvPlan::new(self.cin, self.cout, k, s, r))),
            LayerOp::DwSep => v.push(("dw", ConvPlan::depthwise(self.cin, k, s, r))),
            LayerOp::MbConv { .. } => {
                v.push(("expand", ConvPlan::new(self.cin, m, 1, 1, r)));
                v.push(("dw", ConvPlan::depthwise(m, k, s, r)));
            }
        }
        if let Some(se) = self.se {
            v.push(("se.reduce", ConvPlan::dense(se.channels, se.reduced)));
            v.push(("se.expand", ConvPlan::dense(se.reduced, se.channels)));
        }
        match self.op {
            LayerOp::Conv => {}
            LayerOp::DwSep => v.push(("pw", ConvPlan::new(m, self.cout, 1, 1, self.out_res))),
            LayerOp::MbConv { .. } => {
                v.push(("project", ConvPlan::new(m, self.cout, 1, 1, self.out_res)))
            }
        }
        if self.skip == SkipKind::Project {
            v.push(("skip", ConvPlan::new(self.cin, self.cout, 1, s, r)));
        }
        v
    }

    /// Trainable parameters of the layer.
    pub fn params(&self) -> u64 {
        self.convs().iter().map(|(_, c)| c.params()).sum()
    }

    /// Multiply-adds of the layer.
    pub fn flops(&self) -> u64 {
        self.convs().iter().map(|(_, c)| c.flops()).sum()
    }
}

/// One block: the chosen options (kept for [`ChildPlan::describe`]) and its layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockPlan {
    pub op: LayerOp,
    pub kernel: usize,
    pub se_ratio: f64,
    /// Whether the `identity` skip was chosen (layers may still have none, see
    /// [`LayerPlan::skip`]).
    pub identity_skip: bool,
    pub width_multiplier: f64,
    pub stride: usize,
    pub cout: usize,
    pub layers: Vec<LayerPlan>,
}

/// Parameters and multiply-adds of one named part of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRow {
    /// Module path: `stem`, `blocks.1.layers.0`, `head`, `classifier`.
    pub name: String,
    pub params: u64,
    pub flops: u64,
}

/// The whole child network for one architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChildPlan {
    /// The space's name (for messages and records).
    pub space: String,
    pub in_channels: usize,
    /// Input height = width (the spec's, or the override).
    pub resolution: usize,
    pub classes: usize,
    pub stem: ConvPlan,
    pub blocks: Vec<BlockPlan>,
    /// The 1x1 head conv (`last channels -> head channels`), before global pooling.
    pub head: ConvPlan,
}

impl ChildPlan {
    /// Resolves `arch` in `spec`; `resolution` overrides the spec's input resolution (a
    /// task may feed other image sizes). Never panics: a wrong-length architecture, an
    /// out-of-range choice or an unusable hand-built spec is a [`PlanError`].
    pub fn new(
        spec: &MnasSpec,
        arch: &Architecture,
        resolution: Option<usize>,
    ) -> Result<ChildPlan, PlanError> {
        let invalid = |field: &str, message: String| PlanError::InvalidSpec {
            space: spec.name.clone(),
            field: field.into(),
            message,
        };
        let expected = spec.blocks.len() * DECISIONS_PER_BLOCK;
        if arch.0.len() != expected {
            return Err(PlanError::WrongLength {
                space: spec.name.clone(),
                got: arch.0.len(),
                expected,
            });
        }
        let resolution = resolution.unwrap_or(spec.input.resolution);
        if resolution == 0 {
            return Err(PlanError::ZeroResolution(resolution));
        }
        for (field, v) in [
            ("input.channels", spec.input.channels),
            ("input.classes", spec.input.classes),
            ("stem.channels", spec.stem.channels),
            ("stem.stride", spec.stem.stride),
            ("head.channels", spec.head.channels),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        let project_on_mismatch = match spec.skip.on_mismatch.as_str() {
            "none" => false,
            "project" => true,
            other => {
                return Err(invalid(
                    "skip.on_mismatch",
                    format!("none|project, got `{other}`"),
                ))
            }
        };

        let stem = ConvPlan::new(
            spec.input.channels,
            spec.stem.channels,
            3,
            spec.stem.stride,
            resolution,
        );
        let (mut c, mut res) = (stem.cout, stem.out_res);
        let mut blocks = Vec::with_capacity(spec.blocks.len());
        for (b, block) in spec.blocks.iter().enumerate() {
            let ch = &arch.0[b * DECISIONS_PER_BLOCK..(b + 1) * DECISIONS_PER_BLOCK];
            let layer_choices = spec.layer_choices(b);
            let pick = |d: usize, count: usize| -> Result<usize, PlanError> {
                let index = ch[d];
                if (index as usize) < count {
                    Ok(index as usize)
                } else {
                    Err(PlanError::ChoiceOutOfRange {
                        decision: format!("b{}.{}", b + 1, DECISION_NAMES[d]),
                        index,
                        count,
                    })
                }
            };
            let op_name = &spec.choices.op[pick(0, spec.choices.op.len())?];
            let op = LayerOp::from_name(op_name)
                .ok_or_else(|| invalid("choices.op", format!("unknown op `{op_name}`")))?;
            let kernel = spec.choices.kernel[pick(1, spec.choices.kernel.len())?];
            if kernel < 1 || kernel % 2 == 0 {
                return Err(invalid(
                    "choices.kernel",
                    format!("odd positive kernel sizes, got {kernel}"),
                ));
            }
            let kernel = kernel as usize;
            let se_ratio = spec.choices.se[pick(2, spec.choices.se.len())?];
            if !(0.0..1.0).contains(&se_ratio) {
                return Err(invalid(
                    "choices.se",
                    format!("ratios in [0, 1), got {se_ratio}"),
                ));
            }
            let identity_skip = match spec.choices.skip[pick(3, spec.choices.skip.len())?].as_str()
            {
                "none" => false,
                "identity" => true,
                other => {
                    return Err(invalid(
                        "choices.skip",
                        format!("none|identity, got `{other}`"),
                    ))
                }
            };
            let width_multiplier = spec.choices.width[pick(4, spec.choices.width.len())?];
            if !(width_multiplier.is_finite() && width_multiplier > 0.0) {
                return Err(invalid(
                    "choices.width",
                    format!("positive multipliers, got {width_multiplier}"),
                ));
            }
            let n_layers = layer_choices[pick(5, layer_choices.len())?];
            if block.stride == 0 {
                return Err(invalid(
                    &format!("blocks[{b}].stride"),
                    "must be at least 1".into(),
                ));
            }
            let cout = round8(block.width as f64 * width_multiplier);

            let mut layers = Vec::with_capacity(n_layers);
            for j in 0..n_layers {
                let stride = if j == 0 { block.stride } else { 1 };
                let out_res = conv_out(res, kernel, stride);
                let skip = if !identity_skip {
                    SkipKind::None
                } else if stride == 1 && c == cout {
                    SkipKind::Identity
                } else if project_on_mismatch {
                    SkipKind::Project
                } else {
                    SkipKind::None
                };
                let mut layer = LayerPlan {
                    op,
                    kernel,
                    stride,
                    cin: c,
                    cout,
                    se: None,
                    skip,
                    in_res: res,
                    out_res,
                };
                if se_ratio > 0.0 {
                    let channels = layer.hidden();
                    layer.se = Some(SePlan {
                        channels,
                        reduced: ((channels as f64 * se_ratio).floor() as usize).max(1),
                    });
                }
                layers.push(layer);
                c = cout;
                res = out_res;
            }
            blocks.push(BlockPlan {
                op,
                kernel,
                se_ratio,
                identity_skip,
                width_multiplier,
                stride: block.stride,
                cout,
                layers,
            });
        }
        let head = ConvPlan::new(c, spec.head.channels, 1, 1, res);
        Ok(ChildPlan {
            space: spec.name.clone(),
            in_channels: spec.input.channels,
            resolution,
            classes: spec.input.classes,
            stem,
            blocks,
            head,
        })
    }

    /// [`ChildPlan::new`] for a [`SearchSpace`], which must be an MNAS space.
    pub fn from_space(
        space: &SearchSpace,
        arch: &Architecture,
        resolution: Option<usize>,
    ) -> Result<ChildPlan, PlanError> {
        let spec = space
            .mnas_spec()
            .ok_or_else(|| PlanError::NotMnas(space.name().to_string()))?;
        ChildPlan::new(spec, arch, resolution)
    }

    /// The classifier as a dense layer (`head channels -> classes`, with bias).
    pub fn classifier(&self) -> ConvPlan {
        ConvPlan::dense(self.head.cout, self.classes)
    }

    /// All layers in forward order with their (block, layer) indices.
    pub fn layers(&self) -> impl Iterator<Item = (usize, usize, &LayerPlan)> {
        self.blocks
            .iter()
            .enumerate()
            .flat_map(|(b, bl)| bl.layers.iter().enumerate().map(move |(j, l)| (b, j, l)))
    }

    /// Parameters and multiply-adds per part (stem, each layer, head, classifier), named
    /// by module path, so a report can show where the cost is.
    pub fn costs(&self) -> Vec<CostRow> {
        let row = |name: String, params: u64, flops: u64| CostRow {
            name,
            params,
            flops,
        };
        let mut v = vec![row("stem".into(), self.stem.params(), self.stem.flops())];
        for (b, j, l) in self.layers() {
            v.push(row(format!("blocks.{b}.layers.{j}"), l.params(), l.flops()));
        }
        v.push(row("head".into(), self.head.params(), self.head.flops()));
        let cls = self.classifier();
        v.push(row("classifier".into(), cls.params(), cls.flops()));
        v
    }

    /// Trainable parameters (BN gamma/beta included, BN running statistics not).
    pub fn params(&self) -> u64 {
        self.costs().iter().map(|r| r.params).sum()
    }

    /// Multiply-adds of one forward pass of one image (convs and the classifier; BN,
    /// activations, pooling and adds are free; SE convs count at 1x1).
    pub fn flops(&self) -> u64 {
        self.costs().iter().map(|r| r.flops).sum()
    }

    /// Elements of BN running statistics (mean and variance): burn stores them as module
    /// tensors, so `Module::num_params` counts them although nothing trains them.
    pub fn bn_buffers(&self) -> u64 {
        let bn = |c: &ConvPlan| if c.bn { 2 * c.cout as u64 } else { 0 };
        let mut n = bn(&self.stem) + bn(&self.head);
        for (_, _, l) in self.layers() {
            n += l.convs().iter().map(|(_, c)| bn(c)).sum::<u64>();
        }
        n
    }

    /// Spatial size after the last block (what the head conv sees).
    pub fn final_resolution(&self) -> usize {
        self.head.in_res
    }

    /// One line: input, stem, each block (op, kernel, SE, skip, layer count, channels,
    /// stride), head, classes, then MACs and params — enough to tell architectures apart
    /// in logs.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "{}x{}x{} stem {}/s{}",
            self.in_channels, self.resolution, self.resolution, self.stem.cout, self.stem.stride
        )];
        for (b, bl) in self.blocks.iter().enumerate() {
            let mut s = format!("b{} {} k{}", b + 1, bl.op.name(), bl.kernel);
            if bl.se_ratio > 0.0 {
                s.push_str(&format!(" se{}", bl.se_ratio));
            }
            if bl.identity_skip {
                s.push_str(" id");
            }
            s.push_str(&format!(" x{} {}/s{}", bl.layers.len(), bl.cout, bl.stride));
            parts.push(s);
        }
        parts.push(format!(
            "head {} -> {} @{}px",
            self.head.cout,
            self.classes,
            self.final_resolution()
        ));
        parts.push(format!(
            "{:.2}M MACs {:.1}k params",
            self.flops() as f64 / 1e6,
            self.params() as f64 / 1e3
        ));
        parts.join(" | ")
    }
}

/// The reference "median" architecture of a spec: per decision the middle choice of its
/// list (index `(len - 1) / 2`, so the lower middle for even lengths). For the default
/// space that is dwsep, k5, no SE, no skip, width 1.0 and the base layer count: a
/// mid-sized network to normalise latency/FLOPs targets against.
pub fn median_arch(spec: &MnasSpec) -> Architecture {
    let c = &spec.choices;
    let mid = |n: usize| (n.saturating_sub(1) / 2) as u16;
    let mut v = Vec::with_capacity(spec.blocks.len() * DECISIONS_PER_BLOCK);
    for b in 0..spec.blocks.len() {
        v.extend([
            mid(c.op.len()),
            mid(c.kernel.len()),
            mid(c.se.len()),
            mid(c.skip.len()),
            mid(c.width.len()),
            mid(spec.layer_choices(b).len()),
        ]);
    }
    Architecture(v)
}

/// MobileNet's `make_divisible(v, 8)`: nearest multiple of 8 (at least 8), bumped by 8
/// if rounding lost more than 10%.
pub fn round8(v: f64) -> usize {
    let mut n = (((v + 4.0).floor().max(0.0) as usize) / 8 * 8).max(8);
    if (n as f64) < 0.9 * v {
        n += 8;
    }
    n
}

/// Output size of a conv with padding `k/2`.
fn conv_out(res: usize, kernel: usize, stride: usize) -> usize {
    (res + 2 * (kernel / 2)).saturating_sub(kernel) / stride.max(1) + 1
}

fn prod(xs: &[usize]) -> u64 {
    xs.iter().fold(1u64, |a, &x| a.saturating_mul(x as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spec() -> MnasSpec {
        SearchSpace::mnas_default().mnas_spec().unwrap().clone()
    }

    /// Choice indices for one block of the default space, by value.
    fn block(op: &str, k: i64, se: f64, skip: &str, w: f64, layers_idx: u16) -> [u16; 6] {
        let c = spec().choices;
        let ix = |p: Option<usize>| p.unwrap() as u16;
        [
            ix(c.op.iter().position(|o| o == op)),
            ix(c.kernel.iter().position(|&x| x == k)),
            ix(c.se.iter().position(|&x| x == se)),
            ix(c.skip.iter().position(|s| s == skip)),
            ix(c.width.iter().position(|&x| x == w)),
            layers_idx,
        ]
    }

    #[test]
    fn round8_matches_make_divisible() {
        assert_eq!(round8(12.0), 16);
        assert_eq!(round8(16.0), 16);
        assert_eq!(round8(20.0), 24);
        assert_eq!(round8(18.0), 24); // 16 < 0.9*18 -> +8
        assert_eq!(round8(30.0), 32);
        assert_eq!(round8(48.0), 48);
        assert_eq!(round8(72.0), 72);
        assert_eq!(round8(120.0), 120);
        assert_eq!(round8(3.0), 8);
    }

    #[test]
    fn conv_output_sizes_are_ceil_division() {
        for k in [1, 3, 5, 7] {
            for r in 1..30 {
                assert_eq!(conv_out(r, k, 1), r);
                assert_eq!(conv_out(r, k, 2), r.div_ceil(2));
            }
        }
    }

    #[test]
    fn single_layer_costs_by_hand() {
        // 3x3 conv 16->24, stride 2, 28x28 input -> 14x14.
        let c = ConvPlan::new(16, 24, 3, 2, 28);
        assert_eq!(c.out_res, 14);
        assert_eq!(c.flops(), 3 * 3 * 16 * 24 * 14 * 14);
        assert_eq!(c.params(), 3 * 3 * 16 * 24 + 2 * 24);
        // depthwise 5x5 on 48 channels at 14x14, stride 1.
        let d = ConvPlan::depthwise(48, 5, 1, 14);
        assert_eq!(d.flops(), 5 * 5 * 48 * 14 * 14);
        assert_eq!(d.params(), 5 * 5 * 48 + 2 * 48);
        // Linear 128 -> 10.
        let l = ConvPlan::dense(128, 10);
        assert_eq!(l.flops(), 128 * 10);
        assert_eq!(l.params(), 128 * 10 + 10);
    }

    #[test]
    fn layer_costs_by_hand() {
        // mbconv6 k5 16->24 s2 at 28 with SE 0.25: m = 96, 14x14 out, SE 96->24->96.
        let l = LayerPlan {
            op: LayerOp::MbConv { expansion: 6 },
            kernel: 5,
            stride: 2,
            cin: 16,
            cout: 24,
            se: Some(SePlan {
                channels: 96,
                reduced: 24,
            }),
            skip: SkipKind::Project,
            in_res: 28,
            out_res: 14,
        };
        let flops = 16 * 96 * 28 * 28 // expand at input resolution
            + 5 * 5 * 96 * 14 * 14 // depthwise
            + 96 * 24 + 24 * 96 // SE at 1x1
            + 96 * 24 * 14 * 14 // project
            + 16 * 24 * 14 * 14; // skip projection
        assert_eq!(l.flops(), flops);
        let params = (16 * 96 + 2 * 96)
            + (25 * 96 + 2 * 96)
            + (96 * 24 + 24 + 24 * 96 + 96)
            + (96 * 24 + 2 * 24)
            + (16 * 24 + 2 * 24);
        assert_eq!(l.params(), params);
        let names: Vec<_> = l.convs().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["expand", "dw", "se.reduce", "se.expand", "project", "skip"]
        );
    }

    /// The default space file cut to its first two blocks (widths 16 and 24, strides 1
    /// and 2), with the given `skip.on_mismatch`.
    fn two_block_space(on_mismatch: &str) -> SearchSpace {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../spaces/mnas-28.toml"
        ))
        .unwrap();
        let cut = text.match_indices("[[blocks]]").nth(2).unwrap().0;
        let text = text[..cut].replace(
            "on_mismatch = \"none\"",
            &format!("on_mismatch = \"{on_mismatch}\""),
        );
        SearchSpace::mnas_from_toml(&text, "two.toml").unwrap()
    }

    /// b1: conv k3, no SE, identity, width 1.0 (16 ch), 1 layer.
    /// b2: dwsep k5, SE 0.25, identity, width 1.25 (24*1.25 = 30 -> 32 ch), 2 layers.
    fn two_block_arch() -> Architecture {
        let mut a = block("conv", 3, 0.0, "identity", 1.0, 0).to_vec();
        a.extend(block("dwsep", 5, 0.25, "identity", 1.25, 1));
        Architecture(a)
    }

    /// A two-block network computed entirely by hand.
    #[test]
    fn whole_small_network_by_hand() {
        let space = two_block_space("none");
        let spec = space.mnas_spec().unwrap();
        assert_eq!(spec.blocks.len(), 2);
        let plan = ChildPlan::new(spec, &two_block_arch(), None).unwrap();
        let l = |b: usize, j: usize| &plan.blocks[b].layers[j];
        // b1 layer 0: 16->16 s1 -> identity. b2 layer 0: 16->32 s2 is a mismatch and
        // on_mismatch = none drops the skip; b2 layer 1: 32->32 s1 -> identity.
        assert_eq!(plan.blocks[0].layers.len(), 1);
        assert_eq!(l(0, 0).skip, SkipKind::Identity);
        assert_eq!(
            (l(1, 0).cin, l(1, 0).cout, l(1, 0).skip),
            (16, 32, SkipKind::None)
        );
        let se = |channels, reduced| Some(SePlan { channels, reduced });
        assert_eq!(l(1, 0).se, se(16, 4));
        assert_eq!((l(1, 1).cin, l(1, 1).skip), (32, SkipKind::Identity));
        assert_eq!(l(1, 1).se, se(32, 8));
        assert_eq!(plan.final_resolution(), 14);

        let stem = 3 * 3 * 16 * 28 * 28;
        let b1 = 3 * 3 * 16 * 16 * 28 * 28;
        let b2l0 = 5 * 5 * 16 * 14 * 14 + (16 * 4 + 4 * 16) + 16 * 32 * 14 * 14;
        let b2l1 = 5 * 5 * 32 * 14 * 14 + (32 * 8 + 8 * 32) + 32 * 32 * 14 * 14;
        let head = 32 * 128 * 14 * 14;
        let cls = 128 * 10;
        assert_eq!(plan.flops(), stem + b1 + b2l0 + b2l1 + head + cls);

        let p_stem = 9 * 16 + 32;
        let p_b1 = 9 * 16 * 16 + 32;
        let p_b2l0 = (25 * 16 + 32) + (16 * 4 + 4 + 4 * 16 + 16) + (16 * 32 + 64);
        let p_b2l1 = (25 * 32 + 64) + (32 * 8 + 8 + 8 * 32 + 32) + (32 * 32 + 64);
        let p_head = 32 * 128 + 256;
        let p_cls = 128 * 10 + 10;
        assert_eq!(
            plan.params(),
            p_stem + p_b1 + p_b2l0 + p_b2l1 + p_head + p_cls
        );
        let costs = plan.costs();
        assert_eq!(costs[2].name, "blocks.1.layers.0");
        assert_eq!(costs[2].flops, b2l0);
        // BN running stats: 2 per channel of every BN.
        assert_eq!(
            plan.bn_buffers(),
            2 * (16 + 16 + (16 + 32) + (32 + 32) + 128)
        );

        // With on_mismatch = "project" the first layer of b2 gains a 1x1/s2 projection.
        let space = two_block_space("project");
        let plan2 = ChildPlan::new(space.mnas_spec().unwrap(), &two_block_arch(), None).unwrap();
        assert_eq!(plan2.blocks[1].layers[0].skip, SkipKind::Project);
        assert_eq!(plan2.blocks[1].layers[1].skip, SkipKind::Identity);
        assert_eq!(plan2.flops(), plan.flops() + 16 * 32 * 14 * 14);
        assert_eq!(plan2.params(), plan.params() + 16 * 32 + 64);
    }

    #[test]
    fn bad_architectures_are_typed_errors() {
        let spec = spec();
        let e = ChildPlan::new(&spec, &Architecture(vec![0; 7]), None).unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::WrongLength {
                    got: 7,
                    expected: 30,
                    ..
                }
            ),
            "{e}"
        );
        let mut a = median_arch(&spec);
        a.0[6 + 5] = 3; // b2.layers has 3 choices
        let e = ChildPlan::new(&spec, &a, None).unwrap_err();
        assert_eq!(
            e,
            PlanError::ChoiceOutOfRange {
                decision: "b2.layers".into(),
                index: 3,
                count: 3
            }
        );
        assert!(e.to_string().contains("b2.layers"));
        let e = ChildPlan::new(&spec, &median_arch(&spec), Some(0)).unwrap_err();
        assert_eq!(e, PlanError::ZeroResolution(0));
        let mut bad = spec.clone();
        bad.choices.op[0] = "lstm".into();
        let e = ChildPlan::new(&bad, &Architecture(vec![0; 30]), None).unwrap_err();
        assert!(matches!(e, PlanError::InvalidSpec { .. }), "{e}");
        let nb = SearchSpace::nas_bench_201();
        let e = ChildPlan::from_space(&nb, &Architecture(vec![0; 6]), None).unwrap_err();
        assert!(matches!(e, PlanError::NotMnas(_)));
    }

    #[test]
    fn median_arch_and_describe() {
        let spec = spec();
        let a = median_arch(&spec);
        let space = SearchSpace::mnas_default();
        assert!(space.is_valid(&a));
        let f = space.format(&a);
        assert!(
            f.starts_with("b1.op=dwsep b1.kernel=5 b1.se=0 b1.skip=none b1.width=1.0 b1.layers=1"),
            "{f}"
        );
        assert!(f.contains("b2.layers=2"), "{f}");
        let plan = ChildPlan::new(&spec, &a, None).unwrap();
        let d = plan.describe();
        assert!(!d.contains('\n'));
        assert!(
            d.starts_with("1x28x28 stem 16/s1 | b1 dwsep k5 x1 16/s1 | b2 dwsep k5 x2 24/s2"),
            "{d}"
        );
        assert!(d.contains("head 128 -> 10 @4px"), "{d}");
    }

    #[test]
    fn plans_round_trip_through_json_and_resolution_override() {
        let space = SearchSpace::mnas_default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let a = space.sample(&mut rng);
            let plan = ChildPlan::from_space(&space, &a, None).unwrap();
            let json = serde_json::to_string(&plan).unwrap();
            let back: ChildPlan = serde_json::from_str(&json).unwrap();
            assert_eq!(back, plan);
            let sum: u64 = plan.costs().iter().map(|r| r.flops).sum();
            assert_eq!(sum, plan.flops());
            // Resolution only changes spatial sizes: params stay, FLOPs grow.
            let big = ChildPlan::from_space(&space, &a, Some(56)).unwrap();
            assert_eq!(big.params(), plan.params());
            assert!(big.flops() > plan.flops());
            assert_eq!(big.final_resolution(), 7);
        }
    }
}
