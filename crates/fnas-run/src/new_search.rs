//! A new search from the user's choices: the options (grouped as on the command line),
//! checked and turned into the settings recorded with the experiment; and, on a resume,
//! the options that the stored settings override.

use std::path::{Path, PathBuf};

use fnas_child::PoolPolicy;
use fnas_core::search::BudgetUnit;
use fnas_core::space::Encoding;
use fnas_core::store::{Experiment, ExperimentSpec};
use fnas_core::Store;
use fnas_learn::acquisition::Acquisition;
use fnas_learn::select::SelectConfig;

use crate::artifacts::Artifacts;
use crate::error::{invalid, Result, RunError};
use crate::prepare::{prepare, PrepareOptions, PreparedSearch};
use crate::settings::{SearchSettings, TrainingConfig, TrialCommandConfig, TRAIN_BENCHMARK};
use crate::stores;
use crate::strategy::StrategyKind;
use crate::target::{target, Target};
use crate::task::{default_workers, is_training_task, parse_task, resolve_task, reward_config};
use crate::transfer::transfer_from_store;

/// Default budget of a benchmark search, in queries.
pub const DEFAULT_BENCH_BUDGET: u64 = 500;

/// Default budget of a real-training search, in training images: the main job's ~35-40
/// trained `fashion-mnist` children (the critic trusts more), about 14 minutes on 2 cores
/// (827 s measured, README), the "about 15 minutes" the main job is meant to take.
pub const DEFAULT_TRAIN_IMAGES: u64 = 300_000;

/// Points the critic needs before it acts on real training (a benchmark search keeps
/// [`fnas_learn::fnas::FnasConfig`]'s 32): a trained child costs seconds, not a lookup,
/// and the main job trains about 24, so with 32 its critic would never act. Measured on
/// `fashion-mnist-small` (`docs/results/search-comparison-critic16.txt`, 3 seeds): with
/// 16 full FNAS reached vanilla PPO's final best sooner (ratio median 1.32, 0.96 with
/// 32) and ended higher than with 32 on 2 of 3 seeds.
pub const TRAIN_CRITIC_MIN_POINTS: usize = 16;

/// What the search runs on.
#[derive(Clone, Debug)]
pub struct TaskOptions {
    /// A tabular benchmark (with `dataset`), instead of `task`.
    pub benchmark: Option<String>,
    pub dataset: Option<String>,
    /// `BENCHMARK/DATASET`, or a real-training proxy task (a shipped name or a TOML file).
    pub task: Option<String>,
    /// The MNAS space of a real-training task.
    pub space: String,
    /// Real training: epochs per child (default: the task's).
    pub epochs: Option<usize>,
    /// Real training: cpu, or cuda / cuda:N.
    pub device: String,
    /// Real training: `burn` or `fast` kernels (absent: the device's default).
    pub kernels: Option<String>,
    /// The benchmark data, or the images of a real-training task.
    pub data_dir: Option<PathBuf>,
    /// An image folder a real-training task trains on instead of its own data (the task
    /// defaults to [`crate::task::DEFAULT_IMAGES_RECIPE`]); see [`resolve_task`].
    pub images: Option<PathBuf>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            benchmark: None,
            dataset: None,
            task: None,
            space: "mnas-28".into(),
            epochs: None,
            device: "cpu".into(),
            kernels: None,
            data_dir: None,
            images: None,
        }
    }
}

impl TaskOptions {
    /// The real-training task named, if `task` is one.
    pub fn training_task(&self) -> Option<&str> {
        match self.task.as_deref() {
            None if self.images.is_some() => Some(crate::task::DEFAULT_IMAGES_RECIPE),
            t => t.filter(|t| is_training_task(t)),
        }
    }

    /// `(benchmark, dataset)` as recorded in the settings, when the options name a task
    /// (a real-training task: `train` and its name); `None` when they do not.
    pub fn key(&self) -> Option<(String, String)> {
        match self.training_task() {
            Some(t) => resolve_task(t, None, self.images.as_deref(), None)
                .ok()
                .map(|pt| (TRAIN_BENCHMARK.to_string(), pt.name)),
            None => parse_task(
                self.benchmark.as_deref(),
                self.dataset.as_deref(),
                self.task.as_deref(),
            )
            .ok()
            .map(|(b, d)| (b.name().to_string(), d)),
        }
    }
}

/// The reward.
#[derive(Clone, Debug)]
pub struct RewardOptions {
    /// Latency (or params) target T of the MnasNet reward; `None`: accuracy only.
    pub target: Option<f64>,
    /// The hard constraint (else the soft one).
    pub hard: bool,
    /// LAT is the parameter count (else the latency).
    pub params: bool,
    /// Real training: trainings per child whose validation accuracies are averaged.
    pub seeds: u64,
}

impl Default for RewardOptions {
    fn default() -> Self {
        Self {
            target: None,
            hard: false,
            params: false,
            seeds: 1,
        }
    }
}

/// The FNAS critic and its gate.
#[derive(Clone, Debug)]
pub struct CriticOptions {
    /// Pre-train on earlier experiments of the store: `all`, or comma-separated names.
    pub transfer_from: Option<String>,
    /// Points the critic needs before it acts (default: FNAS's, 16 on real training).
    pub min_points: Option<u64>,
    pub trust_contenders: bool,
    pub gate_after_calibration: bool,
    pub gate_tau: Option<f64>,
    /// Critic-ranked proposals: draws per trained child (1 = off).
    pub screen: u64,
}

impl Default for CriticOptions {
    fn default() -> Self {
        Self {
            transfer_from: None,
            min_points: None,
            trust_contenders: false,
            gate_after_calibration: false,
            gate_tau: None,
            screen: 1,
        }
    }
}

impl CriticOptions {
    /// The gate flags set, with their names.
    fn gate_flags(&self) -> [(bool, &'static str); 3] {
        [
            (self.trust_contenders, "--trust-contenders"),
            (self.gate_after_calibration, "--gate-after-calibration"),
            (self.gate_tau.is_some(), "--gate-tau"),
        ]
    }
}

/// The settings of critic-chosen proposals (`fnas-select` strategies); unset ones keep
/// the strategy's preset.
#[derive(Clone, Debug, Default)]
pub struct SelectOptions {
    pub acquisition: Option<Acquisition>,
    pub encoding: Option<Encoding>,
    pub candidates: Option<usize>,
}

impl SelectOptions {
    /// Whether any option is set.
    pub fn any(&self) -> bool {
        self.acquisition.is_some() || self.encoding.is_some() || self.candidates.is_some()
    }

    /// Applies the set options to a `fnas-select` configuration.
    pub fn apply(&self, c: &mut SelectConfig) {
        if let Some(a) = self.acquisition {
            c.acquisition = a;
        }
        if let Some(e) = self.encoding {
            c.encoding = e;
        }
        if let Some(n) = self.candidates {
            c.candidates = n;
        }
    }
}

/// Whether a real-training search uses the knowledge pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoolMode {
    /// On for the strategies that use it by default ([`StrategyKind::pool_by_default`]).
    #[default]
    Auto,
    On,
    Off,
}

/// The knowledge pool of a real-training search.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub mode: PoolMode,
    /// Epochs of a warm-started child (default: half the proxy's, at least 1).
    pub warm_epochs: Option<f64>,
    pub warm_lr_scale: f64,
    pub warm_max_distance: f64,
    pub other_tasks: bool,
    pub limit_mb: u64,
    pub min_networks: usize,
    /// Each block from the most similar stored block (else every block from the most
    /// similar network).
    pub per_block: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            mode: PoolMode::Auto,
            warm_epochs: None,
            warm_lr_scale: fnas_child::evaluator::DEFAULT_WARM_LR_SCALE,
            warm_max_distance: fnas_child::evaluator::DEFAULT_WARM_MAX_DISTANCE,
            other_tasks: false,
            limit_mb: fnas_child::pool::DEFAULT_POOL_LIMIT_MB,
            min_networks: fnas_child::pool::DEFAULT_MIN_NETWORKS,
            per_block: false,
        }
    }
}

/// The budget: evaluations (queries or trained children) or training images.
#[derive(Clone, Debug, Default)]
pub struct BudgetOptions {
    pub evaluations: Option<u64>,
    pub images: Option<u64>,
}

/// Where and how a real-training search's children are evaluated.
#[derive(Clone, Debug, Default)]
pub struct WorkerOptions {
    /// Children trained at once in the driving process (default: one per core).
    pub workers: Option<usize>,
    /// The artifacts folder (see [`Artifacts`]).
    pub artifacts: Option<PathBuf>,
    /// Every evaluation first sleeps this long (stored, so workers sleep too).
    pub simulate_eval_seconds: Option<f64>,
}

/// Every option of a search but its strategy, seed and name: what a resumed search
/// compares with its stored settings.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Architectures per strategy batch (one PPO update per batch).
    pub batch_size: usize,
    pub task: TaskOptions,
    pub reward: RewardOptions,
    pub critic: CriticOptions,
    pub select: SelectOptions,
    pub pool: PoolOptions,
    pub budget: BudgetOptions,
    pub workers: WorkerOptions,
    pub trial: TrialOptions,
}

/// The user's own trial command (real training only).
#[derive(Clone, Debug, Default)]
pub struct TrialOptions {
    /// A shell command line that trains one child (see [`fnas_child::command`]).
    pub command: Option<String>,
    /// The folder it runs in (default: the current folder).
    pub code_dir: Option<PathBuf>,
    /// Seconds after which a run is killed and its trial failed.
    pub timeout_seconds: Option<f64>,
}

impl TrialOptions {
    /// The settings' form, checked: a non-empty command, an existing code folder (made
    /// absolute: workers elsewhere read it from the store), a positive timeout.
    pub fn config(&self) -> Result<Option<TrialCommandConfig>> {
        let Some(command) = &self.command else {
            if self.code_dir.is_some() || self.timeout_seconds.is_some() {
                invalid!("--trial-code-dir and --trial-timeout need --trial-command");
            }
            return Ok(None);
        };
        if command.trim().is_empty() {
            invalid!("--trial-command is empty: give the command line that trains one child, e.g. 'python3 train.py'");
        }
        let dir = match &self.code_dir {
            Some(d) => d.clone(),
            None => std::env::current_dir()
                .map_err(|e| RunError::invalid(format!("the current folder: {e}")))?,
        };
        if !dir.is_dir() {
            invalid!("--trial-code-dir {}: not a folder", dir.display());
        }
        let code_dir = std::path::absolute(&dir)
            .map_err(|e| RunError::invalid(format!("--trial-code-dir {}: {e}", dir.display())))?;
        if let Some(t) = self.timeout_seconds {
            if !(t.is_finite() && t > 0.0) {
                invalid!("--trial-timeout must be a positive number of seconds, got {t}");
            }
        }
        Ok(Some(TrialCommandConfig {
            command: command.clone(),
            code_dir,
            timeout_seconds: self.timeout_seconds,
        }))
    }
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            batch_size: 8,
            task: TaskOptions::default(),
            reward: RewardOptions::default(),
            critic: CriticOptions::default(),
            select: SelectOptions::default(),
            pool: PoolOptions::default(),
            budget: BudgetOptions::default(),
            workers: WorkerOptions::default(),
            trial: TrialOptions::default(),
        }
    }
}

/// A new search: strategy, seed, name (default `STRATEGY-BENCHMARK-DATASET-sSEED`) and
/// the options.
#[derive(Clone, Debug)]
pub struct NewSearch {
    pub strategy: StrategyKind,
    pub seed: u64,
    pub name: Option<String>,
    pub options: SearchOptions,
}

/// The default experiment name.
pub fn default_name(strategy: &str, bench: &str, dataset: &str, seed: u64) -> String {
    format!("{strategy}-{bench}-{dataset}-s{seed}")
}

impl SearchOptions {
    /// The budget and its unit: evaluations, images, or the default of the kind of
    /// search (`training`: real training).
    pub fn budget(&self, training: bool) -> (u64, BudgetUnit) {
        match (self.budget.evaluations, self.budget.images, training) {
            (_, Some(i), _) => (i, BudgetUnit::Images),
            (Some(b), None, _) => (b, BudgetUnit::Evaluations),
            (None, None, true) => (DEFAULT_TRAIN_IMAGES, BudgetUnit::Images),
            (None, None, false) => (DEFAULT_BENCH_BUDGET, BudgetUnit::Evaluations),
        }
    }

    /// The budget a resumed search is given, if any: a search keeps its unit
    /// (evaluations or training images), so the other one is refused. Because a
    /// strategy never sees the budget, a search resumed with a larger one continues
    /// exactly as a search started with it would have (with a count budget, if the old
    /// one did not cut its last batch short).
    pub fn resumed_budget(&self, settings: &SearchSettings, name: &str) -> Result<Option<u64>> {
        let images = settings.budget_unit() == BudgetUnit::Images;
        match (self.budget.evaluations, self.budget.images, images) {
            (Some(_), None, true) => invalid!(
                "experiment `{name}` counts its budget in training images: resume it with --budget-images, not --budget"
            ),
            (None, Some(_), false) => invalid!(
                "experiment `{name}` counts its budget in evaluated children or queries: resume it with --budget, not --budget-images"
            ),
            (b, i, _) => Ok(b.or(i)),
        }
    }

    /// The options that differ from a resumed experiment's stored settings, as "--flag X
    /// is ignored: the experiment has Y": the stored settings win, and a user who passed
    /// a different value should know that it did not apply.
    pub fn ignored_on_resume(&self, settings: &SearchSettings) -> Vec<String> {
        let c = &self.critic;
        let f = settings.fnas.as_ref();
        let mut out = Vec::new();
        let screen = f.map_or(1, |f| f.screen.max(1)) as u64;
        if c.screen != 1 && c.screen != screen {
            out.push(format!(
                "--screen {} is ignored: the experiment has --screen {screen}",
                c.screen
            ));
        }
        if c.trust_contenders && !f.is_some_and(|f| f.trust_contenders) {
            out.push(
                "--trust-contenders is ignored: the experiment's gate does not trust contenders"
                    .into(),
            );
        }
        if c.gate_after_calibration && !f.is_some_and(|f| f.gate_after_calibration) {
            out.push(
                "--gate-after-calibration is ignored: the experiment's gate trusts before calibration"
                    .into(),
            );
        }
        if let Some(t) = c.gate_tau {
            let stored = f.map(|f| f.tau);
            if stored != Some(t) {
                out.push(match stored {
                    Some(s) => {
                        format!("--gate-tau {t} is ignored: the experiment has --gate-tau {s}")
                    }
                    None => format!("--gate-tau {t} is ignored: the experiment has no gate"),
                });
            }
        }
        if self.select.any() {
            match settings.select.as_ref() {
                Some(s) => {
                    let mut asked = s.clone();
                    self.select.apply(&mut asked);
                    if &asked != s {
                        out.push(format!(
                            "--acquisition/--encoding/--candidates are ignored: the experiment has --acquisition {} --encoding {} --candidates {}",
                            s.acquisition.name(),
                            s.encoding.name(),
                            s.candidates
                        ));
                    }
                }
                None => out.push(
                    "--acquisition/--encoding/--candidates are ignored: the experiment is not a fnas-select search".into(),
                ),
            }
        }
        let seeds = settings.reward_seeds() as u64;
        if self.reward.seeds != 1 && self.reward.seeds != seeds {
            out.push(format!(
                "--reward-seeds {} is ignored: the experiment has --reward-seeds {seeds}",
                self.reward.seeds
            ));
        }
        if self.pool.other_tasks && !settings.pool().is_some_and(|p| p.other_tasks) {
            out.push("--warm-other-tasks is ignored: the experiment's warm starts use this task's pool entries only".into());
        }
        if let Some(dir) = &self.workers.artifacts {
            let asked = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            if settings.artifacts.as_ref() != Some(&asked) {
                out.push(format!(
                    "--artifacts {} is ignored: the experiment keeps its files in {}",
                    dir.display(),
                    settings.artifacts.as_ref().map_or_else(
                        || "the folders beside the store".to_string(),
                        |p| p.display().to_string()
                    )
                ));
            }
        }
        if let Some(n) = c.min_points {
            match f.filter(|f| f.critic.is_some()) {
                Some(f) if f.min_points as u64 == n => {}
                Some(f) => out.push(format!(
                    "--critic-min-points {n} is ignored: the experiment's critic acts from {} points",
                    f.min_points
                )),
                None => out.push(format!(
                    "--critic-min-points {n} is ignored: the experiment has no critic"
                )),
            }
        }
        out
    }
}

impl NewSearch {
    /// The settings recorded with the new search, from its options (checked: an option
    /// that does not apply to the strategy or the kind of task is refused).
    pub fn settings(&self) -> Result<SearchSettings> {
        let o = &self.options;
        let kind = self.strategy;
        let reward = reward_config(o.reward.target, o.reward.hard, o.reward.params)?;
        let mut settings = match o.task.training_task() {
            Some(t) => {
                let task = resolve_task(
                    t,
                    o.task.data_dir.as_deref(),
                    o.task.images.as_deref(),
                    o.task.epochs,
                )?;
                let pool_on = match o.pool.mode {
                    PoolMode::Auto => kind.pool_by_default(),
                    PoolMode::On => true,
                    PoolMode::Off => false,
                };
                let pool = pool_on.then(|| PoolPolicy {
                    warm_epochs: o
                        .pool
                        .warm_epochs
                        .unwrap_or_else(|| fnas_child::evaluator::default_warm_epochs(task.epochs)),
                    budget_class: None,
                    limit_mb: o.pool.limit_mb,
                    min_networks: o.pool.min_networks,
                    per_block: o.pool.per_block,
                    warm_lr_scale: o.pool.warm_lr_scale,
                    max_distance: Some(o.pool.warm_max_distance),
                    other_tasks: o.pool.other_tasks,
                });
                let tc = TrainingConfig {
                    task,
                    space: o.task.space.clone(),
                    workers: o.workers.workers.unwrap_or_else(default_workers).max(1),
                    latency_runs: 20,
                    device: o.task.device.clone(),
                    pool,
                    budget_unit: o.budget(true).1,
                    reward_seeds: usize::try_from(o.reward.seeds)
                        .map_err(|_| RunError::invalid("--reward-seeds is too large"))?,
                    command: o.trial.config()?,
                    kernels: o.task.kernels.clone(),
                };
                if tc.command.is_some() && tc.reward_seeds > 1 {
                    invalid!("--reward-seeds is for children fnas trains itself; with --trial-command, average seeds inside your script");
                }
                SearchSettings::training(tc, o.batch_size, reward)
            }
            None => {
                if o.trial.command.is_some() {
                    invalid!("--trial-command is for real-training tasks (e.g. --task fashion-mnist-tiny); a benchmark search trains nothing");
                }
                if o.pool.mode == PoolMode::On
                    || o.budget.images.is_some()
                    || o.pool.warm_epochs.is_some()
                    || o.reward.seeds != 1
                {
                    invalid!("--pool, --warm-epochs, --reward-seeds and --budget-images are for real-training tasks (e.g. --task fashion-mnist)");
                }
                let (bench, dataset) = parse_task(
                    o.task.benchmark.as_deref(),
                    o.task.dataset.as_deref(),
                    o.task.task.as_deref(),
                )?;
                SearchSettings::new(bench, &dataset, o.batch_size, reward)
            }
        };
        if let Some(dir) = &o.workers.artifacts {
            if settings.training.is_none() {
                invalid!("--artifacts is for real-training tasks (e.g. --task fashion-mnist): a benchmark search writes no files");
            }
            settings.artifacts = Some(Artifacts::choose(dir)?);
        }
        if let Some(sec) = o.workers.simulate_eval_seconds {
            if !(sec.is_finite() && sec >= 0.0) {
                invalid!("--simulate-eval-seconds must be a number of seconds >= 0, not {sec}");
            }
            settings.simulate_eval_seconds = Some(sec);
        }
        settings.fnas = kind.fnas_preset(&settings.ppo);
        settings.select = kind.select_preset(&settings.ppo);
        if o.select.any() {
            let Some(c) = settings.select.as_mut() else {
                invalid!(
                    "--acquisition, --encoding and --candidates need a fnas-select strategy, not `{kind}`"
                );
            };
            o.select.apply(c);
        }
        let explicit = o
            .critic
            .min_points
            .map(usize::try_from)
            .transpose()
            .map_err(|_| RunError::invalid("--critic-min-points is too large"))?;
        let training_default = settings
            .training
            .is_some()
            .then_some(TRAIN_CRITIC_MIN_POINTS);
        if let Some(n) = explicit.or(training_default) {
            match settings.fnas.as_mut().filter(|f| f.critic.is_some()) {
                Some(f) => {
                    f.min_points = n;
                    f.min_own_points = f.min_own_points.min(n);
                }
                None if explicit.is_some() => invalid!(
                    "--critic-min-points needs a strategy with a critic (fnas, fnas-value, fnas-gate), not `{kind}`"
                ),
                None => {}
            }
        }
        // the gate options: each needs a strategy with the critic's gate
        if let Some((_, flag)) = o.critic.gate_flags().iter().find(|(set, _)| *set) {
            let Some(f) = settings.fnas.as_mut().filter(|f| f.gate) else {
                invalid!(
                    "{flag} needs a strategy with the critic's gate (fnas, fnas-gate), not `{kind}`"
                );
            };
            f.trust_contenders = o.critic.trust_contenders;
            f.gate_after_calibration = o.critic.gate_after_calibration;
            if let Some(t) = o.critic.gate_tau {
                f.tau = t;
            }
        }
        if o.critic.screen > 1 {
            match settings.fnas.as_mut().filter(|f| f.critic.is_some()) {
                Some(f) => {
                    f.screen = usize::try_from(o.critic.screen)
                        .map_err(|_| RunError::invalid("--screen is too large"))?
                }
                None => invalid!(
                    "--screen needs a strategy with a critic (fnas, fnas-value, fnas-gate), not `{kind}`"
                ),
            }
        }
        Ok(settings)
    }

    /// The experiment name: the one given, or the default of the settings.
    pub fn name(&self, settings: &SearchSettings) -> String {
        self.name.clone().unwrap_or_else(|| {
            default_name(
                self.strategy.as_str(),
                &settings.benchmark,
                &settings.dataset,
                self.seed,
            )
        })
    }

    /// Checks the options and loads the data (`store`: where the experiment will be
    /// recorded, for the artifacts folder beside it), without touching the store: a
    /// search that cannot start leaves nothing behind.
    pub fn draft(&self, store: &Path) -> Result<Draft> {
        let mut settings = self.settings()?;
        let name = self.name(&settings);
        fnas_core::names::check_new("experiment", &name)
            .map_err(|e| RunError::invalid(e.to_string()))?;
        let target = target(
            &settings,
            store,
            self.options.task.data_dir.as_deref(),
            &name,
            self.seed,
        )?;
        // fairness: the one budget class of pool entries this search initialises from
        if let (Target::Train(ev), Some(tc)) = (&target, settings.training.as_mut()) {
            if let Some(p) = tc.pool.as_mut() {
                p.budget_class = Some(ev.pool_class());
            }
        }
        let budget = self.options.budget(settings.training.is_some()).0;
        Ok(Draft {
            name,
            strategy: self.strategy,
            seed: self.seed,
            budget,
            transfer_from: self.options.critic.transfer_from.clone(),
            settings,
            target,
        })
    }
}

/// A new search recorded in its store and prepared to run.
pub struct Started {
    pub store: Box<dyn Store>,
    pub experiment: Experiment,
    pub search: PreparedSearch,
}

impl NewSearch {
    /// Starts the search in `store`: checks the options and loads the data
    /// ([`Self::draft`]) before the store is opened (a SQLite file is created then),
    /// records the experiment and prepares it.
    pub fn start(&self, store: &Path) -> Result<Started> {
        let draft = self.draft(store)?;
        let mut opened = stores::open(store)?;
        let (experiment, target) = draft.record(opened.as_mut())?;
        let opts = PrepareOptions {
            target: Some(target),
            ..PrepareOptions::new(store, self.options.task.data_dir.as_deref())
        };
        let search = prepare(opened.as_ref(), &experiment, opts)?;
        Ok(Started {
            store: opened,
            experiment,
            search,
        })
    }
}

/// A new search checked and with its data loaded, not yet recorded.
pub struct Draft {
    pub name: String,
    pub strategy: StrategyKind,
    pub seed: u64,
    pub budget: u64,
    /// `--transfer-from`: resolved against the store when the search is recorded.
    pub transfer_from: Option<String>,
    pub settings: SearchSettings,
    /// The evaluator, for [`crate::PrepareOptions::target`] (not loaded twice).
    pub target: Target,
}

impl Draft {
    /// Records the experiment in `store` (with its transfer sources, found there) and
    /// hands back the evaluator.
    pub fn record(mut self, store: &mut dyn Store) -> Result<(Experiment, Target)> {
        let table = self.target.evaluator();
        if let Some(from) = &self.transfer_from {
            if !self.strategy.takes_transfer() && self.settings.pool().is_none() {
                invalid!(
                    "--transfer-from needs a strategy with a critic (fnas, fnas-value, fnas-gate, evolution-gate) or the knowledge pool (--pool on)"
                );
            }
            let names: Vec<String> = from.split(',').map(|s| s.trim().to_string()).collect();
            let names = (from != "all").then_some(names);
            let (_, sources) =
                transfer_from_store(&*store, table.space(), names.as_deref(), &self.name)?;
            if sources.is_empty() {
                invalid!("--transfer-from {from}: no earlier experiment of space {} with evaluated trials in the store", table.space().name());
            }
            self.settings.transfer = sources;
        }
        let spec = ExperimentSpec {
            name: self.name,
            space: table.space().name().to_string(),
            task: table.task(),
            strategy: self.strategy.as_str().to_string(),
            seed: self.seed,
            budget: self.budget,
            config: serde_json::to_value(&self.settings)?,
        };
        let exp = store.create_experiment(&spec)?;
        Ok((exp, self.target))
    }
}
