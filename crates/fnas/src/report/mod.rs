//! `fnas report`: one self-contained HTML page (inline SVG charts, no scripts, nothing
//! fetched) about the experiments of a store, for looking at how a search went and
//! choosing an architecture to take away.

mod bench;
mod charts;

pub use bench::write_bench;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use fnas_core::store::{Experiment, Trial, TrialSource, TrialStatus};
use fnas_core::Store;
use serde::Serialize;

const TEMPLATE: &str = include_str!("report.html");

/// Experiments that differ only in seed: task, strategy, budget.
type GroupKey = (String, String, u64);
/// A best-so-far step function: (cost, best reward).
type Run = Vec<(f64, f64)>;

#[derive(Serialize)]
struct ExpRow {
    name: String,
    task: String,
    strategy: String,
    seed: u64,
    status: String,
    trials: usize,
    cost: u64,
    best: String,
}

#[derive(Serialize)]
struct FrontRow {
    experiment: String,
    trial: i64,
    accuracy: String,
    cost: String,
    arch: String,
}

#[derive(Serialize)]
struct PoolRow {
    experiment: String,
    children: usize,
    warm: usize,
    distance: String,
    warm_reward: String,
    scratch_reward: String,
    errors: usize,
}

#[derive(Serialize)]
struct Block {
    name: String,
    choices: String,
}

#[derive(Serialize)]
struct TopRow {
    experiment: String,
    trial: i64,
    reward: String,
    accuracy: String,
    latency: String,
    params: String,
    blocks: Vec<Block>,
    export: String,
}

fn f4(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// A trial that was really evaluated and succeeded.
fn evaluated(t: &Trial) -> bool {
    t.status == TrialStatus::Done && t.source == Some(TrialSource::Evaluated)
}

/// The decisions of a text form grouped by block (`b3.op=...` -> block `b3`); a space
/// without block prefixes is one block.
fn blocks(arch: &str) -> Vec<Block> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order = Vec::new();
    for tok in arch.split_whitespace() {
        let (name, rest) = match tok.split_once('.') {
            Some((b, r)) if !b.contains('=') => (b.to_string(), r.to_string()),
            _ => ("cell".to_string(), tok.to_string()),
        };
        if !by.contains_key(&name) {
            order.push(name.clone());
        }
        by.entry(name).or_default().push(rest);
    }
    order
        .into_iter()
        .map(|n| Block {
            choices: by.remove(&n).unwrap_or_default().join(" "),
            name: n,
        })
        .collect()
}

/// Whether an experiment counts training images (else evaluations).
fn counts_images(e: &Experiment) -> bool {
    e.spec.config["training"]["budget_unit"] == "images"
}

/// Writes the report of `names` (all experiments when empty) to `out`.
pub fn write(
    store: &dyn Store,
    store_shown: &str,
    names: &[String],
    out: &Path,
    top_k: usize,
) -> Result<()> {
    let all = store.list_experiments()?;
    let chosen: Vec<Experiment> = if names.is_empty() {
        all.into_iter().map(|s| s.experiment).collect()
    } else {
        let mut v = Vec::new();
        for n in names {
            let e = store
                .experiment(n)?
                .ok_or_else(|| anyhow!("no experiment `{n}` in {store_shown} (see `fnas ls`)"))?;
            v.push(e);
        }
        v
    };
    if chosen.is_empty() {
        bail!("no experiments in {store_shown}: nothing to report");
    }
    let mut rows = Vec::new();
    let mut groups: BTreeMap<GroupKey, Vec<Run>> = BTreeMap::new();
    let mut any_images = false;
    let mut points = Vec::new();
    let mut candidates: Vec<(f64, f64, String, i64, String)> = Vec::new();
    let mut measure = "latency ms";
    let mut critic_points = Vec::new();
    let mut batch_counts: BTreeMap<u64, [u64; 3]> = BTreeMap::new();
    let mut pool_rows = Vec::new();
    let mut top: Vec<(f64, &Trial, &Experiment)> = Vec::new();
    let trials: Vec<(Experiment, Vec<Trial>)> = chosen
        .into_iter()
        .map(|e| {
            let t = store.trials(e.id)?;
            Ok((e, t))
        })
        .collect::<Result<_, fnas_core::StoreError>>()?;
    let latency_known = trials
        .iter()
        .flat_map(|(_, ts)| ts.iter())
        .any(|t| t.metrics.as_ref().is_some_and(|m| m.latency_ms.is_some()));
    if !latency_known {
        measure = "params";
    }
    for (e, ts) in &trials {
        let images = counts_images(e);
        any_images |= images;
        let (mut cost, mut best, mut run) = (0u64, None::<f64>, Vec::new());
        for t in ts.iter().filter(|t| t.status != TrialStatus::Pending) {
            cost += if images {
                t.cost.images
            } else {
                t.cost.evaluations
            };
            if t.source != Some(TrialSource::Critic) {
                if let Some(r) = t.reward.filter(|r| r.is_finite()) {
                    if best.is_none_or(|b| r > b) {
                        best = Some(r);
                        run.push((cost as f64, r));
                    }
                }
            }
            let c = batch_counts.entry(t.batch).or_default();
            match t.source {
                Some(TrialSource::Evaluated) => c[0] += 1,
                Some(TrialSource::Critic) => c[1] += 1,
                Some(TrialSource::Cached) => c[2] += 1,
                None => {}
            }
        }
        if let Some(last) = run.last().copied() {
            run.push((cost as f64, last.1));
        }
        groups
            .entry((e.spec.task.clone(), e.spec.strategy.clone(), e.spec.budget))
            .or_default()
            .push(run);
        rows.push(ExpRow {
            name: e.spec.name.clone(),
            task: e.spec.task.clone(),
            strategy: e.spec.strategy.clone(),
            seed: e.spec.seed,
            status: e.status.clone(),
            trials: ts.len(),
            cost,
            best: f4(best),
        });
        let (mut warm, mut scratch, mut dist, mut errors, mut children) =
            (Vec::new(), Vec::new(), Vec::new(), 0, 0);
        for t in ts.iter().filter(|t| evaluated(t)) {
            let m = t.metrics.as_ref();
            let x = m.and_then(|m| {
                if latency_known {
                    m.latency_ms
                } else {
                    m.params
                }
            });
            // only finite numbers reach the Pareto front and the tables (a store written
            // by an older build may hold others)
            let x = x.filter(|x| x.is_finite());
            let m = m.filter(|m| m.val_accuracy.is_finite());
            if let (Some(x), Some(m)) = (x, m) {
                points.push((x, m.val_accuracy));
                candidates.push((x, m.val_accuracy, e.spec.name.clone(), t.id, t.arch.clone()));
            }
            let reward = t.reward.filter(|r| r.is_finite());
            if let (Some(p), Some(r)) = (t.prediction, reward) {
                critic_points.push((r, p.mean, p.std));
            }
            if let Some(r) = reward {
                top.push((r, t, e));
            }
            if let Some(f) = m.and_then(fnas_child::PoolFigures::from_metrics) {
                children += 1;
                errors += usize::from(f.error);
                if f.warm_start {
                    dist.push(f.mean_distance);
                    warm.extend(reward);
                } else {
                    scratch.extend(reward);
                }
            }
        }
        if children > 0 {
            pool_rows.push(PoolRow {
                experiment: e.spec.name.clone(),
                children,
                warm: warm.len(),
                distance: f4(mean(&dist)),
                warm_reward: f4(mean(&warm)),
                scratch_reward: f4(mean(&scratch)),
                errors,
            });
        }
    }
    let curves: Vec<charts::Curve> = groups
        .into_iter()
        .map(|((task, strategy, _), runs)| charts::Curve {
            label: format!("{strategy} on {task}"),
            runs: runs.into_iter().filter(|r| !r.is_empty()).collect(),
        })
        .filter(|c| !c.runs.is_empty())
        .collect();
    let cost_label = if any_images {
        "training images"
    } else {
        "evaluations"
    };
    let best_chart =
        charts::best_so_far(&curves, cost_label, "best reward so far").map_err(|e| anyhow!(e))?;
    // the Pareto front: sorted by cost, each point more accurate than every cheaper one
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut front_rows = Vec::new();
    let mut front = Vec::new();
    let mut best_acc = f64::NEG_INFINITY;
    for (x, y, exp, id, arch) in &candidates {
        if *y > best_acc {
            best_acc = *y;
            front.push((*x, *y));
            front_rows.push(FrontRow {
                experiment: exp.clone(),
                trial: *id,
                accuracy: format!("{y:.4}"),
                cost: if latency_known {
                    format!("{x:.3}")
                } else {
                    format!("{x:.0}")
                },
                arch: arch.clone(),
            });
        }
    }
    let pareto_chart = if points.is_empty() {
        String::new()
    } else {
        charts::pareto(&points, &front, measure).map_err(|e| anyhow!(e))?
    };
    let coverage = {
        let inside = critic_points
            .iter()
            .filter(|(r, m, s)| (r - m).abs() <= 2.0 * s)
            .count();
        if critic_points.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * inside as f64 / critic_points.len() as f64)
        }
    };
    let critic_chart = if critic_points.is_empty() {
        String::new()
    } else {
        charts::calibration(&critic_points).map_err(|e| anyhow!(e))?
    };
    let counts: Vec<(u64, [u64; 3])> = batch_counts.into_iter().collect();
    let batch_chart = charts::batches(&counts).map_err(|e| anyhow!(e))?;
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top_rows: Vec<TopRow> = top
        .iter()
        .take(top_k)
        .map(|(r, t, e)| {
            let m = t.metrics.as_ref();
            TopRow {
                experiment: e.spec.name.clone(),
                trial: t.id,
                reward: format!("{r:.4}"),
                accuracy: f4(m.map(|m| m.val_accuracy)),
                latency: m
                    .and_then(|m| m.latency_ms)
                    .map_or_else(|| "-".into(), |l| format!("{l:.3}")),
                params: m
                    .and_then(|m| m.params)
                    .map_or_else(|| "-".into(), |p| format!("{p:.0}")),
                blocks: blocks(&t.arch),
                export: format!(
                    "fnas export {} --trial {} --store {} --out {}-trial-{}",
                    e.spec.name, t.id, store_shown, e.spec.name, t.id
                ),
            }
        })
        .collect();
    let title = if rows.len() == 1 {
        rows[0].name.clone()
    } else {
        format!("{} experiments", rows.len())
    };
    let mut env = minijinja::Environment::new();
    env.add_template("report", TEMPLATE)
        .context("the report template")?;
    let html = env
        .get_template("report")
        .and_then(|t| {
            t.render(minijinja::context! {
                title => title,
                store => store_shown,
                version => env!("CARGO_PKG_VERSION"),
                experiments => rows,
                best_chart => best_chart,
                pareto_measure => measure,
                pareto_chart => pareto_chart,
                front => front_rows,
                critic_points => critic_points.len(),
                coverage => coverage,
                critic_chart => critic_chart,
                batch_chart => batch_chart,
                pool => pool_rows,
                top => top_rows,
            })
        })
        .context("rendering the report")?;
    write_atomically(out, html.as_bytes())
}

/// Writes `bytes` to `out` through a temporary file beside it, so a failed write never
/// leaves half a report.
pub(crate) fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    use std::io::Write;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", out.display()))?;
    // a report is for reading by anyone who may read the folder, not a secret
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    tmp.persist(out)
        .map_err(|e| anyhow!("cannot write {}: {}", out.display(), e.error))?;
    Ok(())
}
