//! A search through the library alone, as another Rust program would run one: started
//! from options, run, prepared again from the store (the same search), extended with a
//! resume, and its evaluator built as a worker builds it.

use std::path::Path;

use fnas_core::search::BudgetUnit;
use fnas_core::{Evaluator, Store};
use fnas_run::{
    prepare, prepare_evaluator, resume, NewSearch, PrepareOptions, SearchOptions, StrategyKind,
};

fn data_dir() -> std::path::PathBuf {
    let d = fnas_bench::resolve_data_dir(None);
    assert!(
        d.join("nas-bench-graph/light/cora.bench").exists(),
        "benchmark data missing in {}: run scripts/setup.sh",
        d.display()
    );
    d
}

fn new_search(strategy: StrategyKind, budget: u64) -> NewSearch {
    let mut options = SearchOptions::default();
    options.task.benchmark = Some("nas-bench-graph".into());
    options.task.dataset = Some("cora".into());
    options.task.data_dir = Some(data_dir());
    options.budget.evaluations = Some(budget);
    NewSearch {
        strategy,
        seed: 3,
        name: None,
        options,
    }
}

/// Runs `new` in a fresh store at `path`; returns the architectures it evaluated.
fn run_new(new: &NewSearch, path: &Path) -> Vec<String> {
    let mut started = new.start(path).unwrap();
    let exp = started.experiment.clone();
    let summary = started
        .search
        .run(started.store.as_mut(), &exp, &mut |_| {}, &mut |_, _| {})
        .unwrap();
    assert_eq!(summary.spent, exp.spec.budget);
    archs(started.store.as_ref(), exp.id)
}

fn archs(store: &dyn Store, experiment: i64) -> Vec<String> {
    store
        .trials(experiment)
        .unwrap()
        .into_iter()
        .map(|t| t.arch)
        .collect()
}

#[test]
fn a_search_started_run_prepared_again_and_extended() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole.db");
    let reference = run_new(&new_search(StrategyKind::Evolution, 32), &whole);

    let path = tmp.path().join("s.db");
    let new = new_search(StrategyKind::Evolution, 16);
    run_new(&new, &path);
    let mut store = fnas_run::stores::open(&path).unwrap();
    let name = "evolution-nas-bench-graph-cora-s3";
    let mut exp = store.experiment(name).unwrap().expect("default name");
    assert_eq!(exp.spec.strategy, "evolution");
    assert_eq!(exp.status, "finished");

    // prepared again from the store alone: the settings the new search recorded
    let again = prepare(store.as_ref(), &exp, PrepareOptions::new(&path, None)).unwrap();
    assert_eq!(again.settings, new.settings().unwrap());
    assert_eq!(again.strategy_kind, StrategyKind::Evolution);
    assert_eq!(
        (
            again.config.budget,
            again.config.batch_size,
            again.config.unit
        ),
        (16, 8, BudgetUnit::Evaluations)
    );

    // extended to the reference's budget, it continues as that search did
    let mut options = new.options.clone();
    options.budget.evaluations = Some(32);
    let mut resumed = resume(
        store.as_mut(),
        &mut exp,
        &options,
        PrepareOptions::new(&path, None),
    )
    .unwrap();
    assert_eq!(resumed.budget_changed, Some((16, 32)));
    assert!(resumed.ignored.is_empty(), "{:?}", resumed.ignored);
    resumed
        .search
        .run(store.as_mut(), &exp, &mut |_| {}, &mut |_, _| {})
        .unwrap();
    assert_eq!(archs(store.as_ref(), exp.id), reference);

    // what a worker builds
    let worker = prepare_evaluator(&exp, PrepareOptions::new(&path, None)).unwrap();
    assert_eq!(worker.evaluator.task(), "nas-bench-graph/cora");
    assert_eq!(worker.settings, again.settings);
}

/// Options that do not fit the strategy or the task are refused before anything is
/// written, with the command line's words.
#[test]
fn bad_options_are_refused_before_the_store_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.db");
    let mut new = new_search(StrategyKind::Random, 16);
    new.options.critic.screen = 4;
    let e = new.start(&path).err().unwrap().to_string();
    assert!(
        e.starts_with("--screen needs a strategy with a critic"),
        "{e}"
    );
    let mut new = new_search(StrategyKind::Ppo, 16);
    new.options.reward.seeds = 2;
    let e = new.start(&path).err().unwrap().to_string();
    assert!(e.contains("are for real-training tasks"), "{e}");
    let mut new = new_search(StrategyKind::Ppo, 16);
    new.options.task.data_dir = Some(tmp.path().join("nowhere"));
    let e = new.start(&path).err().unwrap();
    assert!(matches!(e, fnas_run::RunError::Context { .. }), "{e:?}");
    assert!(
        !path.exists(),
        "a search that cannot start created its store"
    );
}
