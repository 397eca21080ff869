//! Many workers on one experiment: `fnas search` drives, `fnas worker` processes claim
//! the queued trials under leases (SQLite store, real benchmark data).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fnas() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fnas"));
    c.env("FNAS_DATA_DIR", data_dir());
    c
}

fn data_dir() -> PathBuf {
    let d = fnas_bench::resolve_data_dir(None);
    assert!(
        d.join("nas-bench-graph/light/cora.bench").exists(),
        "benchmark data missing in {}: run scripts/setup.sh",
        d.display()
    );
    d
}

fn run(args: &[&str]) -> Output {
    fnas().args(args).output().expect("fnas binary runs")
}

fn spawn(args: &[&str]) -> Child {
    fnas()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fnas binary runs")
}

fn show(store: &Path, name: &str) -> serde_json::Value {
    let o = run(&["show", name, "--store", store.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The trials' queue columns, straight from the file.
fn holders(store: &Path) -> Vec<(String, i64)> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut st = c
        .prepare(
            "SELECT coalesce(lease_holder, ''), attempts FROM trials
              WHERE source = 'evaluated' ORDER BY id",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The holder of every trial's latest lease (pending ones included).
fn holders_any(store: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut st = c
        .prepare("SELECT coalesce(lease_holder, '') FROM trials")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn wait_for(child: &mut Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("process still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    Output {
        status: child.wait().unwrap(),
        stdout: out,
        stderr: err,
    }
}

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
    let t0 = Instant::now();
    while !run(&["show", "e", "--store", s, "--json"]).status.success() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no experiment");
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let t0 = Instant::now();
    while !run(&["show", "e", "--store", s, "--json"]).status.success() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no experiment");
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// A fresh database on the test PostgreSQL server (scripts/postgres.sh), dropped after.
struct PgDb {
    name: String,
}

fn pg_server() -> String {
    std::env::var("FNAS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://fnas@127.0.0.1:5432/fnas".to_string())
}

impl PgDb {
    fn new(tag: &str) -> Self {
        let name = format!("fnas_cli_{tag}_{}", std::process::id());
        let mut admin = fnas_store::postgres::client(&pg_server()).unwrap_or_else(|e| {
            panic!("PostgreSQL server for the tests: {e} (start it with scripts/postgres.sh)")
        });
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Self { name }
    }

    fn url(&self) -> String {
        let base = pg_server();
        format!("{}/{}", &base[..base.rfind('/').unwrap()], self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = fnas_store::postgres::client(&pg_server()) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

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
            "evolution",
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
    let t0 = Instant::now();
    while !run(&["show", "e", "--store", &url, "--json"])
        .status
        .success()
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "no experiment");
        std::thread::sleep(Duration::from_millis(50));
    }
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
