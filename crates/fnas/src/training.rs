//! Real-training tasks on the command line: which `--task` values mean "train children"
//! (a shipped proxy task name such as `fashion-mnist`, or a task TOML file), the
//! settings recorded with such an experiment, and building its evaluator.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use fnas_child::evaluator::{PoolSettings, ProgressHook, WorkerProgress};
use fnas_child::task::ProxyTask;
use fnas_child::train::TrainProgress;
use fnas_child::{TrainingEvaluator, TrainingSettings};
use fnas_core::search::BudgetUnit;
use fnas_core::SearchSpace;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

/// The `benchmark` recorded in the settings of a real-training search.
pub const TRAIN_BENCHMARK: &str = "train";

/// What a real-training search stores with its experiment: the whole recipe (so a
/// resumed search trains exactly as before even if the shipped task file changed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingConfig {
    pub task: ProxyTask,
    /// The MNAS space: a shipped name (`mnas-28`) or a TOML file.
    pub space: String,
    /// Children trained at once, one thread each.
    pub workers: usize,
    /// Timed batch-1 forward passes per child for its latency.
    pub latency_runs: usize,
    /// Training device: cpu, or cuda / cuda:N (build with `--features cuda`).
    #[serde(default = "cpu")]
    pub device: String,
    /// The knowledge pool, when the search uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolConfig>,
    /// What the budget counts (children, or training images).
    #[serde(default)]
    pub budget_unit: BudgetUnit,
    /// Trainings per child (different seeds); the reward is their mean validation
    /// accuracy.
    #[serde(default = "one_seed")]
    pub reward_seeds: usize,
}

fn one_seed() -> usize {
    1
}

/// A search's use of the knowledge pool, recorded with the experiment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoolConfig {
    /// Epochs of a child initialised from the pool (a fraction stops the last epoch
    /// early; experiments recorded before fractions were allowed hold whole numbers).
    pub warm_epochs: f64,
    /// Fairness: the one budget class (training images behind an entry's weights) every
    /// child of this search is initialised from; set when the search starts.
    pub budget_class: Option<u64>,
    /// Size limit of the pool's files in MB (least recently used networks are evicted).
    pub limit_mb: u64,
    /// Warm starts begin once the class holds this many networks (earlier children train
    /// from scratch and seed the pool).
    #[serde(default = "default_min_networks")]
    pub min_networks: usize,
    /// Each block from the most similar stored block (true, the paper's choice) or all
    /// blocks from the most similar network.
    #[serde(default = "default_per_block")]
    pub per_block: bool,
    /// Peak learning rate of a warm-started child relative to the proxy's (experiments
    /// recorded before this setting existed used the proxy's rate).
    #[serde(default = "default_warm_lr_scale")]
    pub warm_lr_scale: f64,
    /// Children whose sources are farther than this train from scratch (`None`: no
    /// limit, as experiments recorded before this setting).
    #[serde(default)]
    pub max_distance: Option<f64>,
    /// Warm starts may use entries of another task (experiments recorded before this
    /// setting did).
    #[serde(default = "default_other_tasks")]
    pub other_tasks: bool,
}

fn default_other_tasks() -> bool {
    true
}

fn default_warm_lr_scale() -> f64 {
    1.0
}

fn default_per_block() -> bool {
    true
}

fn default_min_networks() -> usize {
    8
}

/// The evaluator's pool settings for `experiment` (`pool`: the store's knowledge pool,
/// see [`crate::artifacts::Artifacts::pool`]).
pub fn pool_settings(
    config: &PoolConfig,
    pool: Arc<dyn fnas_core::pool::BlockPool>,
    experiment: &str,
    proxy_epochs: usize,
    sources: Vec<String>,
) -> PoolSettings {
    let mut s = PoolSettings::new(pool, experiment, proxy_epochs);
    s.warm_epochs = config.warm_epochs;
    s.budget_images = config.budget_class;
    s.sources = Some(sources);
    s.min_networks = config.min_networks;
    s.per_block = config.per_block;
    s.warm_lr_scale = config.warm_lr_scale;
    s.max_distance = config.max_distance;
    s.other_tasks = config.other_tasks;
    s
}

fn cpu() -> String {
    "cpu".into()
}

/// True when `task` names a real-training task rather than `BENCHMARK/DATASET`.
pub fn is_training_task(task: &str) -> bool {
    !task.contains('/') || task.ends_with(".toml") || task.contains(".toml#")
}

/// The proxy task `--task` names, with `--data-dir` and `--epochs` applied.
pub fn resolve_task(
    task: &str,
    data_dir: Option<&Path>,
    epochs: Option<usize>,
) -> Result<ProxyTask> {
    let mut t = ProxyTask::by_name_or_path(task)?;
    if let Some(d) = data_dir {
        t.data_dir = Some(d.to_path_buf());
    }
    if let Some(e) = epochs {
        anyhow::ensure!(e >= 1, "--epochs must be at least 1");
        t.epochs = e;
    }
    Ok(t)
}

/// The default worker count: one child per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Loads the task's images and builds the evaluator; `weights_dir` receives each trained
/// child's safetensors.
pub fn evaluator(
    cfg: &TrainingConfig,
    seed: u64,
    weights_dir: Option<PathBuf>,
    evaluate_test: bool,
) -> Result<TrainingEvaluator> {
    let space = SearchSpace::by_name_or_path(&cfg.space)?;
    anyhow::ensure!(
        space.mnas_spec().is_some(),
        "space `{}` is not an MNAS space: real training needs one (e.g. mnas-28)",
        cfg.space
    );
    let data = cfg
        .task
        .materialise()
        .with_context(|| format!("loading the images of task `{}`", cfg.task.name))?;
    let device = fnas_child::evaluator::device_by_name(&cfg.device).map_err(anyhow::Error::msg)?;
    let settings = TrainingSettings {
        device,
        workers: cfg.workers.max(1),
        seed,
        latency_runs: cfg.latency_runs.max(1),
        weights_dir,
        evaluate_test,
        reward_seeds: cfg.reward_seeds.max(1),
        ..TrainingSettings::default()
    };
    Ok(TrainingEvaluator::new(space, Arc::new(data), settings))
}

/// A hook that shows the workers' training progress in `bar`'s message.
pub fn progress_hook(bar: ProgressBar, prefix: String) -> ProgressHook {
    progress_hook_shared(bar, Arc::new(std::sync::Mutex::new(prefix)))
}

/// Like [`progress_hook`], with a prefix the caller keeps updating (search counts).
pub fn progress_hook_shared(
    bar: ProgressBar,
    prefix: Arc<std::sync::Mutex<String>>,
) -> ProgressHook {
    Arc::new(move |p: WorkerProgress| {
        let prefix = prefix.lock().map(|s| s.clone()).unwrap_or_default();
        if let TrainProgress::Step {
            epoch,
            epochs,
            step,
            total_steps,
            loss,
            ..
        } = p.event
        {
            if step % 5 == 0 || step + 1 == total_steps {
                bar.set_message(format!(
                    "{prefix}  worker {} child {}: epoch {}/{epochs} step {}/{total_steps} loss {loss:.3}",
                    p.worker,
                    &p.arch[..8.min(p.arch.len())],
                    epoch + 1,
                    step + 1
                ));
            }
        }
    })
}
