//! `fnas bench`: strategies compared on a tabular benchmark over datasets and seeds.
//!
//! Definitions (the same everywhere a figure is reported):
//! - cost = distinct architectures actually evaluated (tabular queries); proposals
//!   served from the store cost nothing.
//! - target = the top 0.1% of the benchmark's distinct architectures by validation
//!   accuracy (threshold = the validation accuracy at rank ceil(0.1% N); every
//!   architecture at or above it counts, ties included); "top 1%" likewise.
//! - cost to target = the cost at which the first target architecture was evaluated;
//!   not reached within the budget counts as budget+1 in medians and is marked `>`.
//! - test regret after q = (best test accuracy in the whole benchmark) - (test accuracy
//!   of the best-by-validation architecture among the first q evaluated; ties on
//!   validation go to the one found first), in percentage points.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fnas_bench::{Benchmark, TabularBenchmark};
use fnas_core::search::{run_search, SearchConfig};
use fnas_core::store::{ExperimentSpec, Trial, TrialSource};
use fnas_core::Architecture;
use fnas_core::{Evaluator, RewardConfig, Store};
use fnas_store::SqliteStore;
use rayon::prelude::*;
use serde::Serialize;

use fnas_run::transfer::normalise_source;
use fnas_run::{make_strategy, SearchSettings, SelectOptions, StrategyKind};

use crate::cli::{BenchArgs, GateArgs};

/// Query counts at which test regret is reported.
pub const REGRET_AT: [u64; 4] = [50, 100, 200, 500];

/// One search's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub strategy: String,
    pub benchmark: String,
    pub dataset: String,
    pub seed: u64,
    pub budget: u64,
    /// Cost at which a top-0.1% (by validation) architecture was first evaluated.
    pub cost_to_target: Option<u64>,
    /// Same for the top 1%.
    pub cost_to_top1: Option<u64>,
    /// Query count -> test regret (fraction, not percent).
    pub regret_at: BTreeMap<u64, f64>,
    /// Cost actually spent (less than budget only if the proposal cap stopped the search).
    pub cost: u64,
    /// Proposals made (including those served from the store or the critic).
    pub proposals: u64,
    /// Proposals the critic scored instead of an evaluation.
    pub trusted: u64,
    /// Fraction of evaluated, critic-scored trials whose reward fell within the
    /// prediction +- 2 std (None without a critic).
    pub critic_coverage: Option<f64>,
    /// Mean absolute error of the critic's predictions on evaluated trials.
    pub critic_mae: Option<f64>,
    /// Points the critic was pre-trained on.
    pub transferred_points: u64,
    pub best_val: Option<f64>,
    pub best_test: Option<f64>,
    pub seconds: f64,
    /// CPU time of the strategy's own `ask` and `tell` per evaluated architecture, in ms.
    pub strategy_ms_per_eval: f64,
}

/// A strategy whose `ask` and `tell` are timed (the strategy's own overhead, without
/// the evaluations and the store).
struct Timed<'a> {
    inner: &'a mut dyn fnas_core::Strategy,
    spent: std::time::Duration,
}

impl fnas_core::Strategy for Timed<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn ask(&mut self, n: usize) -> Result<Vec<fnas_core::Proposal>, fnas_core::StrategyError> {
        let t = Instant::now();
        let r = self.inner.ask(n);
        self.spent += t.elapsed();
        r
    }
    fn tell(&mut self, outcomes: &[fnas_core::Outcome]) -> Result<(), fnas_core::StrategyError> {
        let t = Instant::now();
        let r = self.inner.tell(outcomes);
        self.spent += t.elapsed();
        r
    }
    fn state(&self) -> Result<Vec<u8>, fnas_core::StrategyError> {
        self.inner.state()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), fnas_core::StrategyError> {
        self.inner.restore(state)
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.inner.counters()
    }
}

/// A dataset's fixed reference points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Targets {
    pub top01: f64,
    pub top1: f64,
    pub max_test: f64,
}

/// Validation threshold of the top `frac` of a table (ties at the threshold included).
pub fn threshold(vals: &mut [f64], frac: f64) -> f64 {
    vals.sort_by(|a, b| b.total_cmp(a));
    let k = ((frac * vals.len() as f64).ceil() as usize).clamp(1, vals.len().max(1));
    vals.get(k - 1).copied().unwrap_or(f64::INFINITY)
}

impl Targets {
    pub fn of(table: &[(f64, f64)]) -> Self {
        let mut vals: Vec<f64> = table.iter().map(|t| t.0).collect();
        let top1 = threshold(&mut vals, 0.01);
        let top01 = threshold(&mut vals, 0.001);
        let max_test = table.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
        Self {
            top01,
            top1,
            max_test,
        }
    }
}

/// Figures of one search from its evaluated (validation, test) sequence, in order.
pub fn score(
    evals: &[(f64, f64)],
    t: &Targets,
    budget: u64,
) -> (Option<u64>, Option<u64>, BTreeMap<u64, f64>) {
    let first = |thr: f64| evals.iter().position(|e| e.0 >= thr).map(|i| i as u64 + 1);
    let mut regret = BTreeMap::new();
    for q in REGRET_AT.into_iter().filter(|&q| q <= budget) {
        let upto = &evals[..evals.len().min(q as usize)];
        let mut best: Option<(f64, f64)> = None;
        for &e in upto {
            if best.is_none_or(|b| e.0 > b.0) {
                best = Some(e);
            }
        }
        if let Some(b) = best {
            regret.insert(q, t.max_test - b.1);
        }
    }
    (first(t.top01), first(t.top1), regret)
}

/// Linear-interpolation quantile of sorted data.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A finished search: its record and its evaluated (architecture, reward) points.
type Done = (Record, Vec<(Architecture, f64)>);

/// One search's job: strategy (without any `+transfer` suffix), dataset, seed and the
/// transfer points for the critic.
struct Job<'a> {
    label: &'a str,
    strategy: StrategyKind,
    dataset: usize,
    seed: u64,
    transfer: Vec<fnas_learn::transfer::SourcePoints>,
}

/// What every search of a bench shares besides its strategy: the reward, and the critic
/// flags, applied to every strategy that has the part they set.
struct Common {
    reward: RewardConfig,
    gate: GateArgs,
    select: SelectOptions,
}

/// Runs one search in an in-memory store; returns its record and its evaluated
/// (architecture, reward) points (the transfer source of later jobs).
fn run_one(
    job: &Job,
    bench: Benchmark,
    tables: &[(String, Arc<dyn TabularBenchmark>, Targets)],
    budget: u64,
    batch_size: usize,
    common: &Common,
) -> Result<Done> {
    let t0 = Instant::now();
    let (dataset, table, targets) = &tables[job.dataset];
    let mut store = SqliteStore::in_memory()?;
    let mut settings = SearchSettings::new(bench, dataset, batch_size, common.reward.clone());
    settings.fnas = job.strategy.fnas_preset(&settings.ppo);
    let gate = &common.gate;
    if let Some(f) = settings.fnas.as_mut().filter(|f| f.gate) {
        f.trust_contenders = gate.trust_contenders;
        f.gate_after_calibration = gate.gate_after_calibration;
        if let Some(t) = gate.gate_tau {
            f.tau = t;
        }
    }
    if let Some(f) = settings.fnas.as_mut().filter(|f| f.critic.is_some()) {
        // the range 1..=64 is enforced by clap
        f.screen = gate.screen as usize;
    }
    settings.select = job.strategy.select_preset(&settings.ppo);
    if let Some(c) = settings.select.as_mut() {
        common.select.apply(c);
    }
    let evaluator: &dyn Evaluator = table.as_ref();
    let space = evaluator.space();
    let spec = ExperimentSpec {
        name: format!("{}-{dataset}-s{}", job.label, job.seed),
        space: space.name().into(),
        task: evaluator.task(),
        strategy: job.strategy.as_str().into(),
        seed: job.seed,
        budget,
        config: serde_json::to_value(&settings)?,
    };
    let exp = store.create_experiment(&spec)?;
    let mut strat = make_strategy(
        job.strategy,
        space.clone(),
        job.seed,
        &settings,
        &job.transfer,
    )?;
    let mut cfg = SearchConfig::new(budget, batch_size, settings.reward.clone());
    cfg.save_state = false; // never resumed: skip serialising the strategy per batch
    let mut timed = Timed {
        inner: strat.as_mut(),
        spent: std::time::Duration::ZERO,
    };
    let summary = run_search(&mut store, &exp, &mut timed, evaluator, &cfg, &mut |_| {})?;
    let strategy_time = timed.spent;
    let trials = store.trials(exp.id)?;
    let evaluated: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.source == Some(TrialSource::Evaluated))
        .collect();
    let evals: Vec<(f64, f64)> = evaluated
        .iter()
        .filter_map(|t| t.metrics.as_ref())
        .map(|m| (m.val_accuracy, m.test_accuracy.unwrap_or(m.val_accuracy)))
        .collect();
    let (cost_to_target, cost_to_top1, regret_at) = score(&evals, targets, budget);
    let best = evals.iter().fold(None::<(f64, f64)>, |b, &e| {
        if b.is_none_or(|b| e.0 > b.0) {
            Some(e)
        } else {
            b
        }
    });
    // calibration: the same figures `fnas show` prints
    let calibration = crate::commands::show::calibration(&trials).filter(|c| c.scored > 0);
    let points = evaluated
        .iter()
        .filter_map(|t| Some((space.parse(&t.arch).ok()?, t.reward?)))
        .collect();
    let record = Record {
        strategy: job.label.into(),
        benchmark: bench.name().into(),
        dataset: dataset.clone(),
        seed: job.seed,
        budget,
        cost_to_target,
        cost_to_top1,
        regret_at,
        cost: summary.spent,
        proposals: summary.trials,
        trusted: trials
            .iter()
            .filter(|t| t.source == Some(TrialSource::Critic))
            .count() as u64,
        critic_coverage: calibration.as_ref().map(|c| c.coverage),
        critic_mae: calibration.as_ref().map(|c| c.mae),
        transferred_points: job.transfer.iter().map(|s| s.len() as u64).sum(),
        best_val: best.map(|b| b.0),
        best_test: best.map(|b| b.1),
        seconds: t0.elapsed().as_secs_f64(),
        strategy_ms_per_eval: strategy_time.as_secs_f64() * 1e3 / (evals.len().max(1) as f64),
    };
    Ok((record, points))
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The transfer sources of a target dataset: the other datasets of the bench for
/// NAS-Bench-Graph; for AnalogNAS-Bench the digital `baseline` accuracy (and `analog`
/// for the baseline itself).
fn transfer_sources(bench: Benchmark, target: &str, datasets: &[String]) -> Vec<String> {
    match bench {
        Benchmark::AnalogNasBench => {
            vec![if target == "baseline" {
                "analog"
            } else {
                "baseline"
            }
            .to_string()]
        }
        _ => datasets.iter().filter(|d| *d != target).cloned().collect(),
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    let bench: Benchmark = a.benchmark.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let reward = a.reward.config()?;
    let datasets: Vec<String> = if a.datasets == "all" {
        bench.datasets().iter().map(|s| s.to_string()).collect()
    } else {
        split(&a.datasets)
    };
    for d in &datasets {
        if !bench.datasets().contains(&d.as_str()) {
            bail!(
                "unknown dataset `{d}` for {} (known: {})",
                bench.name(),
                bench.datasets().join(", ")
            );
        }
    }
    let labels = split(&a.strategies);
    // each label's strategy (a `+transfer` suffix pre-trains its critic)
    let mut kinds = BTreeMap::new();
    for l in &labels {
        let base = l.strip_suffix("+transfer").unwrap_or(l);
        let kind: StrategyKind = base.parse()?;
        if base != l.as_str() && !kind.takes_transfer() {
            bail!("`{l}`: transfer needs a strategy with a critic (fnas, fnas-value, fnas-gate, evolution-gate)");
        }
        kinds.insert(l.clone(), kind);
    }
    let any_gate = kinds.values().any(|k| k.has_fnas_gate());
    let any_critic = kinds.values().any(|k| k.has_fnas_critic());
    if a.seeds == 0
        || a.budget == 0
        || a.batch_size == 0
        || datasets.is_empty()
        || labels.is_empty()
    {
        bail!("--seeds, --budget, --batch-size, --datasets and --strategies must be non-empty / at least 1");
    }
    if a.gate.trust_contenders && !any_gate {
        bail!("--trust-contenders needs a strategy with the critic's gate among --strategies (fnas, fnas-gate)");
    }
    if a.gate.gate_after_calibration && !any_gate {
        bail!("--gate-after-calibration needs a strategy with the critic's gate among --strategies (fnas, fnas-gate)");
    }
    if a.gate.gate_tau.is_some() && !any_gate {
        bail!("--gate-tau needs a strategy with the critic's gate among --strategies (fnas, fnas-gate)");
    }
    if a.select.options().any() && !kinds.values().any(|k| k.is_select()) {
        bail!("--acquisition, --encoding and --candidates need a fnas-select strategy among --strategies");
    }
    let baseline = match &a.baseline {
        Some(b) if labels.contains(b) => b.clone(),
        Some(b) => bail!(
            "--baseline `{b}` is not among --strategies ({})",
            labels.join(",")
        ),
        None => ["evolution", "ppo"]
            .iter()
            .map(|s| s.to_string())
            .find(|s| labels.contains(s))
            .unwrap_or_else(|| labels[0].clone()),
    };
    if a.gate.screen > 1 && !any_critic {
        bail!("--screen needs a strategy with a critic among --strategies (fnas, fnas-value, fnas-gate)");
    }
    let any_transfer = labels.iter().any(|l| l.ends_with("+transfer"));
    // datasets searched: the requested ones, plus transfer sources not among them
    let mut all_sets = datasets.clone();
    if any_transfer {
        for d in &datasets {
            for s in transfer_sources(bench, d, &datasets) {
                if !all_sets.contains(&s) {
                    all_sets.push(s);
                }
            }
        }
    }
    let dir = fnas_bench::resolve_data_dir(a.data_dir.as_deref());
    let mut tables = Vec::new();
    for d in &all_sets {
        let t: Arc<dyn TabularBenchmark> = Arc::from(
            fnas_bench::load(bench, &dir, d)
                .with_context(|| format!("loading {}/{d}", bench.name()))?,
        );
        let targets = Targets::of(&t.table());
        tables.push((d.clone(), t, targets));
    }
    let index = |d: &str| all_sets.iter().position(|x| x == d).unwrap_or(0);
    // phase 1: every search without transfer (vanilla PPO also on the transfer sources)
    let mut phase1: Vec<Job> = Vec::new();
    for l in labels.iter().filter(|l| !l.ends_with("+transfer")) {
        for d in &datasets {
            for seed in 0..a.seeds {
                phase1.push(Job {
                    label: l,
                    strategy: kinds[l],
                    dataset: index(d),
                    seed,
                    transfer: Vec::new(),
                });
            }
        }
    }
    if any_transfer {
        for (di, d) in all_sets.iter().enumerate() {
            let is_source = datasets
                .iter()
                .any(|t| transfer_sources(bench, t, &datasets).contains(d));
            let done = labels.iter().any(|l| l == "ppo") && datasets.contains(d);
            if is_source && !done {
                for seed in 0..a.seeds {
                    phase1.push(Job {
                        label: "ppo(source)",
                        strategy: StrategyKind::Ppo,
                        dataset: di,
                        seed,
                        transfer: Vec::new(),
                    });
                }
            }
        }
    }
    let threads = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let n_transfer = labels.iter().filter(|l| l.ends_with("+transfer")).count()
        * datasets.len()
        * a.seeds as usize;
    let bar = indicatif::ProgressBar::new((phase1.len() + n_transfer) as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30} {pos}/{len} searches {msg}",
    ) {
        bar.set_style(style);
    }
    let t0 = Instant::now();
    let common = Common {
        reward,
        gate: a.gate.clone(),
        select: a.select.options(),
    };
    let run_jobs = |jobs: &[Job]| -> Result<Vec<Done>> {
        pool.install(|| {
            jobs.par_iter()
                .map(|j| {
                    let r = run_one(j, bench, &tables, a.budget, a.batch_size, &common);
                    bar.inc(1);
                    r
                })
                .collect()
        })
    };
    let done1 = run_jobs(&phase1)?;
    // phase 2: transfer searches, pre-trained on the same seed's vanilla-PPO sources
    let mut phase2: Vec<Job> = Vec::new();
    for l in labels.iter().filter(|l| l.ends_with("+transfer")) {
        for d in &datasets {
            for seed in 0..a.seeds {
                let mut transfer = Vec::new();
                for src in transfer_sources(bench, d, &datasets) {
                    if let Some((_, pts)) = done1.iter().find(|(r, _)| {
                        r.dataset == src && r.seed == seed && r.strategy.starts_with("ppo")
                    }) {
                        transfer.push(normalise_source(pts));
                    }
                }
                phase2.push(Job {
                    label: l,
                    strategy: kinds[l],
                    dataset: index(d),
                    seed,
                    transfer,
                });
            }
        }
    }
    let done2 = run_jobs(&phase2)?;
    bar.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();
    let records: Vec<Record> = done1
        .into_iter()
        .chain(done2)
        .map(|(r, _)| r)
        .filter(|r| r.strategy != "ppo(source)")
        .collect();
    let shown: Vec<(String, Targets)> = tables
        .iter()
        .filter(|t| datasets.contains(&t.0))
        .map(|t| (t.0.clone(), t.2))
        .collect();
    print_table(&records, &labels, &shown, a.budget, &baseline);
    println!(
        "\n{} searches ({} strategies x {} datasets x {} seeds, budget {}) in {:.1} s on {threads} threads",
        records.len(),
        labels.len(),
        datasets.len(),
        a.seeds,
        a.budget,
        wall
    );
    if a.gate.screen > 1 {
        println!(
            "critic-ranked proposals: --screen {} (the strategies with a critic train the best-rated batch of {}x as many draws)",
            a.gate.screen, a.gate.screen
        );
    }
    if a.gate.trust_contenders {
        println!("gate rule: --trust-contenders (a confident prediction is trusted even when it might beat the best)");
    }
    if let Some(t) = a.gate.gate_tau {
        println!("gate confidence threshold: --gate-tau {t}");
    }
    if a.gate.gate_after_calibration {
        println!("gate rule: --gate-after-calibration (nothing is trusted before the critic's std is calibrated on 16 measured errors)");
    }
    if let Some(path) = &a.json {
        write_json(path, &records)?;
        println!("records written to {}", path.display());
    }
    Ok(())
}

fn write_json(path: &Path, records: &[Record]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(records)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Median and IQR of costs, with "not reached" as budget+1.
fn cost_cell(vals: &[Option<u64>], budget: u64) -> String {
    let mut v: Vec<f64> = vals
        .iter()
        .map(|c| c.unwrap_or(budget + 1) as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    let reached = vals.iter().filter(|c| c.is_some()).count();
    let f = |x: f64| {
        if x > budget as f64 {
            format!(">{budget}")
        } else {
            format!("{x:.0}")
        }
    };
    format!(
        "{} [{}-{}] {}/{}",
        f(quantile(&v, 0.5)),
        f(quantile(&v, 0.25)),
        f(quantile(&v, 0.75)),
        reached,
        vals.len()
    )
}

/// Per-seed cost ratios of a strategy over the baseline (not reached = budget+1):
/// median and IQR, "0.50x" = the strategy needed half the baseline's cost.
fn ratio_cell(
    rs: &[&Record],
    base: &[&Record],
    budget: u64,
    pick: fn(&Record) -> Option<u64>,
) -> String {
    let v = ratios(rs, base, budget, pick);
    if v.is_empty() {
        return "-".into();
    }
    format!(
        "{:.2}x [{:.2}-{:.2}]",
        quantile(&v, 0.5),
        quantile(&v, 0.25),
        quantile(&v, 0.75)
    )
}

/// Per-seed cost ratios (strategy / baseline, not reached = budget+1), sorted.
pub fn ratios(
    rs: &[&Record],
    base: &[&Record],
    budget: u64,
    pick: fn(&Record) -> Option<u64>,
) -> Vec<f64> {
    let mut v: Vec<f64> = rs
        .iter()
        .filter_map(|r| {
            let b = base.iter().find(|b| b.seed == r.seed)?;
            let c = |x: Option<u64>| x.unwrap_or(budget + 1) as f64;
            Some(c(pick(r)) / c(pick(b)))
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn print_table(
    records: &[Record],
    strategies: &[String],
    datasets: &[(String, Targets)],
    budget: u64,
    baseline: &str,
) {
    let qs: Vec<u64> = REGRET_AT.into_iter().filter(|&q| q <= budget).collect();
    println!(
        "cost = distinct architectures evaluated; median [IQR] over seeds, reached/seeds; not reached = {}",
        budget + 1
    );
    println!("ratio = this strategy's cost / {baseline}'s cost, per seed pair (below 1 = sooner); regret in test-accuracy points; s = seconds per search; ms/eval = the strategy's own time per evaluated architecture");
    print!(
        "{:<10} {:<20} {:>24} {:>24} {:>20} {:>20}",
        "DATASET",
        "STRATEGY",
        "COST TO TOP 0.1% (VAL)",
        "COST TO TOP 1% (VAL)",
        "RATIO TOP 0.1%",
        "RATIO TOP 1%"
    );
    for q in &qs {
        print!(" {:>7}", format!("R@{q}"));
    }
    println!(
        " {:>8} {:>8} {:>7} {:>8}",
        "COVERAGE", "TRUSTED", "S", "MS/EVAL"
    );
    for (d, _) in datasets {
        let ppo: Vec<&Record> = records
            .iter()
            .filter(|r| &r.dataset == d && r.strategy == baseline)
            .collect();
        for s in strategies {
            let rs: Vec<&Record> = records
                .iter()
                .filter(|r| &r.dataset == d && &r.strategy == s)
                .collect();
            let c01: Vec<Option<u64>> = rs.iter().map(|r| r.cost_to_target).collect();
            let c1: Vec<Option<u64>> = rs.iter().map(|r| r.cost_to_top1).collect();
            print!(
                "{:<10} {:<20} {:>24} {:>24} {:>20} {:>20}",
                d,
                s,
                cost_cell(&c01, budget),
                cost_cell(&c1, budget),
                ratio_cell(&rs, &ppo, budget, |r| r.cost_to_target),
                ratio_cell(&rs, &ppo, budget, |r| r.cost_to_top1),
            );
            for q in &qs {
                let mut v: Vec<f64> = rs
                    .iter()
                    .filter_map(|r| r.regret_at.get(q))
                    .map(|x| x * 100.0)
                    .collect();
                v.sort_by(f64::total_cmp);
                print!(" {:>7}", format!("{:.2}", quantile(&v, 0.5)));
            }
            let mut cov: Vec<f64> = rs.iter().filter_map(|r| r.critic_coverage).collect();
            cov.sort_by(f64::total_cmp);
            let cov = if cov.is_empty() {
                "-".to_string()
            } else {
                format!("{:.0}%", 100.0 * quantile(&cov, 0.5))
            };
            let med = |f: fn(&Record) -> f64| {
                let mut v: Vec<f64> = rs.iter().map(|r| f(r)).collect();
                v.sort_by(f64::total_cmp);
                quantile(&v, 0.5)
            };
            println!(
                " {:>8} {:>8.0} {:>7.2} {:>8.2}",
                cov,
                med(|r| r.trusted as f64),
                med(|r| r.seconds),
                med(|r| r.strategy_ms_per_eval)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_include_ties() {
        let table: Vec<(f64, f64)> = (0..1000)
            .map(|i| (if i < 5 { 0.9 } else { i as f64 / 2000.0 }, 0.5))
            .collect();
        let t = Targets::of(&table);
        // top 0.1% of 1000 = rank 1; five tied at 0.9 all count
        assert_eq!(t.top01, 0.9);
        let evals = vec![(0.1, 0.4), (0.9, 0.5)];
        let (c, _, _) = score(&evals, &t, 10);
        assert_eq!(c, Some(2));
    }

    #[test]
    fn regret_uses_best_by_validation_not_best_by_test() {
        let t = Targets {
            top01: 0.99,
            top1: 0.95,
            max_test: 0.8,
        };
        // second arch has better validation but worse test: regret follows validation
        let evals: Vec<(f64, f64)> = (0..60)
            .map(|i| if i == 1 { (0.9, 0.7) } else { (0.5, 0.79) })
            .collect();
        let (c01, c1, r) = score(&evals, &t, 100);
        assert_eq!((c01, c1), (None, None));
        assert!((r[&50] - 0.1).abs() < 1e-12);
        assert!(!r.contains_key(&200));
    }

    #[test]
    fn quantile_interpolates() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
    }
}
