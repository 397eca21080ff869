//! Turning command-line choices into the pieces of a search: the evaluator, the
//! strategy and the settings recorded with the experiment (so `--resume` rebuilds the
//! identical search from the store alone).

use std::path::Path;

use anyhow::{bail, Context, Result};
use fnas_bench::{Benchmark, TabularBenchmark};
use fnas_core::space::Encoding;
use fnas_core::strategy::{Evolution, EvolutionConfig, RandomSearch};
use fnas_core::Architecture;
use fnas_core::{Objective, RewardConfig, SearchSpace, Strategy};
use fnas_learn::acquisition::Acquisition;
use fnas_learn::fnas::{FnasConfig, FnasStrategy};
use fnas_learn::gate::{GateConfig, GatedStrategy};
use fnas_learn::ppo::{PpoConfig, PpoController};
use fnas_learn::select::{PpoLearn, SelectConfig, SelectStrategy};
use serde::{Deserialize, Serialize};

/// Strategies this build offers. `ppo` is the vanilla MnasNet-style baseline; the
/// `fnas*` ones are FNAS with some modules on (for ablations); `fnas` has all of them.
pub const STRATEGIES: &[&str] = &[
    "random",
    "evolution",
    "evolution-gate",
    "ppo",
    "fnas",
    "fnas-pooled",
    "fnas-value",
    "fnas-gate",
    "fnas-replay",
    "fnas-replay-nocorr",
    "fnas-select",
    "fnas-select-onehot",
    "fnas-select-ucb",
    "fnas-select-ei",
    "fnas-select-noneighbours",
    "fnas-select-nomutants",
    "fnas-select-nocontroller",
    "fnas-select-nouniform",
    "fnas-select-ppo-own",
];

/// The `fnas-select` configuration of a strategy name (`None` for the others): the
/// default, or one ablation (one switch changed).
pub fn select_preset(name: &str, ppo: &PpoConfig) -> Option<SelectConfig> {
    let mut c = SelectConfig {
        ppo: ppo.clone(),
        ..SelectConfig::default()
    };
    match name.strip_prefix("fnas-select")? {
        "" => {}
        "-onehot" => c.encoding = Encoding::OneHot,
        "-ucb" => c.acquisition = Acquisition::Ucb,
        "-ei" => c.acquisition = Acquisition::Ei,
        "-noneighbours" => c.sources.neighbours = false,
        "-nomutants" => c.sources.mutants = false,
        "-nocontroller" => c.sources.controller = false,
        "-nouniform" => c.sources.uniform = false,
        "-ppo-own" => c.ppo_learn = PpoLearn::Own,
        _ => return None,
    }
    Some(c)
}

/// The FNAS configuration of a strategy name (`None` for non-FNAS strategies).
///
/// - `fnas-value`: critic as PPO's value function only;
/// - `fnas-gate`: critic as value and as the train-or-trust gate;
/// - `fnas-replay-nocorr` / `fnas-replay`: experience replay without / with the
///   off-policy correction, no critic;
/// - `fnas`: everything (transfer too, when sources are given).
pub fn fnas_preset(name: &str, ppo: &PpoConfig) -> Option<FnasConfig> {
    let off = FnasConfig {
        ppo: ppo.clone(),
        critic: None,
        critic_value: false,
        gate: false,
        replay: false,
        correction: false,
        ..FnasConfig::default()
    };
    let critic = Some(FnasConfig::default().critic.unwrap_or_default());
    Some(match name {
        "fnas" => FnasConfig {
            ppo: ppo.clone(),
            ..FnasConfig::default()
        },
        "fnas-value" => FnasConfig {
            critic,
            critic_value: true,
            ..off
        },
        "fnas-gate" => FnasConfig {
            critic,
            critic_value: true,
            gate: true,
            ..off
        },
        // full FNAS with every transfer source counting alike (the ablation of weighting)
        "fnas-pooled" => FnasConfig {
            ppo: ppo.clone(),
            transfer_weighting: false,
            ..FnasConfig::default()
        },
        "fnas-replay" => FnasConfig {
            replay: true,
            correction: true,
            ..off
        },
        "fnas-replay-nocorr" => FnasConfig {
            replay: true,
            correction: false,
            ..off
        },
        _ => return None,
    })
}

/// Per-task normalised (architecture, z-score) points for the critic, from earlier
/// searches, one list per source experiment: each source's evaluated rewards are
/// z-scored within that source (and the critic weighs the sources separately).
pub type TransferPoints = Vec<fnas_learn::transfer::SourcePoints>;

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
    pub training: Option<crate::training::TrainingConfig>,
    /// Every evaluation (by the driver or any worker) first sleeps this long: a stand-in
    /// for slow evaluations in scaling benchmarks and multi-worker tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate_eval_seconds: Option<f64>,
    /// The artifacts folder of a real-training search (absolute; `None`: beside the
    /// SQLite store file), see [`crate::artifacts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<std::path::PathBuf>,
}

/// One transfer source recorded with the experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferSource {
    pub experiment: String,
    pub task: String,
    pub points: usize,
}

impl SearchSettings {
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
    pub fn training(
        training: crate::training::TrainingConfig,
        batch_size: usize,
        reward: RewardConfig,
    ) -> Self {
        Self {
            benchmark: crate::training::TRAIN_BENCHMARK.to_string(),
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

/// Builds a strategy by name; `transfer` pre-trains an FNAS critic.
pub fn make_strategy(
    name: &str,
    space: SearchSpace,
    seed: u64,
    settings: &SearchSettings,
    transfer: &[fnas_learn::transfer::SourcePoints],
) -> Result<Box<dyn Strategy>> {
    check_strategy(name)?;
    if let Some(preset) = select_preset(name, &settings.ppo) {
        let cfg = settings.select.clone().unwrap_or(preset);
        cfg.validate().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        return Ok(Box::new(SelectStrategy::new(space, cfg, seed)));
    }
    if let Some(preset) = fnas_preset(name, &settings.ppo) {
        let cfg = settings.fnas.clone().unwrap_or(preset);
        return Ok(Box::new(FnasStrategy::with_transfer(
            space, cfg, seed, transfer,
        )));
    }
    Ok(match name {
        "random" => Box::new(RandomSearch::new(space, seed)),
        "evolution" => Box::new(Evolution::new(space, settings.evolution.clone(), seed)),
        // the FNAS critic's gate around regularized evolution (the proposer is swappable)
        "evolution-gate" => {
            let evo = Evolution::new(space.clone(), settings.evolution.clone(), seed);
            Box::new(GatedStrategy::with_transfer(
                name,
                space,
                Box::new(evo),
                GateConfig::default(),
                seed,
                transfer,
            ))
        }
        _ => Box::new(PpoController::new(space, settings.ppo.clone(), seed)),
    })
}

/// Z-scores one source's evaluated rewards (see [`TransferPoints`]).
pub fn normalise_source(points: &[(Architecture, f64)]) -> fnas_learn::transfer::SourcePoints {
    let rewards: Vec<f64> = points.iter().map(|p| p.1).collect();
    let z = fnas_learn::critic::zscores(&rewards);
    points
        .iter()
        .zip(z)
        .map(|(p, z)| (p.0.clone(), z))
        .collect()
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
                "task `{t}` is a real-training task, not BENCHMARK/DATASET (e.g. nas-bench-graph/cora)"
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

/// Architecture knowledge from earlier experiments of the same space in a store:
/// `names` = `None` takes all of them (except `exclude`, the experiment being run).
pub fn transfer_from_store(
    store: &dyn fnas_core::Store,
    space: &SearchSpace,
    names: Option<&[String]>,
    exclude: &str,
) -> Result<(TransferPoints, Vec<TransferSource>)> {
    let mut points = Vec::new();
    let mut sources = Vec::new();
    let experiments = store.list_experiments()?;
    if let Some(names) = names {
        for n in names {
            if !experiments.iter().any(|e| &e.experiment.spec.name == n) {
                bail!("--transfer-from: no experiment `{n}` in the store (see `fnas ls`)");
            }
        }
    }
    for e in experiments {
        let spec = &e.experiment.spec;
        let wanted = names.is_none_or(|n| n.contains(&spec.name));
        if !wanted || spec.name == exclude {
            continue;
        }
        if spec.space != space.name() {
            if names.is_some() {
                bail!(
                    "--transfer-from: experiment `{}` searched space {}, not {}",
                    spec.name,
                    spec.space,
                    space.name()
                );
            }
            continue;
        }
        let mut own = Vec::new();
        for t in store.trials(e.experiment.id)? {
            if t.source != Some(fnas_core::store::TrialSource::Evaluated) {
                continue;
            }
            if let (Some(r), Ok(a)) = (t.reward, space.parse(&t.arch)) {
                own.push((a, r));
            }
        }
        if own.len() < 2 {
            continue;
        }
        sources.push(TransferSource {
            experiment: spec.name.clone(),
            task: spec.task.clone(),
            points: own.len(),
        });
        points.push(normalise_source(&own));
    }
    Ok((points, sources))
}
