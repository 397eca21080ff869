//! The settings recorded with an experiment: everything that defines a search besides
//! its name, strategy, seed and budget, so a resumed search and every worker rebuild the
//! identical search from the store alone.

use std::path::PathBuf;

use fnas_bench::Benchmark;
use fnas_child::task::ProxyTask;
use fnas_child::PoolPolicy;
use fnas_core::search::BudgetUnit;
use fnas_core::strategy::EvolutionConfig;
use fnas_core::RewardConfig;
use fnas_learn::fnas::FnasConfig;
use fnas_learn::ppo::PpoConfig;
use fnas_learn::select::SelectConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{invalid, Result};

/// The version of [`SearchSettings`] this build writes. Stored settings without a
/// version are version 0; [`migrate`] reads every version up to this one.
///
/// - 0: settings written before versions were recorded (fields added over time missing);
/// - 1: every field written, `version` recorded.
pub const SETTINGS_VERSION: u32 = 1;

/// The `benchmark` recorded in the settings of a real-training search.
pub const TRAIN_BENCHMARK: &str = "train";

/// Everything that defines a search besides name, strategy, seed and budget; stored as
/// the experiment's config. Read stored settings with [`migrate`], never directly: what
/// older versions lacked is filled there, not by serde defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// [`SETTINGS_VERSION`] when written by this build.
    pub version: u32,
    pub benchmark: String,
    pub dataset: String,
    pub batch_size: usize,
    pub reward: RewardConfig,
    pub evolution: EvolutionConfig,
    pub ppo: PpoConfig,
    /// FNAS module switches (FNAS strategies only).
    pub fnas: Option<FnasConfig>,
    /// Critic-chosen proposals settings (`fnas-select` strategies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select: Option<SelectConfig>,
    /// What the critic was pre-trained on: source experiments and their point counts.
    pub transfer: Vec<TransferSource>,
    /// Real training (then `benchmark` is `train` and `dataset` the task's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingConfig>,
    /// Every evaluation (by the driver or any worker) first sleeps this long: a stand-in
    /// for slow evaluations in scaling benchmarks and multi-worker tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulate_eval_seconds: Option<f64>,
    /// The artifacts folder of a real-training search (absolute; `None`: beside the
    /// SQLite store file), see [`crate::artifacts`].
    #[serde(skip_serializing_if = "Option::is_none")]
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
            version: SETTINGS_VERSION,
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
    pub fn pool(&self) -> Option<&PoolPolicy> {
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
    pub device: String,
    /// The knowledge pool, when the search uses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolPolicy>,
    /// What the budget counts (children, or training images).
    pub budget_unit: BudgetUnit,
    /// Trainings per child (different seeds); the reward is their mean validation
    /// accuracy.
    pub reward_seeds: usize,
    /// The user's own trial command trains the children (absent: fnas trains them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<TrialCommandConfig>,
    /// `burn` or `fast` (absent: fast on the CPU, burn's on a GPU); see
    /// `fnas_child::kernels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
}

/// An external trial command recorded with the experiment, so every worker runs the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialCommandConfig {
    /// The shell command line.
    pub command: String,
    /// The folder it runs in (absolute): the user's code.
    pub code_dir: PathBuf,
    /// Seconds after which a run is killed and its trial failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
}

/// Reads stored settings of any version up to [`SETTINGS_VERSION`], filling in what an
/// older version lacked with the values those experiments ran with; settings of a newer
/// version are refused (this build would run them differently from how they were
/// meant).
pub fn migrate(mut config: Value) -> Result<SearchSettings> {
    let Some(obj) = config.as_object_mut() else {
        invalid!("the stored settings are not a JSON object");
    };
    let version = match obj.get("version") {
        None => 0,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => invalid!("settings version `{v}` is not a version number"),
        },
    };
    if version > SETTINGS_VERSION {
        invalid!(
            "settings version {version} written by a newer fnas (this build reads versions up to {SETTINGS_VERSION}); upgrade fnas to run it"
        );
    }
    if version < 1 {
        v0_to_v1(obj);
    }
    Ok(serde_json::from_value(config)?)
}

/// Inserts `value` under `key` unless the key is there.
fn fill(obj: &mut Map<String, Value>, key: &str, value: Value) {
    obj.entry(key).or_insert(value);
}

/// Version 0 to 1: the fields added to the settings over time, with the values that
/// experiments recorded without them ran with (what serde defaults used to fill in).
/// The configs of the learned parts (`ppo`, `fnas`, `select`) keep their own
/// struct-level defaults for fields added to them, except `fnas.transfer_weighting`.
fn v0_to_v1(obj: &mut Map<String, Value>) {
    // `EvolutionConfig::default()` when the field was added, not `default_evolution()`
    fill(obj, "evolution", json!({ "population": 50, "sample": 10 }));
    fill(obj, "ppo", json!({}));
    fill(obj, "fnas", Value::Null);
    fill(obj, "transfer", json!([]));
    if let Some(Value::Object(f)) = obj.get_mut("fnas") {
        // weighing transfer sources came later: older FNAS searches pooled them
        fill(f, "transfer_weighting", json!(false));
    }
    if let Some(Value::Object(t)) = obj.get_mut("training") {
        fill(t, "device", json!("cpu"));
        fill(t, "budget_unit", json!("evaluations"));
        fill(t, "reward_seeds", json!(1));
        if let Some(Value::Object(p)) = t.get_mut("pool") {
            fill(p, "min_networks", json!(8));
            // before these settings: block-level matching, the proxy's learning rate,
            // no distance limit and entries of any task
            fill(p, "per_block", json!(true));
            fill(p, "warm_lr_scale", json!(1.0));
            fill(p, "max_distance", Value::Null);
            fill(p, "other_tasks", json!(true));
        }
    }
    obj.insert("version".into(), json!(1));
}
