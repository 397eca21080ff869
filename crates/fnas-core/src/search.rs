//! The search loop: ask the strategy for a batch, record it, evaluate each proposal
//! (or serve it from the store), tell the strategy, checkpoint, until the budget in
//! cost units is spent. Every step is persisted so a killed search resumes exactly.

use std::collections::BTreeSet;

use crate::store::{
    Experiment, Holder, NewTrial, Trial, TrialId, TrialResult, TrialSource, TrialStatus,
};
use crate::{
    Cost, EvalError, Evaluator, Objective, Outcome, RewardConfig, Store, StoreError, Strategy,
    StrategyError,
};

/// What the budget counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetUnit {
    /// Architectures evaluated (`Cost::evaluations`): a tabular query or a trained child.
    #[default]
    Evaluations,
    /// Training images processed (`Cost::images`): with warm starts a child may cost
    /// less than a full proxy training, so real-training comparisons count images.
    Images,
}

impl BudgetUnit {
    /// The units `cost` spends.
    pub fn of(self, cost: &Cost) -> u64 {
        match self {
            BudgetUnit::Evaluations => cost.evaluations,
            BudgetUnit::Images => cost.images,
        }
    }
}

/// Loop settings.
#[derive(Clone, Debug)]
pub struct SearchConfig {
    /// Budget in cost units (see `unit`).
    pub budget: u64,
    /// What `budget` counts.
    pub unit: BudgetUnit,
    /// Proposals per strategy batch (PPO update size).
    pub batch_size: usize,
    pub reward: RewardConfig,
    /// Stop after `budget * max_proposals_factor` proposals even if the budget is not
    /// spent: a converged policy may keep proposing architectures served from the store
    /// at zero cost.
    pub max_proposals_factor: u64,
    /// Serialise the strategy's state into every checkpoint (default). Only throwaway
    /// searches that are never resumed (`fnas bench`'s in-memory runs) turn this off:
    /// their checkpoints then hold an empty state, and serialising a learned strategy's
    /// state twice per batch was about a fifth of such a search's CPU time.
    pub save_state: bool,
    /// How long a claim by this process's own workers holds a trial before a driver may
    /// take it back (they are taken back at once when this process is gone).
    pub lease_seconds: f64,
    /// Leases a trial may lose (expired or dead holder) before it is failed.
    pub max_attempts: u32,
    /// How often the driver looks at the store while only other workers are busy.
    pub poll: std::time::Duration,
    /// Evaluate in this process as well (off: only external workers evaluate).
    pub local_workers: bool,
    /// The driver lease this search holds, renewed as it goes (`None`: not leased).
    pub driver: Option<crate::store::DriverLease>,
}

impl SearchConfig {
    pub fn new(budget: u64, batch_size: usize, reward: RewardConfig) -> Self {
        Self {
            budget,
            unit: BudgetUnit::Evaluations,
            batch_size,
            reward,
            max_proposals_factor: 4,
            save_state: true,
            lease_seconds: 600.0,
            max_attempts: 3,
            poll: std::time::Duration::from_millis(25),
            local_workers: true,
            driver: None,
        }
    }
}

/// Errors that stop a search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error("evaluator: {0}")]
    Evaluator(String),
    #[error("stored trial {id} has an architecture this space cannot read: {message}")]
    Corrupt { id: i64, message: String },
}

/// What the loop reports after each finished trial (for progress bars).
#[derive(Clone, Debug)]
pub struct TrialEvent<'a> {
    pub trial: &'a Trial,
    pub result: &'a TrialResult,
    /// Cost units spent so far.
    pub spent: u64,
    /// Cost of the trial, in budget units.
    pub trial_units: u64,
    pub budget: u64,
    /// Best reward among finished trials so far.
    pub best_reward: Option<f64>,
    /// The strategy's counters ([`Strategy::counters`]) as of the last update.
    pub counters: Vec<(&'static str, u64)>,
}

/// Summary of a finished (or resumed-and-finished) search.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSummary {
    pub trials: u64,
    pub spent: u64,
    pub best_reward: Option<f64>,
}

struct Ledger {
    unit: BudgetUnit,
    spent: u64,
    proposals: u64,
    best: Option<f64>,
    /// Consecutive batches that cost nothing (all served from the store or trusted).
    idle_batches: u64,
}

impl Ledger {
    fn record(&mut self, r: &TrialResult) {
        self.spent += self.unit.of(&r.cost);
        // a critic's prediction never makes an architecture "found"
        if r.source == TrialSource::Critic {
            return;
        }
        if let Some(x) = r.reward {
            self.best = Some(self.best.map_or(x, |b| b.max(x)));
        }
    }
}

/// The state a checkpoint stores: the strategy's, or nothing when `save_state` is off.
fn saved_state(strategy: &dyn Strategy, cfg: &SearchConfig) -> Result<Vec<u8>, StrategyError> {
    if cfg.save_state {
        strategy.state()
    } else {
        Ok(Vec::new())
    }
}

/// Runs (or resumes) the search of `experiment` until its budget is spent.
pub fn run_search(
    store: &mut dyn Store,
    experiment: &Experiment,
    strategy: &mut dyn Strategy,
    evaluator: &dyn Evaluator,
    cfg: &SearchConfig,
    progress: &mut dyn FnMut(&TrialEvent),
) -> Result<SearchSummary, SearchError> {
    let exp = experiment.id;
    let mut ledger = Ledger {
        unit: cfg.unit,
        spent: 0,
        proposals: 0,
        best: None,
        idle_batches: 0,
    };
    for t in store.trials(exp)? {
        ledger.proposals += 1;
        if t.status != TrialStatus::Pending {
            ledger.spent += cfg.unit.of(&t.cost);
            if let (Some(x), false) = (t.reward, t.source == Some(TrialSource::Critic)) {
                ledger.best = Some(ledger.best.map_or(x, |b| b.max(x)));
            }
        }
    }
    // leases this very process held in an earlier run (a run cut short by an unreachable
    // store) are stale: nobody evaluates them any more
    let me = Holder::this_process("driver");
    store.reap_expired(exp, cfg.max_attempts, &|h: &Holder| {
        *h == me || h.is_dead_here()
    })?;
    let mut batch = 0;
    if let Some(cp) = store.checkpoint(exp)? {
        if cp.state.is_empty() && !cfg.save_state {
            return Err(SearchError::Strategy(StrategyError::Other(
                "this search was run without saved strategy state and cannot be resumed".into(),
            )));
        }
        strategy.restore(&cp.state)?;
        batch = cp.batch + 1;
        if cp.open {
            finish_batch(
                store,
                exp,
                cp.batch,
                strategy,
                evaluator,
                cfg,
                &mut ledger,
                progress,
            )?;
        }
    }
    let cap = cfg
        .budget
        .saturating_mul(cfg.max_proposals_factor)
        .max(cfg.budget + 1);
    // With an image budget the proposal cap is replaced by a stall rule: stop after
    // `max_proposals_factor * 4` consecutive batches that cost nothing.
    let stalled = |l: &Ledger| match cfg.unit {
        BudgetUnit::Evaluations => l.proposals >= cap,
        BudgetUnit::Images => l.idle_batches >= cfg.max_proposals_factor.saturating_mul(4),
    };
    while ledger.spent < cfg.budget && !stalled(&ledger) {
        // never propose more children than the budget can pay for (with an evaluation
        // budget it is then never exceeded; an image budget may end inside one batch)
        let n = match cfg.unit {
            BudgetUnit::Evaluations => (cfg.budget - ledger.spent).min(cfg.batch_size as u64),
            BudgetUnit::Images => cfg.batch_size as u64,
        } as usize;
        let spent_before = ledger.spent;
        let proposals = strategy.ask(n)?;
        let space = evaluator.space();
        let new: Vec<NewTrial> = proposals
            .iter()
            .map(|p| NewTrial {
                arch: space.format(&p.arch),
                canonical: space.format(&space.canonical(&p.arch)),
                log_prob: p.log_prob,
                prediction: p.prediction,
            })
            .collect();
        store.begin_batch(exp, batch, &new, &saved_state(strategy, cfg)?)?;
        ledger.proposals += new.len() as u64;
        finish_batch(
            store,
            exp,
            batch,
            strategy,
            evaluator,
            cfg,
            &mut ledger,
            progress,
        )?;
        if ledger.spent == spent_before {
            ledger.idle_batches += 1;
        } else {
            ledger.idle_batches = 0;
        }
        batch += 1;
    }
    store.set_experiment_status(exp, "finished")?;
    Ok(SearchSummary {
        trials: ledger.proposals,
        spent: ledger.spent,
        best_reward: ledger.best,
    })
}

/// How long each renewal of the driver lease lasts.
const DRIVER_RENEW_SECONDS: f64 = 600.0;

/// A finished trial's result as stored.
fn stored_result(t: &Trial) -> TrialResult {
    TrialResult {
        status: t.status,
        source: t.source.unwrap_or(TrialSource::Evaluated),
        metrics: t.metrics.clone(),
        reward: t.reward,
        cost: t.cost.clone(),
        error: t.error.clone(),
    }
}

/// The result of a pending trial that needs no evaluation: served from the store (its
/// canonical form was evaluated already; trusted or not) or the critic's trusted
/// prediction. `None`: it must be evaluated.
fn served(store: &dyn Store, exp: i64, t: &Trial) -> Result<Option<TrialResult>, SearchError> {
    if let Some(prev) = store.find_evaluated(exp, &t.canonical)? {
        return Ok(Some(TrialResult {
            status: prev.status,
            source: TrialSource::Cached,
            metrics: prev.metrics,
            reward: prev.reward,
            cost: Cost::default(),
            error: prev.error,
        }));
    }
    Ok(t.prediction.filter(|p| p.trusted).map(|p| TrialResult {
        status: TrialStatus::Done,
        source: TrialSource::Critic,
        metrics: None,
        reward: Some(p.mean),
        cost: Cost::default(),
        error: None,
    }))
}

/// Finishes a recorded batch, tells the strategy and closes the batch. Trials that need
/// no evaluation are served at once; the first trial of each new canonical form is
/// queued, and claimed under a lease by this process's workers or by any `fnas worker`
/// on the experiment; the batch waits until every trial is finished (results in any
/// order; the strategy is told them in proposal order).
#[allow(clippy::too_many_arguments)]
fn finish_batch(
    store: &mut dyn Store,
    exp: i64,
    batch: u64,
    strategy: &mut dyn Strategy,
    evaluator: &dyn Evaluator,
    cfg: &SearchConfig,
    ledger: &mut Ledger,
    progress: &mut dyn FnMut(&TrialEvent),
) -> Result<(), SearchError> {
    let space = evaluator.space();
    let holder = Holder::this_process("driver");
    let mut report = |t: &Trial, r: &TrialResult, ledger: &mut Ledger| {
        ledger.record(r);
        progress(&TrialEvent {
            trial: t,
            result: r,
            trial_units: cfg.unit.of(&r.cost),
            spent: ledger.spent,
            budget: cfg.budget,
            best_reward: ledger.best,
            counters: strategy.counters(),
        });
    };
    let parse = |t: &Trial| {
        space.parse(&t.arch).map_err(|e| SearchError::Corrupt {
            id: t.id,
            message: e.to_string(),
        })
    };
    // finished before a restart: already in the ledger
    let mut reported: BTreeSet<TrialId> = BTreeSet::new();
    let mut queue = Vec::new();
    let mut queued: BTreeSet<String> = BTreeSet::new();
    for t in store.batch_trials(exp, batch)? {
        if t.status != TrialStatus::Pending {
            reported.insert(t.id);
        } else if t.queued {
            queued.insert(t.canonical.clone());
        } else if let Some(r) = served(store, exp, &t)? {
            store.finish_trial(t.id, &r)?;
            reported.insert(t.id);
            report(&t, &r, ledger);
        } else if queued.insert(t.canonical.clone()) {
            parse(&t)?;
            queue.push(t.id);
        }
    }
    store.queue_trials(&queue)?;
    let par = evaluator.parallelism().max(1);
    loop {
        if let Some(d) = &cfg.driver {
            store.renew_driver(d, DRIVER_RENEW_SECONDS)?;
        }
        let trials = store.batch_trials(exp, batch)?;
        // results other workers recorded
        for t in trials.iter().filter(|t| t.status != TrialStatus::Pending) {
            if reported.insert(t.id) {
                report(t, &stored_result(t), ledger);
            }
        }
        let pending: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.status == TrialStatus::Pending)
            .collect();
        if pending.is_empty() {
            break;
        }
        // a repeat of a canonical form whose first trial has finished meanwhile
        let mut progressed = false;
        for t in pending.iter().filter(|t| !t.queued) {
            if let Some(r) = served(store, exp, t)? {
                store.finish_trial(t.id, &r)?;
                reported.insert(t.id);
                report(t, &r, ledger);
                progressed = true;
            }
        }
        let mut claimed = Vec::new();
        while cfg.local_workers && claimed.len() < par {
            match store.claim_trial(exp, &holder, cfg.lease_seconds)? {
                Some(c) => claimed.push(c),
                None => break,
            }
        }
        if !claimed.is_empty() {
            let archs = claimed
                .iter()
                .map(|(t, _)| parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            let results = evaluator.evaluate_many(&archs);
            for ((t, lease), r) in claimed.iter().zip(results) {
                let r = to_result(r, &cfg.reward)?;
                match store.finish_leased(lease, &r) {
                    Ok(()) => {
                        reported.insert(t.id);
                        report(t, &r, ledger);
                    }
                    // taken over meanwhile: the other worker's result stands
                    Err(StoreError::LeaseLost(_) | StoreError::AlreadyFinished(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            continue;
        }
        let reaped = store.reap_expired(exp, cfg.max_attempts, &|h: &Holder| h.is_dead_here())?;
        if !progressed && reaped.requeued + reaped.failed == 0 {
            std::thread::sleep(cfg.poll);
        }
    }
    let mut outcomes = Vec::new();
    for t in store.batch_trials(exp, batch)? {
        outcomes.push(Outcome {
            arch: parse(&t)?,
            reward: t.reward,
            log_prob: t.log_prob,
            evaluated: t.source != Some(TrialSource::Critic),
        });
    }
    strategy.tell(&outcomes)?;
    store.end_batch(exp, batch, &saved_state(strategy, cfg)?)?;
    Ok(())
}

/// One real evaluation turned into a trial result (failures are results, not errors).
pub fn evaluate(
    evaluator: &dyn Evaluator,
    arch: &crate::Architecture,
    reward: &RewardConfig,
) -> Result<TrialResult, SearchError> {
    to_result(evaluator.evaluate(arch), reward)
}

/// An evaluation's outcome as a trial result: the reward computed, a failure recorded.
fn to_result(
    outcome: Result<crate::Evaluation, EvalError>,
    reward: &RewardConfig,
) -> Result<TrialResult, SearchError> {
    match outcome {
        Ok(ev) => {
            let lat = match reward.objective {
                Objective::Latency => ev.metrics.latency_ms,
                Objective::Params => ev.metrics.params,
            };
            let r = reward.reward(ev.metrics.val_accuracy, lat);
            Ok(TrialResult {
                status: TrialStatus::Done,
                source: TrialSource::Evaluated,
                metrics: Some(ev.metrics),
                reward: r,
                cost: ev.cost,
                error: None,
            })
        }
        Err(EvalError::Failed { reason, cost }) => Ok(TrialResult {
            status: TrialStatus::Failed,
            source: TrialSource::Evaluated,
            metrics: None,
            reward: None,
            cost,
            error: Some(reason),
        }),
        Err(EvalError::Fatal(m)) => Err(SearchError::Evaluator(m)),
    }
}
