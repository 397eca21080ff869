//! The search loop: ask the strategy for a batch, record it, evaluate each proposal
//! (or serve it from the store), tell the strategy, checkpoint, until the budget in
//! cost units is spent. Every step is persisted so a killed search resumes exactly.

use std::collections::{BTreeSet, VecDeque};

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
    /// Let an asynchronous strategy ([`Strategy::asynchronous`]) propose the next batch
    /// while the last children of the current one are evaluated, so workers never idle
    /// at a batch boundary (evaluation budgets only).
    pub lookahead: bool,
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
            lookahead: true,
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
        if let Some(x) = r.reward.filter(|x| x.is_finite()) {
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
    // finished before a restart: already in the ledger, never reported again
    let mut reported: BTreeSet<TrialId> = BTreeSet::new();
    for t in store.trials(exp)? {
        ledger.proposals += 1;
        if t.status != TrialStatus::Pending {
            reported.insert(t.id);
            ledger.spent += cfg.unit.of(&t.cost);
            // (a store written by an older build may hold a non-finite reward)
            let finite = t.reward.filter(|x| x.is_finite());
            if let (Some(x), false) = (finite, t.source == Some(TrialSource::Critic)) {
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
    let mut d = Driver {
        exp,
        cfg,
        evaluator,
        ledger,
        reported,
        open: VecDeque::new(),
        next_batch: 0,
        lookahead: cfg.lookahead && strategy.asynchronous() && cfg.unit == BudgetUnit::Evaluations,
    };
    if let Some(cp) = store.checkpoint(exp)? {
        if cp.state.is_empty() && !cfg.save_state {
            return Err(SearchError::Strategy(StrategyError::Other(
                "this search was run without saved strategy state and cannot be resumed".into(),
            )));
        }
        strategy.restore(&cp.state)?;
        d.next_batch = cp.batch + 1;
        d.open = store.open_batches(exp)?.into();
        let open: Vec<u64> = d.open.iter().copied().collect();
        for b in open {
            d.prepare(store, b, progress, strategy)?;
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
    loop {
        if d.open.is_empty() {
            if d.ledger.spent >= cfg.budget || stalled(&d.ledger) {
                break;
            }
            // never propose more children than the budget can pay for (with an
            // evaluation budget it is then never exceeded; an image budget may end
            // inside one batch)
            let n = match cfg.unit {
                BudgetUnit::Evaluations => (cfg.budget - d.ledger.spent).min(cfg.batch_size as u64),
                BudgetUnit::Images => cfg.batch_size as u64,
            } as usize;
            d.begin(store, strategy, n)?;
            let b = d.open[0];
            d.prepare(store, b, progress, strategy)?;
        }
        let b = d.open[0];
        d.drive(store, b, strategy, progress)?;
        let trials = store.batch_trials(exp, b)?;
        let mut outcomes = Vec::with_capacity(trials.len());
        let mut cost = 0;
        for t in &trials {
            cost += cfg.unit.of(&t.cost);
            outcomes.push(Outcome {
                arch: d.parse(t)?,
                // never a NaN or an infinity to the strategy, whatever the store holds
                reward: t.reward.filter(|x| x.is_finite()),
                log_prob: t.log_prob,
                evaluated: t.source != Some(TrialSource::Critic),
            });
        }
        strategy.tell(&outcomes)?;
        store.end_batch(exp, b, &saved_state(strategy, cfg)?)?;
        crate::crash::point("checkpoint");
        d.open.pop_front();
        if cost == 0 {
            d.ledger.idle_batches += 1;
        } else {
            d.ledger.idle_batches = 0;
        }
    }
    store.set_experiment_status(exp, "finished")?;
    Ok(SearchSummary {
        trials: d.ledger.proposals,
        spent: d.ledger.spent,
        best_reward: d.ledger.best,
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
        // a result stored by an older build with a non-finite number fails here too
        let bad = prev
            .metrics
            .as_ref()
            .and_then(non_finite_metric)
            .or_else(|| {
                prev.reward
                    .filter(|x| !x.is_finite())
                    .map(|x| format!("reward {x}"))
            });
        if let Some(what) = bad {
            return Ok(Some(TrialResult {
                status: TrialStatus::Failed,
                source: TrialSource::Cached,
                metrics: None,
                reward: None,
                cost: Cost::default(),
                error: Some(format!("non-finite reward ({what})")),
            }));
        }
        return Ok(Some(TrialResult {
            status: prev.status,
            source: TrialSource::Cached,
            metrics: prev.metrics,
            reward: prev.reward,
            cost: Cost::default(),
            error: prev.error,
        }));
    }
    // a prediction that is not a finite number is never trusted: the child is evaluated
    let usable = |p: &crate::Prediction| p.trusted && p.mean.is_finite();
    Ok(t.prediction.filter(usable).map(|p| TrialResult {
        status: TrialStatus::Done,
        source: TrialSource::Critic,
        metrics: None,
        reward: Some(p.mean),
        cost: Cost::default(),
        error: None,
    }))
}

/// The driver's state while it runs the loop: the ledger, the trials already reported,
/// the open batches (oldest first; two while a lookahead batch is out).
struct Driver<'a> {
    exp: i64,
    cfg: &'a SearchConfig,
    evaluator: &'a dyn Evaluator,
    ledger: Ledger,
    reported: BTreeSet<TrialId>,
    open: VecDeque<u64>,
    next_batch: u64,
    /// Begin the next batch while the last children of the current one are evaluated
    /// (asynchronous strategies, evaluation budgets): workers never wait for a `tell`.
    lookahead: bool,
}

impl Driver<'_> {
    fn parse(&self, t: &Trial) -> Result<crate::Architecture, SearchError> {
        self.evaluator
            .space()
            .parse(&t.arch)
            .map_err(|e| SearchError::Corrupt {
                id: t.id,
                message: e.to_string(),
            })
    }

    /// Records one finished trial in the ledger and tells the progress callback.
    fn report(
        &mut self,
        t: &Trial,
        r: &TrialResult,
        strategy: &dyn Strategy,
        progress: &mut dyn FnMut(&TrialEvent),
    ) {
        if !self.reported.insert(t.id) {
            return;
        }
        self.ledger.record(r);
        progress(&TrialEvent {
            trial: t,
            result: r,
            trial_units: self.cfg.unit.of(&r.cost),
            spent: self.ledger.spent,
            budget: self.cfg.budget,
            best_reward: self.ledger.best,
            counters: strategy.counters(),
        });
    }

    /// Asks the strategy for `n` proposals and records them as the next batch.
    fn begin(
        &mut self,
        store: &mut dyn Store,
        strategy: &mut dyn Strategy,
        n: usize,
    ) -> Result<(), SearchError> {
        let proposals = strategy.ask(n)?;
        let space = self.evaluator.space();
        let new: Vec<NewTrial> = proposals
            .iter()
            .map(|p| NewTrial {
                arch: space.format(&p.arch),
                canonical: space.format(&space.canonical(&p.arch)),
                log_prob: p.log_prob,
                prediction: p.prediction,
            })
            .collect();
        store.begin_batch(
            self.exp,
            self.next_batch,
            &new,
            &saved_state(strategy, self.cfg)?,
        )?;
        crate::crash::point("trial-begin");
        self.ledger.proposals += new.len() as u64;
        self.open.push_back(self.next_batch);
        self.next_batch += 1;
        Ok(())
    }

    /// Serves the trials of a recorded batch that need no evaluation and queues the
    /// first trial of each canonical form not already queued in an open batch (a repeat
    /// waits for that trial and is then served from the store).
    fn prepare(
        &mut self,
        store: &mut dyn Store,
        batch: u64,
        progress: &mut dyn FnMut(&TrialEvent),
        strategy: &dyn Strategy,
    ) -> Result<(), SearchError> {
        let mut queued: BTreeSet<String> = BTreeSet::new();
        for b in self.open.iter().copied().filter(|&b| b != batch) {
            for t in store.batch_trials(self.exp, b)? {
                if t.status == TrialStatus::Pending && t.queued {
                    queued.insert(t.canonical.clone());
                }
            }
        }
        let trials = store.batch_trials(self.exp, batch)?;
        for t in trials
            .iter()
            .filter(|t| t.status == TrialStatus::Pending && t.queued)
        {
            queued.insert(t.canonical.clone());
        }
        let mut queue = Vec::new();
        for t in trials
            .iter()
            .filter(|t| t.status == TrialStatus::Pending && !t.queued)
        {
            if let Some(r) = served(store, self.exp, t)? {
                store.finish_trial(t.id, &r)?;
                self.report(t, &r, strategy, progress);
            } else if queued.insert(t.canonical.clone()) {
                self.parse(t)?;
                queue.push(t.id);
            }
        }
        store.queue_trials(&queue)?;
        Ok(())
    }

    /// Waits until every trial of `batch` is finished: reports the results other
    /// workers record, serves repeats, evaluates with this process's workers, reaps
    /// expired leases, and (with lookahead) begins the next batch once nothing of this
    /// one is left to claim.
    fn drive(
        &mut self,
        store: &mut dyn Store,
        batch: u64,
        strategy: &mut dyn Strategy,
        progress: &mut dyn FnMut(&TrialEvent),
    ) -> Result<(), SearchError> {
        let holder = Holder::this_process("driver");
        let par = self.evaluator.parallelism().max(1);
        let cfg = self.cfg;
        loop {
            if let Some(d) = &cfg.driver {
                store.renew_driver(d, DRIVER_RENEW_SECONDS)?;
            }
            let trials = store.batch_trials(self.exp, batch)?;
            // results other workers recorded
            for t in trials.iter().filter(|t| t.status != TrialStatus::Pending) {
                if !self.reported.contains(&t.id) {
                    self.report(t, &stored_result(t), strategy, progress);
                }
            }
            let pending: Vec<&Trial> = trials
                .iter()
                .filter(|t| t.status == TrialStatus::Pending)
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            // a repeat of a canonical form whose first trial has finished meanwhile
            let mut progressed = false;
            for t in pending.iter().filter(|t| !t.queued) {
                if let Some(r) = served(store, self.exp, t)? {
                    store.finish_trial(t.id, &r)?;
                    self.report(t, &r, strategy, progress);
                    progressed = true;
                }
            }
            if self.lookahead && self.open.len() == 1 {
                let unclaimed = pending.iter().filter(|t| t.queued && !t.leased).count();
                let in_flight = pending.iter().filter(|t| t.queued).count() as u64;
                let room = cfg
                    .budget
                    .saturating_sub(self.ledger.spent)
                    .saturating_sub(in_flight);
                if unclaimed == 0
                    && room > 0
                    && self.ledger.proposals < cfg.budget.saturating_mul(cfg.max_proposals_factor)
                {
                    self.begin(store, strategy, room.min(cfg.batch_size as u64) as usize)?;
                    let next = self.next_batch - 1;
                    self.prepare(store, next, progress, strategy)?;
                    progressed = true;
                }
            }
            let mut claimed = Vec::new();
            while cfg.local_workers && claimed.len() < par {
                match store.claim_trial(self.exp, &holder, cfg.lease_seconds)? {
                    Some(c) => claimed.push(c),
                    None => break,
                }
            }
            if !claimed.is_empty() {
                let archs = claimed
                    .iter()
                    .map(|(t, _)| self.parse(t))
                    .collect::<Result<Vec<_>, _>>()?;
                let results = self.evaluator.evaluate_many(&archs);
                for ((t, lease), r) in claimed.iter().zip(results) {
                    let r = to_result(r, &cfg.reward)?;
                    match store.finish_leased(lease, &r) {
                        Ok(()) => {
                            crate::crash::point("result-commit");
                            self.report(t, &r, strategy, progress)
                        }
                        // taken over meanwhile: the other worker's result stands
                        Err(StoreError::LeaseLost(_) | StoreError::AlreadyFinished(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                continue;
            }
            let reaped =
                store.reap_expired(self.exp, cfg.max_attempts, &|h: &Holder| h.is_dead_here())?;
            if !progressed && reaped.requeued + reaped.failed == 0 {
                std::thread::sleep(cfg.poll);
            }
        }
    }
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
            // a NaN or an infinity (a bad benchmark record, a diverged child, a user's
            // reward) must reach neither the strategy, the critic nor a report: the trial
            // fails with the reason, and its metrics are not kept
            let bad = non_finite_metric(&ev.metrics).or_else(|| {
                r.filter(|x| !x.is_finite()).map(|x| {
                    // `{:?}`: 1e-300, not 300 digits
                    let lat = lat.map_or("none".to_string(), |l| format!("{l:?}"));
                    format!(
                        "{x:?} from val_accuracy {:?} and {} {lat}",
                        ev.metrics.val_accuracy,
                        reward.objective.metric()
                    )
                })
            });
            if let Some(what) = bad {
                return Ok(TrialResult {
                    status: TrialStatus::Failed,
                    source: TrialSource::Evaluated,
                    metrics: None,
                    reward: None,
                    cost: ev.cost,
                    error: Some(format!("non-finite reward ({what})")),
                });
            }
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

/// The first metric that is NaN or infinite, as `name value` (e.g. `val_accuracy NaN`).
pub fn non_finite_metric(m: &crate::Metrics) -> Option<String> {
    let named = [
        ("val_accuracy", Some(m.val_accuracy)),
        ("test_accuracy", m.test_accuracy),
        ("latency_ms", m.latency_ms),
        ("params", m.params),
        ("flops", m.flops),
    ];
    named
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n.to_string(), v)))
        .chain(m.extra.iter().map(|(n, v)| (n.clone(), *v)))
        .find(|(_, v)| !v.is_finite())
        .map(|(n, v)| format!("{n} {v:?}"))
}
