//! Turning command-line choices into the pieces of a search: the evaluator, the
//! strategy and the settings recorded with the experiment (so `--resume` rebuilds the
//! identical search from the store alone).

use std::path::Path;

use anyhow::{bail, Context, Result};
use fnas_bench::{Benchmark, TabularBenchmark};
use fnas_core::strategy::{Evolution, EvolutionConfig, RandomSearch};
use fnas_core::{Objective, RewardConfig, SearchSpace, Strategy};
use fnas_learn::ppo::{PpoConfig, PpoController};
use serde::{Deserialize, Serialize};

/// Strategies this build offers.
pub const STRATEGIES: &[&str] = &["random", "evolution", "ppo"];

/// Everything that defines a search besides name, strategy, seed and budget; stored as
/// the experiment's config.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchSettings {
    pub benchmark: String,
    pub dataset: String,
    pub batch_size: usize,
    pub reward: RewardConfig,
    #[serde(default)]
    pub evolution: EvolutionConfig,
    #[serde(default)]
    pub ppo: PpoConfig,
}

impl SearchSettings {
    pub fn new(
        benchmark: Benchmark,
        dataset: &str,
        batch_size: usize,
        reward: RewardConfig,
    ) -> Self {
        Self {
            benchmark: benchmark.name().to_string(),
            dataset: dataset.to_string(),
            batch_size,
            reward,
            evolution: default_evolution(),
            ppo: PpoConfig::default(),
        }
    }
}

/// Regularized-evolution defaults sized for budgets of a few hundred evaluations.
pub fn default_evolution() -> EvolutionConfig {
    EvolutionConfig {
        population: 20,
        sample: 5,
    }
}

/// Checks a strategy name early, with the list of known ones in the error.
pub fn check_strategy(name: &str) -> Result<()> {
    if !STRATEGIES.contains(&name) {
        bail!(
            "unknown strategy `{name}` (known: {})",
            STRATEGIES.join(", ")
        );
    }
    Ok(())
}

/// Builds a strategy by name.
pub fn make_strategy(
    name: &str,
    space: SearchSpace,
    seed: u64,
    settings: &SearchSettings,
) -> Result<Box<dyn Strategy>> {
    check_strategy(name)?;
    Ok(match name {
        "random" => Box::new(RandomSearch::new(space, seed)),
        "evolution" => Box::new(Evolution::new(space, settings.evolution.clone(), seed)),
        _ => Box::new(PpoController::new(space, settings.ppo.clone(), seed)),
    })
}

/// Parses `BENCHMARK/DATASET` or the pair of options.
pub fn parse_task(
    benchmark: Option<&str>,
    dataset: Option<&str>,
    task: Option<&str>,
) -> Result<(Benchmark, String)> {
    let (b, d) = match (benchmark, dataset, task) {
        (Some(b), Some(d), None) => (b.to_string(), d.to_string()),
        (None, None, Some(t)) => match t.split_once('/') {
            Some((b, d)) => (b.to_string(), d.to_string()),
            None => bail!(
                "task `{t}` is not available: this build searches tabular benchmarks, given as \
                 BENCHMARK/DATASET (e.g. nas-bench-graph/cora); real-training tasks are not implemented yet"
            ),
        },
        (Some(_), None, None) => bail!("--benchmark needs --dataset"),
        _ => bail!("give --benchmark B --dataset D, or --task B/D"),
    };
    let bench: Benchmark = b.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    if !bench.datasets().contains(&d.as_str()) {
        bail!(
            "unknown dataset `{d}` for {} (known: {})",
            bench.name(),
            bench.datasets().join(", ")
        );
    }
    Ok((bench, d))
}

/// Loads a benchmark's table for one dataset.
pub fn load_benchmark(
    bench: Benchmark,
    data_dir: Option<&Path>,
    dataset: &str,
) -> Result<Box<dyn TabularBenchmark>> {
    let dir = fnas_bench::resolve_data_dir(data_dir);
    fnas_bench::load(bench, &dir, dataset)
        .with_context(|| format!("loading {}/{dataset}", bench.name()))
}

/// The reward settings of the command-line flags.
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
        Some(t) => bail!("--target must be a positive number, got {t}"),
    })
}
