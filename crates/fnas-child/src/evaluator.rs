//! The real-training [`Evaluator`]: each architecture is built ([`crate::net`]), trained
//! on the proxy task ([`crate::train`]), timed ([`crate::latency`]) and counted
//! ([`crate::plan`]); its trained weights are saved as safetensors beside a text file
//! holding the architecture, so the best child can be reused.
//!
//! Several children train at once: [`TrainingEvaluator::evaluate_many`] runs `workers`
//! children side by side, each in its own one-thread pool (on a small network two
//! threads barely beat one, so one child per core uses the machine better; the
//! throughput benchmark measures it). The children of a batch warm-start from the pool
//! as it was when the batch began (`BatchView`), so the result does not depend on the
//! number of workers or on which child finished first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use fnas_core::{Architecture, Cost, EvalError, Evaluation, Evaluator, Metrics, SearchSpace};

use fnas_core::pool::{BlockPool, DistanceWeights, PoolEntry};

use crate::command::TrialCommand;
use crate::kernels::Kernels;
use crate::latency::measure_latency;
use crate::net::ChildNet;
use crate::plan::ChildPlan;
pub use crate::pool::{PoolFigures, PoolPolicy};
use crate::task::TaskData;
use crate::train::{
    train, training_images, Classifier, TrainError, TrainOptions, TrainProgress, Trained,
};
use crate::warm::{choose, entries_of, Choice, ChooseRule, EntryMeta, WarmStart};

impl Classifier for ChildNet {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        ChildNet::forward(self, x)
    }
}

/// What one worker reports while it trains (for progress bars).
#[derive(Clone, Debug)]
pub struct WorkerProgress {
    /// Worker slot (0-based).
    pub worker: usize,
    /// The architecture's short hash (hex).
    pub arch: String,
    /// The trainer's event.
    pub event: TrainProgress,
}

/// A progress hook shared by the workers.
pub type ProgressHook = Arc<dyn Fn(WorkerProgress) + Send + Sync>;

/// Settings of the training evaluator.
#[derive(Clone, Debug)]
pub struct TrainingSettings {
    /// Children trained at once (each on one thread).
    pub workers: usize,
    /// Base seed: a child's training seed is derived from it and the architecture, so a
    /// resumed search trains a child exactly as an uninterrupted one would.
    pub seed: u64,
    /// Timed forward passes for the latency (batch 1, one thread).
    pub latency_runs: usize,
    /// Untimed passes before them.
    pub latency_warmup: usize,
    /// Where trained weights go (`<hash>.safetensors` + `<hash>.arch`); `None`: not saved.
    pub weights_dir: Option<PathBuf>,
    /// Also evaluate the test set (final reports only: a search never decides on it).
    pub evaluate_test: bool,
    /// Where children train: burn's flex CPU backend, or a CUDA GPU (`cuda` feature).
    pub device: Device,
    /// Trainings per child, each with its own seed; the reward is their mean validation
    /// accuracy. One evaluation's training noise (about a point on the small proxy) can
    /// exceed the gaps between good children; averaging n seeds divides it by sqrt(n)
    /// at n times the cost.
    pub reward_seeds: usize,
    /// Train children with the user's own command instead of burn (see
    /// [`crate::command`]); `reward_seeds` does not apply then.
    pub command: Option<TrialCommand>,
    /// Which implementation computes convolutions and BatchNorms ([`Kernels::check`]ed
    /// against `device`).
    pub kernels: Kernels,
}

/// The training device of a name: `cpu` (burn flex), or `cuda` / `cuda:N` in a build
/// with the `cuda` feature. Latency is measured on the same device (batch 1).
pub fn device_by_name(name: &str) -> Result<Device, String> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        n if n == "cuda" || n.starts_with("cuda:") => cuda_device(n),
        other => Err(format!(
            "unknown device `{other}` (expected cpu, cuda or cuda:N)"
        )),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(name: &str) -> Result<Device, String> {
    let index = match name.strip_prefix("cuda:") {
        Some(i) => i
            .parse::<usize>()
            .map_err(|_| format!("device `{name}`: expected cuda:N with N a GPU index"))?,
        None => 0,
    };
    // burn opens the GPU lazily and panics deep inside the first operation when there is
    // none; the driver's device node says it up front.
    let node = format!("/dev/nvidia{index}");
    if !std::path::Path::new(&node).exists() {
        return Err(format!(
            "device `{name}`: no NVIDIA GPU {index} on this machine ({node} is missing); use --device cpu"
        ));
    }
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(name: &str) -> Result<Device, String> {
    Err(format!(
        "device `{name}`: this fnas was built without CUDA; rebuild with `cargo build --release --features cuda`"
    ))
}

impl Default for TrainingSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            seed: 0,
            latency_runs: 20,
            latency_warmup: 3,
            weights_dir: None,
            evaluate_test: false,
            device: Device::flex(),
            reward_seeds: 1,
            command: None,
            kernels: Kernels::Fast,
        }
    }
}

/// Default [`PoolPolicy::warm_lr_scale`]: on near neighbours of stored networks, half
/// the proxy at 0.3x the rate beat the full proxy from scratch, at 1x it lost
/// (scripts/warm_near_study.sh).
pub const DEFAULT_WARM_LR_SCALE: f64 = 0.3;

/// Default [`PoolPolicy::max_distance`]: near neighbours of stored networks (one
/// decision changed; mean block distance 0-0.8 to the most similar network) warm-started
/// at least as well as the full proxy from scratch; random architectures (1.8-3.4) lost
/// about 2 points (scripts/warm_near_study.sh, scripts/warm_start_study.sh).
pub const DEFAULT_WARM_MAX_DISTANCE: f64 = 1.0;

/// Epochs of a warm-started child by default: half the proxy's, rounded up to whole
/// epochs (at least 1), as measured by scripts/warm_start_study.sh.
pub fn default_warm_epochs(proxy_epochs: usize) -> f64 {
    proxy_epochs.div_ceil(2).max(1) as f64
}

/// How the evaluator uses the architecture knowledge pool.
#[derive(Clone)]
pub struct PoolSettings {
    pub pool: Arc<dyn BlockPool>,
    /// Experiment name written into the entries of trained children.
    pub experiment: String,
    /// Initialise children from the pool (then they train `policy.warm_epochs`).
    pub warm_start: bool,
    /// Store trained children's blocks in the pool.
    pub contribute: bool,
    /// Experiments whose entries may initialise children besides `experiment` itself;
    /// `None`: every experiment in the store.
    pub sources: Option<Vec<String>>,
    pub weights: DistanceWeights,
    /// Which entries warm-start a child and how it then trains.
    pub policy: PoolPolicy,
}

impl PoolSettings {
    /// Warm start and contribute following `policy`, entries of any experiment.
    pub fn new(pool: Arc<dyn BlockPool>, experiment: &str, policy: PoolPolicy) -> Self {
        Self {
            pool,
            experiment: experiment.to_string(),
            warm_start: true,
            contribute: true,
            sources: None,
            weights: DistanceWeights::default(),
            policy,
        }
    }

    /// Whether entry `e` may initialise a child of `task`: from this experiment or an
    /// allowed source, and of `task` unless `other_tasks`.
    fn allows(&self, e: &PoolEntry, task: &str) -> bool {
        (self.policy.other_tasks || e.task == task)
            && (e.experiment == self.experiment
                || self
                    .sources
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|x| x == &e.experiment)))
    }
}

/// The pool as one batch of children sees it: the entries stored before the batch
/// began, less any network of this experiment with an architecture of the batch. The
/// children of a batch train side by side, so without it a child's warm start would
/// depend on which sibling happened to finish first (a search would not reproduce), and a
/// child retrained after a resume would find its own weights.
struct BatchView {
    /// The newest entry id when the batch began (ids only grow).
    max_id: i64,
    /// Canonical texts of the batch's architectures.
    archs: BTreeSet<String>,
}

impl BatchView {
    fn shows(&self, e: &PoolEntry, experiment: &str) -> bool {
        e.id <= self.max_id && !(e.experiment == experiment && self.archs.contains(&e.arch))
    }
}

/// Trains children of an MNAS space on one proxy task.
pub struct TrainingEvaluator {
    space: SearchSpace,
    data: Arc<TaskData>,
    settings: TrainingSettings,
    progress: Option<ProgressHook>,
    pool: Option<PoolSettings>,
}

impl TrainingEvaluator {
    /// An evaluator for `space` (an MNAS space) on the materialised task `data`.
    pub fn new(space: SearchSpace, data: Arc<TaskData>, settings: TrainingSettings) -> Self {
        Self {
            space,
            data,
            settings,
            progress: None,
            pool: None,
        }
    }

    /// Uses the knowledge pool: warm starts and/or contributing trained blocks.
    pub fn with_pool(mut self, pool: PoolSettings) -> Self {
        self.pool = Some(pool);
        self
    }

    pub fn pool(&self) -> Option<&PoolSettings> {
        self.pool.as_ref()
    }

    /// The budget class this evaluator initialises children from: the pool setting, or
    /// the images of one from-scratch proxy training.
    pub fn pool_class(&self) -> u64 {
        self.pool
            .as_ref()
            .and_then(|p| p.policy.budget_class)
            .unwrap_or_else(|| training_images(&self.data, self.data.task.epochs as f64))
    }

    /// Reports every worker's training progress to `hook`.
    pub fn with_progress(mut self, hook: ProgressHook) -> Self {
        self.set_progress(hook);
        self
    }

    /// Like [`Self::with_progress`], on an evaluator built elsewhere (a prepared search
    /// gets its progress display from the program that runs it).
    pub fn set_progress(&mut self, hook: ProgressHook) {
        self.progress = Some(hook);
    }

    /// Trains children with the user's trial command instead of burn.
    pub fn set_command(&mut self, command: TrialCommand) {
        self.settings.command = Some(command);
    }

    pub fn settings(&self) -> &TrainingSettings {
        &self.settings
    }

    pub fn data(&self) -> &TaskData {
        &self.data
    }

    /// The safetensors file a trained architecture's weights are saved to.
    pub fn weights_path(&self, arch: &Architecture) -> Option<PathBuf> {
        let dir = self.settings.weights_dir.as_ref()?;
        Some(dir.join(format!("{:016x}.safetensors", arch.stable_hash())))
    }

    /// The child network of `arch` for this task: the space's layout with the task's
    /// input resolution, channels and class count (a class-subset task needs a narrower
    /// classifier, an RGB image folder a 3-channel stem).
    pub fn plan(&self, arch: &Architecture) -> Result<ChildPlan, EvalError> {
        let mut spec = self
            .space
            .mnas_spec()
            .ok_or_else(|| {
                EvalError::Fatal(format!(
                    "space `{}` is not an MNAS space",
                    self.space.name()
                ))
            })?
            .clone();
        spec.input.classes = self.data.classes;
        // an RGB image folder needs a 3-channel stem, whatever the space file says
        spec.input.channels = self.data.channels();
        ChildPlan::new(&spec, arch, Some(self.data.resolution()))
            .map_err(|e| EvalError::Fatal(format!("architecture does not fit the space: {e}")))
    }

    /// Trains, times and counts one child; `worker` only labels progress.
    pub fn train_one(&self, arch: &Architecture, worker: usize) -> Result<Evaluation, EvalError> {
        self.train_in_batch(arch, worker, None)
    }

    /// The view of the pool a batch of `archs` trains with (see [`BatchView`]); `None`
    /// without a pool to warm-start from.
    fn batch_view(&self, archs: &[Architecture]) -> Result<Option<BatchView>, EvalError> {
        // the pool files entries under the MNAS spec's name (a child plan's `space`)
        let (Some(p), Some(spec)) = (
            self.pool.as_ref().filter(|p| p.warm_start),
            self.space.mnas_spec(),
        ) else {
            return Ok(None);
        };
        let max_id = p
            .pool
            .entries(&spec.name)
            .map_err(|e| EvalError::Fatal(e.to_string()))?
            .iter()
            .map(|e| e.id)
            .max()
            .unwrap_or(0);
        let archs = archs
            .iter()
            .map(|a| self.space.format(&self.space.canonical(a)))
            .collect();
        Ok(Some(BatchView { max_id, archs }))
    }

    fn train_in_batch(
        &self,
        arch: &Architecture,
        worker: usize,
        batch: Option<&BatchView>,
    ) -> Result<Evaluation, EvalError> {
        let plan = self.plan(arch)?;
        let hash = arch.stable_hash();
        let mut opts = TrainOptions::new(self.settings.seed ^ hash, 1);
        opts.evaluate_test = self.settings.evaluate_test;
        opts.device = self.settings.device.clone();
        let task_name = self.data.task.name.clone();
        let classes = self.data.classes as u32;
        let class = self.pool_class();
        let mut pool_trouble = false;
        let choice = match self.pool.as_ref().filter(|p| p.warm_start) {
            Some(p) => {
                let allow = |e: &PoolEntry| {
                    p.allows(e, &task_name) && batch.is_none_or(|b| b.shows(e, &p.experiment))
                };
                let rule = ChooseRule {
                    weights: &p.weights,
                    min_networks: p.policy.min_networks,
                    per_block: p.policy.per_block,
                    max_distance: p.policy.max_distance,
                };
                // the pool speeds a search up; a pool that cannot be read right now (a
                // database restarting, a damaged file) costs this child its warm start,
                // not the search
                match choose(
                    p.pool.as_ref(),
                    &plan,
                    &task_name,
                    classes,
                    class,
                    &allow,
                    &rule,
                ) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("warning: knowledge pool: {e}; this child trains from scratch");
                        pool_trouble = true;
                        Choice::Scratch
                    }
                }
            }
            None => Choice::Scratch,
        };
        // too far from anything stored: a warm start would cost accuracy, so the child
        // trains the full proxy from scratch (and joins the budget class as a source)
        let declined = choice.declined_distance();
        let warm = choice.into_warm();
        if let (Some(_), Some(p)) = (&warm, &self.pool) {
            opts.epochs = Some(p.policy.warm_epochs);
            opts.lr_scale = p.policy.warm_lr_scale;
            opts.warmup_epochs = Some(0.0);
        }
        let out = match &self.settings.command {
            Some(cmd) => self.run_command(cmd, arch, &plan, warm.as_ref(), &opts, class)?,
            None => self.train_burn(arch, &plan, warm.as_ref(), &opts, worker)?,
        };
        let Outcome {
            mut metrics,
            cost,
            model,
            images,
            val_accuracy,
            weights_trouble,
        } = out;
        pool_trouble |= weights_trouble;
        if let Some(p) = &self.pool {
            let init = warm.as_ref().map(|w| w.init.clone()).unwrap_or_default();
            let lineage = warm.as_ref().map_or(0, |w| w.budget_images);
            let budget = lineage + images;
            let mut figures = PoolFigures {
                warm_start: warm.is_some(),
                hit_ratio: init.hit_ratio,
                mean_distance: init.mean_distance,
                max_distance: init.max_distance,
                declined_distance: declined,
                class,
                budget_images: budget,
                error: false,
            };
            // a child retrained after a resume (same seed, same weights) is stored once
            let arch_text = self.space.format(&self.space.canonical(arch));
            let stored = p.contribute
                && p.pool
                    .entries(&plan.space)
                    .unwrap_or_default()
                    .iter()
                    .any(|e| {
                        e.experiment == p.experiment
                            && e.arch == arch_text
                            && e.budget_images == budget
                    });
            if let (true, false, Some(model)) = (p.contribute, stored, &model) {
                let meta = EntryMeta {
                    task: task_name.clone(),
                    classes,
                    experiment: p.experiment.clone(),
                    arch: arch_text,
                    budget_images: budget,
                    val_accuracy,
                };
                if let Err(e) =
                    entries_of(model, &plan, &meta).and_then(|parts| p.pool.insert(parts))
                {
                    eprintln!("warning: knowledge pool: {e}; this child's blocks are not stored");
                    pool_trouble = true;
                }
            }
            // counted by `fnas show`: children the pool could not serve or store
            figures.error = pool_trouble;
            figures.write(&mut metrics);
        }
        if let (Some(path), Some(model)) = (self.weights_path(arch), &model) {
            let sum = save_weights(model, &path, &self.space.format(arch), &plan).map_err(|e| {
                EvalError::Fatal(format!("saving weights to {}: {e}", path.display()))
            })?;
            // recorded with the trial: a file changed since (a bit flip that still loads)
            // is caught when the weights are used again
            metrics
                .extra
                .insert(WEIGHTS_CHECKSUM_KEY.into(), sum as f64);
        }
        Ok(Evaluation { metrics, cost })
    }
}

/// What training one child gave, whichever trainer ran it.
struct Outcome {
    /// The metrics (the pool's figures are added by the caller).
    metrics: Metrics,
    cost: Cost,
    /// The trained network: the pool entry and the saved weights come from it (`None`
    /// when a trial command returned no weights).
    model: Option<ChildNet>,
    /// Images this child's own training processed (its pool entries' budget adds the
    /// warm start's lineage).
    images: u64,
    /// Validation accuracy of the training whose weights `model` holds.
    val_accuracy: f64,
    /// Weights were returned but could not be used (counted as a pool error).
    weights_trouble: bool,
}

impl TrainingEvaluator {
    /// Trains the child in burn, once per reward seed.
    fn train_burn(
        &self,
        arch: &Architecture,
        plan: &ChildPlan,
        warm: Option<&WarmStart>,
        opts: &TrainOptions,
        worker: usize,
    ) -> Result<Outcome, EvalError> {
        let label = format!("{:016x}", arch.stable_hash());
        let hook = self.progress.clone();
        let mut on_progress = |event: TrainProgress| {
            if let Some(h) = &hook {
                h(WorkerProgress {
                    worker,
                    arch: label.clone(),
                    event,
                });
            }
        };
        let data = self.data.as_ref();
        // one training per reward seed; the first (the child's own seed, so one seed
        // trains exactly as before) gives the weights, latency, test accuracy and pool
        // entry, and the reward is the mean validation accuracy over all of them
        let runs = self.settings.reward_seeds.max(1);
        let mut first: Option<Trained<ChildNet>> = None;
        let (mut vals, mut losses) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        let mut cost = Cost {
            evaluations: 1,
            ..Cost::default()
        };
        for run in 0..runs {
            let mut o = opts.clone();
            o.seed = reward_seed(opts.seed, run);
            o.evaluate_test = opts.evaluate_test && run == 0;
            let apply_error: Mutex<Option<String>> = Mutex::new(None);
            let build = |d: &Device| {
                let mut net = ChildNet::new(plan, d).with_kernels(self.settings.kernels);
                if let Some(w) = warm {
                    if let Err(e) = w.apply(&mut net) {
                        if let Ok(mut slot) = apply_error.lock() {
                            *slot = Some(e.to_string());
                        }
                    }
                }
                net
            };
            let trained = match train(data, build, &o, &mut on_progress) {
                Ok(t) => t,
                Err(e) => return Err(train_failure(e, data, cost)),
            };
            if let Some(e) = apply_error.lock().ok().and_then(|mut s| s.take()) {
                return Err(EvalError::Fatal(e));
            }
            let r = &trained.report;
            vals.push(r.val_accuracy);
            losses.push(r.val_loss);
            cost.images += r.images_processed as u64;
            cost.epochs += r.epochs as f64;
            cost.cpu_seconds += r.cpu_seconds;
            cost.wall_seconds += r.wall_seconds;
            if first.is_none() {
                first = Some(trained);
            }
        }
        let trained = first.ok_or_else(|| EvalError::Fatal("no training ran".into()))?;
        let r = &trained.report;
        let lat = measure_latency(
            &trained.model,
            self.settings.latency_runs.max(1),
            self.settings.latency_warmup,
        )
        .map_err(|e| EvalError::Failed {
            reason: format!("latency measurement failed: {e}"),
            cost: cost.clone(),
        })?;
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let mut metrics = Metrics {
            val_accuracy: mean(&vals),
            test_accuracy: r.test_accuracy,
            latency_ms: Some(lat.median_ms),
            params: Some(plan.params() as f64),
            flops: Some(plan.flops() as f64),
            ..Metrics::default()
        };
        metrics.extra.insert("val_loss".into(), mean(&losses));
        if runs > 1 {
            let m = mean(&vals);
            let var = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (runs - 1) as f64;
            metrics.extra.insert("reward_seeds".into(), runs as f64);
            metrics.extra.insert("val_accuracy_std".into(), var.sqrt());
            metrics
                .extra
                .insert("val_accuracy_first_seed".into(), r.val_accuracy);
        }
        metrics.extra.insert("latency_p10_ms".into(), lat.p10_ms);
        metrics.extra.insert("latency_p90_ms".into(), lat.p90_ms);
        metrics
            .extra
            .insert("train_seconds".into(), r.train_seconds);
        Ok(Outcome {
            metrics,
            cost,
            images: r.images_processed as u64,
            val_accuracy: r.val_accuracy,
            model: Some(trained.model),
            weights_trouble: false,
        })
    }

    /// Has the trial command train the child: writes its trial folder, runs it, reads
    /// its result and (when returned) its weights.
    fn run_command(
        &self,
        cmd: &TrialCommand,
        arch: &Architecture,
        plan: &ChildPlan,
        warm: Option<&WarmStart>,
        opts: &TrainOptions,
        class: u64,
    ) -> Result<Outcome, EvalError> {
        let hash = arch.stable_hash();
        let dir = cmd.trial_dir(hash);
        let fatal = |e: &dyn std::fmt::Display| EvalError::Fatal(e.to_string());
        let task = &self.data.task;
        let epochs = opts.epochs.unwrap_or(task.epochs as f64);
        let init = warm.map(|_| dir.join(crate::command::INIT_WEIGHTS_FILE));
        let threads = (std::thread::available_parallelism().map_or(1, |n| n.get())
            / self.settings.workers.max(1))
        .max(1);
        let mut task_json = serde_json::to_value(task).map_err(|e| fatal(&e))?;
        if let Some(obj) = task_json.as_object_mut() {
            // the folder the images were read from, absolute, whatever the task file said
            let data_dir = std::path::absolute(&self.data.data_dir)
                .unwrap_or_else(|_| self.data.data_dir.clone());
            obj.insert("data_dir".into(), serde_json::json!(data_dir));
        }
        let trial = serde_json::json!({
            "fnas_trial": 1,
            "trial": format!("{hash:016x}"),
            "experiment": cmd.experiment,
            "arch": self.space.format(arch),
            "plan": plan,
            "seed": opts.seed,
            "budget_class": class,
            "epochs": epochs,
            "lr_scale": opts.lr_scale,
            "warmup_epochs": opts.warmup_epochs.unwrap_or(task.warmup_epochs),
            "init_weights": init,
            "input": {
                "channels": self.data.train.channels,
                "resolution": self.data.resolution(),
                "classes": self.data.classes,
            },
            "class_map": self.data.class_map,
            "task": task_json,
            "threads": threads,
            "result": dir.join(crate::command::RESULT_FILE),
        });
        let model_py = crate::export::model_py(plan).map_err(|e| fatal(&e))?;
        cmd.prepare(&dir, &trial, &model_py)
            .map_err(|e| fatal(&e))?;
        if let (Some(w), Some(path)) = (warm, &init) {
            let mut net =
                ChildNet::new(plan, &self.settings.device).with_kernels(self.settings.kernels);
            w.apply(&mut net).map_err(|e| fatal(&e))?;
            crate::export::torch_state(&net)
                .and_then(|t| crate::export::write_safetensors(&t, path))
                .map_err(|e| fatal(&e))?;
        }
        let started = std::time::Instant::now();
        let result = cmd.run(&dir, threads);
        let wall = started.elapsed().as_secs_f64();
        let report = match result {
            Ok(r) => r,
            Err(e) if e.is_fatal() => return Err(fatal(&e)),
            Err(e) => {
                return Err(EvalError::Failed {
                    reason: e.to_string(),
                    cost: Cost {
                        evaluations: 1,
                        wall_seconds: wall,
                        ..Cost::default()
                    },
                })
            }
        };
        // the trained weights, for the pool and for `fnas export`: a file that does not
        // fit the child costs its pool entry, not the trial
        let mut weights_trouble = false;
        let model = report.weights.as_ref().and_then(|path| {
            let mut net = ChildNet::new(plan, &self.settings.device).with_kernels(self.settings.kernels);
            match crate::export::load_torch_weights(&mut net, path) {
                Ok(()) => Some(net),
                Err(e) => {
                    eprintln!(
                        "warning: trial {hash:016x}: returned weights not used ({e}); this child's blocks are not stored"
                    );
                    weights_trouble = true;
                    None
                }
            }
        });
        let planned = training_images(&self.data, epochs);
        let images = report.images.unwrap_or(planned);
        let mut metrics = Metrics {
            val_accuracy: report.val_accuracy,
            test_accuracy: report.test_accuracy,
            latency_ms: report.latency_ms,
            params: Some(report.params.unwrap_or(plan.params() as f64)),
            flops: Some(report.flops.unwrap_or(plan.flops() as f64)),
            ..Metrics::default()
        };
        if metrics.latency_ms.is_none() {
            // not reported: measured here, batch 1, like a child fnas trains itself
            let net = match &model {
                Some(m) => m.clone(),
                None => {
                    ChildNet::new(plan, &self.settings.device).with_kernels(self.settings.kernels)
                }
            };
            let lat = measure_latency(
                &net,
                self.settings.latency_runs.max(1),
                self.settings.latency_warmup,
            )
            .map_err(|e| EvalError::Failed {
                reason: format!("latency measurement failed: {e}"),
                cost: Cost {
                    evaluations: 1,
                    images,
                    wall_seconds: wall,
                    ..Cost::default()
                },
            })?;
            metrics.latency_ms = Some(lat.median_ms);
            metrics.extra.insert("latency_p10_ms".into(), lat.p10_ms);
            metrics.extra.insert("latency_p90_ms".into(), lat.p90_ms);
        }
        if report.images.is_none() {
            // the ledger counts the planned images when the command does not say
            metrics.extra.insert("images_planned".into(), 1.0);
        }
        metrics.extra.insert("train_seconds".into(), wall);
        for (k, v) in &report.extra {
            metrics.extra.entry(k.clone()).or_insert(*v);
        }
        Ok(Outcome {
            metrics,
            cost: Cost {
                evaluations: 1,
                images,
                epochs: report.epochs.unwrap_or(epochs),
                wall_seconds: wall,
                ..Cost::default()
            },
            images,
            val_accuracy: report.val_accuracy,
            model,
            weights_trouble,
        })
    }
}

impl TrainingEvaluator {
    /// Test accuracy of a child whose weights this evaluator saved (`weights_path`):
    /// loads them into the child network and evaluates the t10k test split.
    pub fn test_saved(&self, arch: &Architecture) -> Result<f64, EvalError> {
        let (_, net) = self.load_saved(arch)?;
        let path = self.weights_path(arch).unwrap_or_default();
        crate::train::test_accuracy(&net, &self.data, &self.settings.device)
            .map_err(|e| EvalError::Fatal(format!("testing {}: {e}", path.display())))
    }

    /// The plan and the trained network of a child whose weights this evaluator saved
    /// (inference mode, on the evaluator's device): what reports and exports start from.
    pub fn load_saved(&self, arch: &Architecture) -> Result<(ChildPlan, ChildNet), EvalError> {
        let path = self
            .weights_path(arch)
            .ok_or_else(|| EvalError::Fatal("no weights folder: nothing was saved".into()))?;
        if !path.exists() {
            return Err(EvalError::Fatal(format!(
                "weights {} not found (were they moved?)",
                path.display()
            )));
        }
        let plan = self.plan(arch)?;
        let device = self.settings.device.clone();
        let mut net = ChildNet::new(&plan, &device).with_kernels(self.settings.kernels);
        let mut st = SafetensorsStore::from_file(&path);
        net.load_from(&mut st)
            .map_err(|e| EvalError::Fatal(format!("loading {}: {e:?}", path.display())))?;
        Ok((plan, net))
    }
}

/// A failed training as the search sees it: diverged or panicked children are failed
/// trials (the search goes on); anything else stops the search.
/// The failure of one training; `spent` is what the child's earlier reward-seed
/// trainings cost (counted, since they were done).
fn train_failure(e: TrainError, data: &TaskData, spent: Cost) -> EvalError {
    let images = data.train.len() as u64;
    let mut cost = spent;
    match e {
        TrainError::Diverged { epoch, .. } => {
            cost.images += images * (epoch as u64 + 1);
            cost.epochs += epoch as f64 + 1.0;
            EvalError::Failed {
                reason: e.to_string(),
                cost,
            }
        }
        TrainError::Panicked(_) => EvalError::Failed {
            reason: e.to_string(),
            cost,
        },
        other => EvalError::Fatal(other.to_string()),
    }
}

/// The training seed of a child's `run`-th reward seed: run 0 is the child's own seed
/// (so one reward seed trains exactly as a search without the option), later runs are
/// spread by SplitMix64 so they share nothing with each other or with other children.
pub fn reward_seed(child_seed: u64, run: usize) -> u64 {
    if run == 0 {
        return child_seed;
    }
    let mut z = child_seed.wrapping_add((run as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The metric under which a trial records [`weights_checksum`] of its weights file.
pub const WEIGHTS_CHECKSUM_KEY: &str = "weights_sha256_52";

/// The first 52 bits of the SHA-256 of a weights file's bytes: a whole number a trial's
/// metrics (f64) hold exactly, which misses a change with probability 2^-52.
pub fn weights_checksum(bytes: &[u8]) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) >> 12
}

/// Checks a weights file against the checksum its trial recorded (`None`: a trial of an
/// older build, nothing to check).
pub fn verify_weights(path: &Path, recorded: Option<f64>) -> Result<(), String> {
    let Some(want) = recorded else {
        return Ok(());
    };
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if weights_checksum(&bytes) as f64 != want {
        return Err(format!(
            "{}: checksum mismatch with the one recorded when the child was trained: the file changed since (damaged or replaced)",
            path.display()
        ));
    }
    Ok(())
}

/// Writes the weights atomically (temp file, then rename) and the architecture beside;
/// returns the file's [`weights_checksum`].
fn save_weights(
    model: &ChildNet,
    path: &Path,
    arch: &str,
    plan: &ChildPlan,
) -> Result<u64, String> {
    let dir = path.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("safetensors.tmp");
    // a run killed while writing left its temporary file: this write replaces it
    let mut st = SafetensorsStore::from_file(&tmp).overwrite(true);
    model.save_into(&mut st).map_err(|e| format!("{e:?}"))?;
    fnas_core::crash::point("weights-write");
    let sum = weights_checksum(&std::fs::read(&tmp).map_err(|e| e.to_string())?);
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    let text = format!("{arch}\n# {}\n", plan.describe());
    std::fs::write(path.with_extension("arch"), text).map_err(|e| e.to_string())?;
    Ok(sum)
}

impl Evaluator for TrainingEvaluator {
    fn space(&self) -> &SearchSpace {
        &self.space
    }

    fn task(&self) -> String {
        format!("train/{}", self.data.task.name)
    }

    fn evaluate(&self, arch: &Architecture) -> Result<Evaluation, EvalError> {
        self.train_one(arch, 0)
    }

    fn parallelism(&self) -> usize {
        self.settings.workers.max(1)
    }

    fn evaluate_many(&self, archs: &[Architecture]) -> Vec<Result<Evaluation, EvalError>> {
        let view = match self.batch_view(archs) {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                return archs
                    .iter()
                    .map(|_| Err(EvalError::Fatal(msg.clone())))
                    .collect();
            }
        };
        let view = view.as_ref();
        let workers = self.settings.workers.clamp(1, archs.len().max(1));
        if workers == 1 {
            return archs
                .iter()
                .map(|a| self.train_in_batch(a, 0, view))
                .collect();
        }
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Result<Evaluation, EvalError>>>> =
            archs.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for w in 0..workers {
                let (next, results) = (&next, &results);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(arch) = archs.get(i) else { break };
                    let r = self.train_in_batch(arch, w, view);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|m| {
                m.into_inner().ok().flatten().unwrap_or_else(|| {
                    Err(EvalError::Fatal(
                        "a training worker stopped unexpectedly".into(),
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::reward_seed;

    #[test]
    fn the_first_reward_seed_is_the_childs_own_and_the_others_differ() {
        for child in [0u64, 1, 42, u64::MAX, 0x9E37_79B9_7F4A_7C15] {
            assert_eq!(reward_seed(child, 0), child);
            let mut seeds: Vec<u64> = (0..16).map(|run| reward_seed(child, run)).collect();
            assert_eq!(
                seeds,
                (0..16)
                    .map(|run| reward_seed(child, run))
                    .collect::<Vec<_>>()
            );
            seeds.sort_unstable();
            seeds.dedup();
            assert_eq!(seeds.len(), 16, "child seed {child}: runs share a seed");
        }
        // neighbouring children (seeds differ in one bit) share no later-run seed
        let a: Vec<u64> = (1..8).map(|r| reward_seed(6, r)).collect();
        assert!((1..8).all(|r| !a.contains(&reward_seed(7, r))));
    }
}
