//! Crash safety: a child process (this test binary re-invoked with an environment
//! variable) records trials in a loop and is killed with SIGKILL at a random moment,
//! several times. After each kill the store must pass `integrity_check`, hold every
//! trial the child reported finished (it reports only after `finish_trial` returned),
//! and hold whole batches only.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fnas_core::store::{ExperimentSpec, NewTrial, TrialResult, TrialSource, TrialStatus};
use fnas_core::{Cost, Metrics};
use fnas_store::{SqliteStore, Store};

const CHILD_ENV: &str = "FNAS_STORE_CRASH_CHILD";
const BATCH: usize = 8;
const ROUNDS: usize = 8;

/// The child's body. Does nothing (and passes) unless started by the crash test.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    child_main(Path::new(&path));
}

fn report(line: &str) {
    // straight to fd 1 (the test harness only captures the print macros)
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn result_for(s: &SqliteStore, exp: i64, canonical: &str, x: u64) -> TrialResult {
    if let Some(prev) = s.find_evaluated(exp, canonical).unwrap() {
        return TrialResult {
            status: prev.status,
            source: TrialSource::Cached,
            metrics: prev.metrics,
            reward: prev.reward,
            cost: Cost::default(),
            error: prev.error,
        };
    }
    let acc = (x % 1000) as f64 / 1000.0;
    if x % 7 == 3 {
        return TrialResult {
            status: TrialStatus::Failed,
            source: TrialSource::Evaluated,
            metrics: None,
            reward: None,
            cost: Cost::query(),
            error: Some(format!("failed {x}")),
        };
    }
    TrialResult {
        status: TrialStatus::Done,
        source: TrialSource::Evaluated,
        metrics: Some(Metrics {
            val_accuracy: acc,
            test_accuracy: Some(acc * 0.99),
            ..Metrics::default()
        }),
        reward: Some(acc),
        cost: Cost::query(),
        error: None,
    }
}

fn finish_pending(s: &mut SqliteStore, exp: i64, batch: u64) {
    for t in s.batch_trials(exp, batch).unwrap() {
        if t.status == TrialStatus::Pending {
            let r = result_for(s, exp, &t.canonical, t.id as u64 * 2_654_435_761);
            s.finish_trial(t.id, &r).unwrap();
            report(&format!("finished {}", t.id));
        }
    }
    s.end_batch(exp, batch, format!("tell-{batch}").as_bytes())
        .unwrap();
    report(&format!("closed {batch}"));
}

fn child_main(path: &Path) -> ! {
    let mut s = SqliteStore::open(path).unwrap();
    let exp = match s.experiment("crash").unwrap() {
        Some(e) => e,
        None => s
            .create_experiment(&ExperimentSpec {
                name: "crash".into(),
                space: "toy".into(),
                task: "toy".into(),
                strategy: "random".into(),
                seed: 1,
                budget: u64::MAX,
                config: serde_json::json!({}),
            })
            .unwrap(),
    };
    let mut batch = match s.checkpoint(exp.id).unwrap() {
        None => 0,
        Some(cp) => {
            if cp.open {
                finish_pending(&mut s, exp.id, cp.batch);
            }
            cp.batch + 1
        }
    };
    loop {
        let proposals: Vec<NewTrial> = (0..BATCH)
            .map(|i| {
                let k = (batch * BATCH as u64 + i as u64).wrapping_mul(0x9e37_79b9) % 97;
                NewTrial {
                    arch: format!("arch-{batch}-{i}"),
                    canonical: format!("canon-{k}"),
                    log_prob: Some(-(k as f64) / 10.0),
                    prediction: None,
                }
            })
            .collect();
        // a checkpoint of some size, like a small strategy state
        let state = vec![batch as u8; 4096 + (batch as usize % 13) * 100];
        s.begin_batch(exp.id, batch, &proposals, &state).unwrap();
        report(&format!("begun {batch}"));
        finish_pending(&mut s, exp.id, batch);
        batch += 1;
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default)]
struct Reported {
    finished: HashSet<i64>,
    begun: HashSet<u64>,
    closed: HashSet<u64>,
}

#[test]
fn sigkill_never_loses_a_finished_trial_or_half_a_batch() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let exe = std::env::current_exe().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let mut reported = Reported::default();
    let mut last_total = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // a line cut by the kill has no newline and is not a report
                    Ok(_) if line.ends_with('\n') => {
                        if tx.send(line.trim_end().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => break,
                }
            }
        });
        // wait until the child is inside its loop, then kill it at a random moment
        let start = Instant::now();
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => {
                    let go = l.starts_with("finished") || l.starts_with("closed");
                    lines.push(l);
                    if go {
                        break;
                    }
                }
                Err(e) => panic!("round {round}: child reported nothing ({e:?})"),
            }
            assert!(start.elapsed() < Duration::from_secs(60));
        }
        let wait_ms = match rng.next() % 4 {
            0 => rng.next() % 5,
            _ => rng.next() % 250,
        };
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child loops until killed");
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for l in &lines {
            let mut w = l.split_whitespace();
            match (w.next(), w.next().map(str::parse::<i64>)) {
                (Some("finished"), Some(Ok(id))) => {
                    assert!(reported.finished.insert(id), "trial {id} finished twice");
                }
                (Some("begun"), Some(Ok(b))) => {
                    reported.begun.insert(b as u64);
                }
                (Some("closed"), Some(Ok(b))) => {
                    reported.closed.insert(b as u64);
                }
                _ => {} // libtest's own chatter
            }
        }

        // what `fnas show` would see right after the kill (WAL left behind), then what
        // a resumed search sees
        let ro = SqliteStore::open_read_only(&path)
            .unwrap_or_else(|e| panic!("round {round}: read-only open after a kill: {e}"));
        ro.integrity_check()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let ro_trials = ro
            .trials(ro.experiment("crash").unwrap().unwrap().id)
            .unwrap();
        drop(ro);
        let s = SqliteStore::open(&path).unwrap();
        s.integrity_check()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let exp = s.experiment("crash").unwrap().unwrap();
        let trials = s.trials(exp.id).unwrap();
        assert_eq!(
            ro_trials, trials,
            "round {round}: readers see the same store"
        );
        let by_id: BTreeMap<i64, _> = trials.iter().map(|t| (t.id, t)).collect();
        for id in &reported.finished {
            let t = by_id
                .get(id)
                .unwrap_or_else(|| panic!("round {round}: reported trial {id} is missing"));
            assert_ne!(
                t.status,
                TrialStatus::Pending,
                "round {round}: reported trial {id} is pending"
            );
        }
        let mut batches: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for t in &trials {
            batches.entry(t.batch).or_default().push(t.index);
        }
        for (b, idx) in &batches {
            assert_eq!(
                idx,
                &(0..BATCH as u32).collect::<Vec<_>>(),
                "round {round}: batch {b} is not whole"
            );
        }
        let max = batches.keys().next_back().copied();
        assert_eq!(
            batches.keys().copied().collect::<Vec<_>>(),
            (0..max.map_or(0, |m| m + 1)).collect::<Vec<_>>(),
            "round {round}: batches are contiguous"
        );
        for b in &reported.begun {
            assert!(
                batches.contains_key(b),
                "round {round}: begun batch {b} is missing"
            );
        }
        let cp = s.checkpoint(exp.id).unwrap();
        assert_eq!(cp.as_ref().map(|c| c.batch), max, "round {round}");
        if let Some(cp) = &cp {
            let want = if cp.open {
                vec![cp.batch as u8; 4096 + (cp.batch as usize % 13) * 100]
            } else {
                format!("tell-{}", cp.batch).into_bytes()
            };
            assert_eq!(cp.state, want, "round {round}: checkpoint state");
            for t in &trials {
                if t.batch < cp.batch || !cp.open {
                    assert_ne!(
                        t.status,
                        TrialStatus::Pending,
                        "round {round}: trial {}",
                        t.id
                    );
                }
            }
            for b in &reported.closed {
                assert!(
                    *b < cp.batch || (*b == cp.batch && !cp.open),
                    "round {round}: closed batch {b} reopened"
                );
            }
        }
        let finished = trials
            .iter()
            .filter(|t| t.status != TrialStatus::Pending)
            .count();
        eprintln!(
            "round {round}: killed after {wait_ms} ms; {} trials ({finished} finished) in {} batches, checkpoint {:?}",
            trials.len(),
            batches.len(),
            cp.map(|c| (c.batch, c.open))
        );
        assert!(trials.len() >= last_total, "trials never disappear");
        last_total = trials.len();
    }
    assert!(!reported.finished.is_empty());
}

/// Kills children right around the moment they create the store: whenever the file
/// exists afterwards, it is a complete store.
#[test]
fn sigkill_during_creation_never_leaves_a_half_store() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1);
    let mut existed = 0;
    for i in 0..16 {
        let path = dir.path().join(format!("new-{i}.db"));
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.next() % 40_000));
        child.kill().unwrap();
        child.wait().unwrap();
        if path.exists() {
            existed += 1;
            let s = SqliteStore::open_read_only(&path).unwrap_or_else(|e| {
                let files: Vec<_> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                panic!("kill {i}: a half-made store was left: {e}; files {files:?}")
            });
            s.integrity_check().unwrap();
        }
    }
    eprintln!("{existed} of 16 killed children had created their store");
}
