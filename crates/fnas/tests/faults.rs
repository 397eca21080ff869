//! Faults while many workers share an experiment, on both store backends: 8 worker
//! processes with random SIGKILLs of workers and of the driver, and a PostgreSQL server
//! restarted mid-search. Whatever is killed, every trial is finished exactly once, none
//! is lost, the budget is spent exactly, and the store stays sound.

use std::collections::BTreeSet;
use std::process::Child;
use std::time::Duration;

use crate::common::*;
use rand::{Rng, SeedableRng};

const BUDGET: u64 = 160;

/// The PostgreSQL checks hold the server alone: one of them restarts it.
fn server() -> std::sync::RwLockWriteGuard<'static, ()> {
    pg_exclusive()
}

fn search_args(store: &str, resume: bool) -> Vec<String> {
    let mut v: Vec<String> = [
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "citeseer",
        "--strategy",
        "random",
        "--budget",
        &BUDGET.to_string(),
        "--batch-size",
        "16",
        "--seed",
        "9",
        "--store",
        store,
        "--name",
        "e",
        "--workers",
        "0",
        "--simulate-eval-seconds",
        "0.25",
        "--max-attempts",
        "1000",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if resume {
        v.push("--resume".into());
    }
    v
}

fn spawn_owned(args: &[String]) -> Child {
    spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn worker(store: &str) -> Child {
    spawn(&[
        "worker",
        "--store",
        store,
        "--experiment",
        "e",
        "--lease-seconds",
        "5",
    ])
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The trials as `show --json` gives them.
fn trials(store: &str) -> Vec<serde_json::Value> {
    let o = run(&["show", "e", "--store", store, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["experiment"]["status"], "finished");
    v["trials"].as_array().unwrap().clone()
}

/// Runs the search with 8 workers and kills processes at random until `kills` are done;
/// returns the number of driver kills.
fn search_under_kills(store: &str, kills: usize, seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut driver = spawn_owned(&search_args(store, false));
    wait_for_experiment(store, "e", Duration::from_secs(30));
    let mut workers: Vec<Child> = (0..8).map(|_| worker(store)).collect();
    let (mut done, mut driver_kills) = (0, 0);
    while done < kills {
        std::thread::sleep(Duration::from_millis(rng.random_range(100..400)));
        assert!(
            driver.try_wait().unwrap().is_none(),
            "the search ended after {done} kills: too little work for this test"
        );
        // every fourth kill or so is the driver's
        if rng.random_bool(0.25) {
            kill(&mut driver);
            driver = spawn_owned(&search_args(store, true));
            driver_kills += 1;
        } else {
            let i = rng.random_range(0..workers.len());
            kill(&mut workers[i]);
            workers[i] = worker(store);
        }
        done += 1;
    }
    let d = wait_for(&mut driver, Duration::from_secs(240));
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    for w in &mut workers {
        let o = wait_for(w, Duration::from_secs(30));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    driver_kills
}

/// Every trial finished once, none lost, the budget exact: the same proposals as an
/// uninterrupted run (the random strategy's proposals do not depend on results).
fn check_exactly_once(store: &str, reference: &[serde_json::Value]) {
    let got = trials(store);
    assert!(
        got.iter().all(|t| t["status"] == "done"),
        "every trial done"
    );
    let archs = |ts: &[serde_json::Value]| -> Vec<String> {
        ts.iter()
            .map(|t| format!("{} {} {} {}", t["batch"], t["arch"], t["source"], t["cost"]))
            .collect()
    };
    let (a, b) = (archs(&got), archs(reference));
    if a != b {
        let i = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        panic!(
            "not the uninterrupted run's trials: {} vs {} trials, first difference at {i}: {:?} vs {:?}",
            a.len(),
            b.len(),
            a.get(i),
            b.get(i)
        );
    }
    let evaluated: Vec<&serde_json::Value> =
        got.iter().filter(|t| t["source"] == "evaluated").collect();
    let spent: u64 = evaluated
        .iter()
        .map(|t| t["cost"]["evaluations"].as_u64().unwrap())
        .sum();
    assert_eq!(spent, BUDGET, "budget exact");
    let canon: BTreeSet<&str> = evaluated
        .iter()
        .map(|t| t["canonical"].as_str().unwrap())
        .collect();
    assert_eq!(
        canon.len(),
        evaluated.len(),
        "no architecture evaluated twice"
    );
    let rewards = |ts: &[serde_json::Value]| -> Vec<String> {
        ts.iter().map(|t| t["reward"].to_string()).collect()
    };
    assert_eq!(rewards(&got), rewards(reference));
}

fn reference(tmp: &std::path::Path) -> Vec<serde_json::Value> {
    let store = tmp.join("reference.db");
    let s = store.to_str().unwrap().to_string();
    let mut args = search_args(&s, false);
    // no sleeping, evaluated in the process
    let i = args.iter().position(|a| a == "--workers").unwrap();
    args[i + 1] = "1".into();
    let i = args
        .iter()
        .position(|a| a == "--simulate-eval-seconds")
        .unwrap();
    args[i + 1] = "0".into();
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    trials(&s)
}

#[test]
fn sqlite_eight_workers_with_random_kills_finish_every_trial_once() {
    let tmp = tempfile::tempdir().unwrap();
    let want = reference(tmp.path());
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let driver_kills = search_under_kills(s, 24, 1);
    assert!(
        driver_kills >= 2,
        "the driver was killed {driver_kills} times"
    );
    check_exactly_once(s, &want);
    fnas_store::SqliteStore::open(&store)
        .unwrap()
        .integrity_check()
        .unwrap();
}

#[test]
fn postgres_eight_workers_with_random_kills_finish_every_trial_once() {
    let tmp = tempfile::tempdir().unwrap();
    let want = reference(tmp.path());
    let _one = server();
    let db = PgDb::new_exclusive("kills");
    let url = db.url();
    let driver_kills = search_under_kills(&url, 24, 2);
    assert!(
        driver_kills >= 2,
        "the driver was killed {driver_kills} times"
    );
    check_exactly_once(&url, &want);
}

/// Restarts the test server (`pg_ctlcluster VERSION CLUSTER restart`, as scripts/postgres.sh
/// started it).
fn restart_postgres() {
    let list = std::process::Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .expect("pg_lsclusters (Debian's postgresql-common)");
    let text = String::from_utf8_lossy(&list.stdout);
    let mut f = text.lines().next().expect("a cluster").split_whitespace();
    let (version, cluster) = (f.next().unwrap(), f.next().unwrap());
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        std::process::Command::new("pg_ctlcluster")
    } else {
        let mut c = std::process::Command::new("sudo");
        c.arg("pg_ctlcluster");
        c
    };
    let o = cmd
        .args([version, cluster, "restart", "-m", "fast"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn postgres_restart_mid_search_workers_and_driver_reconnect() {
    let tmp = tempfile::tempdir().unwrap();
    let want = reference(tmp.path());
    let _one = server();
    let db = PgDb::new_exclusive("restart");
    let url = db.url();
    let mut driver = spawn_owned(&search_args(&url, false));
    wait_for_experiment(&url, "e", Duration::from_secs(30));
    let mut workers: Vec<Child> = (0..4).map(|_| worker(&url)).collect();
    std::thread::sleep(Duration::from_secs(2));
    restart_postgres();
    let d = wait_for(&mut driver, Duration::from_secs(240));
    let err = String::from_utf8_lossy(&d.stderr);
    assert!(d.status.success(), "{err}");
    assert!(
        err.contains("reconnecting"),
        "the driver saw the restart: {err}"
    );
    for w in &mut workers {
        let o = wait_for(w, Duration::from_secs(30));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    check_exactly_once(&url, &want);
}

/// A store folder that fills up, then becomes read-only: a small tmpfs mounted in a user
/// and mount namespace of its own (`unshare`, no privileges needed), so the test runs
/// everything inside one shell script and reads the outcome from files outside it.
#[test]
fn a_full_disk_stops_with_one_line_and_resume_finishes_then_a_read_only_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mnt = t.join("m");
    std::fs::create_dir(&mnt).unwrap();
    let f = env!("CARGO_BIN_EXE_fnas");
    let (m, o) = (mnt.display(), t.display());
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=400k tmpfs {m} || exit 90
{f} search --task nas-bench-graph/cora --strategy random --budget 3000 --store {m}/s.db --name a >/dev/null 2>{o}/full.err; echo $? > {o}/full.rc
mount -o remount,size=64m {m}
{f} search --store {m}/s.db --name a --resume >/dev/null 2>{o}/resume.err; echo $? > {o}/resume.rc
{f} show a --store {m}/s.db --json > {o}/show.json
mount -o remount,ro {m}
{f} search --store {m}/s.db --name a --resume --budget 3100 >/dev/null 2>{o}/ro.err; echo $? > {o}/ro.rc
{f} search --task nas-bench-graph/cora --budget 5 --store {m}/new.db --name b >/dev/null 2>{o}/ronew.err; echo $? > {o}/ronew.rc
{f} show a --store {m}/s.db > {o}/roshow.out 2>&1; echo $? > {o}/roshow.rc
"#
    );
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "namespace script failed (unshare/mount of a tmpfs): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(t.join(name)).unwrap_or_default();
    // full: one line naming the store, and what to do
    assert_eq!(read("full.rc").trim(), "1");
    let e = read("full.err");
    let last = e.trim_end().lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("error: store ")
            && last.contains("s.db")
            && last.contains("disk is full")
            && last.contains("--resume"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    // space freed: the search finishes with every architecture evaluated once
    assert_eq!(read("resume.rc").trim(), "0", "{}", read("resume.err"));
    let v: serde_json::Value = serde_json::from_str(&read("show.json")).unwrap();
    assert_eq!(v["experiment"]["status"], "finished");
    let evaluated: Vec<&str> = v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "evaluated")
        .map(|t| t["canonical"].as_str().unwrap())
        .collect();
    assert_eq!(evaluated.len(), 3000);
    let distinct: BTreeSet<&str> = evaluated.iter().copied().collect();
    assert_eq!(distinct.len(), 3000, "an architecture evaluated twice");
    // read-only folder: refused before any work, naming the folder; still readable
    for (rc, err) in [("ro.rc", "ro.err"), ("ronew.rc", "ronew.err")] {
        assert_eq!(read(rc).trim(), "1");
        let e = read(err);
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(
            e.contains("read-only file system") && e.contains("cannot write in its folder"),
            "{e}"
        );
    }
    assert_eq!(read("roshow.rc").trim(), "0", "{}", read("roshow.out"));
    assert!(read("roshow.out").contains("experiment a (finished)"));
}

/// The crash matrix: a real-training search with the knowledge pool on is killed
/// (SIGKILL, by `FNAS_CRASH_AT`, at a write point, not by timing) and resumed: every
/// trial is done once, every pool row has its file, a pool file without a row is
/// removed once it is old enough not to belong to a writer, and `fnas show` works.
#[test]
fn crash_matrix_kill_at_each_write_point_then_resume() {
    use std::os::unix::process::ExitStatusExt;
    let mut table = Vec::new();
    for (point, nth) in [
        ("trial-begin", 2),
        ("weights-write", 2),
        ("pool-write", 2),
        ("result-commit", 3),
        ("checkpoint", 1),
    ] {
        assert!(fnas_core::crash::POINTS.contains(&point));
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("s.db");
        let s = store.to_str().unwrap();
        let args = [
            "search",
            "--task",
            "fashion-mnist-tiny",
            "--strategy",
            "random",
            "--pool",
            "on",
            "--pool-min-networks",
            "1",
            "--warm-max-distance",
            "100",
            "--budget",
            "3",
            "--batch-size",
            "2",
            "--workers",
            "1",
            "--store",
            s,
            "--name",
            "c",
        ];
        let crashed = fnas()
            .args(args)
            .env("FNAS_CRASH_AT", format!("{point}:{nth}"))
            .output()
            .unwrap();
        assert_eq!(
            crashed.status.signal(),
            Some(9),
            "{point}: not killed there: {}",
            String::from_utf8_lossy(&crashed.stderr)
        );
        let o = run(&["search", "--store", s, "--name", "c", "--resume"]);
        assert!(
            o.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v = show(&store, "c");
        assert_eq!(v["experiment"]["status"], "finished", "{point}");
        let done: Vec<&str> = v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["source"] == "evaluated" && t["status"] == "done")
            .map(|t| t["canonical"].as_str().unwrap())
            .collect();
        assert_eq!(done.len(), 3, "{point}: {done:?}");
        assert_eq!(
            done.iter().collect::<BTreeSet<_>>().len(),
            3,
            "{point}: twice"
        );
        // every row has its file (and the recorded size): the store's own check
        fnas_store::SqliteStore::open(&store)
            .unwrap()
            .integrity_check()
            .unwrap_or_else(|e| panic!("{point}: {e}"));
        // files without a row: only a crash between writing and indexing leaves one
        let pool_dir = tmp.path().join("s.db.pool");
        let c = rusqlite::Connection::open(&store).unwrap();
        let orphans: Vec<std::path::PathBuf> = std::fs::read_dir(&pool_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap().to_string();
                let rows: i64 = c
                    .query_row(
                        "SELECT count(*) FROM pool_entries WHERE file = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .unwrap();
                rows == 0
            })
            .collect();
        drop(c);
        if point != "pool-write" {
            assert!(orphans.is_empty(), "{point}: {orphans:?}");
        }
        // aged past the grace a writer gets, they are removed when the pool is opened
        let old = std::time::SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
        for p in &orphans {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        drop(fnas_store::SqlitePool::open(&store, u64::MAX).unwrap());
        assert!(orphans.iter().all(|p| !p.exists()), "{point}: orphans stay");
        let o = run(&["show", "c", "--store", s]);
        assert!(o.status.success(), "{point}");
        if point == "checkpoint" {
            damaged_files_are_caught_by_their_checksums(tmp.path(), s);
        }
        table.push(format!(
            "{point}:{nth} -> killed, resumed, 3 trials once, {} orphan file(s) removed",
            orphans.len()
        ));
    }
    eprintln!("{}", table.join("\n"));
}

/// Flips the last byte of a file (tensor data: it still parses).
fn flip_last_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// On the crash matrix's finished store: a bit flipped in a trained child's weights is
/// refused by `fnas export` (checksum recorded with the trial); one flipped in a pool file
/// is reported once when a later child would warm-start from it, its network leaves the
/// pool, and the search goes on.
fn damaged_files_are_caught_by_their_checksums(dir: &std::path::Path, s: &str) {
    let out = dir.join("export");
    let o = run(&[
        "export",
        "c",
        "--best",
        "--store",
        s,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for e in std::fs::read_dir(dir.join("s.db.weights/c")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            flip_last_byte(&p);
        }
    }
    let out2 = dir.join("export2");
    let o = run(&[
        "export",
        "c",
        "--best",
        "--store",
        s,
        "--out",
        out2.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("checksum mismatch"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!out2.exists());
    // every pool file damaged: the next children are warm-started from none of them
    for e in std::fs::read_dir(dir.join("s.db.pool")).unwrap() {
        flip_last_byte(&e.unwrap().path());
    }
    let o = run(&[
        "search", "--store", s, "--name", "c", "--resume", "--budget", "5",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    let reports = e.matches("checksum mismatch").count();
    assert!(reports >= 1, "{e}");
    assert!(e.contains("dropped from the pool"), "{e}");
    fnas_store::SqliteStore::open(std::path::Path::new(s))
        .unwrap()
        .integrity_check()
        .unwrap();
}
