//! The report of `fnas bench --json` files: per dataset and strategy, how soon the seeds
//! found a top architecture (bench results are a report input as much as a store is).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::charts;

const TEMPLATE: &str = include_str!("bench.html");

/// The fields of a `fnas bench --json` record this report reads.
#[derive(Deserialize)]
struct Record {
    strategy: String,
    benchmark: String,
    dataset: String,
    budget: u64,
    cost_to_target: Option<u64>,
    cost_to_top1: Option<u64>,
    best_test: Option<f64>,
    critic_coverage: Option<f64>,
}

#[derive(Serialize)]
struct Row {
    dataset: String,
    strategy: String,
    seeds: usize,
    reached: usize,
    cost01: String,
    cost1: String,
    test: String,
    coverage: String,
}

#[derive(Serialize)]
struct Chart {
    dataset: String,
    svg: String,
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

fn show(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

/// Writes the report of the bench records in `files` to `out`.
pub fn write_bench(files: &[PathBuf], out: &Path) -> Result<()> {
    let mut records: Vec<Record> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let mut r: Vec<Record> = serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{}: not the output of `fnas bench --json` (a list of records with strategy, benchmark, dataset, budget, cost_to_target, ...): {e}",
                f.display()
            )
        })?;
        records.append(&mut r);
    }
    if records.is_empty() {
        bail!(
            "no bench records in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // (benchmark/dataset) -> strategy -> records
    let mut by: BTreeMap<String, BTreeMap<String, Vec<&Record>>> = BTreeMap::new();
    for r in &records {
        by.entry(format!("{}/{}", r.benchmark, r.dataset))
            .or_default()
            .entry(r.strategy.clone())
            .or_default()
            .push(r);
    }
    let mut rows = Vec::new();
    let mut charts_out = Vec::new();
    for (dataset, strategies) in &by {
        let mut curves = Vec::new();
        for (strategy, rs) in strategies {
            let miss = |r: &&Record| (r.budget + 1) as f64;
            let c01: Vec<f64> = rs
                .iter()
                .map(|r| r.cost_to_target.map_or_else(|| miss(r), |c| c as f64))
                .collect();
            let c1: Vec<f64> = rs
                .iter()
                .map(|r| r.cost_to_top1.map_or_else(|| miss(r), |c| c as f64))
                .collect();
            rows.push(Row {
                dataset: dataset.clone(),
                strategy: strategy.clone(),
                seeds: rs.len(),
                reached: rs.iter().filter(|r| r.cost_to_target.is_some()).count(),
                cost01: show(median(c01), 0),
                cost1: show(median(c1), 0),
                test: show(median(rs.iter().filter_map(|r| r.best_test).collect()), 4),
                coverage: show(
                    median(rs.iter().filter_map(|r| r.critic_coverage).collect()),
                    2,
                ),
            });
            // the share of seeds that have reached the top 0.1% by each cost
            let mut reached: Vec<u64> = rs.iter().filter_map(|r| r.cost_to_target).collect();
            reached.sort_unstable();
            let n = rs.len() as f64;
            let mut run = vec![(0.0, 0.0)];
            for (i, c) in reached.iter().enumerate() {
                run.push((*c as f64, (i + 1) as f64 / n));
            }
            let budget = rs.iter().map(|r| r.budget).max().unwrap_or(0) as f64;
            run.push((budget, reached.len() as f64 / n));
            curves.push(charts::Curve {
                label: strategy.clone(),
                runs: vec![run],
            });
        }
        let svg = charts::best_so_far(
            &curves,
            "evaluations",
            "share of seeds at a top-0.1% architecture",
        )
        .map_err(|e| anyhow!(e))?;
        charts_out.push(Chart {
            dataset: dataset.clone(),
            svg,
        });
    }
    let mut env = minijinja::Environment::new();
    env.add_template("bench", TEMPLATE)
        .context("the bench report template")?;
    let html = env
        .get_template("bench")
        .and_then(|t| {
            t.render(minijinja::context! {
                records => records.len(),
                files => files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
                version => env!("CARGO_PKG_VERSION"),
                rows => rows,
                charts => charts_out,
            })
        })
        .context("rendering the bench report")?;
    super::write_atomically(out, html.as_bytes())
}
