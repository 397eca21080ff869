//! `fnas train`: train one child network on a proxy task and print what it measured.

use anyhow::{bail, Context, Result};
use fnas_child::plan::median_arch;
use fnas_core::{Architecture, EvalError, Evaluator, SearchSpace};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use fnas_child::evaluator::PoolSettings;
use fnas_child::PoolFigures;
use fnas_run::target::training_evaluator;
use fnas_run::task::resolve_task;
use fnas_run::{PoolPolicy, TrainingConfig};

use crate::cli::TrainArgs;
use crate::progress::progress_hook;

/// `--arch`: the text form, `median`, or `random:SEED`.
fn parse_arch(space: &SearchSpace, text: &str) -> Result<Architecture> {
    let text = text.trim();
    if text == "median" {
        let spec = space.mnas_spec().context("`median` needs an MNAS space")?;
        return Ok(median_arch(spec));
    }
    if let Some(seed) = text.strip_prefix("random:") {
        let seed: u64 = seed
            .parse()
            .with_context(|| format!("--arch random:SEED: `{seed}` is not a number"))?;
        return Ok(space.sample(&mut ChaCha8Rng::seed_from_u64(seed)));
    }
    Ok(space.parse(text)?)
}

pub fn run(a: TrainArgs) -> Result<()> {
    // a warm start keeps the task's epochs for the budget class and trains --epochs
    let task_epochs = if a.warm_start { None } else { a.epochs };
    let task = resolve_task(
        &a.task,
        a.data_dir.as_deref(),
        a.images.as_deref(),
        task_epochs,
    )?;
    let cfg = TrainingConfig {
        task,
        space: a.space.clone(),
        workers: 1,
        latency_runs: a.latency_runs,
        device: a.device.clone(),
        pool: None,
        budget_unit: Default::default(),
        reward_seeds: 1,
        command: None,
        kernels: a.kernels.clone(),
    };
    let space = SearchSpace::by_name_or_path(&a.space)?;
    let arch = parse_arch(&space, &a.arch)?;
    let mut ev = training_evaluator(&cfg, a.seed, a.weights_dir.clone(), a.test)?;
    if let Some(store) = &a.pool {
        let epochs = ev.data().task.epochs;
        let policy = PoolPolicy {
            warm_epochs: a
                .warm_epochs
                .or(a.epochs.map(|e| e.max(1) as f64))
                .unwrap_or_else(|| fnas_child::evaluator::default_warm_epochs(epochs)),
            budget_class: None,
            limit_mb: fnas_child::pool::DEFAULT_POOL_LIMIT_MB,
            // one child warm-started on request: any stored network will do
            min_networks: 1,
            per_block: a.pool_match == crate::cli::PoolMatch::Block,
            warm_lr_scale: a.warm_lr_scale,
            max_distance: a.warm_max_distance,
            // one child warm-started on request: the nearest entry of any task
            other_tasks: true,
        };
        let backend = fnas_run::Artifacts::new(store, None)?.pool(policy.limit_bytes())?;
        ev = ev.with_pool(PoolSettings {
            warm_start: a.warm_start,
            ..PoolSettings::new(backend, &a.pool_experiment, policy)
        });
    }
    let plan = ev.plan(&arch).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (task_name, steps, epochs) = (
        ev.data().task.name.clone(),
        ev.data().task.steps_per_epoch(),
        ev.data().task.epochs,
    );
    if !a.json {
        let data = ev.data();
        eprintln!("architecture: {}", space.format(&arch));
        eprintln!("network:      {}", plan.describe());
        eprintln!(
            "task {}: {} train / {} val images at {}px, {} epochs of {} steps (batch {})",
            data.task.name,
            data.train.len(),
            data.val.len(),
            data.resolution(),
            data.task.epochs,
            data.task.steps_per_epoch(),
            data.task.batch_size
        );
    }
    let total = (epochs * steps) as u64;
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total);
        if let Ok(st) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps {msg}",
        ) {
            b.set_style(st);
        }
        b
    };
    let shown = bar.clone();
    let hook = progress_hook(bar.clone(), String::new());
    let ev = ev.with_progress(std::sync::Arc::new(move |p| {
        if let fnas_child::train::TrainProgress::Step { step, .. } = p.event {
            shown.set_position(step as u64 + 1);
        }
        hook(p)
    }));
    let result = ev.evaluate(&arch);
    bar.finish_and_clear();
    let eval = match result {
        Ok(e) => e,
        Err(EvalError::Failed { reason, .. }) => bail!("training failed: {reason}"),
        Err(EvalError::Fatal(m)) => bail!("{m}"),
    };
    let m = &eval.metrics;
    let pool = PoolFigures::from_metrics(m);
    let weights = ev.weights_path(&arch);
    if a.json {
        let v = serde_json::json!({
            "arch": space.format(&arch),
            "task": task_name,
            "val_accuracy": m.val_accuracy,
            "test_accuracy": m.test_accuracy,
            "latency_ms": m.latency_ms,
            "latency_p10_ms": m.extra.get("latency_p10_ms"),
            "latency_p90_ms": m.extra.get("latency_p90_ms"),
            "flops": m.flops,
            "params": m.params,
            "val_loss": m.extra.get("val_loss"),
            "cost": eval.cost,
            "weights": weights,
            "warm_start": pool.as_ref().map(|p| p.warm_start),
            "pool_hit_ratio": pool.as_ref().map(|p| p.hit_ratio),
            "pool_distance": pool.as_ref().map(|p| p.mean_distance),
            "pool_declined_distance": pool.as_ref().and_then(|p| p.declined_distance),
        });
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    println!("val accuracy   {:.4}", m.val_accuracy);
    if let Some(t) = m.test_accuracy {
        println!("test accuracy  {t:.4}");
    }
    if let Some(l) = m.latency_ms {
        println!(
            "latency        {l:.3} ms (batch 1, one thread; p10 {:.3}, p90 {:.3})",
            m.extra.get("latency_p10_ms").copied().unwrap_or(f64::NAN),
            m.extra.get("latency_p90_ms").copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "flops          {:.2} M multiply-adds",
        m.flops.unwrap_or(0.0) / 1e6
    );
    println!("params         {:.0}", m.params.unwrap_or(0.0));
    println!(
        "cost           {} images, {} epochs, {:.1} s wall, {:.1} s CPU",
        eval.cost.images, eval.cost.epochs, eval.cost.wall_seconds, eval.cost.cpu_seconds
    );
    if let Some(w) = weights {
        println!("weights        {}", w.display());
    }
    match &pool {
        Some(PoolFigures {
            declined_distance: Some(d),
            ..
        }) => println!(
            "pool           sources too far (mean block distance {d:.2} > --warm-max-distance): trained from scratch"
        ),
        Some(p) => println!(
            "pool           {} (hit ratio {:.2}, mean block distance {:.2})",
            if p.warm_start {
                "warm start"
            } else {
                "nothing usable: trained from scratch"
            },
            p.hit_ratio,
            p.mean_distance
        ),
        None => {}
    }
    Ok(())
}
