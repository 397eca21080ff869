//! `fnas slurm`: the job script it writes, and a job array of workers run by a real
//! single-node Slurm (scripts/slurm.sh starts one; `.ci/run` does through setup.sh).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn slurm_up() {
    let o = Command::new("sinfo").args(["-h", "-o", "%a"]).output();
    match o {
        Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("up") => {}
        _ => panic!("Slurm for the tests is not running: start it with scripts/slurm.sh"),
    }
}

fn start_driver(store: &str, budget: &str) -> std::process::Child {
    let child = spawn(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--strategy",
        "evolution",
        "--budget",
        budget,
        "--seed",
        "2",
        "--store",
        store,
        "--name",
        "e",
        "--workers",
        "0",
        "--simulate-eval-seconds",
        "0.2",
    ]);
    wait_for_experiment(store, "e", Duration::from_secs(30));
    child
}

#[test]
fn a_slurm_job_array_of_two_workers_finishes_an_experiment() {
    slurm_up();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let mut driver = start_driver(s, "12");
    let script = tmp.path().join("job.sbatch");
    let o = run(&[
        "slurm",
        "--store",
        s,
        "--experiment",
        "e",
        "--workers",
        "2",
        "--time",
        "10",
        "--out",
        script.to_str().unwrap(),
        "--submit",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let job = out
        .split_whitespace()
        .skip_while(|w| *w != "array")
        .nth(1)
        .and_then(|j| j.strip_suffix(':'))
        .unwrap_or_else(|| panic!("no job id in: {out}"))
        .to_string();
    let d = wait_for(&mut driver, Duration::from_secs(120));
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    // the workers end with the search, and so does the job
    let t0 = Instant::now();
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", &job])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "job {job} still queued or running"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = show(&store, "e");
    assert_eq!(v["experiment"]["status"], "finished");
    let trials = v["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 12);
    let h = holders(&store);
    assert!(!h.is_empty());
    assert!(
        h.iter().all(|(who, n)| who.ends_with(":worker") && *n == 1),
        "every evaluation by a Slurm worker, once: {h:?}"
    );
    let pids: BTreeSet<&str> = h.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(pids.len(), 2, "two array tasks worked: {h:?}");
    for task in 0..2 {
        let log = tmp
            .path()
            .join("slurm-logs")
            .join(format!("fnas-worker-{job}_{task}.log"));
        let text =
            std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        assert!(text.contains("worker done"), "{text}");
    }
}

#[test]
fn the_job_script_runs_the_worker_and_bad_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
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
    let mut driver = start_driver(s, "200");
    let script = tmp.path().join("w.sbatch");
    let o = run(&[
        "slurm",
        "--store",
        s,
        "--experiment",
        "e",
        "--workers",
        "4",
        "--gpus-per-worker",
        "1",
        "--cpus-per-worker",
        "8",
        "--partition",
        "gpu",
        "--out",
        script.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&script).unwrap();
    for line in [
        "#SBATCH --array=0-3",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --partition=gpu",
        " worker --store ",
        " --experiment e ",
    ] {
        assert!(text.contains(line), "`{line}` missing in:\n{text}");
    }
    assert!(text.contains(&store.canonicalize().unwrap().display().to_string()));
    let _ = driver.kill();
    let _ = driver.wait();
    // one-line errors, nothing written
    for (args, says) in [
        (vec!["--experiment", "nope"], "no experiment `nope`"),
        (vec!["--experiment", "done"], "has finished"),
        (
            vec!["--experiment", "e", "--time", "1h"],
            "not a Slurm time",
        ),
        (
            vec!["--experiment", "e", "--partition", "a b"],
            "not a partition name",
        ),
    ] {
        let out = tmp.path().join("bad.sbatch");
        let mut full = vec!["slurm", "--store", s, "--out", out.to_str().unwrap()];
        full.extend(args);
        let o = run(&full);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(says), "{full:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(!out.exists(), "{full:?} wrote a script");
    }
}
