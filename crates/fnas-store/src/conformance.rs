//! The conformance suite of the [`Store`] contract (see `fnas_core::store`).
//!
//! Every backend must pass [`run_all`]. Each check is a `pub fn` taking a fresh, empty
//! store and panicking (via `assert!`) on the first violation, so another crate can run
//! them from its own tests:
//!
//! ```no_run
//! fnas_store::conformance::run_all(&|| Box::new(fnas_store::SqliteStore::in_memory().unwrap()));
//! ```

// A test suite for backends: a failed `unwrap` is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use fnas_core::store::{
    Checkpoint, Experiment, ExperimentSpec, Holder, NewTrial, Trial, TrialId, TrialResult,
    TrialSource, TrialStatus,
};
use fnas_core::{Cost, Metrics, Prediction, Store, StoreError};

/// A check: gets a fresh, empty store; panics on a violation.
pub type Check = fn(&mut dyn Store);

/// Every check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[(&str, Check)] = &[
    ("experiments_create_get_list", experiments_create_get_list),
    ("duplicate_name_is_exists", duplicate_name_is_exists),
    (
        "begin_batch_records_pending_trials",
        begin_batch_records_pending_trials,
    ),
    (
        "begin_batch_is_all_or_nothing",
        begin_batch_is_all_or_nothing,
    ),
    ("finish_trial_only_once", finish_trial_only_once),
    (
        "end_batch_requires_finished_trials",
        end_batch_requires_finished_trials,
    ),
    (
        "a_lookahead_batch_ends_after_the_one_before",
        a_lookahead_batch_ends_after_the_one_before,
    ),
    (
        "checkpoint_is_latest_with_open_flag",
        checkpoint_is_latest_with_open_flag,
    ),
    ("trials_are_ordered", trials_are_ordered),
    ("find_evaluated_semantics", find_evaluated_semantics),
    ("values_round_trip_exactly", values_round_trip_exactly),
    (
        "predictions_round_trip_exactly",
        predictions_round_trip_exactly,
    ),
    ("critic_trials_semantics", critic_trials_semantics),
    ("list_experiments_counts", list_experiments_counts),
    ("set_experiment_status_works", set_experiment_status_works),
    ("set_experiment_budget_works", set_experiment_budget_works),
    ("queue_claim_finish", queue_claim_finish),
    (
        "expired_lease_is_requeued_and_late_result_refused",
        expired_lease_is_requeued_and_late_result_refused,
    ),
    ("lease_attempts_are_bounded", lease_attempts_are_bounded),
    ("one_driver_per_experiment", one_driver_per_experiment),
];

/// Runs every check, each on a fresh store from `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn Store>) {
    for (name, check) in CHECKS {
        let _guard = Named(name);
        let mut store = make();
        check(store.as_mut());
    }
}

/// Names the failing check when a check panics.
struct Named<'a>(&'a str);

impl Drop for Named<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("store conformance check `{}` failed", self.0);
        }
    }
}

// ---------------------------------------------------------------------------------
// helpers

fn spec(name: &str) -> ExperimentSpec {
    ExperimentSpec {
        name: name.to_string(),
        space: "nas-bench-graph".to_string(),
        task: "nas-bench-graph/cora".to_string(),
        strategy: "random".to_string(),
        seed: 7,
        budget: 100,
        config: serde_json::json!({ "batch_size": 8, "reward": { "target": null } }),
    }
}

fn create(s: &mut dyn Store, name: &str) -> Experiment {
    s.create_experiment(&spec(name))
        .unwrap_or_else(|e| panic!("create_experiment({name}): {e}"))
}

/// `n` proposals; every third has no prediction, the others alternate between an
/// untrusted and a trusted one.
fn new_trials(prefix: &str, n: usize) -> Vec<NewTrial> {
    (0..n)
        .map(|i| NewTrial {
            arch: format!("{prefix}-arch-{i}"),
            canonical: format!("{prefix}-canon-{i}"),
            log_prob: Some(-(i as f64) - 0.25),
            prediction: (i % 3 != 0).then(|| Prediction {
                mean: 0.5 + i as f64 / 100.0,
                std: 0.01 * i as f64,
                trusted: i % 3 == 2,
            }),
        })
        .collect()
}

fn nt(arch: &str, canonical: &str) -> NewTrial {
    NewTrial {
        arch: arch.to_string(),
        canonical: canonical.to_string(),
        log_prob: None,
        prediction: None,
    }
}

/// A proposal with a critic prediction.
fn ntp(arch: &str, canonical: &str, mean: f64, std: f64, trusted: bool) -> NewTrial {
    NewTrial {
        prediction: Some(Prediction { mean, std, trusted }),
        ..nt(arch, canonical)
    }
}

fn done(reward: Option<f64>, evaluations: u64, source: TrialSource) -> TrialResult {
    TrialResult {
        status: TrialStatus::Done,
        source,
        metrics: Some(Metrics {
            val_accuracy: reward.unwrap_or(0.5),
            ..Metrics::default()
        }),
        reward,
        cost: Cost {
            evaluations,
            ..Cost::default()
        },
        error: None,
    }
}

/// The result the search loop records for a trial it did not evaluate because the
/// critic's prediction was trusted.
fn critic(t: &NewTrial) -> TrialResult {
    let p = t.prediction.expect("a critic result needs a prediction");
    assert!(p.trusted, "a critic result needs a trusted prediction");
    TrialResult {
        status: TrialStatus::Done,
        source: TrialSource::Critic,
        metrics: None,
        reward: Some(p.mean),
        cost: Cost::default(),
        error: None,
    }
}

fn failed(evaluations: u64) -> TrialResult {
    TrialResult {
        status: TrialStatus::Failed,
        source: TrialSource::Evaluated,
        metrics: None,
        reward: None,
        cost: Cost {
            evaluations,
            ..Cost::default()
        },
        error: Some("diverged: loss is NaN".to_string()),
    }
}

fn finish(s: &mut dyn Store, id: TrialId, r: &TrialResult) {
    s.finish_trial(id, r)
        .unwrap_or_else(|e| panic!("finish_trial({id}): {e}"));
}

fn begin(s: &mut dyn Store, exp: i64, batch: u64, trials: &[NewTrial], cp: &[u8]) -> Vec<TrialId> {
    s.begin_batch(exp, batch, trials, cp)
        .unwrap_or_else(|e| panic!("begin_batch({exp}, {batch}): {e}"))
}

fn end(s: &mut dyn Store, exp: i64, batch: u64, cp: &[u8]) {
    s.end_batch(exp, batch, cp)
        .unwrap_or_else(|e| panic!("end_batch({exp}, {batch}): {e}"));
}

/// Records a whole batch and finishes every trial with `result`, then closes it.
fn full_batch(s: &mut dyn Store, exp: i64, batch: u64, trials: &[NewTrial], r: &TrialResult) {
    let ids = begin(s, exp, batch, trials, b"ask");
    for id in ids {
        finish(s, id, r);
    }
    end(s, exp, batch, b"tell");
}

fn trial_by_id(s: &dyn Store, exp: i64, id: TrialId) -> Trial {
    s.trials(exp)
        .expect("trials")
        .into_iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("trial {id} not found in experiment {exp}"))
}

fn summary(s: &dyn Store, name: &str) -> fnas_core::store::ExperimentSummary {
    s.list_experiments()
        .expect("list_experiments")
        .into_iter()
        .find(|x| x.experiment.spec.name == name)
        .unwrap_or_else(|| panic!("experiment {name} not listed"))
}

fn bits(x: Option<f64>) -> Option<u64> {
    x.map(f64::to_bits)
}

fn prediction_bits(p: Option<Prediction>) -> Option<(u64, u64, bool)> {
    p.map(|p| (p.mean.to_bits(), p.std.to_bits(), p.trusted))
}

fn assert_metrics_bits(got: &Metrics, want: &Metrics) {
    assert_eq!(
        got.val_accuracy.to_bits(),
        want.val_accuracy.to_bits(),
        "val_accuracy"
    );
    assert_eq!(
        bits(got.test_accuracy),
        bits(want.test_accuracy),
        "test_accuracy"
    );
    assert_eq!(bits(got.latency_ms), bits(want.latency_ms), "latency_ms");
    assert_eq!(bits(got.params), bits(want.params), "params");
    assert_eq!(bits(got.flops), bits(want.flops), "flops");
    assert_eq!(got.extra.len(), want.extra.len(), "extra metrics");
    for (k, v) in &want.extra {
        assert_eq!(
            got.extra.get(k).map(|x| x.to_bits()),
            Some(v.to_bits()),
            "extra {k}"
        );
    }
}

fn assert_cost_bits(got: &Cost, want: &Cost) {
    assert_eq!(got.evaluations, want.evaluations, "cost.evaluations");
    assert_eq!(got.images, want.images, "cost.images");
    assert_eq!(got.epochs.to_bits(), want.epochs.to_bits(), "cost.epochs");
    assert_eq!(
        got.cpu_seconds.to_bits(),
        want.cpu_seconds.to_bits(),
        "cost.cpu_seconds"
    );
    assert_eq!(
        got.wall_seconds.to_bits(),
        want.wall_seconds.to_bits(),
        "cost.wall_seconds"
    );
}

// ---------------------------------------------------------------------------------
// checks

/// Experiments are created with all their fields, found by name, listed in creation
/// order.
pub fn experiments_create_get_list(s: &mut dyn Store) {
    assert!(
        s.list_experiments().unwrap().is_empty(),
        "a fresh store lists nothing"
    );
    assert!(s.experiment("a").unwrap().is_none());
    let mut sa = spec("a");
    sa.seed = u64::MAX;
    sa.budget = 1 << 40;
    sa.config = serde_json::json!({
        "lr": 0.1 + 0.2, "layers": [1, 2, 3], "nested": { "s": "x\"y\u{e9}", "b": true, "n": null }
    });
    let a = s.create_experiment(&sa).unwrap();
    assert_eq!(a.spec, sa);
    assert_eq!(a.status, "running");
    assert!(
        a.created_at > 1.5e9,
        "created_at is seconds since the epoch: {}",
        a.created_at
    );
    let b = create(s, "b");
    assert_ne!(a.id, b.id);
    assert_eq!(s.experiment("a").unwrap().as_ref(), Some(&a));
    assert_eq!(s.experiment("b").unwrap().as_ref(), Some(&b));
    assert!(s.experiment("c").unwrap().is_none());
    let list = s.list_experiments().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].experiment, a);
    assert_eq!(list[1].experiment, b);
    for x in &list {
        assert_eq!((x.trials, x.finished_trials, x.cost), (0, 0, 0));
        assert_eq!(x.best_reward, None);
    }
}

/// A second experiment with a taken name is `Exists` and changes nothing.
pub fn duplicate_name_is_exists(s: &mut dyn Store) {
    let a = create(s, "dup");
    let mut other = spec("dup");
    other.strategy = "evolution".to_string();
    match s.create_experiment(&other) {
        Err(StoreError::Exists(name)) => assert_eq!(name, "dup"),
        r => panic!("duplicate name: expected Exists, got {r:?}"),
    }
    assert_eq!(s.experiment("dup").unwrap(), Some(a));
    assert_eq!(s.list_experiments().unwrap().len(), 1);
}

/// `begin_batch` returns the new ids in proposal order; the trials are pending with the
/// proposal's fields; the post-`ask` checkpoint is saved as open.
pub fn begin_batch_records_pending_trials(s: &mut dyn Store) {
    let e = create(s, "e");
    let f = create(s, "f");
    assert_eq!(s.checkpoint(e.id).unwrap(), None);
    let proposals = new_trials("e", 5);
    let ids = begin(s, e.id, 0, &proposals, b"ask-0");
    assert_eq!(ids.len(), 5);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids increase in proposal order: {ids:?}"
    );
    let got = s.batch_trials(e.id, 0).unwrap();
    assert_eq!(got.len(), 5);
    for (i, t) in got.iter().enumerate() {
        assert_eq!(t.id, ids[i]);
        assert_eq!(t.experiment_id, e.id);
        assert_eq!(t.batch, 0);
        assert_eq!(t.index, i as u32);
        assert_eq!(t.arch, proposals[i].arch);
        assert_eq!(t.canonical, proposals[i].canonical);
        assert_eq!(bits(t.log_prob), bits(proposals[i].log_prob));
        assert_eq!(
            prediction_bits(t.prediction),
            prediction_bits(proposals[i].prediction)
        );
        assert_eq!(t.status, TrialStatus::Pending);
        assert_eq!(t.source, None);
        assert_eq!(t.metrics, None);
        assert_eq!(t.reward, None);
        assert_eq!(t.cost, Cost::default());
        assert_eq!(t.error, None);
        assert!(t.created_at > 1.5e9);
        assert_eq!(t.finished_at, None);
    }
    assert_eq!(s.trials(e.id).unwrap(), got);
    assert_eq!(
        s.checkpoint(e.id).unwrap(),
        Some(Checkpoint {
            batch: 0,
            open: true,
            state: b"ask-0".to_vec()
        })
    );
    // ids are store-wide
    let other = begin(s, f.id, 0, &new_trials("f", 3), b"f");
    assert!(
        other.iter().all(|id| !ids.contains(id)),
        "trial ids are unique in the store"
    );
    assert_eq!(
        s.batch_trials(e.id, 0).unwrap(),
        got,
        "other experiments leave it alone"
    );
}

/// A refused `begin_batch` (existing batch, unknown experiment) records nothing.
pub fn begin_batch_is_all_or_nothing(s: &mut dyn Store) {
    let e = create(s, "e");
    full_batch(
        s,
        e.id,
        0,
        &new_trials("a", 3),
        &done(Some(0.5), 1, TrialSource::Evaluated),
    );
    let before = s.trials(e.id).unwrap();
    let cp = s.checkpoint(e.id).unwrap();
    assert!(
        s.begin_batch(e.id, 0, &new_trials("b", 4), b"again")
            .is_err(),
        "begin_batch of an existing batch must fail"
    );
    assert_eq!(
        s.trials(e.id).unwrap(),
        before,
        "a refused batch adds no trial"
    );
    assert_eq!(
        s.checkpoint(e.id).unwrap(),
        cp,
        "a refused batch leaves the checkpoint"
    );
    let unknown = e.id + 1000;
    assert!(
        s.begin_batch(unknown, 0, &new_trials("c", 2), b"x")
            .is_err(),
        "begin_batch of an unknown experiment must fail"
    );
    assert!(s.trials(unknown).unwrap().is_empty());
    assert_eq!(s.checkpoint(unknown).unwrap(), None);
    let s1 = summary(s, "e");
    assert_eq!((s1.trials, s1.finished_trials), (3, 3));
}

/// A finished trial is immutable: finishing it again is `AlreadyFinished` and leaves
/// the first result; an unknown id is an error but not `AlreadyFinished`; a `pending`
/// result is refused.
pub fn finish_trial_only_once(s: &mut dyn Store) {
    let e = create(s, "e");
    let ids = begin(s, e.id, 0, &new_trials("e", 3), b"ask");
    let first = done(Some(0.7), 1, TrialSource::Evaluated);
    finish(s, ids[0], &first);
    let t0 = trial_by_id(s, e.id, ids[0]);
    assert_eq!(t0.status, TrialStatus::Done);
    assert_eq!(t0.source, Some(TrialSource::Evaluated));
    assert_eq!(t0.reward, Some(0.7));
    assert!(t0.finished_at.is_some_and(|f| f >= t0.created_at - 1.0));
    match s.finish_trial(ids[0], &done(Some(0.1), 5, TrialSource::Cached)) {
        Err(StoreError::AlreadyFinished(id)) => assert_eq!(id, ids[0]),
        r => panic!("second finish: expected AlreadyFinished, got {r:?}"),
    }
    assert_eq!(trial_by_id(s, e.id, ids[0]), t0, "the first result stays");

    finish(s, ids[1], &failed(1));
    let t1 = trial_by_id(s, e.id, ids[1]);
    assert_eq!(t1.status, TrialStatus::Failed);
    assert_eq!(t1.error.as_deref(), Some("diverged: loss is NaN"));
    assert!(matches!(
        s.finish_trial(ids[1], &first),
        Err(StoreError::AlreadyFinished(_))
    ));
    assert_eq!(trial_by_id(s, e.id, ids[1]), t1);

    let max = *ids.iter().max().unwrap();
    match s.finish_trial(max + 1000, &first) {
        Err(StoreError::AlreadyFinished(_)) => panic!("unknown id reported as AlreadyFinished"),
        Err(_) => {}
        Ok(()) => panic!("finishing an unknown trial must fail"),
    }

    let mut pending = first.clone();
    pending.status = TrialStatus::Pending;
    assert!(
        s.finish_trial(ids[2], &pending).is_err(),
        "a pending result is refused"
    );
    assert_eq!(trial_by_id(s, e.id, ids[2]).status, TrialStatus::Pending);
    finish(s, ids[2], &first);
    assert_eq!(trial_by_id(s, e.id, ids[2]).status, TrialStatus::Done);
}

/// `end_batch` fails with `BatchIncomplete` while a trial is pending (and changes
/// nothing), then closes the batch with the post-`tell` checkpoint.
pub fn end_batch_requires_finished_trials(s: &mut dyn Store) {
    let e = create(s, "e");
    let ids = begin(s, e.id, 0, &new_trials("e", 2), b"ask-0");
    let open = Some(Checkpoint {
        batch: 0,
        open: true,
        state: b"ask-0".to_vec(),
    });
    for id in [None, Some(ids[0])] {
        if let Some(id) = id {
            finish(s, id, &done(Some(0.5), 1, TrialSource::Evaluated));
        }
        match s.end_batch(e.id, 0, b"tell-0") {
            Err(StoreError::BatchIncomplete { experiment, batch }) => {
                assert_eq!((experiment, batch), (e.id, 0));
            }
            r => panic!("end_batch with pending trials: expected BatchIncomplete, got {r:?}"),
        }
        assert_eq!(
            s.checkpoint(e.id).unwrap(),
            open,
            "a refused end_batch keeps the checkpoint"
        );
    }
    finish(s, ids[1], &failed(0));
    end(s, e.id, 0, b"tell-0");
    assert_eq!(
        s.checkpoint(e.id).unwrap(),
        Some(Checkpoint {
            batch: 0,
            open: false,
            state: b"tell-0".to_vec()
        })
    );
    assert!(
        s.end_batch(e.id, 7, b"x").is_err(),
        "ending a batch never begun must fail"
    );
}

/// One lookahead batch may be begun while the last is open (never a third); batches end
/// in order; the checkpoint names the latest batch begun, open while it is.
pub fn a_lookahead_batch_ends_after_the_one_before(s: &mut dyn Store) {
    let e = create(s, "lookahead");
    let first = begin(s, e.id, 0, &new_trials("a", 1), b"ask0");
    let next = begin(s, e.id, 1, &new_trials("b", 1), b"ask1");
    assert!(s.begin_batch(e.id, 2, &new_trials("c", 1), b"x").is_err());
    assert_eq!(s.open_batches(e.id).unwrap(), vec![0, 1]);
    finish(s, next[0], &done(Some(0.3), 1, TrialSource::Evaluated));
    assert!(
        s.end_batch(e.id, 1, b"early").is_err(),
        "batches end in order"
    );
    finish(s, first[0], &done(Some(0.1), 1, TrialSource::Evaluated));
    s.end_batch(e.id, 0, b"tell0").unwrap();
    let cp = s.checkpoint(e.id).unwrap().unwrap();
    assert_eq!(
        (cp.batch, cp.open, cp.state.as_slice()),
        (1, true, &b"tell0"[..])
    );
    assert_eq!(s.open_batches(e.id).unwrap(), vec![1]);
    s.end_batch(e.id, 1, b"tell1").unwrap();
    let cp = s.checkpoint(e.id).unwrap().unwrap();
    assert_eq!(
        (cp.batch, cp.open, cp.state.as_slice()),
        (1, false, &b"tell1"[..])
    );
    assert!(s.open_batches(e.id).unwrap().is_empty());
}

/// `checkpoint` is the latest one of the experiment, with the right `open` flag.
pub fn checkpoint_is_latest_with_open_flag(s: &mut dyn Store) {
    let e = create(s, "e");
    let f = create(s, "f");
    assert_eq!(s.checkpoint(e.id).unwrap(), None);
    for b in 0..3u64 {
        let ask = format!("ask-{b}").into_bytes();
        let tell = format!("tell-{b}").into_bytes();
        let ids = begin(s, e.id, b, &new_trials("e", 2), &ask);
        let cp = s
            .checkpoint(e.id)
            .unwrap()
            .expect("checkpoint after begin_batch");
        assert_eq!((cp.batch, cp.open, cp.state), (b, true, ask));
        for id in ids {
            finish(s, id, &done(Some(0.1), 1, TrialSource::Evaluated));
        }
        end(s, e.id, b, &tell);
        let cp = s
            .checkpoint(e.id)
            .unwrap()
            .expect("checkpoint after end_batch");
        assert_eq!((cp.batch, cp.open, cp.state), (b, false, tell));
        assert_eq!(
            s.checkpoint(f.id).unwrap(),
            None,
            "checkpoints are per experiment"
        );
    }
    // a large state survives intact
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    begin(s, f.id, 0, &new_trials("f", 1), &big);
    let cp = s.checkpoint(f.id).unwrap().unwrap();
    assert_eq!((cp.batch, cp.open), (0, true));
    assert!(cp.state == big, "a large checkpoint round-trips");
    assert_eq!(s.checkpoint(e.id).unwrap().unwrap().batch, 2);
}

/// `trials` is ordered by (batch, index), `batch_trials` by index, whatever the order
/// of finishing, and neither includes another experiment's trials.
pub fn trials_are_ordered(s: &mut dyn Store) {
    let e = create(s, "e");
    let f = create(s, "f");
    let sizes = [3usize, 1, 4];
    let mut all_ids = Vec::new();
    for (b, n) in sizes.iter().enumerate() {
        let b = b as u64;
        let ids = begin(s, e.id, b, &new_trials(&format!("e{b}"), *n), b"a");
        let fids = begin(s, f.id, b, &new_trials(&format!("f{b}"), 2), b"a");
        for id in ids.iter().rev().chain(fids.iter()) {
            finish(s, *id, &done(Some(0.3), 1, TrialSource::Evaluated));
        }
        end(s, e.id, b, b"t");
        end(s, f.id, b, b"t");
        all_ids.extend(ids);
    }
    let trials = s.trials(e.id).unwrap();
    assert_eq!(trials.iter().map(|t| t.id).collect::<Vec<_>>(), all_ids);
    let keys: Vec<(u64, u32)> = trials.iter().map(|t| (t.batch, t.index)).collect();
    let want: Vec<(u64, u32)> = sizes
        .iter()
        .enumerate()
        .flat_map(|(b, n)| (0..*n as u32).map(move |i| (b as u64, i)))
        .collect();
    assert_eq!(keys, want);
    let mut concat = Vec::new();
    for b in 0..sizes.len() as u64 {
        let bt = s.batch_trials(e.id, b).unwrap();
        assert!(bt.iter().all(|t| t.experiment_id == e.id && t.batch == b));
        assert_eq!(
            bt.iter().map(|t| t.arch.clone()).collect::<Vec<_>>(),
            new_trials(&format!("e{b}"), sizes[b as usize])
                .into_iter()
                .map(|t| t.arch)
                .collect::<Vec<_>>()
        );
        concat.extend(bt);
    }
    assert_eq!(concat, trials);
    assert!(s.batch_trials(e.id, 99).unwrap().is_empty());
    assert!(s.trials(e.id + f.id + 1000).unwrap().is_empty());
}

/// `find_evaluated` returns only a finished trial of the same experiment and canonical
/// form whose source is `Evaluated`: never a pending or a cached one.
pub fn find_evaluated_semantics(s: &mut dyn Store) {
    let a = create(s, "a");
    let b = create(s, "b");
    let ids = begin(
        s,
        a.id,
        0,
        &[nt("x1", "x"), nt("x2", "x"), nt("x3", "x"), nt("y1", "y")],
        b"a",
    );
    let bids = begin(s, b.id, 0, &[nt("z", "z")], b"a");
    assert!(
        s.find_evaluated(a.id, "x").unwrap().is_none(),
        "pending is not evaluated"
    );
    finish(s, ids[0], &done(Some(0.4), 0, TrialSource::Cached));
    assert!(
        s.find_evaluated(a.id, "x").unwrap().is_none(),
        "cached is not evaluated"
    );
    finish(s, ids[1], &done(Some(0.6), 1, TrialSource::Evaluated));
    let got = s
        .find_evaluated(a.id, "x")
        .unwrap()
        .expect("evaluated trial");
    assert_eq!(got, trial_by_id(s, a.id, ids[1]));
    finish(s, ids[2], &done(Some(0.6), 1, TrialSource::Evaluated));
    let got = s
        .find_evaluated(a.id, "x")
        .unwrap()
        .expect("evaluated trial");
    assert!(got.id == ids[1] || got.id == ids[2]);
    assert_eq!(got.source, Some(TrialSource::Evaluated));
    assert_eq!(got.canonical, "x");
    assert!(s.find_evaluated(a.id, "y").unwrap().is_none());
    finish(s, ids[3], &failed(1));
    let y = s
        .find_evaluated(a.id, "y")
        .unwrap()
        .expect("a failed evaluation counts");
    assert_eq!(y.id, ids[3]);
    assert_eq!(y.status, TrialStatus::Failed);
    assert!(
        s.find_evaluated(b.id, "x").unwrap().is_none(),
        "other experiment"
    );
    assert!(
        s.find_evaluated(a.id, "z").unwrap().is_none(),
        "other experiment"
    );
    finish(s, bids[0], &done(Some(0.9), 1, TrialSource::Evaluated));
    assert_eq!(s.find_evaluated(b.id, "z").unwrap().unwrap().id, bids[0]);
    assert!(
        s.find_evaluated(a.id, "z").unwrap().is_none(),
        "other experiment"
    );
    assert!(s.find_evaluated(a.id, "nope").unwrap().is_none());
    assert!(
        s.find_evaluated(a.id, "X").unwrap().is_none(),
        "canonical forms are compared exactly"
    );
}

/// Metrics, cost, reward, log_prob and the prediction come back bit for bit; texts byte
/// for byte.
pub fn values_round_trip_exactly(s: &mut dyn Store) {
    let e = create(s, "e");
    let tricky = [
        0.1 + 0.2,
        1.0 / 3.0,
        f64::MIN_POSITIVE,
        5e-324,
        -1.2345678901234567e-300,
        f64::MAX,
        f64::EPSILON,
        std::f64::consts::FRAC_1_SQRT_2,
        123456789.00000001,
        -2.5,
        -0.0,
        0.0,
        1e15,
    ];
    let proposals: Vec<NewTrial> = tricky
        .iter()
        .enumerate()
        .map(|(i, x)| NewTrial {
            arch: format!("arch {i} \u{2192} \"quoted\" \\ \n tab\t ünï"),
            canonical: format!("canon-{i}-\u{1F600}"),
            log_prob: if i == 0 { None } else { Some(*x) },
            prediction: (i % 5 != 1).then(|| Prediction {
                mean: -*x,
                std: tricky[(i + 5) % tricky.len()],
                trusted: i % 2 == 0,
            }),
        })
        .collect();
    let ids = begin(s, e.id, 0, &proposals, b"\x00\xff binary \x00");
    let mut want = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let x = tricky[i];
        let y = tricky[(i + 3) % tricky.len()];
        let mut extra = BTreeMap::new();
        extra.insert("ptq".to_string(), y);
        extra.insert("qat acc/%".to_string(), -x);
        extra.insert("zero".to_string(), -0.0);
        let r = TrialResult {
            status: if i % 4 == 3 {
                TrialStatus::Failed
            } else {
                TrialStatus::Done
            },
            source: if i % 3 == 2 {
                TrialSource::Cached
            } else {
                TrialSource::Evaluated
            },
            metrics: if i == 1 {
                None
            } else {
                Some(Metrics {
                    val_accuracy: x,
                    test_accuracy: Some(y),
                    latency_ms: if i % 2 == 0 { Some(x * 7.0) } else { None },
                    params: Some(1.5e6 + i as f64),
                    flops: Some(y / 3.0),
                    extra: if i == 2 { BTreeMap::new() } else { extra },
                })
            },
            reward: if i == 4 { None } else { Some(y) },
            cost: Cost {
                evaluations: i as u64,
                images: 50_000 * i as u64,
                epochs: x,
                cpu_seconds: y,
                wall_seconds: x / 7.0,
            },
            error: if i % 4 == 3 {
                Some(format!("error ‘{i}’ \"x\""))
            } else {
                None
            },
        };
        finish(s, *id, &r);
        want.push(r);
    }
    for (i, t) in s.batch_trials(e.id, 0).unwrap().iter().enumerate() {
        let (p, r) = (&proposals[i], &want[i]);
        assert_eq!(t.arch, p.arch);
        assert_eq!(t.canonical, p.canonical);
        assert_eq!(bits(t.log_prob), bits(p.log_prob), "log_prob of trial {i}");
        assert_eq!(
            prediction_bits(t.prediction),
            prediction_bits(p.prediction),
            "prediction of trial {i}"
        );
        assert_eq!(t.status, r.status);
        assert_eq!(t.source, Some(r.source));
        assert_eq!(bits(t.reward), bits(r.reward), "reward of trial {i}");
        assert_eq!(t.error, r.error);
        assert_cost_bits(&t.cost, &r.cost);
        match (&t.metrics, &r.metrics) {
            (Some(g), Some(w)) => assert_metrics_bits(g, w),
            (None, None) => {}
            (g, w) => panic!("metrics of trial {i}: got {g:?}, want {w:?}"),
        }
    }
    let cp = s.checkpoint(e.id).unwrap().unwrap();
    assert_eq!(cp.state, b"\x00\xff binary \x00".to_vec());
}

/// The critic's prediction recorded by `begin_batch` comes back bit for bit (mean, std
/// and the trusted flag), `None` as `None`, from every reader and whatever the trial's
/// result; a finished trial keeps the prediction it was proposed with.
pub fn predictions_round_trip_exactly(s: &mut dyn Store) {
    let e = create(s, "e");
    let values = [
        0.1 + 0.2,
        -0.0,
        0.0,
        5e-324,
        -1.2345678901234567e-300,
        f64::MAX,
        f64::MIN_POSITIVE,
        1.0 / 3.0,
        0.9999999999999999,
        -7.25,
    ];
    let mut proposals: Vec<NewTrial> = Vec::new();
    for (i, mean) in values.iter().enumerate() {
        let std = values[(i + 3) % values.len()].abs();
        proposals.push(ntp(
            &format!("p{i}"),
            &format!("c{i}"),
            *mean,
            std,
            i % 2 == 1,
        ));
        if i % 3 == 0 {
            proposals.push(nt(&format!("n{i}"), &format!("c{i}")));
        }
    }
    let ids = begin(s, e.id, 0, &proposals, b"ask");
    let check = |s: &dyn Store, when: &str| {
        let got = s.batch_trials(e.id, 0).unwrap();
        assert_eq!(got.len(), proposals.len());
        for (t, p) in got.iter().zip(&proposals) {
            assert_eq!(
                prediction_bits(t.prediction),
                prediction_bits(p.prediction),
                "prediction of `{}` ({when})",
                p.arch
            );
        }
        assert_eq!(s.trials(e.id).unwrap(), got, "trials() agrees ({when})");
    };
    check(s, "pending");
    for (i, (id, p)) in ids.iter().zip(&proposals).enumerate() {
        let r = match p.prediction {
            Some(pr) if pr.trusted && i % 3 != 0 => critic(p),
            _ if i % 4 == 2 => failed(1),
            _ => done(Some(0.25 * i as f64), 1, TrialSource::Evaluated),
        };
        finish(s, *id, &r);
    }
    end(s, e.id, 0, b"tell");
    check(s, "finished");
    for (i, p) in proposals.iter().enumerate() {
        if let Some(t) = s.find_evaluated(e.id, &p.canonical).unwrap() {
            let want = proposals
                .iter()
                .zip(&ids)
                .find(|(_, id)| **id == t.id)
                .map(|(p, _)| p.prediction)
                .unwrap_or_else(|| panic!("find_evaluated for proposal {i}: unknown trial"));
            assert_eq!(
                prediction_bits(t.prediction),
                prediction_bits(want),
                "find_evaluated returns the prediction"
            );
        }
    }
}

/// A trial the critic scored (source `Critic`: done, its reward the trusted prediction,
/// no metrics, free) is stored and read back as such; it is never returned by
/// `find_evaluated` (a prediction is no reason to skip an evaluation), never counts for
/// `best_reward`, costs nothing in `list_experiments`, and is immutable like any
/// finished trial. A result with source `Critic` that is failed, has no reward, has
/// metrics or costs an evaluation is refused and leaves the trial pending.
pub fn critic_trials_semantics(s: &mut dyn Store) {
    let e = create(s, "e");
    let only = create(s, "only-critic");
    let proposals = [
        ntp("x1", "x", 0.97, 0.01, true),
        ntp("x2", "x", 0.6, 0.2, false),
        ntp("y1", "y", 0.8, 0.02, true),
        ntp("z1", "z", -0.0, 0.0, true),
    ];
    let ids = begin(s, e.id, 0, &proposals, b"ask");

    // malformed critic results are refused and change nothing
    let good = critic(&proposals[0]);
    let bad: Vec<(&str, TrialResult)> = vec![
        (
            "failed",
            TrialResult {
                status: TrialStatus::Failed,
                reward: None,
                error: Some("x".into()),
                ..good.clone()
            },
        ),
        (
            "without a reward",
            TrialResult {
                reward: None,
                ..good.clone()
            },
        ),
        (
            "with metrics",
            TrialResult {
                metrics: Some(Metrics::default()),
                ..good.clone()
            },
        ),
        (
            "costing an evaluation",
            TrialResult {
                cost: Cost::query(),
                ..good.clone()
            },
        ),
    ];
    for (what, r) in &bad {
        match s.finish_trial(ids[0], r) {
            Ok(()) => panic!("a critic result {what} must be refused"),
            Err(StoreError::AlreadyFinished(_)) => {
                panic!("a critic result {what}: refused as AlreadyFinished")
            }
            Err(_) => {}
        }
        let t = trial_by_id(s, e.id, ids[0]);
        assert_eq!(
            t.status,
            TrialStatus::Pending,
            "after a critic result {what}"
        );
        assert_eq!((t.source, t.reward), (None, None));
    }

    finish(s, ids[0], &good);
    let t = trial_by_id(s, e.id, ids[0]);
    assert_eq!(t.status, TrialStatus::Done);
    assert_eq!(t.source, Some(TrialSource::Critic));
    assert_eq!(bits(t.reward), Some(0.97f64.to_bits()));
    assert_eq!(t.metrics, None);
    assert_eq!(t.cost, Cost::default());
    assert_eq!(t.error, None);
    assert!(t.finished_at.is_some());
    assert_eq!(
        prediction_bits(t.prediction),
        prediction_bits(proposals[0].prediction)
    );
    assert!(
        s.find_evaluated(e.id, "x").unwrap().is_none(),
        "a critic-scored trial is not evaluated"
    );
    match s.finish_trial(ids[0], &done(Some(0.1), 1, TrialSource::Evaluated)) {
        Err(StoreError::AlreadyFinished(id)) => assert_eq!(id, ids[0]),
        r => panic!("finishing a critic-scored trial again: expected AlreadyFinished, got {r:?}"),
    }
    assert_eq!(trial_by_id(s, e.id, ids[0]), t, "it stays as it was");

    let x = summary(s, "e");
    assert_eq!((x.trials, x.finished_trials, x.cost), (4, 1, 0));
    assert_eq!(x.best_reward, None, "a prediction is never found");

    // the same architecture evaluated later is what find_evaluated returns
    finish(s, ids[1], &done(Some(0.5), 1, TrialSource::Evaluated));
    let got = s
        .find_evaluated(e.id, "x")
        .unwrap()
        .expect("evaluated trial");
    assert_eq!(got.id, ids[1]);
    assert_eq!(got.source, Some(TrialSource::Evaluated));
    let x = summary(s, "e");
    assert_eq!((x.trials, x.finished_trials, x.cost), (4, 2, 1));
    assert_eq!(
        x.best_reward,
        Some(0.5),
        "the critic's 0.97 is not the best reward"
    );

    finish(s, ids[2], &critic(&proposals[2]));
    finish(s, ids[3], &critic(&proposals[3]));
    assert_eq!(
        bits(trial_by_id(s, e.id, ids[3]).reward),
        Some((-0.0f64).to_bits()),
        "a critic reward is exact"
    );
    assert!(s.find_evaluated(e.id, "y").unwrap().is_none());
    assert!(s.find_evaluated(e.id, "z").unwrap().is_none());
    end(s, e.id, 0, b"tell");
    let x = summary(s, "e");
    assert_eq!((x.trials, x.finished_trials, x.cost), (4, 4, 1));
    assert_eq!(x.best_reward, Some(0.5));
    let sources: Vec<Option<TrialSource>> = s
        .batch_trials(e.id, 0)
        .unwrap()
        .iter()
        .map(|t| t.source)
        .collect();
    use TrialSource::{Critic, Evaluated};
    assert_eq!(
        sources,
        [Some(Critic), Some(Evaluated), Some(Critic), Some(Critic)]
    );

    // an experiment with only critic-scored trials has found nothing
    let p = [ntp("w", "w", 0.99, 0.0, true)];
    let wid = begin(s, only.id, 0, &p, b"ask");
    finish(s, wid[0], &critic(&p[0]));
    let x = summary(s, "only-critic");
    assert_eq!((x.trials, x.finished_trials, x.cost), (1, 1, 0));
    assert_eq!(x.best_reward, None);
}

/// `list_experiments` counts trials, finished trials, the cost (sum of `evaluations`
/// of finished trials, cached ones included at their zero cost) and the best reward.
pub fn list_experiments_counts(s: &mut dyn Store) {
    let a = create(s, "a");
    create(s, "empty");
    let c = create(s, "c");
    let ids = begin(s, a.id, 0, &new_trials("a", 4), b"x");
    finish(s, ids[0], &done(Some(0.5), 1, TrialSource::Evaluated));
    finish(s, ids[1], &done(Some(0.5), 0, TrialSource::Cached));
    finish(s, ids[2], &failed(2));
    let x = summary(s, "a");
    assert_eq!(x.experiment, a);
    assert_eq!((x.trials, x.finished_trials, x.cost), (4, 3, 3));
    assert_eq!(x.best_reward, Some(0.5));
    finish(s, ids[3], &done(Some(0.9), 3, TrialSource::Evaluated));
    end(s, a.id, 0, b"y");
    let ids = begin(s, a.id, 1, &new_trials("a1", 2), b"x");
    finish(s, ids[0], &done(Some(0.2), 2, TrialSource::Evaluated));
    let x = summary(s, "a");
    assert_eq!((x.trials, x.finished_trials, x.cost), (6, 5, 8));
    assert_eq!(x.best_reward, Some(0.9));

    let x = summary(s, "empty");
    assert_eq!((x.trials, x.finished_trials, x.cost), (0, 0, 0));
    assert_eq!(x.best_reward, None);

    let ids = begin(s, c.id, 0, &new_trials("c", 3), b"x");
    finish(s, ids[0], &failed(1));
    let x = summary(s, "c");
    assert_eq!((x.trials, x.finished_trials, x.cost), (3, 1, 1));
    assert_eq!(x.best_reward, None, "no reward among finished trials");
    finish(s, ids[1], &done(Some(-0.3), 1, TrialSource::Evaluated));
    finish(s, ids[2], &done(Some(-0.1), 1, TrialSource::Evaluated));
    let x = summary(s, "c");
    assert_eq!((x.trials, x.finished_trials, x.cost), (3, 3, 3));
    assert_eq!(x.best_reward, Some(-0.1));
    let names: Vec<String> = s
        .list_experiments()
        .unwrap()
        .into_iter()
        .map(|x| x.experiment.spec.name)
        .collect();
    assert_eq!(names, ["a", "empty", "c"]);
}

/// `set_experiment_status` moves an experiment between `running` and `finished`; an
/// unknown experiment is an error.
pub fn set_experiment_status_works(s: &mut dyn Store) {
    let a = create(s, "a");
    let b = create(s, "b");
    s.set_experiment_status(a.id, "finished").unwrap();
    assert_eq!(s.experiment("a").unwrap().unwrap().status, "finished");
    assert_eq!(s.experiment("b").unwrap().unwrap().status, "running");
    assert_eq!(summary(s, "a").experiment.status, "finished");
    s.set_experiment_status(a.id, "running").unwrap();
    let got = s.experiment("a").unwrap().unwrap();
    assert_eq!(got, a, "only the status changed, and back");
    assert!(s
        .set_experiment_status(a.id.max(b.id) + 1000, "finished")
        .is_err());
    assert_eq!(s.experiment("b").unwrap().unwrap(), b);
}

/// `set_experiment_budget` changes one experiment's budget (u64 round trip included) and
/// nothing else; an unknown experiment is an error.
pub fn set_experiment_budget_works(s: &mut dyn Store) {
    let a = create(s, "a");
    let b = create(s, "b");
    s.set_experiment_budget(a.id, u64::MAX).unwrap();
    let got = s.experiment("a").unwrap().unwrap();
    assert_eq!(got.spec.budget, u64::MAX);
    assert_eq!(summary(s, "a").experiment.spec.budget, u64::MAX);
    s.set_experiment_budget(a.id, a.spec.budget).unwrap();
    assert_eq!(
        s.experiment("a").unwrap().unwrap(),
        a,
        "only the budget changed, and back"
    );
    assert!(s.set_experiment_budget(a.id.max(b.id) + 1000, 7).is_err());
    assert_eq!(s.experiment("b").unwrap().unwrap(), b);
}

// ---------------------------------------------------------------------------------
// trials as a queue

fn holder(pid: u32) -> Holder {
    Holder {
        host: "test-host".into(),
        pid,
        role: "worker".into(),
    }
}

const NOBODY_DEAD: &dyn Fn(&Holder) -> bool = &|_| false;

/// Only queued trials are claimed, each once, oldest first; a claimed trial is finished
/// under its lease exactly once.
pub fn queue_claim_finish(s: &mut dyn Store) {
    let e = create(s, "q");
    let ids = begin(
        s,
        e.id,
        0,
        &[nt("a", "a"), nt("b", "b"), nt("c", "c")],
        b"ask",
    );
    assert!(
        s.claim_trial(e.id, &holder(1), 60.0).unwrap().is_none(),
        "nothing queued yet"
    );
    s.queue_trials(&[ids[2], ids[0]]).unwrap();
    s.queue_trials(&[ids[0]]).unwrap(); // idempotent
    let (t0, l0) = s
        .claim_trial(e.id, &holder(1), 60.0)
        .unwrap()
        .expect("a claim");
    assert_eq!((t0.id, l0.trial, l0.attempt), (ids[0], ids[0], 1));
    assert!(t0.queued && t0.attempts == 1);
    let (t2, l2) = s
        .claim_trial(e.id, &holder(2), 60.0)
        .unwrap()
        .expect("a claim");
    assert_eq!(t2.id, ids[2]);
    assert!(
        s.claim_trial(e.id, &holder(3), 60.0).unwrap().is_none(),
        "all leased"
    );
    s.heartbeat(&l2, 60.0).unwrap();
    s.finish_leased(&l0, &done(Some(0.5), 1, TrialSource::Evaluated))
        .unwrap();
    assert!(matches!(
        s.finish_leased(&l0, &done(Some(0.6), 1, TrialSource::Evaluated)),
        Err(StoreError::AlreadyFinished(_))
    ));
    assert!(matches!(
        s.heartbeat(&l0, 60.0),
        Err(StoreError::LeaseLost(_))
    ));
    assert_eq!(trial_by_id(s, e.id, ids[0]).reward, Some(0.5));
    // the unqueued trial is finished by the driver directly
    finish(s, ids[1], &done(Some(0.4), 1, TrialSource::Evaluated));
    s.finish_leased(&l2, &failed(1)).unwrap();
    end(s, e.id, 0, b"tell");
}

/// A lease past its deadline (or held by a dead process) is taken back; the trial is
/// claimed again under a new token, and the first holder's late result is refused.
pub fn expired_lease_is_requeued_and_late_result_refused(s: &mut dyn Store) {
    let e = create(s, "exp");
    let ids = begin(s, e.id, 0, &[nt("a", "a"), nt("b", "b")], b"ask");
    s.queue_trials(&ids).unwrap();
    let (_, old) = s
        .claim_trial(e.id, &holder(1), -1.0)
        .unwrap()
        .expect("claim");
    let (_, live) = s
        .claim_trial(e.id, &holder(2), 3600.0)
        .unwrap()
        .expect("claim");
    let r = s.reap_expired(e.id, 3, NOBODY_DEAD).unwrap();
    assert_eq!((r.requeued, r.failed), (1, 0), "only the expired lease");
    let (t, new) = s
        .claim_trial(e.id, &holder(3), 60.0)
        .unwrap()
        .expect("re-claim");
    assert_eq!((t.id, new.attempt), (old.trial, 2));
    assert_ne!(new.token, old.token);
    assert!(matches!(
        s.finish_leased(&old, &done(Some(0.1), 1, TrialSource::Evaluated)),
        Err(StoreError::LeaseLost(_))
    ));
    s.finish_leased(&new, &done(Some(0.2), 1, TrialSource::Evaluated))
        .unwrap();
    assert_eq!(trial_by_id(s, e.id, old.trial).reward, Some(0.2));
    // a live lease whose holder is known dead is taken back at once
    let dead = |h: &Holder| h.pid == 2;
    assert_eq!(s.reap_expired(e.id, 3, &dead).unwrap().requeued, 1);
    assert!(matches!(
        s.heartbeat(&live, 60.0),
        Err(StoreError::LeaseLost(_))
    ));
}

/// After `max_attempts` expired leases the trial is failed with the reason.
pub fn lease_attempts_are_bounded(s: &mut dyn Store) {
    let e = create(s, "bounded");
    let ids = begin(s, e.id, 0, &[nt("a", "a")], b"ask");
    s.queue_trials(&ids).unwrap();
    for _ in 0..2 {
        s.claim_trial(e.id, &holder(1), -1.0)
            .unwrap()
            .expect("claim");
        s.reap_expired(e.id, 2, NOBODY_DEAD).unwrap();
    }
    let t = trial_by_id(s, e.id, ids[0]);
    assert_eq!(t.status, TrialStatus::Failed);
    assert!(
        t.error.as_deref().is_some_and(|m| m.contains("lease")),
        "{:?}",
        t.error
    );
    assert!(s.claim_trial(e.id, &holder(1), 60.0).unwrap().is_none());
    end(s, e.id, 0, b"tell");
}

/// One live driver lease per experiment; a second driver learns who holds it; an expired
/// or dead holder's lease is taken over, after which the old one cannot renew.
pub fn one_driver_per_experiment(s: &mut dyn Store) {
    let e = create(s, "drv");
    let a = s
        .acquire_driver(e.id, &holder(10), 60.0, NOBODY_DEAD)
        .unwrap()
        .expect("free");
    let info = s
        .acquire_driver(e.id, &holder(11), 60.0, NOBODY_DEAD)
        .unwrap()
        .expect_err("held");
    assert_eq!(info.holder, holder(10));
    assert!(info.deadline >= info.since);
    s.renew_driver(&a, 60.0).unwrap();
    let dead = |h: &Holder| h.pid == 10;
    let b = s
        .acquire_driver(e.id, &holder(11), 60.0, &dead)
        .unwrap()
        .expect("taken over");
    assert!(s.renew_driver(&a, 60.0).is_err());
    s.release_driver(&a).unwrap(); // a no-op: not a's any more
    s.release_driver(&b).unwrap();
    let c = s
        .acquire_driver(e.id, &holder(12), 60.0, NOBODY_DEAD)
        .unwrap()
        .expect("released");
    assert_ne!(c.token, b.token);
    assert!(s
        .acquire_driver(9999, &holder(1), 60.0, NOBODY_DEAD)
        .is_err());
}
