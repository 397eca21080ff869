//! `fnas search`: run or resume one search, with progress, then print the best. What
//! the search is (settings, strategy, evaluator) comes from `fnas_run`; this command
//! holds the driver lease and shows progress.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use fnas_child::TrainingEvaluator;
use fnas_core::store::{Holder, TrialSource};
use fnas_core::{Evaluator, Store};
use fnas_run::{NewSearch, PrepareOptions, StrategyKind};

use crate::cli::SearchArgs;
use crate::progress::{budget_bar, progress_hook_shared, LogLines};

pub fn run(a: SearchArgs) -> Result<()> {
    if a.budget.budget == Some(0) || a.batch_size == 0 || a.budget.budget_images == Some(0) {
        bail!("--budget, --budget-images and --batch-size must be at least 1");
    }
    let options = a.options();
    let store_path = &a.store.store;
    let resumable = match a.resume {
        true => fnas_run::find_resumable(
            store_path,
            a.name.as_deref(),
            &a.strategy,
            a.seed,
            &options.task,
        )?,
        false => None,
    };
    let (mut store, exp, mut search, driver) = match resumable {
        Some((mut store, mut exp)) => {
            let name = exp.spec.name.clone();
            let driver = drive(store.as_mut(), exp.id, &name, a.workers.wait, a.json)?;
            let opts = PrepareOptions::new(store_path, options.task.data_dir.as_deref());
            let resumed = fnas_run::resume(store.as_mut(), &mut exp, &options, opts)?;
            if !a.json {
                eprintln!("resuming experiment `{name}` (settings from the store)");
                for w in &resumed.ignored {
                    eprintln!("warning: {w} (a resumed search keeps the settings stored with `{name}`; start a new experiment with --name to change them)");
                }
                if let Some((old, new)) = resumed.budget_changed {
                    eprintln!("budget of `{name}` changed from {old} to {new}");
                }
            }
            (store, exp, resumed.search, driver)
        }
        None => {
            let new = NewSearch {
                strategy: a.strategy.parse::<StrategyKind>()?,
                seed: a.seed,
                name: a.name.clone(),
                options,
            };
            let mut started = new.start(store_path)?;
            let exp = started.experiment;
            let driver = drive(
                started.store.as_mut(),
                exp.id,
                &exp.spec.name,
                a.workers.wait,
                a.json,
            )?;
            (started.store, exp, started.search, driver)
        }
    };
    let settings = &search.settings;
    if !settings.transfer.is_empty() && !a.json {
        let list: Vec<String> = settings
            .transfer
            .iter()
            .map(|t| format!("{} ({}, {} points)", t.experiment, t.task, t.points))
            .collect();
        eprintln!("critic pre-trained on {}", list.join(", "));
    }
    if let (Some(pc), false) = (settings.pool(), a.json) {
        eprintln!(
            "knowledge pool: warm starts from entries of budget class {} images (one from-scratch proxy training), a warm-started child trains {} epoch{}",
            pc.budget_class.map_or("?".into(), |c| c.to_string()),
            pc.warm_epochs,
            if pc.warm_epochs == 1.0 { "" } else { "s" }
        );
    }
    let bar = budget_bar(exp.spec.budget, a.json);
    let title = format!("{} on {}", exp.spec.strategy, exp.spec.task);
    bar.set_message(title.clone());
    // "trained 12 trusted 3 replayed 40 best 0.81", shared with the workers' step messages
    let status = Arc::new(Mutex::new(title));
    let hook = progress_hook_shared(bar.clone(), status.clone());
    search.evaluator.target.set_progress(hook);
    search.config.local_workers = a.workers.workers != Some(0);
    search.config.max_attempts = a.workers.max_attempts;
    search.config.driver = Some(driver.clone());
    let mut counts = SourceCounts::default();
    let mut log = LogLines::for_stderr(a.json, std::time::Duration::from_secs(30));
    // cost spent at the last trial of this run (None: no trial ran), for the final line
    let mut last_spent = None;
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
    let mut on_lost = |path: &str, message: &str| {
        bar.suspend(|| {
            eprintln!("warning: store {path} unavailable ({message}); reconnecting, then resuming from the last checkpoint")
        })
    };
    let summary = search.run(store.as_mut(), &exp, &mut progress, &mut on_lost)?;
    bar.finish_and_clear();
    store.release_driver(&driver)?;
    if let (Some(spent), Ok(line)) = (last_spent, status.lock()) {
        log.update(spent, exp.spec.budget, &line, true);
    }
    let trials = store.trials(exp.id)?;
    let best_child = search
        .evaluator
        .target
        .training()
        .and_then(|ev| best_child_report(ev, &trials, a.json));
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
    /// The image folder of an image-folder task (the hint must train on it too).
    images: Option<PathBuf>,
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
        eprintln!("measuring the best child's test accuracy (t10k, or the image folder's test/) from its saved weights...");
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
        images: ev.data().task.images.clone(),
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
            (Some(t), _) if self.images.is_some() => println!("  test accuracy  {t:.4} (test/, the proxy-trained weights; never used by the search)"),
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
        // a folder without test/ cannot be tested: no --test in the hint then
        let images = match &self.images {
            Some(d) if d.join("test").is_dir() => format!(" --images \"{}\" --test", d.display()),
            Some(d) => format!(" --images \"{}\"", d.display()),
            None => " --test".to_string(),
        };
        println!(
            "  train it longer: fnas train --arch \"{}\" --task fashion-mnist-full{images}",
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
