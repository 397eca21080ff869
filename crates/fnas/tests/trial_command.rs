//! `fnas search --trial-command`: children trained by the user's own script. The PyTorch
//! example (examples/pytorch-trainer/train.py, Debian's python3-torch) runs a 3-child
//! search through an `fnas worker`; a shell script checks the failure paths and that a
//! search killed mid-command resumes with every child trained once to the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;

/// Debian's Python, which has PyTorch (scripts/setup.sh installs python3-torch).
const PYTHON: &str = "/usr/bin/python3";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn trials(store: &Path, name: &str) -> Vec<serde_json::Value> {
    show(store, name)["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "done" || t["status"] == "failed")
        .cloned()
        .collect()
}

fn pool_rows(store: &Path, experiment: &str) -> (i64, i64) {
    let c = rusqlite::Connection::open(store).unwrap();
    c.query_row(
        "SELECT count(*), count(DISTINCT arch) FROM pool_entries WHERE experiment = ?1",
        [experiment],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[test]
fn pytorch_trainer_runs_a_search_through_a_worker_and_feeds_the_pool() {
    let probe = std::process::Command::new(PYTHON)
        .args(["-c", "import torch"])
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        probe.status.success(),
        "PyTorch missing for {PYTHON}: run scripts/setup.sh (apt-get install -y python3-torch)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let code = repo_root().join("examples/pytorch-trainer");
    let command = format!("{PYTHON} train.py");
    let mut driver = spawn(&[
        "search",
        "--task",
        "fashion-mnist-tiny",
        "--strategy",
        "random",
        "--budget",
        "3",
        "--batch-size",
        "1",
        "--pool",
        "on",
        "--pool-min-networks",
        "1",
        "--warm-max-distance",
        "100",
        "--store",
        s,
        "--name",
        "t",
        "--workers",
        "0",
        "--trial-command",
        &command,
        "--trial-code-dir",
        code.to_str().unwrap(),
        "--trial-timeout",
        "300",
    ]);
    wait_for_experiment(s, "t", Duration::from_secs(60));
    let mut worker = spawn(&["worker", "--store", s, "--experiment", "t", "--json"]);
    let d = wait_for(&mut driver, Duration::from_secs(300));
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let w = wait_for(&mut worker, Duration::from_secs(60));
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    assert_eq!(
        String::from_utf8_lossy(&w.stdout).lines().count(),
        3,
        "the worker trained every child"
    );

    let done = trials(&store, "t");
    assert_eq!(done.len(), 3);
    let trials_dir = tmp.path().join("s.db.trials/t");
    let mut warm = 0;
    for t in &done {
        assert_eq!(t["status"], "done", "{t}");
        let m = &t["metrics"];
        let val = m["val_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&val));
        // the ledger counts what the script reported (384 images per epoch)
        assert_eq!(t["cost"]["images"], 384, "{t}");
        assert!(m["latency_ms"].as_f64().unwrap() > 0.0, "measured by fnas");
        let hash = std::fs::read_dir(&trials_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let tj: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p.join("trial.json")).unwrap()).unwrap();
                tj["arch"] == t["arch"]
            })
            .expect("a trial folder per child");
        let tj: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hash.join("trial.json")).unwrap()).unwrap();
        assert!(hash.join("result.json").is_file() && hash.join("stdout.log").is_file());
        assert!(hash.join("weights.safetensors").is_file());
        assert_eq!(tj["input"]["resolution"], 14);
        assert_eq!(tj["experiment"], "t");
        assert!(tj["plan"]["blocks"].is_array());
        if m["extra"]["warm_start"] == 1.0 {
            warm += 1;
            let init = tj["init_weights"].as_str().expect("warm start file named");
            assert!(Path::new(init).is_file(), "{init}");
            assert!(tj["lr_scale"].as_f64().unwrap() < 1.0);
        } else {
            assert!(tj["init_weights"].is_null());
        }
    }
    // the first child seeds the pool with the weights it returned; the later ones
    // warm-start from them
    assert!(warm >= 1, "no child was warm-started from returned weights");
    let (rows, archs) = pool_rows(&store, "t");
    assert_eq!(
        archs, 3,
        "every child's returned weights became pool entries"
    );
    assert!(rows >= 3 * 5);
    // the best child's weights were saved in fnas's naming: `fnas export` works
    let out = tmp.path().join("export");
    let o = run(&[
        "export",
        "t",
        "--best",
        "--store",
        s,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("model.py").is_file());
}

/// A trial script: appends its trial id to runs.log; `hang` makes the child named in
/// it hang (the test kills the search meanwhile); `fail` makes a child fail.
const SCRIPT: &str = r#"#!/bin/sh
id=$(sed -n 's/.*"trial": "\([0-9a-f]*\)".*/\1/p' "$FNAS_TRIAL_DIR/trial.json")
echo "$id" >> runs.log
if [ -f hang ] && [ "$(cat hang)" = "$id" ]; then rm hang; echo started > "$FNAS_TRIAL_DIR/hanging"; exec sleep 120; fi
if [ -f fail ]; then echo "CUDA out of memory (pretend)" >&2; exit 3; fi
n=$(printf '%d' "0x$(echo "$id" | cut -c1-4)")
echo "{\"val_accuracy\": 0.$n, \"images\": 100}" > "$FNAS_TRIAL_DIR/result.json"
"#;

fn script_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("code");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("trial.sh"), SCRIPT).unwrap();
    dir
}

fn script_search(
    store: &str,
    name: &str,
    code: &Path,
    budget: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "search",
        "--task",
        "fashion-mnist-tiny",
        "--strategy",
        "random",
        "--budget",
        budget,
        "--batch-size",
        "2",
        "--workers",
        "2",
        "--store",
        store,
        "--name",
        name,
        "--trial-command",
        "sh trial.sh",
        "--trial-code-dir",
        code.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn a_search_killed_mid_command_resumes_and_trains_each_child_once_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let code = script_dir(tmp.path());
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    // a first run to learn the third child's trial id, then the real one hangs on it
    let args = script_search(s, "probe", &code, "6", &[]);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let order: Vec<String> = std::fs::read_to_string(code.join("runs.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(order.len(), 6);
    std::fs::remove_file(code.join("runs.log")).unwrap();
    let victim = order[2].clone();
    std::fs::write(code.join("hang"), &victim).unwrap();

    let args = script_search(s, "k", &code, "6", &[]);
    let mut search = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let hanging = tmp.path().join(format!("s.db.trials/k/{victim}/hanging"));
    let start = std::time::Instant::now();
    while !hanging.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never reached the hanging child"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    search.kill().unwrap();
    search.wait().unwrap();
    let o = run(&["search", "--store", s, "--name", "k", "--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // nothing of the interrupted run keeps training beside the resumed one
    let ps = std::process::Command::new("pgrep")
        .args(["-f", "sleep 120"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "the hanging command outlived the search"
    );
    let done = trials(&store, "k");
    assert_eq!(done.len(), 6);
    assert!(done.iter().all(|t| t["status"] == "done"));
    assert_eq!(
        done.iter()
            .map(|t| t["cost"]["images"].as_u64().unwrap())
            .sum::<u64>(),
        600
    );
    let runs: Vec<String> = std::fs::read_to_string(code.join("runs.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for id in &order {
        let n = runs.iter().filter(|r| *r == id).count();
        if *id == victim {
            assert_eq!(n, 2, "the interrupted child runs again");
        } else {
            // the victim's batch sibling may have been cut off too; finished ones ran once
            assert!(n == 1 || n == 2, "{id}: {n} runs");
        }
    }
    let ran_once = order
        .iter()
        .take(2)
        .all(|id| runs.iter().filter(|r| *r == id).count() == 1);
    assert!(
        ran_once,
        "the first batch finished before the kill and ran once"
    );
}

#[test]
fn failing_and_unrunnable_commands_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let code = script_dir(tmp.path());
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    std::fs::write(code.join("fail"), "").unwrap();
    let args = script_search(s, "f", &code, "2", &[]);
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let done = trials(&store, "f");
    assert_eq!(done.len(), 2, "{}", String::from_utf8_lossy(&o.stderr));
    for t in &done {
        assert_eq!(t["status"], "failed");
        let e = t["error"].as_str().unwrap();
        assert!(
            e.contains("status 3") && e.contains("CUDA out of memory (pretend)"),
            "{e}"
        );
    }
    // a command the shell cannot find stops the search at once with one line
    let o = run(&[
        "search",
        "--task",
        "fashion-mnist-tiny",
        "--budget",
        "4",
        "--store",
        s,
        "--name",
        "nf",
        "--trial-command",
        "no-such-trainer-xyz",
        "--trial-code-dir",
        code.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no-such-trainer-xyz") && e.contains("could not be run"),
        "{e}"
    );
    // bad flags
    for (args, needle) in [
        (vec!["--trial-command", "  "], "--trial-command is empty"),
        (
            vec!["--trial-command", "x", "--trial-timeout", "0"],
            "--trial-timeout must be a positive",
        ),
        (
            vec!["--trial-command", "x", "--trial-code-dir", "/no/such/dir"],
            "not a folder",
        ),
        (vec!["--trial-timeout", "5"], "need --trial-command"),
    ] {
        let mut a = vec![
            "search",
            "--task",
            "fashion-mnist-tiny",
            "--store",
            s,
            "--name",
            "bad",
        ];
        a.extend(args);
        let o = run(&a);
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(needle), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    let o = run(&[
        "search",
        "--task",
        "nas-bench-graph/cora",
        "--store",
        s,
        "--name",
        "bench",
        "--trial-command",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("real-training tasks"));
}
