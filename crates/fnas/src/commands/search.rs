//! `fnas search`: run or resume one search, with progress, then print the best.

use anyhow::{bail, Context, Result};
use fnas_core::search::{run_search, BudgetUnit, SearchConfig, SearchError};
use fnas_core::store::{ExperimentSpec, Holder, TrialSource};
use fnas_core::{Evaluator, Store, StoreError};

use crate::artifacts::Artifacts;
use crate::cli::{Constraint, ObjectiveArg, PoolArg, SearchArgs};
use crate::progress::{budget_bar, LogLines};
use crate::setup::{
    check_strategy, fnas_preset, load_benchmark, make_strategy, parse_task, reward_config,
    select_preset, transfer_from_store, SearchSettings,
};
use crate::training::{self, PoolConfig, TrainingConfig};
use fnas_bench::TabularBenchmark;
use fnas_child::TrainingEvaluator;
use std::path::{Path, PathBuf};

/// The evaluator of a search: a tabular benchmark or real child training, optionally
/// slowed down (`--simulate-eval-seconds`).
pub(crate) enum Target {
    Table(Box<dyn TabularBenchmark>),
    Train(Box<TrainingEvaluator>),
}

impl Target {
    pub(crate) fn evaluator(&self) -> &dyn Evaluator {
        match self {
            Target::Table(t) => t.as_ref(),
            Target::Train(t) => t.as_ref(),
        }
    }
}

/// An evaluator that sleeps a fixed time per evaluation: the stand-in for a slow
/// evaluation in scaling benchmarks and multi-worker tests (`--simulate-eval-seconds`).
pub(crate) struct Slowed<'a> {
    pub inner: &'a dyn Evaluator,
    pub seconds: f64,
}

impl Evaluator for Slowed<'_> {
    fn space(&self) -> &fnas_core::SearchSpace {
        self.inner.space()
    }
    fn task(&self) -> String {
        self.inner.task()
    }
    fn evaluate(
        &self,
        arch: &fnas_core::Architecture,
    ) -> Result<fnas_core::Evaluation, fnas_core::EvalError> {
        std::thread::sleep(std::time::Duration::from_secs_f64(self.seconds.max(0.0)));
        self.inner.evaluate(arch)
    }
    fn parallelism(&self) -> usize {
        self.inner.parallelism()
    }
}

/// Builds the evaluator the settings describe: a tabular benchmark, or real training
/// with its weights in the experiment's artifacts folder (the pool is attached by
/// [`with_pool`] once the settings are final).
pub(crate) fn target(
    settings: &SearchSettings,
    store: &Path,
    data_dir: Option<&Path>,
    experiment: &str,
    seed: u64,
) -> Result<Target> {
    if let Some(tc) = &settings.training {
        let art = Artifacts::new(store, settings.artifacts.as_deref())?;
        art.check()?;
        let ev = training::evaluator(tc, seed, Some(art.weights_dir(experiment)), false)?;
        return Ok(Target::Train(Box::new(ev)));
    }
    let (bench, dataset) = parse_task(Some(&settings.benchmark), Some(&settings.dataset), None)?;
    Ok(Target::Table(load_benchmark(bench, data_dir, &dataset)?))
}

/// The training evaluator with the knowledge pool the settings ask for (if any).
pub(crate) fn with_pool(
    ev: TrainingEvaluator,
    settings: &SearchSettings,
    store: &Path,
    experiment: &str,
) -> Result<TrainingEvaluator> {
    let Some(pc) = settings.training.as_ref().and_then(|t| t.pool.as_ref()) else {
        return Ok(ev);
    };
    let sources = settings
        .transfer
        .iter()
        .map(|t| t.experiment.clone())
        .collect();
    let epochs = ev.data().task.epochs;
    let backend = Artifacts::new(store, settings.artifacts.as_deref())?
        .pool(pc.limit_mb.saturating_mul(1 << 20))?;
    Ok(ev.with_pool(training::pool_settings(
        pc, backend, experiment, epochs, sources,
    )))
}

/// Seconds a driver lease lasts without renewal (the driver renews it at every step;
/// a driver on this machine that died is taken over at once).
pub(crate) const DRIVER_LEASE_SECONDS: f64 = 600.0;

/// Takes the driver lease of an experiment, or explains who holds it (`wait`: polls
/// until it is free).
fn drive(
    store: &mut dyn Store,
    experiment: i64,
    name: &str,
    wait: bool,
    quiet: bool,
) -> Result<fnas_core::store::DriverLease> {
    let me = Holder::this_process("driver");
    let dead = |h: &Holder| h.is_dead_here();
    let mut told = false;
    loop {
        match store.acquire_driver(experiment, &me, DRIVER_LEASE_SECONDS, &dead)? {
            Ok(lease) => return Ok(lease),
            Err(info) if wait => {
                if !told && !quiet {
                    eprintln!(
                        "experiment `{name}` is driven by {} since {}; waiting (--wait)",
                        info.holder,
                        show_time(info.since)
                    );
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(info) => bail!(
                "experiment `{name}` is driven by {} since {} (its lease runs to {}); add workers with `fnas worker --experiment {name}`, wait for it with --wait, or stop that process",
                info.holder,
                show_time(info.since),
                show_time(info.deadline)
            ),
        }
    }
}

/// Seconds since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn show_time(t: f64) -> String {
    let secs = t.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Default budget of a real-training search, in training images: the main job's ~35-40
/// trained `fashion-mnist` children (the critic trusts more), about 14 minutes on 2 cores
/// (827 s measured, README), the "about 15 minutes" the main job is meant to take.
pub const DEFAULT_TRAIN_IMAGES: u64 = 300_000;

/// Points the critic needs before it acts on real training (a benchmark search keeps
/// [`fnas_learn::fnas::FnasConfig`]'s 32): a trained child costs seconds, not a lookup,
/// and the main job trains about 24, so with 32 its critic would never act. Measured on
/// `fashion-mnist-small` (`docs/results/search-comparison-critic16.txt`, 3 seeds): with
/// 16 full FNAS reached vanilla PPO's final best sooner (ratio median 1.32, 0.96 with
/// 32) and ended higher than with 32 on 2 of 3 seeds.
pub const TRAIN_CRITIC_MIN_POINTS: usize = 16;

/// The budget and its unit: `--budget` children/queries, `--budget-images` images, or
/// the default of the kind of search.
fn budget_of(a: &SearchArgs, training: bool) -> (u64, BudgetUnit) {
    match (a.budget, a.budget_images, training) {
        (_, Some(i), _) => (i, BudgetUnit::Images),
        (Some(b), None, _) => (b, BudgetUnit::Evaluations),
        (None, None, true) => (DEFAULT_TRAIN_IMAGES, BudgetUnit::Images),
        (None, None, false) => (500, BudgetUnit::Evaluations),
    }
}

/// The settings of a new search from the command line.
fn new_settings(a: &SearchArgs) -> Result<SearchSettings> {
    let reward = reward_config(
        a.target,
        a.constraint == Constraint::Hard,
        a.objective == ObjectiveArg::Params,
    )?;
    let mut settings = match a.task.as_deref().filter(|t| training::is_training_task(t)) {
        Some(t) => {
            let task = training::resolve_task(t, a.data_dir.as_deref(), a.epochs)?;
            let pool_on = match a.pool {
                PoolArg::Auto => a.strategy == "fnas",
                PoolArg::On => true,
                PoolArg::Off => false,
            };
            let pool = pool_on.then(|| PoolConfig {
                warm_epochs: a
                    .warm_epochs
                    .unwrap_or_else(|| fnas_child::evaluator::default_warm_epochs(task.epochs)),
                budget_class: None,
                limit_mb: a.pool_limit_mb,
                min_networks: a.pool_min_networks,
                per_block: a.pool_match == crate::cli::PoolMatch::Block,
                warm_lr_scale: a.warm_lr_scale,
                max_distance: Some(a.warm_max_distance),
                other_tasks: a.warm_other_tasks,
            });
            let tc = TrainingConfig {
                task,
                space: a.space.clone(),
                workers: a.workers.unwrap_or_else(training::default_workers).max(1),
                latency_runs: 20,
                device: a.device.clone(),
                pool,
                budget_unit: budget_of(a, true).1,
                reward_seeds: a.reward_seeds as usize,
            };
            SearchSettings::training(tc, a.batch_size, reward)
        }
        None => {
            if a.pool == PoolArg::On
                || a.budget_images.is_some()
                || a.warm_epochs.is_some()
                || a.reward_seeds != 1
            {
                bail!("--pool, --warm-epochs, --reward-seeds and --budget-images are for real-training tasks (e.g. --task fashion-mnist)");
            }
            let (bench, dataset) = parse_task(
                a.benchmark.as_deref(),
                a.dataset.as_deref(),
                a.task.as_deref(),
            )?;
            SearchSettings::new(bench, &dataset, a.batch_size, reward)
        }
    };
    if let Some(dir) = &a.artifacts {
        if settings.training.is_none() {
            bail!("--artifacts is for real-training tasks (e.g. --task fashion-mnist): a benchmark search writes no files");
        }
        settings.artifacts = Some(Artifacts::choose(dir)?);
    }
    if let Some(sec) = a.simulate_eval_seconds {
        if !(sec.is_finite() && sec >= 0.0) {
            bail!("--simulate-eval-seconds must be a number of seconds >= 0, not {sec}");
        }
        settings.simulate_eval_seconds = Some(sec);
    }
    settings.fnas = fnas_preset(&a.strategy, &settings.ppo);
    settings.select = select_preset(&a.strategy, &settings.ppo);
    if a.select.any() {
        let Some(c) = settings.select.as_mut() else {
            bail!(
                "--acquisition, --encoding and --candidates need a fnas-select strategy, not `{}`",
                a.strategy
            );
        };
        a.select.apply(c);
    }
    let explicit = a
        .critic_min_points
        .map(usize::try_from)
        .transpose()
        .context("--critic-min-points is too large")?;
    let training_default = settings
        .training
        .is_some()
        .then_some(TRAIN_CRITIC_MIN_POINTS);
    if let Some(n) = explicit.or(training_default) {
        match settings.fnas.as_mut().filter(|f| f.critic.is_some()) {
            Some(f) => {
                f.min_points = n;
                f.min_own_points = f.min_own_points.min(n);
            }
            None if explicit.is_some() => bail!(
                "--critic-min-points needs a strategy with a critic (fnas, fnas-value, fnas-gate), not `{}`",
                a.strategy
            ),
            None => {}
        }
    }
    // the gate flags: each needs a strategy with the critic's gate
    let gate_flags = [
        (a.trust_contenders, "--trust-contenders"),
        (a.gate_after_calibration, "--gate-after-calibration"),
        (a.gate_tau.is_some(), "--gate-tau"),
    ];
    if let Some((_, flag)) = gate_flags.iter().find(|(set, _)| *set) {
        let Some(f) = settings.fnas.as_mut().filter(|f| f.gate) else {
            bail!(
                "{flag} needs a strategy with the critic's gate (fnas, fnas-gate), not `{}`",
                a.strategy
            );
        };
        f.trust_contenders = a.trust_contenders;
        f.gate_after_calibration = a.gate_after_calibration;
        if let Some(t) = a.gate_tau {
            f.tau = t;
        }
    }
    if a.screen > 1 {
        match settings.fnas.as_mut().filter(|f| f.critic.is_some()) {
            // the range 1..=64 is enforced by clap
            Some(f) => f.screen = a.screen as usize,
            None => bail!(
                "--screen needs a strategy with a critic (fnas, fnas-value, fnas-gate), not `{}`",
                a.strategy
            ),
        }
    }
    Ok(settings)
}

/// The FNAS and reward flags of `a` that differ from a resumed experiment's stored settings, as
/// "--flag X is ignored: the experiment has Y": the stored settings win, and a user who
/// passed a different value should know that it did not apply.
fn ignored_resume_flags(a: &SearchArgs, settings: &SearchSettings) -> Vec<String> {
    let f = settings.fnas.as_ref();
    let mut out = Vec::new();
    let screen = f.map_or(1, |f| f.screen.max(1)) as u64;
    if a.screen != 1 && a.screen != screen {
        out.push(format!(
            "--screen {} is ignored: the experiment has --screen {screen}",
            a.screen
        ));
    }
    if a.trust_contenders && !f.is_some_and(|f| f.trust_contenders) {
        out.push(
            "--trust-contenders is ignored: the experiment's gate does not trust contenders".into(),
        );
    }
    if a.gate_after_calibration && !f.is_some_and(|f| f.gate_after_calibration) {
        out.push(
            "--gate-after-calibration is ignored: the experiment's gate trusts before calibration"
                .into(),
        );
    }
    if let Some(t) = a.gate_tau {
        let stored = f.map(|f| f.tau);
        if stored != Some(t) {
            out.push(match stored {
                Some(s) => format!("--gate-tau {t} is ignored: the experiment has --gate-tau {s}"),
                None => format!("--gate-tau {t} is ignored: the experiment has no gate"),
            });
        }
    }
    if a.select.any() {
        match settings.select.as_ref() {
            Some(c) => {
                let mut asked = c.clone();
                a.select.apply(&mut asked);
                if &asked != c {
                    out.push(format!(
                        "--acquisition/--encoding/--candidates are ignored: the experiment has --acquisition {} --encoding {} --candidates {}",
                        c.acquisition.name(),
                        c.encoding.name(),
                        c.candidates
                    ));
                }
            }
            None => out.push(
                "--acquisition/--encoding/--candidates are ignored: the experiment is not a fnas-select search".into(),
            ),
        }
    }
    let seeds = settings
        .training
        .as_ref()
        .map_or(1, |t| t.reward_seeds.max(1)) as u64;
    if a.reward_seeds != 1 && a.reward_seeds != seeds {
        out.push(format!(
            "--reward-seeds {} is ignored: the experiment has --reward-seeds {seeds}",
            a.reward_seeds
        ));
    }
    if a.warm_other_tasks
        && !settings
            .training
            .as_ref()
            .and_then(|t| t.pool.as_ref())
            .is_some_and(|p| p.other_tasks)
    {
        out.push("--warm-other-tasks is ignored: the experiment's warm starts use this task's pool entries only".into());
    }
    if let Some(dir) = &a.artifacts {
        let asked = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        if settings.artifacts.as_ref() != Some(&asked) {
            out.push(format!(
                "--artifacts {} is ignored: the experiment keeps its files in {}",
                dir.display(),
                settings.artifacts.as_ref().map_or_else(
                    || "the folders beside the store".to_string(),
                    |p| p.display().to_string()
                )
            ));
        }
    }
    if let Some(n) = a.critic_min_points {
        match f.filter(|f| f.critic.is_some()) {
            Some(f) if f.min_points as u64 == n => {}
            Some(f) => out.push(format!(
                "--critic-min-points {n} is ignored: the experiment's critic acts from {} points",
                f.min_points
            )),
            None => out.push(format!(
                "--critic-min-points {n} is ignored: the experiment has no critic"
            )),
        }
    }
    out
}

pub fn run(a: SearchArgs) -> Result<()> {
    if a.budget == Some(0) || a.batch_size == 0 || a.budget_images == Some(0) {
        bail!("--budget, --budget-images and --batch-size must be at least 1");
    }
    let resumable = if a.resume { find_resumable(&a)? } else { None };
    let driver;
    let (mut store, exp, settings, bench) = if let Some((mut store, mut exp)) = resumable {
        let name = exp.spec.name.clone();
        driver = Some(drive(store.as_mut(), exp.id, &name, a.wait, a.json)?);
        let settings: SearchSettings = serde_json::from_value(exp.spec.config.clone())
            .with_context(|| format!("experiment `{name}` has settings this build cannot read"))?;
        let new_budget = resumed_budget(&a, &settings, &name)?;
        let bench = target(
            &settings,
            &a.store.store,
            a.data_dir.as_deref(),
            &name,
            exp.spec.seed,
        )?;
        if !a.json {
            eprintln!("resuming experiment `{name}` (settings from the store)");
            for w in ignored_resume_flags(&a, &settings) {
                eprintln!("warning: {w} (a resumed search keeps the settings stored with `{name}`; start a new experiment with --name to change them)");
            }
        }
        if let Some(budget) = new_budget {
            if budget != exp.spec.budget {
                store.set_experiment_budget(exp.id, budget)?;
                store.set_experiment_status(exp.id, "running")?;
                if !a.json {
                    eprintln!(
                        "budget of `{name}` changed from {} to {budget}",
                        exp.spec.budget
                    );
                }
                exp.spec.budget = budget;
            }
        }
        (store, exp, settings, bench)
    } else {
        check_strategy(&a.strategy)?;
        let mut settings = new_settings(&a)?;
        let name = a.name.clone().unwrap_or_else(|| {
            default_name(&a.strategy, &settings.benchmark, &settings.dataset, a.seed)
        });
        // data first: missing data must not leave an empty experiment behind
        let bench = target(
            &settings,
            &a.store.store,
            a.data_dir.as_deref(),
            &name,
            a.seed,
        )?;
        // fairness: the one budget class of pool entries this search initialises from
        if let (Target::Train(ev), Some(tc)) = (&bench, settings.training.as_mut()) {
            if let Some(p) = tc.pool.as_mut() {
                p.budget_class = Some(ev.pool_class());
            }
        }
        let table = bench.evaluator();
        let mut store = crate::stores::open(&a.store.store)?;
        if let Some(from) = &a.transfer_from {
            let pool_on = settings.training.as_ref().is_some_and(|t| t.pool.is_some());
            let has_critic = settings.fnas.as_ref().is_some_and(|f| f.critic.is_some())
                || a.strategy == "evolution-gate";
            if !has_critic && !pool_on {
                bail!(
                    "--transfer-from needs a strategy with a critic (fnas, fnas-value, fnas-gate, evolution-gate) or the knowledge pool (--pool on)"
                );
            }
            let names: Vec<String> = from.split(',').map(|s| s.trim().to_string()).collect();
            let names = (from != "all").then_some(names);
            let (_, sources) =
                transfer_from_store(store.as_ref(), table.space(), names.as_deref(), &name)?;
            if sources.is_empty() {
                bail!("--transfer-from {from}: no earlier experiment of space {} with evaluated trials in the store", table.space().name());
            }
            settings.transfer = sources;
        }
        let spec = ExperimentSpec {
            name,
            space: table.space().name().to_string(),
            task: table.task(),
            strategy: a.strategy.clone(),
            seed: a.seed,
            budget: budget_of(&a, settings.training.is_some()).0,
            config: serde_json::to_value(&settings)?,
        };
        let exp = store.create_experiment(&spec)?;
        driver = Some(drive(
            store.as_mut(),
            exp.id,
            &exp.spec.name,
            a.wait,
            a.json,
        )?);
        (store, exp, settings, bench)
    };
    let evaluator: &dyn Evaluator = bench.evaluator();
    // the sources recorded with the experiment, so a resumed search transfers the same
    let transfer = if settings.transfer.is_empty() {
        Vec::new()
    } else {
        let names: Vec<String> = settings
            .transfer
            .iter()
            .map(|t| t.experiment.clone())
            .collect();
        transfer_from_store(
            store.as_ref(),
            evaluator.space(),
            Some(&names),
            &exp.spec.name,
        )?
        .0
    };
    if !settings.transfer.is_empty() && !a.json {
        let list: Vec<String> = settings
            .transfer
            .iter()
            .map(|t| format!("{} ({}, {} points)", t.experiment, t.task, t.points))
            .collect();
        eprintln!("critic pre-trained on {}", list.join(", "));
    }
    let mut strategy = make_strategy(
        &exp.spec.strategy,
        evaluator.space().clone(),
        exp.spec.seed,
        &settings,
        &transfer,
    )?;
    let mut cfg = SearchConfig::new(
        exp.spec.budget,
        settings.batch_size,
        settings.reward.clone(),
    );
    if let Some(tc) = &settings.training {
        cfg.unit = tc.budget_unit;
    }
    let bar = budget_bar(exp.spec.budget, a.json);
    bar.set_message(format!("{} on {}", exp.spec.strategy, exp.spec.task));
    // "trained 12 trusted 3 replayed 40 best 0.81", shared with the workers' step messages
    let status = std::sync::Arc::new(std::sync::Mutex::new(format!(
        "{} on {}",
        exp.spec.strategy, exp.spec.task
    )));
    let mut counts = SourceCounts::default();
    let mut log = LogLines::for_stderr(a.json, std::time::Duration::from_secs(30));
    // cost spent at the last trial of this run (None: no trial ran), for the final line
    let mut last_spent = None;
    let bench = match bench {
        Target::Train(ev) => {
            let ev = ev.with_progress(training::progress_hook_shared(bar.clone(), status.clone()));
            let ev = with_pool(ev, &settings, &a.store.store, &exp.spec.name)?;
            if let (Some(pc), false) = (
                settings.training.as_ref().and_then(|t| t.pool.as_ref()),
                a.json,
            ) {
                eprintln!(
                    "knowledge pool: warm starts from entries of budget class {} images (one from-scratch proxy training), a warm-started child trains {} epoch{}",
                    pc.budget_class.map_or("?".into(), |c| c.to_string()),
                    pc.warm_epochs,
                    if pc.warm_epochs == 1.0 { "" } else { "s" }
                );
            }
            Target::Train(Box::new(ev))
        }
        other => other,
    };
    let slowed = settings.simulate_eval_seconds.map(|seconds| Slowed {
        inner: bench.evaluator(),
        seconds,
    });
    let evaluator: &dyn Evaluator = match &slowed {
        Some(s) => s,
        None => bench.evaluator(),
    };
    cfg.local_workers = a.workers != Some(0);
    cfg.max_attempts = a.max_attempts;
    cfg.driver = driver.clone();
    let mut progress = |ev: &fnas_core::search::TrialEvent| {
        bar.set_position(ev.spent);
        counts.add(ev.result.source);
        let mut line = format!(
            "{} on {}  trained {} trusted {} cached {}",
            exp.spec.strategy, exp.spec.task, counts.trained, counts.trusted, counts.cached
        );
        for (k, v) in &ev.counters {
            match *k {
                "replayed" => line.push_str(&format!(" replayed {v}")),
                "screened_out" => line.push_str(&format!(" screened out {v}")),
                _ => {}
            }
        }
        if let Some(b) = ev.best_reward {
            line.push_str(&format!("  best {b:.4}"));
        }
        bar.set_message(line.clone());
        log.update(ev.spent, exp.spec.budget, &line, false);
        if let Ok(mut s) = status.lock() {
            *s = line;
        }
        last_spent = Some(ev.spent);
    };
    // a store server that went away (restart, failover): reconnect and resume from the
    // last checkpoint, as a new `--resume` would
    let mut lost_since: Option<std::time::Instant> = None;
    let summary = loop {
        match run_search(
            store.as_mut(),
            &exp,
            strategy.as_mut(),
            evaluator,
            &cfg,
            &mut progress,
        ) {
            Err(SearchError::Store(StoreError::Unavailable { path, message }))
                if lost_since
                    .is_none_or(|t| t.elapsed().as_secs() < super::worker::RECONNECT_SECONDS) =>
            {
                if lost_since.is_none() {
                    bar.suspend(|| {
                        eprintln!("warning: store {path} unavailable ({message}); reconnecting, then resuming from the last checkpoint")
                    });
                    lost_since = Some(std::time::Instant::now());
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
                strategy = make_strategy(
                    &exp.spec.strategy,
                    evaluator.space().clone(),
                    exp.spec.seed,
                    &settings,
                    &transfer,
                )?;
            }
            r => break r?,
        }
    };
    bar.finish_and_clear();
    if let Some(d) = &driver {
        store.release_driver(d)?;
    }
    if let (Some(spent), Ok(line)) = (last_spent, status.lock()) {
        log.update(spent, exp.spec.budget, &line, true);
    }
    let trials = store.trials(exp.id)?;
    let best_child = match &bench {
        Target::Train(ev) => best_child_report(ev, &trials, a.json),
        Target::Table(_) => None,
    };
    if a.json {
        let best = crate::commands::show::best_trials(&trials)
            .first()
            .map(|t| (*t).clone());
        let v = serde_json::json!({
            "experiment": exp.spec.name,
            "store": a.store.store,
            "trials": summary.trials,
            "cost": summary.spent,
            "best_reward": summary.best_reward,
            "best": best,
            "best_test_accuracy": best_child.as_ref().and_then(|b| b.test_accuracy),
            "best_weights": best_child.as_ref().and_then(|b| b.weights.clone()),
        });
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    println!(
        "experiment {}: {} trials, cost {}/{}, best reward {}",
        exp.spec.name,
        summary.trials,
        summary.spent,
        exp.spec.budget,
        summary
            .best_reward
            .map(|b| format!("{b:.4}"))
            .unwrap_or_else(|| "-".into())
    );
    crate::commands::show::print_best(&trials, 5);
    if let Some(b) = &best_child {
        b.print();
    }
    println!(
        "(store: {}; `fnas show {} --store {}` for more)",
        a.store.store.display(),
        exp.spec.name,
        a.store.store.display()
    );
    Ok(())
}

/// The best trained child of a real-training search, for the final report.
struct BestChild {
    trial: i64,
    arch: String,
    network: String,
    val_accuracy: f64,
    test_accuracy: Option<f64>,
    test_error: Option<String>,
    latency_ms: Option<f64>,
    flops: Option<f64>,
    params: Option<f64>,
    weights: Option<PathBuf>,
}

/// Finds the best evaluated child and measures its test accuracy (t10k) from its saved
/// weights: reported only, the search never saw it.
fn best_child_report(
    ev: &TrainingEvaluator,
    trials: &[fnas_core::store::Trial],
    quiet: bool,
) -> Option<BestChild> {
    let t = *crate::commands::show::best_trials(trials).first()?;
    let arch = ev.space().parse(&t.arch).ok()?;
    let m = t.metrics.clone().unwrap_or_default();
    if !quiet {
        eprintln!("measuring the best child's test accuracy (t10k) from its saved weights...");
    }
    let (test_accuracy, test_error) = match ev.test_saved(&arch) {
        Ok(acc) => (Some(acc), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Some(BestChild {
        trial: t.id,
        arch: t.arch.clone(),
        network: ev.plan(&arch).map(|p| p.describe()).unwrap_or_default(),
        val_accuracy: m.val_accuracy,
        test_accuracy,
        test_error,
        latency_ms: m.latency_ms,
        flops: m.flops,
        params: m.params,
        weights: ev.weights_path(&arch),
    })
}

impl BestChild {
    fn print(&self) {
        println!();
        println!("best child (trial {}):", self.trial);
        println!("  architecture   {}", self.arch);
        println!("  network        {}", self.network);
        println!("  val accuracy   {:.4}", self.val_accuracy);
        match (self.test_accuracy, &self.test_error) {
            (Some(t), _) => println!("  test accuracy  {t:.4} (t10k, the proxy-trained weights; never used by the search)"),
            (None, Some(e)) => println!("  test accuracy  not measured: {e}"),
            (None, None) => println!("  test accuracy  not measured"),
        }
        if let Some(l) = self.latency_ms {
            println!("  latency        {l:.3} ms (batch 1, one thread)");
        }
        if let Some(f) = self.flops {
            println!("  FLOPs          {:.2} M multiply-adds", f / 1e6);
        }
        if let Some(p) = self.params {
            println!("  params         {p:.0}");
        }
        if let Some(w) = &self.weights {
            println!(
                "  weights        {} (architecture in {})",
                w.display(),
                w.with_extension("arch").display()
            );
        }
        println!(
            "  train it longer: fnas train --arch \"{}\" --task fashion-mnist-full --test",
            self.arch
        );
    }
}

/// Trials of this run by where their result came from (for the progress line).
#[derive(Default)]
struct SourceCounts {
    trained: u64,
    trusted: u64,
    cached: u64,
}

impl SourceCounts {
    fn add(&mut self, source: TrialSource) {
        match source {
            TrialSource::Evaluated => self.trained += 1,
            TrialSource::Critic => self.trusted += 1,
            TrialSource::Cached => self.cached += 1,
        }
    }
}

/// The budget a resumed search is given on the command line, if any: a search keeps its
/// unit (children/queries or training images), so the other flag is refused. Because a
/// strategy never sees the budget, a search resumed with a larger one continues exactly
/// as a search started with it would have (with a count budget, if the old one did not
/// cut its last batch short).
fn resumed_budget(a: &SearchArgs, settings: &SearchSettings, name: &str) -> Result<Option<u64>> {
    let images = settings
        .training
        .as_ref()
        .is_some_and(|t| t.budget_unit == BudgetUnit::Images);
    match (a.budget, a.budget_images, images) {
        (Some(_), None, true) => bail!(
            "experiment `{name}` counts its budget in training images: resume it with --budget-images, not --budget"
        ),
        (None, Some(_), false) => bail!(
            "experiment `{name}` counts its budget in evaluated children or queries: resume it with --budget, not --budget-images"
        ),
        (b, i, _) => Ok(b.or(i)),
    }
}

/// With `--resume`: the named experiment if it exists; `None` (start it) if it does not
/// but the task is given; an error if neither.
fn find_resumable(
    a: &SearchArgs,
) -> Result<Option<(Box<dyn Store>, fnas_core::store::Experiment)>> {
    let task = match a.task.as_deref().filter(|t| training::is_training_task(t)) {
        Some(t) => training::resolve_task(t, None, None)
            .ok()
            .map(|pt| (training::TRAIN_BENCHMARK.to_string(), pt.name)),
        None => parse_task(
            a.benchmark.as_deref(),
            a.dataset.as_deref(),
            a.task.as_deref(),
        )
        .ok()
        .map(|(b, d)| (b.name().to_string(), d)),
    };
    let name = match (&a.name, &task) {
        (Some(n), _) => n.clone(),
        (None, Some((b, d))) => default_name(&a.strategy, b, d, a.seed),
        (None, None) => {
            bail!("--resume needs --name EXP (see `fnas ls`) or the task options of the search")
        }
    };
    if !crate::stores::is_url(&a.store.store) && !a.store.store.exists() && task.is_some() {
        return Ok(None);
    }
    let store = crate::stores::open(&a.store.store)?;
    match store.experiment(&name)? {
        Some(exp) => Ok(Some((store, exp))),
        None if task.is_some() => Ok(None),
        None => bail!(
            "no experiment `{name}` in {} to resume; give the task options (--task, or --benchmark/--dataset) to start it",
            a.store.store.display()
        ),
    }
}

fn default_name(strategy: &str, bench: &str, dataset: &str, seed: u64) -> String {
    format!("{strategy}-{bench}-{dataset}-s{seed}")
}
