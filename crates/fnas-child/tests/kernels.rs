//! The gradient-check suite of the fast kernels: every layer the MNAS space can make (op x
//! kernel x stride x expansion x SE x skip of `spaces/mnas-28.toml`) and odd shapes, run
//! once through burn's operations and once through the fast kernels with the same
//! weights: outputs, the input's gradient and every parameter's gradient must agree
//! within 1e-4 relative, in training (batch statistics) and inference (folded BN) mode.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{Distribution, Gradients};
use fnas_child::kernels::Kernels;
use fnas_child::net::{ConvBn, Layer};
use fnas_child::plan::{LayerOp, LayerPlan, SePlan, SkipKind};

const TOL: f32 = 1e-4;

/// Collects each float parameter's gradient, in visiting order.
struct GradCollector<'a> {
    grads: &'a Gradients,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for GradCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            let v = g.into_data().try_into_vec::<f32>().unwrap_or_default();
            self.out.push((format!("{:?}", param.val().dims()), v));
        }
    }
}

fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Output, input gradient and (shape, gradient) of each parameter.
type Run = (Vec<f32>, Vec<f32>, Vec<(String, Vec<f32>)>);

/// Output, input gradient and parameter gradients of `layer` on `x`, with loss
/// `sum(out * probe)`.
fn run(layer: &Layer, x: &Tensor<4>, probe: &Tensor<4>) -> Run {
    let x = x.clone().require_grad();
    let out = layer.forward(x.clone());
    let loss = (out.clone() * probe.clone()).sum();
    let grads = loss.backward();
    let dx = x
        .grad(&grads)
        .map(|g| g.into_data().try_into_vec::<f32>().unwrap_or_default())
        .unwrap_or_default();
    let mut c = GradCollector {
        grads: &grads,
        out: Vec::new(),
    };
    layer.visit(&mut c);
    (
        out.into_data().try_into_vec::<f32>().unwrap_or_default(),
        dx,
        c.out,
    )
}

/// Checks one layer both ways on a random draw of weights and data, and on a second
/// draw if the first differs: the two paths round differently (1e-7), so once in a few
/// hundred draws a ReLU input lies within that of zero and takes the other side of the
/// kink in one path, which moves a few gradient values by a whole term. Both runs of
/// such a draw repeat exactly; a fresh draw does not hit the kink again, a real error
/// fails both.
fn check(plan: &LayerPlan, batch: usize) -> Result<(), String> {
    check_draw(plan, batch).or_else(|first| {
        check_draw(plan, batch).map_err(|second| format!("{first}\n  and again: {second}"))
    })
}

/// One draw of [`check`].
fn check_draw(plan: &LayerPlan, batch: usize) -> Result<(), String> {
    let ad = Device::flex().autodiff();
    let mut fast = Layer::new(plan, &ad);
    fast.set_fast(true);
    let mut slow = fast.clone();
    slow.set_fast(false);
    let x = Tensor::<4>::random(
        [batch, plan.cin, plan.in_res, plan.in_res],
        Distribution::Normal(0.0, 1.0),
        &ad,
    );
    let probe = Tensor::<4>::random(
        [batch, plan.cout, plan.out_res, plan.out_res],
        Distribution::Normal(0.0, 1.0),
        &ad,
    );
    let (yf, dxf, gf) = run(&fast, &x, &probe);
    let (ys, dxs, gs) = run(&slow, &x, &probe);
    let what = format!("{plan:?} batch {batch}");
    let d = rel_diff(&ys, &yf);
    if d > TOL {
        return Err(format!("training output differs by {d:e}: {what}"));
    }
    let d = rel_diff(&dxs, &dxf);
    if d > TOL {
        return Err(format!("input gradient differs by {d:e}: {what}"));
    }
    if gs.len() != gf.len() {
        return Err(format!(
            "{} parameter gradients vs {}: {what}",
            gs.len(),
            gf.len()
        ));
    }
    for ((name, s), (_, f)) in gs.iter().zip(&gf) {
        let d = rel_diff(s, f);
        if d > TOL {
            return Err(format!(
                "gradient of parameter {name} differs by {d:e}: {what}"
            ));
        }
    }
    // Inference: running statistics moved by the training step, BN folded into the conv.
    let (fast_v, slow_v) = (fast.valid(), slow.valid());
    let xv = x.inner();
    let yf = fast_v
        .forward(xv.clone())
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let ys = slow_v
        .forward(xv)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let d = rel_diff(&ys, &yf);
    if d > TOL {
        return Err(format!("inference output differs by {d:e}: {what}"));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn layer(
    op: LayerOp,
    kernel: usize,
    stride: usize,
    cin: usize,
    cout: usize,
    se: bool,
    skip: SkipKind,
    res: usize,
) -> LayerPlan {
    let mut p = LayerPlan {
        op,
        kernel,
        stride,
        cin,
        cout,
        se: None,
        skip,
        in_res: res,
        out_res: (res + 2 * (kernel / 2) - kernel) / stride + 1,
    };
    if se {
        let channels = p.hidden();
        p.se = Some(SePlan {
            channels,
            reduced: (channels / 4).max(1),
        });
    }
    p
}

const OPS: [LayerOp; 4] = [
    LayerOp::Conv,
    LayerOp::DwSep,
    LayerOp::MbConv { expansion: 3 },
    LayerOp::MbConv { expansion: 6 },
];

#[test]
fn every_mnas_layer_matches_burn_in_outputs_and_gradients() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in OPS {
        for kernel in [3, 5, 7] {
            for stride in [1, 2] {
                for se in [false, true] {
                    for skip in [SkipKind::None, SkipKind::Identity, SkipKind::Project] {
                        // identity only where shapes match; dwsep keeps cin channels inside
                        let (cin, cout) = match skip {
                            SkipKind::Identity => (8, 8),
                            _ => (6, 10),
                        };
                        if skip == SkipKind::Identity && stride != 1 {
                            continue;
                        }
                        let plan = layer(op, kernel, stride, cin, cout, se, skip, 9);
                        checked += 1;
                        if let Err(e) = check(&plan, 3) {
                            failures.push(e);
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} layers differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 4 * 3 * (2 * 2 * 2 + 2));
}

#[test]
fn odd_shapes_match_burn() {
    let mut failures = Vec::new();
    let cases = [
        // 1x1 spatial input, every kernel (batch 4: BatchNorm over 2 values is so
        // ill-conditioned that burn's own f32 gradients are off by 1e-4)
        (LayerOp::Conv, 3, 1, 5, 7, 1, 4),
        (LayerOp::DwSep, 5, 2, 13, 11, 1, 4),
        (LayerOp::MbConv { expansion: 6 }, 7, 1, 3, 5, 1, 4),
        // batch 1 (BN over one image)
        (LayerOp::Conv, 5, 2, 13, 9, 7, 1),
        (LayerOp::MbConv { expansion: 3 }, 3, 1, 11, 11, 5, 1),
        // kernel larger than the input, odd sizes with stride 2, channels not a multiple of 8
        (LayerOp::DwSep, 7, 2, 9, 17, 3, 2),
        (LayerOp::Conv, 7, 2, 1, 19, 5, 2),
        (LayerOp::MbConv { expansion: 6 }, 5, 2, 37, 29, 11, 2),
        (LayerOp::DwSep, 3, 1, 1, 1, 2, 4),
    ];
    for (op, k, s, cin, cout, res, batch) in cases {
        for se in [false, true] {
            let plan = layer(op, k, s, cin, cout, se, SkipKind::Project, res);
            if let Err(e) = check(&plan, batch) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_stem_convolution_from_one_channel_matches_burn() {
    // The stem: a dense 3x3 conv from the image channels, input not tracked; a second
    // draw where the first hits a ReLU kink (see `check`).
    for (cin, stride) in [(1, 1), (3, 2)] {
        let r = stem_draw(cin, stride).or_else(|first| {
            stem_draw(cin, stride).map_err(|second| format!("{first}; and again: {second}"))
        });
        assert!(r.is_ok(), "{r:?}");
    }
}

/// One draw of the stem check.
fn stem_draw(cin: usize, stride: usize) -> Result<(), String> {
    let ad = Device::flex().autodiff();
    let fast = ConvBn::new(cin, 16, 3, stride, 1, &ad);
    let mut slow = fast.clone();
    slow.fast = false;
    let x = Tensor::<4>::random([4, cin, 28, 28], Distribution::Normal(0.0, 1.0), &ad);
    let yf = fast.forward_act(x.clone(), true);
    let ys = slow.forward_act(x, true);
    let (gf, gs) = (yf.clone().sum().backward(), ys.clone().sum().backward());
    let d = rel_diff(
        &ys.into_data().try_into_vec::<f32>().unwrap_or_default(),
        &yf.into_data().try_into_vec::<f32>().unwrap_or_default(),
    );
    if d > TOL {
        return Err(format!(
            "stem output differs by {d:e} (cin {cin}, stride {stride})"
        ));
    }
    let w = |m: &ConvBn, g| {
        m.conv
            .weight
            .val()
            .grad(g)
            .map(|t| t.into_data().try_into_vec::<f32>().unwrap_or_default())
            .unwrap_or_default()
    };
    let d = rel_diff(&w(&slow, &gs), &w(&fast, &gf));
    if d > TOL {
        return Err(format!(
            "stem weight gradient differs by {d:e} (cin {cin}, stride {stride})"
        ));
    }
    Ok(())
}

#[test]
fn kernels_names_parse_and_bad_names_say_what_is_expected() {
    assert_eq!("fast".parse::<Kernels>(), Ok(Kernels::Fast));
    assert_eq!("burn".parse::<Kernels>(), Ok(Kernels::Burn));
    let e = "cudnn".parse::<Kernels>().unwrap_err();
    assert_eq!(e, "unknown kernels 'cudnn': expected one of burn, fast");
    assert_eq!(Kernels::for_device(&Device::flex()), Kernels::Fast);
    assert_eq!(
        Kernels::for_device(&Device::flex().autodiff()),
        Kernels::Fast
    );
}
