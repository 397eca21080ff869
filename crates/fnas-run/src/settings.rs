//! The settings recorded with an experiment: everything that defines a search besides
//! its name, strategy, seed and budget, so a resumed search and every worker rebuild the
//! identical search from the store alone.

use std::path::PathBuf;

use fnas_bench::Benchmark;
use fnas_child::task::ProxyTask;
use fnas_core::search::BudgetUnit;
use fnas_core::strategy::EvolutionConfig;
use fnas_core::RewardConfig;
use fnas_learn::fnas::FnasConfig;
use fnas_learn::ppo::PpoConfig;
use fnas_learn::select::SelectConfig;
use serde::{Deserialize, Serialize};

/// The `benchmark` recorded in the settings of a real-training search.
pub const TRAIN_BENCHMARK: &str = "train";

/// Everything that defines a search besides name, strategy, seed and budget; stored as
/// the experiment's config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    pub benchmark: String,
    pub dataset: String,
    pub batch_size: usize,
    pub reward: RewardConfig,
    #[serde(default)]
    pub evolution: EvolutionConfig,
    #[serde(default)]
    pub ppo: PpoConfig,
    /// FNAS module switches (FNAS strategies only).
    #[serde(default)]
    pub fnas: Option<FnasConfig>,
    /// Critic-chosen proposals settings (`fnas-select` strategies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<SelectConfig>,
    /// What the critic was pre-trained on: source experiments and their point counts.
    #[serde(default)]
    pub transfer: Vec<TransferSource>,
    /// Real training (then `benchmark` is `train` and `dataset` the task's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingConfig>,
    /// Every evaluation (by the driver or any worker) first sleeps this long: a stand-in
    /// for slow evaluations in scaling benchmarks and multi-worker tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate_eval_seconds: Option<f64>,
    /// The artifacts folder of a real-training search (absolute; `None`: beside the
    /// SQLite store file), see [`crate::artifacts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<PathBuf>,
}

/// One transfer source recorded with the experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferSource {
    pub experiment: String,
    pub task: String,
    pub points: usize,
}

impl SearchSettings {
    /// Settings of a search on a tabular benchmark.
    pub fn new(
        benchmark: Benchmark,
        dataset: &str,
        batch_size: usize,
        reward: RewardConfig,
    ) -> Self {
        Self::named(
            benchmark.name().to_string(),
            dataset.to_string(),
            batch_size,
            reward,
        )
    }

    /// Settings of a real-training search.
    pub fn training(training: TrainingConfig, batch_size: usize, reward: RewardConfig) -> Self {
        Self {
            benchmark: TRAIN_BENCHMARK.to_string(),
            dataset: training.task.name.clone(),
            training: Some(training),
            ..Self::named(String::new(), String::new(), batch_size, reward)
        }
    }

    /// The defaults shared by both kinds of search.
    fn named(benchmark: String, dataset: String, batch_size: usize, reward: RewardConfig) -> Self {
        Self {
            benchmark,
            dataset,
            batch_size,
            reward,
            evolution: default_evolution(),
            ppo: PpoConfig::default(),
            fnas: None,
            select: None,
            transfer: Vec::new(),
            training: None,
            simulate_eval_seconds: None,
            artifacts: None,
        }
    }

    /// The knowledge pool settings, on a real-training search that uses the pool.
    pub fn pool(&self) -> Option<&PoolConfig> {
        self.training.as_ref().and_then(|t| t.pool.as_ref())
    }

    /// What the budget counts.
    pub fn budget_unit(&self) -> BudgetUnit {
        self.training
            .as_ref()
            .map_or(BudgetUnit::Evaluations, |t| t.budget_unit)
    }

    /// Trainings per child whose validation accuracies are averaged (1 on a benchmark).
    pub fn reward_seeds(&self) -> usize {
        self.training.as_ref().map_or(1, |t| t.reward_seeds.max(1))
    }
}

/// Regularized-evolution defaults sized for budgets of a few hundred evaluations.
pub fn default_evolution() -> EvolutionConfig {
    EvolutionConfig {
        population: 20,
        sample: 5,
    }
}

/// What a real-training search stores with its experiment: the whole recipe (so a
/// resumed search trains exactly as before even if the shipped task file changed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

fn cpu() -> String {
    "cpu".into()
}

/// A search's use of the knowledge pool, recorded with the experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// Reads stored settings.
pub fn migrate(config: serde_json::Value) -> Result<SearchSettings, crate::RunError> {
    Ok(serde_json::from_value(config)?)
}
