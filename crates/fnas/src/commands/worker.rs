//! `fnas worker`: evaluates the queued trials of an experiment that a `fnas search`
//! drives, on this machine or another one that shares the store, until the search ends.
//! Each trial is claimed under a lease that a heartbeat thread keeps alive while it is
//! evaluated; a result whose lease was taken over is not recorded (the other worker's
//! stands).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use fnas_core::search::evaluate;
use fnas_core::store::{Holder, Lease};
use fnas_core::{Evaluator, StoreError};
use fnas_run::{PrepareOptions, RECONNECT_SECONDS};

use crate::cli::WorkerArgs;

/// How often an idle worker looks for a queued trial.
const POLL: Duration = Duration::from_millis(50);

/// Runs `op` until it succeeds, fails otherwise than by an unreachable store, or the
/// store has been unreachable for [`RECONNECT_SECONDS`].
fn retrying<T>(what: &str, mut op: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut since: Option<Instant> = None;
    loop {
        match op() {
            Err(StoreError::Unavailable { path, message })
                if since.is_none_or(|t| t.elapsed().as_secs() < RECONNECT_SECONDS) =>
            {
                if since.is_none() {
                    eprintln!(
                        "warning: store {path} unavailable while {what} ({message}); reconnecting"
                    );
                    since = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

pub fn run(a: WorkerArgs) -> Result<()> {
    if !(a.lease_seconds.is_finite() && a.lease_seconds >= 1.0) {
        bail!(
            "--lease-seconds must be at least 1, not {}",
            a.lease_seconds
        );
    }
    let path = &a.store.store;
    let mut store = fnas_run::stores::open_existing(
        path,
        "a worker joins a search that `fnas search` started",
    )?;
    let exp = store.experiment(&a.experiment)?.ok_or_else(|| {
        anyhow!(
            "no experiment `{}` in store {} (see `fnas ls --store {}`)",
            a.experiment,
            path.display(),
            path.display()
        )
    })?;
    let name = exp.spec.name.clone();
    let fnas_run::PreparedEvaluator {
        settings,
        evaluator,
    } = fnas_run::prepare_evaluator(&exp, PrepareOptions::new(path, a.data_dir.as_deref()))?;
    let me = Holder::this_process("worker");
    if !a.json {
        eprintln!("worker {me} on experiment `{name}` ({})", exp.spec.task);
    }
    let started = Instant::now();
    let (mut done, mut busy) = (0u64, Duration::ZERO);
    let mut idle_since = Instant::now();
    loop {
        if a.max_trials.is_some_and(|m| done >= m) {
            break;
        }
        let c0 = Instant::now();
        let claim = retrying("claiming a trial", || {
            store.claim_trial(exp.id, &me, a.lease_seconds)
        })?;
        let claim_ms = c0.elapsed().as_secs_f64() * 1e3;
        let Some((trial, lease)) = claim else {
            let now = retrying("reading the experiment", || store.experiment(&name))?
                .ok_or_else(|| anyhow!("experiment `{name}` vanished from the store"))?;
            if now.status == "finished" {
                break;
            }
            if a.idle_exit_seconds
                .is_some_and(|s| idle_since.elapsed().as_secs_f64() >= s)
            {
                break;
            }
            std::thread::sleep(POLL);
            continue;
        };
        let t0 = Instant::now();
        let arch = evaluator
            .space()
            .parse(&trial.arch)
            .map_err(|e| anyhow!("trial {}: stored architecture unreadable: {e}", trial.id))?;
        let result = with_heartbeat(path, &lease, a.lease_seconds, || {
            evaluate(&evaluator, &arch, &settings.reward)
        })??;
        busy += t0.elapsed();
        let f0 = Instant::now();
        let finished = retrying("recording a result", || {
            store.finish_leased(&lease, &result)
        });
        let finish_ms = f0.elapsed().as_secs_f64() * 1e3;
        match finished {
            Ok(()) => {
                fnas_core::crash::point("result-commit");
                done += 1;
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "trial": trial.id,
                            "attempt": lease.attempt,
                            "status": result.status.as_str(),
                            "reward": result.reward,
                            "seconds": t0.elapsed().as_secs_f64(),
                            "claim_ms": claim_ms,
                            "finish_ms": finish_ms,
                        })
                    );
                } else {
                    eprintln!(
                        "trial {} {}: reward {}",
                        trial.id,
                        result.status.as_str(),
                        result.reward.map_or("-".into(), |r| format!("{r:.4}"))
                    );
                }
            }
            Err(StoreError::LeaseLost(_) | StoreError::AlreadyFinished(_)) => eprintln!(
                "trial {}: the lease was taken over while it was evaluated; its result is not recorded",
                trial.id
            ),
            Err(e) => return Err(e.into()),
        }
        idle_since = Instant::now();
    }
    if !a.json {
        let wall = started.elapsed().as_secs_f64();
        eprintln!(
            "worker done: {done} trials evaluated, busy {:.0}% of {wall:.1} s",
            100.0 * busy.as_secs_f64() / wall.max(1e-9)
        );
    }
    Ok(())
}

/// Runs `work` while a thread with its own store connection renews `lease` every third
/// of `lease_seconds`. A lost lease is only noticed when the result is recorded.
fn with_heartbeat<T>(
    path: &Path,
    lease: &Lease,
    lease_seconds: f64,
    work: impl FnOnce() -> T,
) -> Result<T> {
    let stop = AtomicBool::new(false);
    let every = Duration::from_secs_f64(lease_seconds / 3.0);
    Ok(std::thread::scope(|s| {
        s.spawn(|| {
            // its own connection: the main one is busy recording nothing meanwhile, but a
            // store handle is not shared between threads
            let mut beat = match fnas_run::stores::open(path).map_err(anyhow::Error::from) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("warning: no heartbeat for trial {}: {e:#}", lease.trial);
                    return;
                }
            };
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(every));
                if last.elapsed() >= every {
                    last = Instant::now();
                    match beat.heartbeat(lease, lease_seconds) {
                        // the next beat reconnects
                        Ok(()) | Err(StoreError::Unavailable { .. }) => {}
                        Err(_) => return,
                    }
                }
            }
        });
        let out = work();
        stop.store(true, Ordering::Relaxed);
        out
    }))
}
