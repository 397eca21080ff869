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
use fnas_core::store::{ExperimentSpec, TrialSource};
use fnas_core::{Evaluator, RewardConfig, Store};
use fnas_store::SqliteStore;
use rayon::prelude::*;
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::setup::{check_strategy, make_strategy, SearchSettings};

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
    /// Proposals made (including those served from the store).
    pub proposals: u64,
    pub best_val: Option<f64>,
    pub best_test: Option<f64>,
    pub seconds: f64,
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

fn run_one(
    strategy: &str,
    bench: Benchmark,
    dataset: &str,
    table: &dyn TabularBenchmark,
    targets: &Targets,
    seed: u64,
    budget: u64,
    batch_size: usize,
) -> Result<Record> {
    let t0 = Instant::now();
    let mut store = SqliteStore::in_memory()?;
    let settings = SearchSettings::new(bench, dataset, batch_size, RewardConfig::default());
    let evaluator: &dyn Evaluator = table;
    let spec = ExperimentSpec {
        name: format!("{strategy}-{dataset}-s{seed}"),
        space: evaluator.space().name().into(),
        task: evaluator.task(),
        strategy: strategy.into(),
        seed,
        budget,
        config: serde_json::to_value(&settings)?,
    };
    let exp = store.create_experiment(&spec)?;
    let mut strat = make_strategy(strategy, evaluator.space().clone(), seed, &settings)?;
    let cfg = SearchConfig::new(budget, batch_size, settings.reward.clone());
    let summary = run_search(
        &mut store,
        &exp,
        strat.as_mut(),
        evaluator,
        &cfg,
        &mut |_| {},
    )?;
    let trials = store.trials(exp.id)?;
    let evals: Vec<(f64, f64)> = trials
        .iter()
        .filter(|t| t.source == Some(TrialSource::Evaluated))
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
    Ok(Record {
        strategy: strategy.into(),
        benchmark: bench.name().into(),
        dataset: dataset.into(),
        seed,
        budget,
        cost_to_target,
        cost_to_top1,
        regret_at,
        cost: summary.spent,
        proposals: summary.trials,
        best_val: best.map(|b| b.0),
        best_test: best.map(|b| b.1),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn run(a: BenchArgs) -> Result<()> {
    let bench: Benchmark = a.benchmark.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
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
    let strategies = split(&a.strategies);
    for s in &strategies {
        check_strategy(s)?;
    }
    if a.seeds == 0
        || a.budget == 0
        || a.batch_size == 0
        || datasets.is_empty()
        || strategies.is_empty()
    {
        bail!("--seeds, --budget, --batch-size, --datasets and --strategies must be non-empty / at least 1");
    }
    let dir = fnas_bench::resolve_data_dir(a.data_dir.as_deref());
    let mut tables = Vec::new();
    for d in &datasets {
        let t: Arc<dyn TabularBenchmark> = Arc::from(
            fnas_bench::load(bench, &dir, d)
                .with_context(|| format!("loading {}/{d}", bench.name()))?,
        );
        let targets = Targets::of(&t.table());
        tables.push((d.clone(), t, targets));
    }
    let jobs: Vec<(usize, usize, u64)> = (0..strategies.len())
        .flat_map(|s| {
            (0..tables.len()).flat_map(move |d| (0..a.seeds).map(move |seed| (s, d, seed)))
        })
        .collect();
    let threads = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30} {pos}/{len} searches {msg}",
    ) {
        bar.set_style(style);
    }
    let t0 = Instant::now();
    let records: Vec<Record> = pool.install(|| {
        jobs.par_iter()
            .map(|&(s, d, seed)| {
                let (name, table, targets) = &tables[d];
                let r = run_one(
                    &strategies[s],
                    bench,
                    name,
                    table.as_ref(),
                    targets,
                    seed,
                    a.budget,
                    a.batch_size,
                );
                bar.inc(1);
                r
            })
            .collect::<Result<Vec<_>>>()
    })?;
    bar.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();
    print_table(
        &records,
        &strategies,
        &tables
            .iter()
            .map(|t| (t.0.clone(), t.2))
            .collect::<Vec<_>>(),
        a.budget,
    );
    println!(
        "\n{} searches ({} strategies x {} datasets x {} seeds, budget {}) in {:.1} s on {threads} threads",
        records.len(),
        strategies.len(),
        datasets.len(),
        a.seeds,
        a.budget,
        wall
    );
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

fn print_table(
    records: &[Record],
    strategies: &[String],
    datasets: &[(String, Targets)],
    budget: u64,
) {
    let qs: Vec<u64> = REGRET_AT.into_iter().filter(|&q| q <= budget).collect();
    println!(
        "cost = distinct architectures evaluated; median [IQR] over seeds, reached/seeds; not reached = {}",
        budget + 1
    );
    print!(
        "{:<12} {:<10} {:>26} {:>26}",
        "DATASET", "STRATEGY", "COST TO TOP 0.1% (VAL)", "COST TO TOP 1% (VAL)"
    );
    for q in &qs {
        print!(" {:>12}", format!("REGRET@{q}"));
    }
    println!();
    for (d, _) in datasets {
        for s in strategies {
            let rs: Vec<&Record> = records
                .iter()
                .filter(|r| &r.dataset == d && &r.strategy == s)
                .collect();
            let c01: Vec<Option<u64>> = rs.iter().map(|r| r.cost_to_target).collect();
            let c1: Vec<Option<u64>> = rs.iter().map(|r| r.cost_to_top1).collect();
            print!(
                "{:<12} {:<10} {:>26} {:>26}",
                d,
                s,
                cost_cell(&c01, budget),
                cost_cell(&c1, budget)
            );
            for q in &qs {
                let mut v: Vec<f64> = rs
                    .iter()
                    .filter_map(|r| r.regret_at.get(q))
                    .map(|x| x * 100.0)
                    .collect();
                v.sort_by(f64::total_cmp);
                print!(" {:>12}", format!("{:.2}pp", quantile(&v, 0.5)));
            }
            println!();
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
