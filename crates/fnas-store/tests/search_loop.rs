//! `SqliteStore` under the real search loop of `fnas-core`: a search runs to its
//! budget, and a search interrupted in the middle of a batch resumes to exactly the
//! trials an uninterrupted one records.

use std::panic::{catch_unwind, AssertUnwindSafe};

use fnas_core::search::{run_search, SearchConfig};
use fnas_core::store::{ExperimentSpec, Trial, TrialStatus};
use fnas_core::strategy::RandomSearch;
use fnas_core::{
    Architecture, Cost, EvalError, Evaluation, Evaluator, Metrics, RewardConfig, SearchSpace, Store,
};
use fnas_store::SqliteStore;

struct Toy(SearchSpace);

impl Evaluator for Toy {
    fn space(&self) -> &SearchSpace {
        &self.0
    }
    fn task(&self) -> String {
        "toy".into()
    }
    fn evaluate(&self, arch: &Architecture) -> Result<Evaluation, EvalError> {
        let h = arch
            .choices()
            .iter()
            .fold(17u64, |h, c| h.wrapping_mul(31).wrapping_add(*c as u64));
        if h % 11 == 3 {
            return Err(EvalError::Failed {
                reason: "toy failure".into(),
                cost: Cost::query(),
            });
        }
        Ok(Evaluation {
            metrics: Metrics {
                val_accuracy: (h % 1000) as f64 / 1000.0,
                latency_ms: Some(1.0 + (h % 37) as f64),
                ..Metrics::default()
            },
            cost: Cost::query(),
        })
    }
}

const BUDGET: u64 = 40;
const SEED: u64 = 5;

fn spec() -> ExperimentSpec {
    ExperimentSpec {
        name: "loop".into(),
        space: "nas-bench-201".into(),
        task: "toy".into(),
        strategy: "random".into(),
        seed: SEED,
        budget: BUDGET,
        config: serde_json::json!({}),
    }
}

fn cfg() -> SearchConfig {
    SearchConfig::new(BUDGET, 6, RewardConfig::default())
}

/// Runs the search; with `stop_after`, panics out of the loop after that many trials
/// (as a kill would stop it, between two store calls).
fn search(store: &mut dyn Store, stop_after: Option<usize>) -> bool {
    let exp = match store.experiment("loop").unwrap() {
        Some(e) => e,
        None => store.create_experiment(&spec()).unwrap(),
    };
    let toy = Toy(SearchSpace::nas_bench_201());
    let mut strategy = RandomSearch::new(SearchSpace::nas_bench_201(), SEED);
    let mut seen = 0;
    catch_unwind(AssertUnwindSafe(|| {
        run_search(store, &exp, &mut strategy, &toy, &cfg(), &mut |_| {
            seen += 1;
            if Some(seen) == stop_after {
                panic!("interrupted");
            }
        })
        .unwrap()
    }))
    .is_ok()
}

fn comparable(trials: &[Trial]) -> Vec<(u64, u32, String, TrialStatus, Option<u64>, u64)> {
    trials
        .iter()
        .map(|t| {
            (
                t.batch,
                t.index,
                t.arch.clone(),
                t.status,
                t.reward.map(f64::to_bits),
                t.cost.evaluations,
            )
        })
        .collect()
}

#[test]
fn search_runs_to_budget_and_resumes_exactly() {
    let mut whole = SqliteStore::in_memory().unwrap();
    assert!(search(&mut whole, None));
    let exp = whole.experiment("loop").unwrap().unwrap();
    assert_eq!(exp.status, "finished");
    let want = whole.trials(exp.id).unwrap();
    let summary = &whole.list_experiments().unwrap()[0];
    assert_eq!(summary.cost, BUDGET);
    assert_eq!(summary.finished_trials, summary.trials);
    whole.integrity_check().unwrap();

    let dir = tempfile::tempdir().unwrap();
    for (i, stop) in [1usize, 5, 6, 7, 23].into_iter().enumerate() {
        let path = dir.path().join(format!("resume-{i}.db"));
        {
            let mut s = SqliteStore::open(&path).unwrap();
            assert!(!search(&mut s, Some(stop)), "the search was interrupted");
        }
        let mut s = SqliteStore::open(&path).unwrap();
        s.integrity_check().unwrap();
        assert!(search(&mut s, None), "the resumed search finishes");
        s.integrity_check().unwrap();
        let got = s.trials(exp.id).unwrap();
        assert_eq!(
            comparable(&got),
            comparable(&want),
            "interrupted after {stop} trials"
        );
        assert_eq!(s.list_experiments().unwrap()[0].cost, BUDGET);
    }
}

// Bad numbers (issue 27.4): NaN or infinite metrics and rewards become failed trials with
// the reason and never reach the strategy nor the best.

use std::sync::{Arc, Mutex};

use fnas_core::strategy::{Evolution, EvolutionConfig, Outcome, Proposal, Strategy, StrategyError};
use fnas_core::Objective;

/// The toy evaluator, with a NaN or an infinity in one metric for some architectures
/// (as a bad benchmark record or a diverged child would give).
struct Poisoned(SearchSpace);

/// Which metric of `arch` is poisoned, if any.
fn poison(arch: &Architecture) -> Option<usize> {
    let h = arch
        .choices()
        .iter()
        .fold(7u64, |h, c| h.wrapping_mul(131).wrapping_add(*c as u64));
    (h % 3 == 0).then_some((h / 3 % 6) as usize)
}

impl Evaluator for Poisoned {
    fn space(&self) -> &SearchSpace {
        &self.0
    }
    fn task(&self) -> String {
        "poisoned".into()
    }
    fn evaluate(&self, arch: &Architecture) -> Result<Evaluation, EvalError> {
        let mut ev = Toy(self.0.clone()).evaluate(arch)?;
        let m = &mut ev.metrics;
        m.params = Some(1000.0);
        match poison(arch) {
            Some(0) => m.val_accuracy = f64::NAN,
            Some(1) => m.latency_ms = Some(f64::INFINITY),
            Some(2) => m.params = Some(f64::NAN),
            Some(3) => m.flops = Some(f64::NEG_INFINITY),
            Some(4) => m.test_accuracy = Some(f64::NAN),
            // finite metrics whose reward overflows: a latency of 1e-300 ms under
            // alpha = -2 is (1e-300 / 10)^-2 = inf
            Some(_) => m.latency_ms = Some(1e-300),
            None => {}
        }
        Ok(ev)
    }
}

/// A strategy that records every reward it is told.
struct Spy<S> {
    inner: S,
    told: Arc<Mutex<Vec<Option<f64>>>>,
}

impl<S: Strategy> Strategy for Spy<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError> {
        self.inner.ask(n)
    }
    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), StrategyError> {
        let mut told = self.told.lock().unwrap();
        told.extend(outcomes.iter().map(|o| o.reward));
        self.inner.tell(outcomes)
    }
    fn state(&self) -> Result<Vec<u8>, StrategyError> {
        self.inner.state()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        self.inner.restore(state)
    }
}

fn poisoned_reward() -> RewardConfig {
    RewardConfig {
        target: Some(10.0),
        alpha: -2.0,
        beta: -0.07,
        objective: Objective::Latency,
    }
}

#[test]
fn non_finite_metrics_and_rewards_are_failed_trials_never_told() {
    let space = SearchSpace::nas_bench_201();
    for which in ["random", "evolution"] {
        let mut store = SqliteStore::in_memory().unwrap();
        let exp = store
            .create_experiment(&ExperimentSpec {
                name: format!("poisoned-{which}"),
                strategy: which.into(),
                ..spec()
            })
            .unwrap();
        let told = Arc::new(Mutex::new(Vec::new()));
        let inner: Box<dyn Strategy> = match which {
            "random" => Box::new(RandomSearch::new(space.clone(), SEED)),
            _ => Box::new(Evolution::new(
                space.clone(),
                EvolutionConfig {
                    population: 10,
                    sample: 3,
                },
                SEED,
            )),
        };
        let mut spy = Spy {
            inner: BoxedStrategy(inner),
            told: told.clone(),
        };
        let cfg = SearchConfig::new(120, 8, poisoned_reward());
        let summary = run_search(
            &mut store,
            &exp,
            &mut spy,
            &Poisoned(space.clone()),
            &cfg,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(
            summary.spent, 120,
            "{which}: the search finishes its budget"
        );
        assert!(summary.best_reward.is_some_and(f64::is_finite));

        let trials = store.trials(exp.id).unwrap();
        let mut reasons = std::collections::BTreeSet::new();
        for t in &trials {
            if t.error.as_deref() == Some("evaluation failed: toy failure")
                || t.error.as_deref() == Some("toy failure")
            {
                continue;
            }
            let arch = space.parse(&t.arch).unwrap();
            if let Some(p) = poison(&arch) {
                assert_eq!(t.status, TrialStatus::Failed, "{which}: {}", t.arch);
                assert_eq!(t.reward, None);
                let e = t.error.clone().unwrap_or_default();
                assert!(e.starts_with("non-finite reward ("), "{e}");
                reasons.insert((p, e));
            } else {
                assert!(t.reward.is_some_and(f64::is_finite), "{which}: {}", t.arch);
            }
        }
        let reasons: Vec<String> = reasons.into_iter().map(|(_, e)| e).collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.ends_with("and latency_ms 1e-300)")),
            "{reasons:?}"
        );
        for want in [
            "non-finite reward (val_accuracy NaN)",
            "non-finite reward (latency_ms inf)",
            "non-finite reward (params NaN)",
            "non-finite reward (flops -inf)",
            "non-finite reward (test_accuracy NaN)",
            "non-finite reward (inf from val_accuracy",
        ] {
            assert!(
                reasons.iter().any(|r| r.starts_with(want)),
                "{which}: no `{want}` among {reasons:?}"
            );
        }
        let told = told.lock().unwrap();
        assert_eq!(told.len(), trials.len());
        assert!(told.iter().flatten().all(|r| r.is_finite()), "{told:?}");
        assert!(
            told.iter().any(Option::is_none),
            "failures are told as None"
        );
        let best = store.list_experiments().unwrap()[0].best_reward;
        assert!(best.is_some_and(f64::is_finite), "{best:?}");
    }
}

/// `Box<dyn Strategy>` as a `Strategy` (for [`Spy`]).
struct BoxedStrategy(Box<dyn Strategy>);

impl Strategy for BoxedStrategy {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, StrategyError> {
        self.0.ask(n)
    }
    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), StrategyError> {
        self.0.tell(outcomes)
    }
    fn state(&self) -> Result<Vec<u8>, StrategyError> {
        self.0.state()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        self.0.restore(state)
    }
}

/// A store written by an older build may hold an infinite reward: it is no best, neither
/// in `fnas ls` nor when the search resumes.
#[test]
fn an_infinite_stored_reward_is_never_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        assert!(search(&mut s, None));
    }
    // what an older build could have written (finished trials are immutable: the
    // trigger is lifted for the edit and put back)
    let conn = rusqlite::Connection::open(&path).unwrap();
    let trigger: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'trials_finished_are_immutable'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute_batch("DROP TRIGGER trials_finished_are_immutable")
        .unwrap();
    let n = conn
        .execute(
            "UPDATE trials SET reward = 9e999 WHERE id = \
             (SELECT min(id) FROM trials WHERE reward IS NOT NULL)",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    conn.execute_batch(&trigger).unwrap();
    drop(conn);
    let mut s = SqliteStore::open(&path).unwrap();
    let exp = s.experiment("loop").unwrap().unwrap();
    assert!(s
        .trials(exp.id)
        .unwrap()
        .iter()
        .any(|t| t.reward == Some(f64::INFINITY)));
    let best = s.list_experiments().unwrap()[0].best_reward;
    assert!(best.is_some_and(f64::is_finite), "{best:?}");
    // resumed with a larger budget: the ledger's best ignores the stored infinity
    let mut strategy = RandomSearch::new(SearchSpace::nas_bench_201(), SEED);
    let summary = run_search(
        &mut s,
        &exp,
        &mut strategy,
        &Toy(SearchSpace::nas_bench_201()),
        &SearchConfig::new(BUDGET + 6, 6, RewardConfig::default()),
        &mut |_| {},
    )
    .unwrap();
    assert!(
        summary.best_reward.is_some_and(f64::is_finite),
        "{summary:?}"
    );
}
