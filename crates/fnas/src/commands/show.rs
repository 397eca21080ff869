//! `fnas ls` and `fnas show`.

use anyhow::{Context, Result};
use fnas_child::PoolFigures;
use fnas_core::search::BudgetUnit;
use fnas_core::store::{Experiment, Trial, TrialSource, TrialStatus};
use fnas_run::{PoolPolicy, SearchSettings};

use crate::cli::{LsArgs, ShowArgs};

pub fn ls(a: LsArgs) -> Result<()> {
    let store = fnas_run::stores::open_read_only(&a.store.store)?;
    let rows = store.list_experiments()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no experiments in {}", a.store.store.display());
        return Ok(());
    }
    println!(
        "{:<28} {:<10} {:<28} {:>5} {:<9} {:>7} {:>11} {:>8}",
        "NAME", "STRATEGY", "TASK", "SEED", "STATUS", "TRIALS", "COST/BUDGET", "BEST"
    );
    for r in rows {
        let e = &r.experiment;
        // an image budget (real training) is shown against the images spent (settings
        // this build cannot read: counted as evaluations)
        let images_budget =
            fnas_run::settings_of(e).is_ok_and(|s| s.budget_unit() == BudgetUnit::Images);
        let cost = if images_budget {
            store
                .trials(e.id)?
                .iter()
                .map(|t| t.cost.images)
                .sum::<u64>()
        } else {
            r.cost
        };
        println!(
            "{:<28} {:<10} {:<28} {:>5} {:<9} {:>7} {:>11} {:>8}",
            e.spec.name,
            e.spec.strategy,
            e.spec.task,
            e.spec.seed,
            e.status,
            r.trials,
            format!("{}/{}", cost, e.spec.budget),
            r.best_reward
                .map(|b| format!("{b:.4}"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}

/// Finished, really evaluated trials, best reward first (ties: earlier first).
pub fn best_trials(trials: &[Trial]) -> Vec<&Trial> {
    let mut v: Vec<&Trial> = trials
        .iter()
        .filter(|t| {
            t.status == TrialStatus::Done
                && t.source == Some(TrialSource::Evaluated)
                // a non-finite reward (a store written by an older build) is no best
                && t.reward.is_some_and(f64::is_finite)
        })
        .collect();
    v.sort_by(|a, b| {
        b.reward
            .unwrap_or(f64::MIN)
            .total_cmp(&a.reward.unwrap_or(f64::MIN))
            .then(a.id.cmp(&b.id))
    });
    v
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

/// Prints the top-N table used by `show` and at the end of `search`.
pub fn print_best(trials: &[Trial], top: usize) {
    println!(
        "{:>4} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8} {:>9} {:>6}  ARCHITECTURE",
        "RANK", "REWARD", "VAL", "TEST", "LAT_MS", "PARAMS", "MFLOPS", "COST_S", "TRIAL"
    );
    for (i, t) in best_trials(trials).into_iter().take(top).enumerate() {
        let m = t.metrics.clone().unwrap_or_default();
        let wall = (t.cost.wall_seconds > 0.0).then_some(t.cost.wall_seconds);
        println!(
            "{:>4} {:>8} {:>8.4} {:>8} {:>10} {:>10} {:>8} {:>9} {:>6}  {}",
            i + 1,
            opt(t.reward, 4),
            m.val_accuracy,
            opt(m.test_accuracy, 4),
            opt(m.latency_ms, 3),
            opt(m.params, 0),
            opt(m.flops.map(|f| f / 1e6), 2),
            opt(wall, 1),
            t.id,
            t.arch
        );
    }
}

pub fn show(a: ShowArgs) -> Result<()> {
    let store = fnas_run::stores::open_read_only(&a.store.store)?;
    let exp = store.experiment(&a.name)?.with_context(|| {
        format!(
            "no experiment `{}` in {} (see `fnas ls`)",
            a.name,
            a.store.store.display()
        )
    })?;
    let trials = store.trials(exp.id)?;
    let spent: u64 = trials.iter().map(|t| t.cost.evaluations).sum();
    let finished = trials
        .iter()
        .filter(|t| t.status != TrialStatus::Pending)
        .count();
    let calibration = calibration(&trials);
    let images: u64 = trials.iter().map(|t| t.cost.images).sum();
    let settings = readable_settings(&exp, a.json);
    let pool = settings
        .as_ref()
        .and_then(|s| s.pool())
        .map(|p| pool_summary(p, &trials));
    let workers = utilisation(&trials);
    let transfer = settings.as_ref().map_or(serde_json::Value::Null, |s| {
        serde_json::to_value(&s.transfer).unwrap_or(serde_json::Value::Null)
    });
    if a.json {
        let best: Vec<i64> = best_trials(&trials)
            .iter()
            .take(a.top)
            .map(|t| t.id)
            .collect();
        // per trial, the pool figures lifted out of the metrics (null without the pool)
        let rows: Vec<serde_json::Value> = trials
            .iter()
            .map(|t| {
                let mut v = serde_json::to_value(t).unwrap_or(serde_json::Value::Null);
                let f = t.metrics.as_ref().and_then(PoolFigures::from_metrics);
                if let Some(obj) = v.as_object_mut() {
                    let f = f.as_ref();
                    let figures = [
                        ("pool_hit_ratio", f.map(|f| f.hit_ratio)),
                        ("pool_distance", f.map(|f| f.mean_distance)),
                        (
                            "warm_start",
                            f.map(|f| if f.warm_start { 1.0 } else { 0.0 }),
                        ),
                        (
                            "pool_declined_distance",
                            f.and_then(|f| f.declined_distance),
                        ),
                    ];
                    for (key, x) in figures {
                        obj.insert(key.into(), serde_json::json!(x));
                    }
                }
                v
            })
            .collect();
        let v = serde_json::json!({
            "experiment": exp,
            "summary": { "trials": trials.len(), "finished": finished, "cost": spent, "images": images, "best": best },
            "transfer": transfer,
            "critic": calibration,
            "pool": pool,
            "workers": workers,
            "trials": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let s = &exp.spec;
    println!("experiment {} ({})", s.name, exp.status);
    println!(
        "  task {}  space {}  strategy {}  seed {}",
        s.task, s.space, s.strategy, s.seed
    );
    let images_budget = settings
        .as_ref()
        .is_some_and(|s| s.budget_unit() == BudgetUnit::Images);
    let unit_spent = if images_budget {
        format!("{images} images")
    } else {
        spent.to_string()
    };
    println!(
        "  trials {} (finished {finished})  cost {unit_spent}/{}",
        trials.len(),
        s.budget
    );
    if let Some(list) = transfer.as_array().filter(|l| !l.is_empty()) {
        let names: Vec<String> = list
            .iter()
            .map(|t| {
                format!(
                    "{} ({}, {} points)",
                    t["experiment"].as_str().unwrap_or("?"),
                    t["task"].as_str().unwrap_or("?"),
                    t["points"]
                )
            })
            .collect();
        println!("  critic pre-trained on: {}", names.join(", "));
    }
    if let Some(p) = &pool {
        println!(
            "  knowledge pool: fair warm starts from budget class {} images; {} of {} trained children warm-started (hit ratio {:.2}, mean block distance {:.2}), {} epoch{} each; {} trained from scratch as their sources were farther than {}; {}",
            p.budget_class.map_or("-".into(), |c| c.to_string()),
            p.warm_started,
            p.trained,
            p.mean_hit_ratio,
            p.mean_distance,
            p.warm_epochs,
            if p.warm_epochs == 1.0 { "" } else { "s" },
            p.declined,
            p.max_distance.map_or("(no limit)".into(), |d| d.to_string()),
            if p.other_tasks {
                "entries of other tasks allowed"
            } else {
                "this task's entries only"
            },
        );
    }
    if images > 0 {
        println!("  training images processed: {images}");
    }
    let seeds = settings.as_ref().map_or(1, |s| s.reward_seeds());
    if seeds > 1 {
        println!("  reward: mean validation accuracy of {seeds} trainings (seeds) per child");
    }
    if let Some(c) = &calibration {
        println!(
            "  critic: {} proposals trusted (not evaluated); on {} evaluated ones: mean abs error {:.4}, coverage of +-2 std {:.0}%",
            c.trusted, c.scored, c.mae, 100.0 * c.coverage
        );
    }
    if let Some(u) = &workers {
        println!(
            "  workers: {} evaluated {} trials in {:.1} s (first claim to last result); busy {:.0}% of that on average",
            u.workers.len(),
            u.workers.iter().map(|w| w.trials).sum::<usize>(),
            u.wall_seconds,
            100.0 * u.mean_utilisation
        );
        for w in &u.workers {
            println!(
                "    {:<40} {:>5} trials  busy {:>8.1} s  {:>3.0}%",
                w.worker,
                w.trials,
                w.busy_seconds,
                100.0 * w.utilisation
            );
        }
    }
    println!();
    print_best(&trials, a.top);
    Ok(())
}

/// How busy the processes that evaluated an experiment's trials were.
#[derive(serde::Serialize)]
pub struct Utilisation {
    /// From the first claim to the last result of an evaluated trial.
    pub wall_seconds: f64,
    pub mean_utilisation: f64,
    pub workers: Vec<WorkerUse>,
}

/// One evaluating process (driver or worker, `role (pid N on HOST)`).
#[derive(serde::Serialize)]
pub struct WorkerUse {
    pub worker: String,
    pub trials: usize,
    /// Sum over its trials of claim-to-result time.
    pub busy_seconds: f64,
    /// `busy_seconds / wall_seconds`.
    pub utilisation: f64,
}

/// Worker utilisation from the lease columns of evaluated trials (`None`: none was
/// evaluated under a lease, e.g. a store written before leases).
pub fn utilisation(trials: &[Trial]) -> Option<Utilisation> {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    for t in trials {
        let (Some(w), Some(c), Some(f)) = (t.worker.as_deref(), t.claimed_at, t.finished_at) else {
            continue;
        };
        if t.source != Some(fnas_core::store::TrialSource::Evaluated) || f < c {
            continue;
        }
        first = first.min(c);
        last = last.max(f);
        let e = by.entry(w).or_default();
        e.0 += 1;
        e.1 += f - c;
    }
    if by.is_empty() {
        return None;
    }
    let wall = (last - first).max(1e-9);
    let workers: Vec<WorkerUse> = by
        .into_iter()
        .map(|(w, (trials, busy))| WorkerUse {
            worker: fnas_core::store::Holder::decode(w)
                .map_or_else(|| w.to_string(), |h| h.to_string()),
            trials,
            busy_seconds: busy,
            utilisation: busy / wall,
        })
        .collect();
    let mean = workers.iter().map(|w| w.utilisation).sum::<f64>() / workers.len() as f64;
    Some(Utilisation {
        wall_seconds: wall,
        mean_utilisation: mean,
        workers,
    })
}

/// What the knowledge pool did in one experiment (fairness: one budget class).
#[derive(serde::Serialize)]
pub struct PoolSummary {
    pub budget_class: Option<u64>,
    pub warm_epochs: f64,
    pub trained: usize,
    pub warm_started: usize,
    pub mean_hit_ratio: f64,
    pub mean_distance: f64,
    /// Children that trained from scratch because their sources were too far.
    pub declined: usize,
    pub max_distance: Option<f64>,
    /// Warm starts may use entries of another task (recorded before the setting: yes).
    pub other_tasks: bool,
}

/// The settings of an experiment for the figures derived from them; settings this
/// build cannot read (a newer fnas wrote them) leave those figures out, with a warning
/// (none with `--json`: stdout stays one JSON object and stderr quiet).
fn readable_settings(exp: &Experiment, quiet: bool) -> Option<SearchSettings> {
    match fnas_run::settings_of(exp) {
        Ok(s) => Some(s),
        Err(e) => {
            if !quiet {
                // anyhow prints the cause too
                let e = anyhow::Error::from(e);
                eprintln!("warning: {e:#}; the figures that depend on them are left out");
            }
            None
        }
    }
}

pub fn pool_summary(pool: &PoolPolicy, trials: &[Trial]) -> PoolSummary {
    // every evaluated child; `None`: trained without the pool's figures
    let figures: Vec<Option<PoolFigures>> = trials
        .iter()
        .filter(|t| t.source == Some(TrialSource::Evaluated))
        .filter_map(|t| t.metrics.as_ref().map(PoolFigures::from_metrics))
        .collect();
    let recorded = || figures.iter().flatten();
    let n = figures.len().max(1) as f64;
    let warm_started = recorded().filter(|f| f.warm_start).count();
    PoolSummary {
        budget_class: pool.budget_class,
        warm_epochs: pool.warm_epochs,
        trained: figures.len(),
        warm_started,
        mean_hit_ratio: recorded().map(|f| f.hit_ratio).sum::<f64>() / n,
        // over the warm-started children (a from-scratch child has no distance)
        mean_distance: recorded().map(|f| f.mean_distance).sum::<f64>()
            / warm_started.max(1) as f64,
        declined: recorded().filter(|f| f.declined_distance.is_some()).count(),
        max_distance: pool.max_distance,
        other_tasks: pool.other_tasks,
    }
}

/// How well the critic's predictions matched the evaluated truth.
#[derive(serde::Serialize)]
pub struct Calibration {
    pub trusted: usize,
    pub scored: usize,
    pub mae: f64,
    pub coverage: f64,
}

pub fn calibration(trials: &[Trial]) -> Option<Calibration> {
    let trusted = trials
        .iter()
        .filter(|t| t.source == Some(TrialSource::Critic))
        .count();
    let pairs: Vec<(f64, f64, f64)> = trials
        .iter()
        .filter(|t| t.source == Some(TrialSource::Evaluated))
        .filter_map(|t| Some((t.prediction?, t.reward?)))
        .map(|(p, r)| (p.mean, p.std, r))
        .collect();
    if pairs.is_empty() && trusted == 0 {
        return None;
    }
    let n = pairs.len().max(1) as f64;
    Some(Calibration {
        trusted,
        scored: pairs.len(),
        mae: pairs.iter().map(|(m, _, r)| (r - m).abs()).sum::<f64>() / n,
        coverage: pairs
            .iter()
            .filter(|(m, s, r)| (r - m).abs() <= 2.0 * s)
            .count() as f64
            / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fnas_core::Cost;

    fn trial(id: i64, reward: Option<f64>) -> Trial {
        Trial {
            id,
            experiment_id: 1,
            batch: 0,
            index: id as u32,
            arch: format!("a{id}"),
            canonical: format!("a{id}"),
            log_prob: None,
            prediction: None,
            status: TrialStatus::Done,
            source: Some(TrialSource::Evaluated),
            metrics: None,
            reward,
            cost: Cost::query(),
            error: None,
            created_at: 0.0,
            finished_at: Some(0.0),
            attempts: 0,
            queued: false,
            worker: None,
            claimed_at: None,
            leased: false,
        }
    }

    /// A store written by an older build may hold a NaN or an infinite reward: it is
    /// never the best (NaN sorts above everything under `total_cmp`).
    #[test]
    fn the_best_trials_are_finite() {
        let trials = vec![
            trial(1, Some(0.5)),
            trial(2, Some(f64::NAN)),
            trial(3, Some(f64::INFINITY)),
            trial(4, Some(0.7)),
            trial(5, None),
        ];
        let best: Vec<i64> = best_trials(&trials).iter().map(|t| t.id).collect();
        assert_eq!(best, vec![4, 1]);
    }
}
