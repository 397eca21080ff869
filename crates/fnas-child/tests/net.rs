//! Child networks built from plans: parameter names, shapes for every op/kernel/SE/skip
//! combination (with both `skip.on_mismatch` settings), counts against the plan, and the
//! one-thread latency measurement.
//!
//! Every test holds [`LOCK`], so `latency_runs_on_one_thread` sees no other test's work
//! on the global rayon pool.

use std::sync::Mutex;

use burn::prelude::*;
use burn::store::ModuleSnapshot;
use fnas_child::latency::measure_latency;
use fnas_child::net::ChildNet;
use fnas_child::plan::{median_arch, ChildPlan, LayerOp, SkipKind};
use fnas_core::{Architecture, SearchSpace};
use rand::SeedableRng;

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn device() -> Device {
    Device::flex()
}

/// The default space file cut to its first two blocks (widths 16 and 24, strides 1 and 2,
/// base layers 1 and 2), with the given `skip.on_mismatch`.
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

/// Choice indices of one block by value.
fn block(space: &SearchSpace, values: [&str; 6]) -> Vec<u16> {
    space.decisions()[..6]
        .iter()
        .zip(values)
        .map(|(d, v)| d.choices.iter().position(|c| c == v).unwrap() as u16)
        .collect()
}

fn input(batch: usize, plan: &ChildPlan, d: &Device) -> Tensor<4> {
    let (c, r) = (plan.in_channels, plan.resolution);
    let v: Vec<f32> = (0..batch * c * r * r)
        .map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5)
        .collect();
    Tensor::<4>::from_data(TensorData::new(v, [batch, c, r, r]), d)
}

fn names(net: &ChildNet) -> Vec<String> {
    net.collect(None, None, false)
        .into_iter()
        .map(|t| t.name)
        .collect()
}

fn bn(prefix: &str) -> Vec<String> {
    ["gamma", "beta", "running_mean", "running_var"]
        .iter()
        .map(|f| format!("{prefix}.bn.{f}"))
        .collect()
}

fn conv_bn(prefix: &str) -> Vec<String> {
    let mut v = vec![format!("{prefix}.conv.weight")];
    v.extend(bn(prefix));
    v
}

#[test]
fn parameter_names_are_structural() {
    let _g = lock();
    // b1: mbconv3 k3, SE, identity, 1 layer (16 -> 16, stride 1: identity skip).
    // b2: dwsep k5, no SE, identity, 2 layers (16 -> 24 stride 2: projection; then identity).
    let space = two_block_space("project");
    let mut a = block(&space, ["mbconv3", "3", "0.25", "identity", "1.0", "1"]);
    a.extend(block(&space, ["dwsep", "5", "0", "identity", "1.0", "2"]));
    let plan = ChildPlan::from_space(&space, &Architecture(a), Some(8)).unwrap();
    let net = ChildNet::new(&plan, &device());
    let got = names(&net);

    let mut want = conv_bn("stem");
    want.extend(conv_bn("blocks.0.layers.0.expand"));
    want.extend(conv_bn("blocks.0.layers.0.dw"));
    want.extend(
        [
            "se.reduce.weight",
            "se.reduce.bias",
            "se.expand.weight",
            "se.expand.bias",
        ]
        .map(|s| format!("blocks.0.layers.0.{s}")),
    );
    want.extend(conv_bn("blocks.0.layers.0.project"));
    want.extend(conv_bn("blocks.1.layers.0.dw"));
    want.extend(conv_bn("blocks.1.layers.0.pw"));
    want.extend(conv_bn("blocks.1.layers.0.skip"));
    want.extend(conv_bn("blocks.1.layers.1.dw"));
    want.extend(conv_bn("blocks.1.layers.1.pw"));
    want.extend(conv_bn("head"));
    want.extend(["classifier.weight".into(), "classifier.bias".into()]);
    assert_eq!(got, want);
    assert!(got.contains(&"blocks.1.layers.0.dw.conv.weight".to_string()));

    // Shapes follow the plan (burn conv weights are [cout, cin/groups, k, k]).
    let shapes: std::collections::HashMap<String, Vec<usize>> = net
        .collect(None, None, false)
        .into_iter()
        .map(|t| (t.name, t.shape.to_vec()))
        .collect();
    assert_eq!(
        shapes["blocks.0.layers.0.expand.conv.weight"],
        [48, 16, 1, 1]
    );
    assert_eq!(shapes["blocks.0.layers.0.dw.conv.weight"], [48, 1, 3, 3]);
    assert_eq!(shapes["blocks.0.layers.0.se.reduce.weight"], [12, 48, 1, 1]);
    assert_eq!(shapes["blocks.1.layers.0.dw.conv.weight"], [16, 1, 5, 5]);
    assert_eq!(shapes["blocks.1.layers.0.skip.conv.weight"], [24, 16, 1, 1]);
    assert_eq!(shapes["classifier.weight"], [128, 10]);
    assert_eq!(net.num_trainable() as u64, plan.params());

    // The inference copy and an autodiff copy name things the same way.
    assert_eq!(names(&net.valid()), want);
    assert_eq!(names(&ChildNet::new(&plan, &device().autodiff())), want);
}

/// Every op x kernel x SE x skip choice, with both mismatch policies: output shape,
/// finite logits, skip kinds and the presence of `skip.*` parameters.
#[test]
fn every_combination_has_the_right_shapes() {
    let _g = lock();
    let d = device();
    let mut checked = 0;
    for on_mismatch in ["none", "project"] {
        let space = two_block_space(on_mismatch);
        let spec = space.mnas_spec().unwrap().clone();
        for op in &spec.choices.op {
            for k in &spec.choices.kernel {
                for se in ["0", "0.25"] {
                    for skip in &spec.choices.skip {
                        let k = k.to_string();
                        // b1: 16 -> 16 stride 1, 1 layer (skip fits); b2: 16 -> 24 stride 2
                        // then 24 -> 24, 2 layers (first mismatches, second fits).
                        let mut a = block(&space, [op, &k, se, skip, "1.0", "1"]);
                        a.extend(block(&space, [op, &k, se, skip, "1.0", "2"]));
                        let plan =
                            ChildPlan::from_space(&space, &Architecture(a), Some(12)).unwrap();
                        let what = format!("{on_mismatch}: {}", plan.describe());
                        let ls = |b: usize, j: usize| &plan.blocks[b].layers[j];
                        let id = skip == "identity";
                        let fit = if id {
                            SkipKind::Identity
                        } else {
                            SkipKind::None
                        };
                        let mismatch = match (id, on_mismatch) {
                            (true, "project") => SkipKind::Project,
                            _ => SkipKind::None,
                        };
                        assert_eq!(ls(0, 0).skip, fit, "{what}");
                        assert_eq!(ls(1, 0).skip, mismatch, "{what}");
                        assert_eq!(ls(1, 1).skip, fit, "{what}");
                        assert_eq!((ls(1, 0).in_res, ls(1, 0).out_res), (12, 6), "{what}");
                        assert_eq!(ls(0, 0).se.is_some(), se != "0", "{what}");

                        let net = ChildNet::new(&plan, &d);
                        let n = names(&net);
                        let has_skip = n.iter().any(|s| s.contains(".skip."));
                        assert_eq!(has_skip, mismatch == SkipKind::Project, "{what}");
                        assert_eq!(n.iter().any(|s| s.contains(".se.")), se != "0", "{what}");
                        assert_eq!(net.num_trainable() as u64, plan.params(), "{what}");
                        assert_eq!(
                            net.num_params() as u64,
                            plan.params() + plan.bn_buffers(),
                            "{what}"
                        );

                        let out = net.forward(input(2, &plan, &d));
                        assert_eq!(out.dims(), [2, 10], "{what}");
                        let v = out.try_into_vec_as::<f32>().unwrap();
                        assert!(v.iter().all(|x| x.is_finite()), "{what}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 4 * 3 * 2 * 2);
}

/// Ops are parsed from the space names and mbconv layers expand by their factor.
#[test]
fn ops_and_expansions_resolve() {
    let _g = lock();
    let space = two_block_space("none");
    for (op, want) in [
        ("conv", LayerOp::Conv),
        ("dwsep", LayerOp::DwSep),
        ("mbconv3", LayerOp::MbConv { expansion: 3 }),
        ("mbconv6", LayerOp::MbConv { expansion: 6 }),
    ] {
        let mut a = block(&space, [op, "3", "0", "none", "1.0", "1"]);
        a.extend(block(&space, [op, "3", "0", "none", "1.0", "1"]));
        let plan = ChildPlan::from_space(&space, &Architecture(a), None).unwrap();
        let l = &plan.blocks[1].layers[0];
        assert_eq!(l.op, want);
        let hidden = match want {
            LayerOp::Conv => 24,
            LayerOp::DwSep => 16,
            LayerOp::MbConv { expansion } => 16 * expansion,
        };
        assert_eq!(l.hidden(), hidden);
    }
}

/// Random architectures of the default space: burn's counts equal the plan's, and a
/// batch of two 28x28 images gives `[2, classes]` logits.
#[test]
fn random_default_architectures_count_and_run() {
    let _g = lock();
    let space = SearchSpace::mnas_default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let d = device();
    for i in 0..60 {
        let a = space.sample(&mut rng);
        let plan = ChildPlan::from_space(&space, &a, None).unwrap();
        let net = ChildNet::new(&plan, &d);
        assert_eq!(
            net.num_trainable() as u64,
            plan.params(),
            "{}",
            plan.describe()
        );
        assert_eq!(
            net.num_params() as u64,
            plan.params() + plan.bn_buffers(),
            "{}",
            plan.describe()
        );
        if i < 6 {
            let out = net.forward(input(2, &plan, &d));
            assert_eq!(out.dims(), [2, plan.classes], "{}", plan.describe());
        }
    }
}

/// Training mode works end to end: a backward pass reaches every trainable parameter.
#[test]
fn backward_reaches_every_trainable_parameter() {
    let _g = lock();
    let space = two_block_space("project");
    let mut a = block(&space, ["mbconv6", "5", "0.25", "identity", "0.75", "2"]);
    a.extend(block(
        &space,
        ["conv", "3", "0.25", "identity", "1.25", "2"],
    ));
    let plan = ChildPlan::from_space(&space, &Architecture(a), Some(8)).unwrap();
    let ad = device().autodiff();
    let net = ChildNet::new(&plan, &ad);
    let loss = net.forward(input(2, &plan, &ad)).powi_scalar(2).mean();
    let grads = loss.backward();
    let grads = burn::optim::GradientsParams::from_grads(grads, &net);
    // Every trainable tensor has a gradient; BN running stats do not.
    let trainable = names(&net)
        .iter()
        .filter(|n| !n.contains("running_"))
        .count();
    assert_eq!(grads.len(), trainable);
}

/// Ids of the global rayon pool's worker threads (Linux: from `/proc/thread-self`).
#[cfg(target_os = "linux")]
fn global_worker_tids() -> Vec<String> {
    let mut tids: Vec<String> = rayon::broadcast(|_| {
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        link.file_name().unwrap().to_string_lossy().into_owned()
    });
    tids.sort();
    tids.dedup();
    tids
}

/// Nanoseconds a thread of this process has run (`/proc/self/task/<tid>/schedstat`).
#[cfg(target_os = "linux")]
fn thread_run_ns(tid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The claim in `latency.rs`: during a measurement the global rayon pool's workers stay
/// idle (all work is on the one-thread pool), while the same forwards outside the pool
/// do use them.
#[cfg(target_os = "linux")]
#[test]
fn latency_runs_on_one_thread() {
    let _g = lock();
    let space = SearchSpace::mnas_default();
    let spec = space.mnas_spec().unwrap();
    // All mbconv6 k7 with SE at width 1.25: the heaviest ops, with depthwise convs that
    // burn-flex parallelises over channels with rayon.
    let mut a = Vec::new();
    for b in 0..spec.blocks.len() {
        let n = spec.layer_choices(b).len() - 1;
        a.extend([3, 2, 1, 1, 2, n as u16]);
    }
    let plan = ChildPlan::new(spec, &Architecture(a), None).unwrap();
    let d = device();
    let net = ChildNet::new(&plan, &d);
    let workers = global_worker_tids();
    let busy = |before: &[Option<u64>]| -> u64 {
        workers
            .iter()
            .zip(before)
            .map(|(t, b)| thread_run_ns(t).unwrap_or(0).saturating_sub(b.unwrap_or(0)))
            .sum()
    };
    let snapshot = || workers.iter().map(|t| thread_run_ns(t)).collect::<Vec<_>>();
    if snapshot().iter().any(Option::is_none) {
        eprintln!("no per-thread schedstat here; skipping");
        return;
    }

    let before = snapshot();
    let stats = measure_latency(&net, 20, 3).unwrap();
    let in_pool = busy(&before);
    assert_eq!(stats.runs, 20);
    assert!(stats.p10_ms <= stats.median_ms && stats.median_ms <= stats.p90_ms);
    assert!(stats.median_ms > 0.0);

    // Contrast: the same work outside the one-thread pool.
    let model = net.valid();
    let x = input(1, &plan, &d);
    let before = snapshot();
    for _ in 0..23 {
        let _ = model.forward(x.clone()).try_into_vec_as::<f32>().unwrap();
    }
    let outside = busy(&before);
    eprintln!(
        "{} global workers; their CPU during measure_latency: {:.2} ms, during the same \
         forwards outside the pool: {:.2} ms; median {:.3} ms p10 {:.3} p90 {:.3}; {}",
        workers.len(),
        in_pool as f64 / 1e6,
        outside as f64 / 1e6,
        stats.median_ms,
        stats.p10_ms,
        stats.p90_ms,
        plan.describe()
    );
    // Idle workers may wake briefly; real work would be tens of ms.
    assert!(in_pool < 2_000_000, "global workers ran {in_pool} ns");
    if workers.len() > 1 {
        assert!(outside > in_pool, "the contrast run used no global workers");
    }
}

/// Latency works for a network built on an autodiff device too (it measures `valid()`).
#[test]
fn latency_of_autodiff_net_and_median_arch() {
    let _g = lock();
    let space = SearchSpace::mnas_default();
    let spec = space.mnas_spec().unwrap();
    let plan = ChildPlan::new(spec, &median_arch(spec), Some(16)).unwrap();
    let net = ChildNet::new(&plan, &device().autodiff());
    let s = measure_latency(&net, 3, 1).unwrap();
    assert_eq!(s.runs, 3);
    assert!(s.median_ms.is_finite() && s.median_ms > 0.0);
}

/// The knowledge-pool premise: tensors collected from one architecture apply by name to
/// another; equal shapes are copied, differing shapes are reported, nothing panics.
#[test]
fn weights_move_between_architectures_by_name() {
    let _g = lock();
    let space = two_block_space("none");
    let d = device();
    let mut a = block(&space, ["conv", "3", "0", "none", "1.0", "1"]);
    a.extend(block(&space, ["dwsep", "5", "0", "none", "1.0", "2"]));
    let mut b = block(&space, ["conv", "3", "0", "none", "1.0", "1"]);
    b.extend(block(&space, ["dwsep", "3", "0", "none", "1.0", "1"]));
    let pa = ChildPlan::from_space(&space, &Architecture(a), Some(8)).unwrap();
    let pb = ChildPlan::from_space(&space, &Architecture(b), Some(8)).unwrap();
    let na = ChildNet::new(&pa, &d);
    let mut nb = ChildNet::new(&pb, &d);
    let res = nb.apply(na.collect(None, None, false), None, None, false);
    for n in [
        "stem.conv.weight",
        "blocks.0.layers.0.conv.conv.weight",
        "blocks.1.layers.0.pw.conv.weight",
        "head.bn.running_var",
        "classifier.bias",
    ] {
        assert!(
            res.applied.iter().any(|x| x == n),
            "{n} not applied: {:?}",
            res.applied
        );
    }
    // dw 5x5 vs 3x3: a shape error, not a copy; layer 1 exists only in A.
    assert!(!res
        .applied
        .iter()
        .any(|x| x == "blocks.1.layers.0.dw.conv.weight"));
    assert!(!res.errors.is_empty());
    assert!(
        res.unused
            .iter()
            .any(|x| x.starts_with("blocks.1.layers.1.")),
        "{res:?}"
    );
    let w = |n: &ChildNet| n.stem.conv.weight.val().try_into_vec_as::<f32>().unwrap();
    assert_eq!(w(&nb), w(&na));
}

/// Weights written in PyTorch's naming (what `fnas export` and a trial command's
/// `state_dict()` hold) load back into the same network exactly; a file of another
/// architecture is refused with the file named.
#[test]
fn torch_named_weights_round_trip_and_a_wrong_network_is_refused() {
    use fnas_child::export::{load_torch_weights, torch_state, write_safetensors};
    let _g = lock();
    let space = SearchSpace::mnas_default();
    let spec = space.mnas_spec().unwrap();
    let plan = ChildPlan::new(spec, &median_arch(spec), Some(16)).unwrap();
    let d = device();
    let net = ChildNet::new(&plan, &d);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    write_safetensors(&torch_state(&net).unwrap(), &path).unwrap();
    let mut back = ChildNet::new(&plan, &d);
    load_torch_weights(&mut back, &path).unwrap();
    let a = net.collect(None, None, false);
    let b = back.collect(None, None, false);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.to_bytes().unwrap(), y.to_bytes().unwrap(), "{}", x.name);
    }
    let mut other = Vec::new();
    for b in 0..spec.blocks.len() {
        let n = spec.layer_choices(b).len() - 1;
        other.extend([3, 2, 1, 1, 2, n as u16]);
    }
    let other = ChildPlan::new(spec, &Architecture(other), Some(16)).unwrap();
    let mut wrong = ChildNet::new(&other, &d);
    let e = load_torch_weights(&mut wrong, &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("w.safetensors") && e.contains("do not fit"),
        "{e}"
    );
    assert!(e.len() < 600, "{e}");
    std::fs::write(&path, b"not safetensors").unwrap();
    let e = load_torch_weights(&mut back, &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a safetensors file"), "{e}");
}
