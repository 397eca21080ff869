//! A recorded experiment turned into a runnable search: its strategy, evaluator and
//! search configuration, built from the stored spec alone, so the driver (new or
//! resumed), every worker and any other program build the same search.

use std::path::Path;

use std::time::{Duration, Instant};

use fnas_core::search::{run_search, SearchConfig, SearchError, SearchSummary, TrialEvent};
use fnas_core::store::Experiment;
use fnas_core::{Evaluator, Store, StoreError, Strategy};

use crate::error::{Context, Result};
use crate::settings::SearchSettings;
use crate::strategy::{make_strategy, StrategyKind};
use crate::target::{target, with_pool, SearchEvaluator, Target};
use crate::transfer::{recorded_points, TransferPoints};

/// How long a search or worker keeps trying to reach a store server that went away (a
/// restart, a failover) before it gives up.
pub const RECONNECT_SECONDS: u64 = 300;

/// Where a prepared search finds what the store does not hold.
pub struct PrepareOptions<'a> {
    /// The store as the user named it: a SQLite file (a real-training search's artifacts
    /// sit beside it unless the experiment records a folder) or a PostgreSQL URL.
    pub store: &'a Path,
    /// The benchmark data (default: see [`fnas_bench::resolve_data_dir`]).
    pub data_dir: Option<&'a Path>,
    /// The evaluator built from the same settings already (a new search loads its data
    /// before it records the experiment, see [`crate::Draft`]), so it is not loaded
    /// twice; `None`: built here.
    pub target: Option<Target>,
}

impl<'a> PrepareOptions<'a> {
    pub fn new(store: &'a Path, data_dir: Option<&'a Path>) -> Self {
        Self {
            store,
            data_dir,
            target: None,
        }
    }
}

/// An experiment's settings, read through [`crate::migrate`], with the experiment named
/// in the error.
pub fn settings_of(experiment: &Experiment) -> Result<SearchSettings> {
    let name = &experiment.spec.name;
    crate::settings::migrate(experiment.spec.config.clone())
        .context_with(|| format!("experiment `{name}` has settings this build cannot read"))
}

/// What a worker needs: the settings and the evaluator (with the knowledge pool).
pub struct PreparedEvaluator {
    pub settings: SearchSettings,
    pub evaluator: SearchEvaluator,
}

/// Builds the evaluator of a recorded experiment.
pub fn prepare_evaluator(
    experiment: &Experiment,
    opts: PrepareOptions,
) -> Result<PreparedEvaluator> {
    let settings = settings_of(experiment)?;
    let name = &experiment.spec.name;
    let target = match opts.target {
        Some(t) => t,
        None => target(
            &settings,
            opts.store,
            opts.data_dir,
            name,
            experiment.spec.seed,
        )?,
    };
    let target = match target {
        Target::Train(ev) => Target::Train(Box::new(with_pool(*ev, &settings, opts.store, name)?)),
        other => other,
    };
    let evaluator = SearchEvaluator {
        target,
        simulate_eval_seconds: settings.simulate_eval_seconds,
    };
    Ok(PreparedEvaluator {
        settings,
        evaluator,
    })
}

/// A recorded experiment ready to run with [`fnas_core::search::run_search`].
pub struct PreparedSearch {
    pub settings: SearchSettings,
    pub strategy_kind: StrategyKind,
    pub strategy: Box<dyn Strategy>,
    pub evaluator: SearchEvaluator,
    /// Budget, unit, batch size and reward from the experiment; the run-time choices
    /// (`local_workers`, `max_attempts`, `driver`) are the caller's to set.
    pub config: SearchConfig,
    /// The critic's pre-training points of the recorded transfer sources.
    pub transfer: TransferPoints,
    seed: u64,
}

impl PreparedSearch {
    /// Runs the search until its budget is spent (see [`run_search`]; `progress` hears of
    /// every finished trial). A store server that goes away (a restart, a failover) is
    /// waited for up to [`RECONNECT_SECONDS`]: `on_lost` hears of it once (the store and
    /// the server's message), and the search then continues from its last checkpoint, as
    /// a new resume would.
    pub fn run(
        &mut self,
        store: &mut dyn Store,
        experiment: &Experiment,
        progress: &mut dyn FnMut(&TrialEvent),
        on_lost: &mut dyn FnMut(&str, &str),
    ) -> Result<SearchSummary> {
        let mut lost_since: Option<Instant> = None;
        loop {
            match run_search(
                store,
                experiment,
                self.strategy.as_mut(),
                &self.evaluator,
                &self.config,
                progress,
            ) {
                Err(SearchError::Store(StoreError::Unavailable { path, message }))
                    if lost_since.is_none_or(|t| t.elapsed().as_secs() < RECONNECT_SECONDS) =>
                {
                    if lost_since.is_none() {
                        on_lost(&path, &message);
                        lost_since = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    self.strategy = self.fresh_strategy()?;
                }
                r => return Ok(r?),
            }
        }
    }

    /// A fresh strategy as the search starts it (a checkpoint in the store restores its
    /// state): after a lost store connection the search is run again from there.
    pub fn fresh_strategy(&self) -> Result<Box<dyn Strategy>> {
        make_strategy(
            self.strategy_kind,
            self.evaluator.space().clone(),
            self.seed,
            &self.settings,
            &self.transfer,
        )
    }
}

/// Builds the strategy, evaluator and search configuration of a recorded experiment
/// from its stored spec (`store`: the store it is recorded in, for its transfer
/// sources).
pub fn prepare(
    store: &dyn Store,
    experiment: &Experiment,
    opts: PrepareOptions,
) -> Result<PreparedSearch> {
    let spec = &experiment.spec;
    let strategy_kind: StrategyKind = spec.strategy.parse()?;
    let PreparedEvaluator {
        settings,
        evaluator,
    } = prepare_evaluator(experiment, opts)?;
    let transfer = recorded_points(store, evaluator.space(), &settings.transfer, &spec.name)?;
    let strategy = make_strategy(
        strategy_kind,
        evaluator.space().clone(),
        spec.seed,
        &settings,
        &transfer,
    )?;
    let mut config = SearchConfig::new(spec.budget, settings.batch_size, settings.reward.clone());
    config.unit = settings.budget_unit();
    Ok(PreparedSearch {
        settings,
        strategy_kind,
        strategy,
        evaluator,
        config,
        transfer,
        seed: spec.seed,
    })
}
