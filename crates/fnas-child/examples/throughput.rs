//! Training throughput of one child network in burn flex (issue 4), the fnas half of
//! `scripts/throughput.sh`; `scripts/torch_reference.py` is the PyTorch half.
//!
//! Trains the network of one architecture on the first `--images` Fashion-MNIST training
//! images (read with [`fnas_child::idx`], normalised like the `fashion-mnist` task), in
//! order, one pass, batches of `--batch`, SGD with momentum 0.9 (no dampening, no
//! Nesterov, no weight decay) at a constant learning rate of 0.05, cross-entropy loss.
//! One warm-up batch (lazy parameter initialisation, first allocations) runs before the
//! clock starts; the timed loop is forward, loss read-back, backward and optimiser step.
//!
//! `--procs P` trains P independent children at once, in this process, each on its own
//! rayon pool of `--threads` threads (how a search trains children side by side). All
//! children finish their warm-up, wait at a barrier, and the reported `images_per_s` is
//! all their images over the wall time from the barrier to the last child's end.
//!
//! ```text
//! cargo run --release -p fnas-child --example throughput -- \
//!     [--arch "<text form>" | --random-largest N [--seed S]] [--images 2048] [--batch 64] \
//!     [--threads 1] [--procs 1] [--plan-out plan.json] [--plan-only]
//! ```
//!
//! Default architecture: `plan::median_arch` of `SearchSpace::mnas_default()`.
//! `--random-largest N` takes the largest-FLOPs of N architectures sampled uniformly
//! (ChaCha8 seeded by `--seed`, default 1). `--plan-out` writes
//! `{"arch", "params", "flops", "describe", "plan"}` as JSON for the PyTorch side;
//! `--plan-only` stops after writing it.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fnas_child::idx;
use fnas_child::kernels::Kernels;
use fnas_child::net::ChildNet;
use fnas_child::plan::{median_arch, ChildPlan};
use fnas_child::task::ProxyTask;
use fnas_core::{Architecture, SearchSpace};
use rand::SeedableRng;

const LR: f64 = 0.05;
const MOMENTUM: f64 = 0.9;

struct Args {
    arch: Option<String>,
    random_largest: Option<usize>,
    seed: u64,
    images: usize,
    batch: usize,
    threads: usize,
    procs: usize,
    plan_out: Option<PathBuf>,
    plan_only: bool,
    data_dir: Option<PathBuf>,
    kernels: Kernels,
}

const USAGE: &str = "usage: throughput [--arch TEXT | --random-largest N [--seed S]] \
[--images N] [--batch B] [--threads T] [--procs P] [--plan-out FILE] [--plan-only] \
[--data-dir DIR] [--kernels burn|fast]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        arch: None,
        random_largest: None,
        seed: 1,
        images: 2048,
        batch: 64,
        threads: 1,
        procs: 1,
        plan_out: None,
        plan_only: false,
        data_dir: None,
        kernels: Kernels::Fast,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--plan-only" {
            a.plan_only = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| -> Result<usize, String> {
            v.parse()
                .map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--arch" => a.arch = Some(value),
            "--random-largest" => a.random_largest = Some(num(&value)?.max(1)),
            "--seed" => a.seed = num(&value)? as u64,
            "--images" => a.images = num(&value)?,
            "--batch" => a.batch = num(&value)?,
            "--threads" => a.threads = num(&value)?,
            "--procs" => a.procs = num(&value)?,
            "--plan-out" => a.plan_out = Some(value.into()),
            "--data-dir" => a.data_dir = Some(value.into()),
            "--kernels" => a.kernels = value.parse()?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.batch == 0 || a.threads == 0 || a.procs == 0 {
        return Err("--batch, --threads and --procs must be at least 1".into());
    }
    if a.images < a.batch {
        return Err(format!(
            "--images {} is less than one batch of {}",
            a.images, a.batch
        ));
    }
    Ok(a)
}

/// The architecture asked for: `--arch`, the largest-FLOPs random one, or the median.
fn pick_arch(space: &SearchSpace, args: &Args) -> Result<Architecture, String> {
    if let Some(text) = &args.arch {
        return space.parse(text).map_err(|e| e.to_string());
    }
    if let Some(n) = args.random_largest {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
        let mut best: Option<(u64, Architecture)> = None;
        for _ in 0..n {
            let a = space.sample(&mut rng);
            let flops = ChildPlan::from_space(space, &a, None)
                .map_err(|e| e.to_string())?
                .flops();
            if best.as_ref().is_none_or(|(f, _)| flops > *f) {
                best = Some((flops, a));
            }
        }
        return Ok(best.expect("n >= 1").1);
    }
    let spec = space.mnas_spec().ok_or("the default space is not MNAS")?;
    Ok(median_arch(spec))
}

/// The first `n` training images, normalised like the `fashion-mnist` task, and labels.
fn load_images(dir: &Path, n: usize, mean: f32, std: f32) -> Result<(Vec<f32>, Vec<i64>), String> {
    let set = idx::load_split(dir, "train").map_err(|e| e.to_string())?;
    if set.rows != 28 || set.cols != 28 || set.n < n {
        return Err(format!(
            "expected at least {n} 28x28 images in {}, found {} of {}x{}",
            dir.display(),
            set.n,
            set.rows,
            set.cols
        ));
    }
    let x = set.pixels[..n * 28 * 28]
        .iter()
        .map(|&p| (p as f32 / 255.0 - mean) / std)
        .collect();
    let y = set.labels[..n].iter().map(|&l| l as i64).collect();
    Ok((x, y))
}

/// What one child measured.
struct ChildRun {
    images: usize,
    seconds: f64,
    start: Instant,
    end: Instant,
    final_loss: f32,
}

/// Trains one child (inside its own pool): one warm-up batch, the barrier, then all
/// whole batches of the data, timed.
fn train_child(
    plan: &ChildPlan,
    x: &[f32],
    y: &[i64],
    batch: usize,
    seed: u64,
    kernels: Kernels,
    barrier: &Barrier,
) -> ChildRun {
    let plain = Device::flex();
    let ad = plain.clone().autodiff();
    ad.seed(seed);
    let mut model = ChildNet::new(plan, &ad).with_kernels(kernels);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(MOMENTUM)
                .with_dampening(0.0)
                .with_nesterov(false),
        ))
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let res = plan.resolution;
    let len = plan.in_channels * res * res;
    let steps = y.len() / batch;
    let mut step = |model: ChildNet, s: usize| -> (ChildNet, f32) {
        let xs = x[s * batch * len..(s + 1) * batch * len].to_vec();
        let ys = y[s * batch..(s + 1) * batch].to_vec();
        let xt = Tensor::<4>::from_data(
            TensorData::new(xs, [batch, plan.in_channels, res, res]),
            &ad,
        );
        let yt = Tensor::<1, Int>::from_data(TensorData::new(ys, [batch]), &ad);
        let loss = loss_fn.forward(model.forward(xt), yt);
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        (optim.step(LR, model, grads), value)
    };
    // Warm-up: initialises the parameters and the optimiser state.
    (model, _) = step(model, 0);
    barrier.wait();
    let start = Instant::now();
    let mut final_loss = f32::NAN;
    for s in 0..steps {
        (model, final_loss) = step(model, s);
    }
    let end = Instant::now();
    drop(model);
    ChildRun {
        images: steps * batch,
        seconds: (end - start).as_secs_f64(),
        start,
        end,
        final_loss,
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("throughput: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let space = SearchSpace::mnas_default();
    let arch = pick_arch(&space, args)?;
    let plan = ChildPlan::from_space(&space, &arch, None).map_err(|e| e.to_string())?;
    eprintln!("arch: {}", space.format(&arch));
    eprintln!("plan: {}", plan.describe());
    eprintln!("params: {} flops: {}", plan.params(), plan.flops());
    if let Some(path) = &args.plan_out {
        let doc = serde_json::json!({
            "arch": space.format(&arch),
            "params": plan.params(),
            "flops": plan.flops(),
            "describe": plan.describe(),
            "plan": plan,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if args.plan_only {
        return Ok(());
    }

    let task = ProxyTask::by_name_or_path("fashion-mnist").map_err(|e| e.to_string())?;
    let dir = args.data_dir.clone().unwrap_or_else(|| task.data_dir());
    let (mean, std) = (task.normalize.mean as f32, task.normalize.std as f32);
    let (x, y) = load_images(&dir, args.images, mean, std)?;

    let barrier = Barrier::new(args.procs);
    let runs: Vec<Result<ChildRun, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.procs)
            .map(|p| {
                let (plan, x, y, barrier) = (&plan, &x, &y, &barrier);
                s.spawn(move || {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(args.threads)
                        .thread_name(move |i| format!("child{p}-{i}"))
                        .stack_size(16 << 20)
                        .build()
                        .map_err(|e| e.to_string())?;
                    Ok(pool.install(|| {
                        train_child(plan, x, y, args.batch, p as u64, args.kernels, barrier)
                    }))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a child panicked".into())))
            .collect()
    });
    let runs: Vec<ChildRun> = runs.into_iter().collect::<Result<_, _>>()?;
    let first = runs.iter().map(|r| r.start).min().expect("procs >= 1");
    let last = runs.iter().map(|r| r.end).max().expect("procs >= 1");
    let wall = (last - first).as_secs_f64().max(1e-9);
    let images: usize = runs.iter().map(|r| r.images).sum();
    let per_proc: f64 = runs
        .iter()
        .map(|r| r.images as f64 / r.seconds.max(1e-9))
        .sum::<f64>()
        / runs.len() as f64;
    let loss: f32 = runs.iter().map(|r| r.final_loss).sum::<f32>() / runs.len() as f32;
    println!(
        "fnas images_per_s={:.1} per_proc={:.1} threads={} procs={} batch={} images={} seconds={:.2} final_loss={:.3} kernels={}",
        images as f64 / wall,
        per_proc,
        args.threads,
        args.procs,
        args.batch,
        images,
        wall,
        loss,
        args.kernels
    );
    Ok(())
}
