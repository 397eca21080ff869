//! Many workers on one experiment: `fnas search` drives, `fnas worker` processes claim
//! the queued trials under leases (SQLite store, real benchmark data).

use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn worker_processes_share_an_experiment_and_a_second_driver_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let mut driver = spawn(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--strategy",
        "evolution",
        "--budget",
        "16",
        "--seed",
        "3",
        "--store",
        s,
        "--name",
        "e",
        "--workers",
        "0",
        "--simulate-eval-seconds",
        "0.1",
    ]);
    // the experiment exists once the driver has recorded its first batch
    wait_for_experiment(s, "e", Duration::from_secs(20));
    // a second driver is refused, naming the live one
    let o = run(&["search", "--store", s, "--name", "e", "--resume"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("is driven by driver (pid") && e.contains("fnas worker"),
        "{e}"
    );
    let mut w1 = spawn(&["worker", "--store", s, "--experiment", "e", "--json"]);
    let mut w2 = spawn(&["worker", "--store", s, "--experiment", "e", "--json"]);
    let d = wait_for(&mut driver, Duration::from_secs(60));
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let o1 = wait_for(&mut w1, Duration::from_secs(20));
    let o2 = wait_for(&mut w2, Duration::from_secs(20));
    assert!(o1.status.success() && o2.status.success());
    let lines = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(
        lines(&o1) + lines(&o2),
        16,
        "every evaluation by a worker, once"
    );
    assert!(lines(&o1) > 0 && lines(&o2) > 0, "both workers worked");
    let v = show(&store, "e");
    assert_eq!(v["experiment"]["status"], "finished");
    let trials = v["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 16);
    assert!(trials.iter().all(|t| t["status"] == "done"));
    let h = holders(&store);
    assert!(
        h.iter().all(|(who, n)| who.ends_with(":worker") && *n == 1),
        "{h:?}"
    );
}

#[test]
fn a_stopped_worker_loses_its_trial_and_its_late_result_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let mut driver = spawn(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--strategy",
        "random",
        "--budget",
        "2",
        "--batch-size",
        "2",
        "--seed",
        "1",
        "--store",
        s,
        "--name",
        "e",
        "--workers",
        "0",
        "--simulate-eval-seconds",
        "2",
    ]);
    wait_for_experiment(s, "e", Duration::from_secs(20));
    let mut slow = spawn(&[
        "worker",
        "--store",
        s,
        "--experiment",
        "e",
        "--lease-seconds",
        "1",
        "--max-trials",
        "1",
    ]);
    let pid = slow.id() as i32;
    // stop it once it holds a trial
    let t0 = Instant::now();
    let mine = format!(":{pid}:worker");
    while !holders_any(&store).iter().any(|h| h.ends_with(&mine)) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the worker claimed nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // its lease expires while it is stopped; the driver takes the trial back and a
    // second worker evaluates both trials
    let mut other = spawn(&["worker", "--store", s, "--experiment", "e", "--json"]);
    let d = wait_for(&mut driver, Duration::from_secs(60));
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let late = wait_for(&mut slow, Duration::from_secs(20));
    let e = String::from_utf8_lossy(&late.stderr);
    assert!(late.status.success(), "{e}");
    assert!(
        e.contains("taken over") && e.contains("not recorded"),
        "{e}"
    );
    let o = wait_for(&mut other, Duration::from_secs(20));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    let h = holders(&store);
    assert_eq!(h.len(), 2, "each trial recorded once: {h:?}");
    assert_eq!(
        h.iter().map(|(_, n)| n).sum::<i64>(),
        3,
        "one trial claimed twice: {h:?}"
    );
}

#[test]
fn worker_bad_input_is_a_one_line_error_and_claims_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.db");
    let o = run(&[
        "worker",
        "--store",
        missing.to_str().unwrap(),
        "--experiment",
        "e",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.starts_with("error:") && e.contains("no such file"),
        "{e}"
    );
    assert!(!missing.exists(), "a worker must not create a store");
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--strategy",
        "random",
        "--budget",
        "4",
        "--store",
        s,
        "--name",
        "done",
    ]);
    assert!(o.status.success());
    let o = run(&["worker", "--store", s, "--experiment", "nope"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("no experiment `nope`"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    let o = run(&[
        "worker",
        "--store",
        s,
        "--experiment",
        "done",
        "--lease-seconds",
        "0",
    ]);
    assert!(!o.status.success());
    // a finished search: the worker has nothing to do and says so
    let o = run(&["worker", "--store", s, "--experiment", "done"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 trials evaluated"));
}

/// Random search proposes without waiting for results, so the PostgreSQL search with
/// worker processes (which begins each next batch while the last children of the
/// current one are evaluated) records exactly the trials of the one-process SQLite one.
#[test]
fn postgres_store_driver_and_workers_give_the_sqlite_result() {
    let db = PgDb::new("share");
    let url = db.url();
    let tmp = tempfile::tempdir().unwrap();
    let lite = tmp.path().join("s.db");
    let search = |store: &str, workers: &str| -> Vec<String> {
        vec![
            "search",
            "--benchmark",
            "nas-bench-graph",
            "--dataset",
            "citeseer",
            "--strategy",
            "random",
            "--budget",
            "24",
            "--seed",
            "5",
            "--store",
            store,
            "--name",
            "e",
            "--workers",
            workers,
            "--simulate-eval-seconds",
            "0.05",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    };
    let o = fnas()
        .args(search(lite.to_str().unwrap(), "1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let args = search(&url, "0");
    let mut driver = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // workers join an experiment that exists
    wait_for_experiment(&url, "e", Duration::from_secs(30));
    let mut w1 = spawn(&["worker", "--store", &url, "--experiment", "e", "--json"]);
    let mut w2 = spawn(&["worker", "--store", &url, "--experiment", "e", "--json"]);
    let d = wait_for(&mut driver, Duration::from_secs(90));
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let n1 = wait_for(&mut w1, Duration::from_secs(30)).stdout;
    let n2 = wait_for(&mut w2, Duration::from_secs(30)).stdout;
    let lines = |o: &[u8]| String::from_utf8_lossy(o).lines().count();
    assert_eq!(lines(&n1) + lines(&n2), 24);
    // the same search, trial for trial, as on SQLite in one process
    let archs = |store: &str| -> Vec<String> {
        let o = run(&["show", "e", "--store", store, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| format!("{} {}", t["arch"], t["reward"]))
            .collect()
    };
    assert_eq!(archs(&url), archs(lite.to_str().unwrap()));
    // bad URLs: one line, no password echoed
    let o = run(&[
        "ls",
        "--store",
        "postgresql://fnas:s3cret@127.0.0.1:5432/fnas",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("PGPASSWORD") && !e.contains("s3cret"),
        "{e}"
    );
    let o = run(&[
        "worker",
        "--store",
        "postgresql://fnas@127.0.0.1:1/fnas",
        "--experiment",
        "e",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("cannot connect"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}

/// Real training on PostgreSQL: the weights and the knowledge pool's files go to the
/// experiment's artifacts folder (its index in the database), workers in other
/// processes warm-start children from entries that other workers wrote.
#[test]
fn real_training_on_postgres_keeps_its_files_in_the_artifacts_folder() {
    let db = PgDb::new("artifacts");
    let url = db.url();
    let tmp = tempfile::tempdir().unwrap();
    let art = tmp.path().join("shared");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "search",
            "--task",
            "fashion-mnist-tiny",
            "--epochs",
            "2",
            "--strategy",
            "fnas",
            "--budget",
            "5",
            "--batch-size",
            "3",
            "--pool-min-networks",
            "2",
            "--warm-max-distance",
            "1000",
            "--store",
            &url,
            "--name",
            "t",
            "--workers",
            "0",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // a PostgreSQL store has nothing to keep the files beside
    let o = fnas().args(args(&[])).output().expect("fnas binary runs");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--artifacts"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(
        !run(&["show", "t", "--store", &url]).status.success(),
        "no experiment was created"
    );
    let full = args(&["--artifacts", art.to_str().unwrap()]);
    let mut driver = spawn(&full.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for_experiment(&url, "t", Duration::from_secs(60));
    let mut w1 = spawn(&["worker", "--store", &url, "--experiment", "t"]);
    let mut w2 = spawn(&["worker", "--store", &url, "--experiment", "t"]);
    let d = wait_for(&mut driver, Duration::from_secs(300));
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    assert!(wait_for(&mut w1, Duration::from_secs(30)).status.success());
    assert!(wait_for(&mut w2, Duration::from_secs(30)).status.success());
    let o = run(&["show", "t", "--store", &url, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let trained: Vec<&serde_json::Value> = v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "evaluated")
        .collect();
    assert_eq!(trained.len(), 5);
    assert!(
        trained.iter().any(|t| t["warm_start"] == 1.0),
        "a child warm-started from another worker's entries: {}",
        v["trials"]
    );
    assert!(v["workers"]["workers"].as_array().unwrap().len() == 2);
    let weights = std::fs::read_dir(art.join("weights").join("t"))
        .unwrap()
        .count();
    assert!(
        weights >= 10,
        "5 children x (safetensors + arch): {weights}"
    );
    let pool_files = std::fs::read_dir(art.join("pool")).unwrap().count();
    assert!(pool_files > 0);
    let mut c = fnas_store::postgres::client(&url).unwrap();
    let rows: i64 = c
        .query_one("SELECT count(*) FROM pool_entries", &[])
        .unwrap()
        .get(0);
    assert!(rows > 0);
    // a worker on a machine that does not see the folder stops before claiming
    let moved = tmp.path().join("elsewhere");
    std::fs::rename(&art, &moved).unwrap();
    let o = run(&[
        "search", "--store", &url, "--name", "t", "--resume", "--budget", "6",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("artifacts folder"), "{e}");
    let o = run(&["worker", "--store", &url, "--experiment", "t"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("artifacts folder") && e.contains("cannot reach"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}

/// An asynchronous strategy (random, evolution) keeps the workers busy across batch
/// boundaries: the next batch is begun while the last children of the current one are
/// evaluated, and its trials are claimed before that batch has finished.
#[test]
fn workers_claim_the_next_batch_before_the_current_one_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let mut driver = spawn(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--strategy",
        "evolution",
        "--budget",
        "12",
        "--batch-size",
        "3",
        "--seed",
        "4",
        "--store",
        s,
        "--name",
        "e",
        "--workers",
        "0",
        "--simulate-eval-seconds",
        "0.3",
    ]);
    wait_for_experiment(s, "e", Duration::from_secs(20));
    let mut w1 = spawn(&["worker", "--store", s, "--experiment", "e"]);
    let mut w2 = spawn(&["worker", "--store", s, "--experiment", "e"]);
    let d = wait_for(&mut driver, Duration::from_secs(60));
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    wait_for(&mut w1, Duration::from_secs(20));
    wait_for(&mut w2, Duration::from_secs(20));
    let v = show(&store, "e");
    let trials = v["trials"].as_array().unwrap();
    let evaluated: Vec<&serde_json::Value> = trials
        .iter()
        .filter(|t| t["source"] == "evaluated")
        .collect();
    assert_eq!(evaluated.len(), 12, "budget exact");
    let f = |t: &serde_json::Value, k: &str| t[k].as_f64().unwrap();
    // with 3 trials a batch and 2 workers, one worker is free while the other finishes
    // the third trial of a batch: it takes a trial of the next batch
    let overlaps = evaluated
        .iter()
        .filter(|t| {
            let b = t["batch"].as_u64().unwrap();
            b > 0
                && evaluated.iter().any(|p| {
                    p["batch"].as_u64() == Some(b - 1) && f(t, "claimed_at") < f(p, "finished_at")
                })
        })
        .count();
    assert!(
        overlaps > 0,
        "no trial was claimed before the batch before it ended"
    );
    let u = &v["workers"];
    assert!(
        u["mean_utilisation"].as_f64().unwrap() > 0.6,
        "workers busy most of the time: {u}"
    );
}

/// Wrong credentials: a one-line error that names the URL and never the password;
/// nothing is created or claimed.
#[test]
fn wrong_postgres_credentials_are_a_one_line_error_without_the_password() {
    let _pg = pg_shared();
    let secret = "not-the-password-4711";
    for args in [
        vec!["worker", "--experiment", "e"],
        vec!["ls"],
        vec![
            "search",
            "--benchmark",
            "nas-bench-graph",
            "--dataset",
            "cora",
            "--budget",
            "2",
        ],
    ] {
        let mut full = args.clone();
        let server = pg_server();
        full.extend(["--store", server.as_str()]);
        let o = fnas()
            .env("PGPASSWORD", secret)
            .args(&full)
            .output()
            .expect("fnas binary runs");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{full:?}");
        assert!(
            e.contains("password authentication failed") && !e.contains(secret),
            "{full:?}: {e}"
        );
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
}
