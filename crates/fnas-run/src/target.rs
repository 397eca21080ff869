//! The evaluator of a search: a tabular benchmark, or real child training with its
//! weights in the experiment's artifacts folder and (optionally) the knowledge pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fnas_bench::TabularBenchmark;
use fnas_child::evaluator::{PoolSettings, ProgressHook};
use fnas_child::{TrainingEvaluator, TrainingSettings};
use fnas_core::{Architecture, EvalError, Evaluation, Evaluator, SearchSpace};

use crate::artifacts::Artifacts;
use crate::error::{invalid, Context, Result, RunError};
use crate::settings::{SearchSettings, TrainingConfig, TrialCommandConfig};
use crate::task::{load_benchmark, parse_task};
use fnas_child::command::TrialCommand;

/// What evaluates a search's architectures: a tabular benchmark or real child training.
pub enum Target {
    Table(Box<dyn TabularBenchmark>),
    Train(Box<TrainingEvaluator>),
}

impl Target {
    pub fn evaluator(&self) -> &dyn Evaluator {
        match self {
            Target::Table(t) => t.as_ref(),
            Target::Train(t) => t.as_ref(),
        }
    }

    /// The training evaluator of a real-training search.
    pub fn training(&self) -> Option<&TrainingEvaluator> {
        match self {
            Target::Train(t) => Some(t),
            Target::Table(_) => None,
        }
    }

    /// Reports the workers' training progress to `hook` (nothing on a benchmark).
    pub fn set_progress(&mut self, hook: ProgressHook) {
        if let Target::Train(t) = self {
            t.set_progress(hook);
        }
    }
}

/// Builds the evaluator the settings describe: a tabular benchmark (`data_dir`: see
/// [`fnas_bench::resolve_data_dir`]), or real training with its weights in the artifacts
/// folder of `experiment` in `store` (the pool is attached by [`with_pool`] once the
/// settings are final).
pub fn target(
    settings: &SearchSettings,
    store: &Path,
    data_dir: Option<&Path>,
    experiment: &str,
    seed: u64,
) -> Result<Target> {
    if let Some(tc) = &settings.training {
        let art = Artifacts::new(store, settings.artifacts.as_deref())?;
        art.check()?;
        let mut ev = training_evaluator(tc, seed, Some(art.weights_dir(experiment)), false)?;
        if let Some(c) = &tc.command {
            ev.set_command(trial_command(c, art.trials_dir(experiment), experiment)?);
        }
        return Ok(Target::Train(Box::new(ev)));
    }
    let (bench, dataset) = parse_task(Some(&settings.benchmark), Some(&settings.dataset), None)?;
    Ok(Target::Table(load_benchmark(bench, data_dir, &dataset)?))
}

/// The training evaluator with the knowledge pool the settings ask for (if any); its
/// index lives in `store`, its files in the artifacts folder.
pub fn with_pool(
    ev: TrainingEvaluator,
    settings: &SearchSettings,
    store: &Path,
    experiment: &str,
) -> Result<TrainingEvaluator> {
    let Some(pc) = settings.pool() else {
        return Ok(ev);
    };
    let backend = Artifacts::new(store, settings.artifacts.as_deref())?.pool(pc.limit_bytes())?;
    // warm starts from this search's entries and those of its transfer sources
    let sources = settings
        .transfer
        .iter()
        .map(|t| t.experiment.clone())
        .collect();
    Ok(ev.with_pool(PoolSettings {
        sources: Some(sources),
        ..PoolSettings::new(backend, experiment, pc.clone())
    }))
}

/// Loads the task's images and builds the training evaluator; `weights_dir` receives
/// each trained child's safetensors, `evaluate_test` also measures the test split
/// (reports only: a search never decides on it).
pub fn training_evaluator(
    cfg: &TrainingConfig,
    seed: u64,
    weights_dir: Option<PathBuf>,
    evaluate_test: bool,
) -> Result<TrainingEvaluator> {
    let space = SearchSpace::by_name_or_path(&cfg.space)?;
    if space.mnas_spec().is_none() {
        invalid!(
            "space `{}` is not an MNAS space: real training needs one (e.g. mnas-28)",
            cfg.space
        );
    }
    let data = cfg
        .task
        .materialise()
        .context_with(|| format!("loading the images of task `{}`", cfg.task.name))?;
    let device = fnas_child::evaluator::device_by_name(&cfg.device).map_err(RunError::Invalid)?;
    let kernels = fnas_child::kernels::Kernels::resolve(cfg.kernels.as_deref(), &device)
        .map_err(RunError::Invalid)?;
    let settings = TrainingSettings {
        device,
        kernels,
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

/// The trial command of the settings, its trial folders in `trials_dir`; the code folder
/// must exist here (a worker on a machine without the user's code stops before claiming).
pub fn trial_command(
    c: &TrialCommandConfig,
    trials_dir: PathBuf,
    experiment: &str,
) -> Result<TrialCommand> {
    if !c.code_dir.is_dir() {
        invalid!(
            "trial command: code folder {} not found here (the command runs in it; every worker needs it at the same path)",
            c.code_dir.display()
        );
    }
    Ok(TrialCommand {
        command: c.command.clone(),
        code_dir: c.code_dir.clone(),
        timeout: c
            .timeout_seconds
            .map(|s| std::time::Duration::from_secs_f64(s.max(0.0))),
        trials_dir,
        experiment: experiment.to_string(),
    })
}

/// A search's evaluator as every process of it uses it: the target, slowed down by the
/// experiment's `simulate_eval_seconds` (a stand-in for slow evaluations in scaling
/// benchmarks and multi-worker tests).
pub struct SearchEvaluator {
    pub target: Target,
    pub simulate_eval_seconds: Option<f64>,
}

impl Evaluator for SearchEvaluator {
    fn space(&self) -> &SearchSpace {
        self.target.evaluator().space()
    }
    fn task(&self) -> String {
        self.target.evaluator().task()
    }
    fn evaluate(&self, arch: &Architecture) -> Result<Evaluation, EvalError> {
        if let Some(s) = self.simulate_eval_seconds {
            std::thread::sleep(std::time::Duration::from_secs_f64(s.max(0.0)));
        }
        self.target.evaluator().evaluate(arch)
    }
    fn parallelism(&self) -> usize {
        self.target.evaluator().parallelism()
    }
    fn evaluate_many(&self, archs: &[Architecture]) -> Vec<Result<Evaluation, EvalError>> {
        match self.simulate_eval_seconds {
            // one after another, each slowed (as the simulated evaluations are timed)
            Some(_) => archs.iter().map(|a| self.evaluate(a)).collect(),
            None => self.target.evaluator().evaluate_many(archs),
        }
    }
}
