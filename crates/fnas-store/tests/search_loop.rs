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
