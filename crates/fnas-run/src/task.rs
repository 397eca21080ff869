//! What a search runs on: a tabular benchmark's dataset (`BENCHMARK/DATASET`) or a
//! real-training proxy task (a shipped name such as `fashion-mnist`, or a task TOML
//! file), and the reward it optimises.

use std::path::Path;

use fnas_bench::{Benchmark, TabularBenchmark};
use fnas_child::task::ProxyTask;
use fnas_core::{Objective, RewardConfig};

use crate::error::{invalid, Context, Result};

/// Parses `BENCHMARK/DATASET` (`task`) or the pair of options.
pub fn parse_task(
    benchmark: Option<&str>,
    dataset: Option<&str>,
    task: Option<&str>,
) -> Result<(Benchmark, String)> {
    let (b, d) = match (benchmark, dataset, task) {
        (Some(b), Some(d), None) => (b.to_string(), d.to_string()),
        (None, None, Some(t)) => match t.split_once('/') {
            Some((b, d)) => (b.to_string(), d.to_string()),
            None => invalid!(
                "task `{t}` is a real-training task, not BENCHMARK/DATASET (e.g. nas-bench-graph/cora)"
            ),
        },
        (Some(_), None, None) => invalid!("--benchmark needs --dataset"),
        _ => invalid!("give --benchmark B --dataset D, or --task B/D"),
    };
    let bench: Benchmark = b.parse()?;
    if !bench.datasets().contains(&d.as_str()) {
        invalid!(
            "unknown dataset `{d}` for {} (known: {})",
            bench.name(),
            bench.datasets().join(", ")
        );
    }
    Ok((bench, d))
}

/// Loads a benchmark's table for one dataset (`data_dir`: see
/// [`fnas_bench::resolve_data_dir`]).
pub fn load_benchmark(
    bench: Benchmark,
    data_dir: Option<&Path>,
    dataset: &str,
) -> Result<Box<dyn TabularBenchmark>> {
    let dir = fnas_bench::resolve_data_dir(data_dir);
    fnas_bench::load(bench, &dir, dataset)
        .context_with(|| format!("loading {}/{dataset}", bench.name()))
}

/// The reward: accuracy only without a `target`, else MnasNet's `ACC x (LAT/T)^w` with
/// the soft or `hard` constraint on latency (or on the parameter count, `params`).
pub fn reward_config(target: Option<f64>, hard: bool, params: bool) -> Result<RewardConfig> {
    let objective = if params {
        Objective::Params
    } else {
        Objective::Latency
    };
    Ok(match target {
        None => RewardConfig {
            objective,
            ..RewardConfig::default()
        },
        Some(t) if t > 0.0 && t.is_finite() => {
            if hard {
                RewardConfig::hard(t, objective)
            } else {
                RewardConfig::soft(t, objective)
            }
        }
        Some(t) => invalid!("--target must be a positive number, got {t}"),
    })
}

/// True when `task` names a real-training task rather than `BENCHMARK/DATASET`.
pub fn is_training_task(task: &str) -> bool {
    !task.contains('/') || task.ends_with(".toml") || task.contains(".toml#")
}

/// The task a search or `fnas train` uses when only `--images` is given: its recipe
/// (optimiser, epochs, sizes) is applied to the folder's images.
pub const DEFAULT_IMAGES_RECIPE: &str = "fashion-mnist";

/// The proxy task `task` names, with the IDX folder (`data_dir`) or an image folder
/// (`images`, see [`fnas_child::folder`]) and the epochs overridden.
///
/// `images` keeps the task's recipe and points it at the folder (stored as an absolute
/// path, so a resume or a worker started elsewhere finds it). The task is renamed
/// `RECIPE+FOLDER` (the folder's name, characters other than letters, digits, `-`, `_`,
/// `.` as `_`) so that experiment names and the knowledge pool, both keyed by the task
/// name, never mix those images with the recipe's own data set.
pub fn resolve_task(
    task: &str,
    data_dir: Option<&Path>,
    images: Option<&Path>,
    epochs: Option<usize>,
) -> Result<ProxyTask> {
    let mut t = ProxyTask::by_name_or_path(task)?;
    if data_dir.is_some() && images.is_some() {
        invalid!("--images and --data-dir exclude each other: give one source of images");
    }
    if let Some(d) = data_dir {
        t.data_dir = Some(d.to_path_buf());
        t.images = None;
    }
    if let Some(dir) = images {
        let abs = std::path::absolute(dir).map_err(|e| {
            crate::error::RunError::invalid(format!("--images {}: {e}", dir.display()))
        })?;
        let folder: String = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "images".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        t.name = format!("{}+{folder}", t.name);
        t.images = Some(abs);
        t.data_dir = None;
    }
    if let Some(e) = epochs {
        if e < 1 {
            invalid!("--epochs must be at least 1");
        }
        t.epochs = e;
    }
    Ok(t)
}

/// The default worker count of real training: one child per core (two children side
/// by side, one thread each, beat one child with two threads by 1.7x).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
