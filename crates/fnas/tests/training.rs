//! End-to-end tests of real child training through the `fnas` binary, on the CI-sized
//! task `fashion-mnist-tiny` (384 Fashion-MNIST images at 14x14, one epoch).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fnas() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fnas"));
    // image folders are cached here, not in the user's ~/.cache
    c.env("FNAS_CACHE_DIR", image_cache());
    c
}

fn image_cache() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fnas-image-cache")
}

/// An image folder of real Fashion-MNIST test images as PNG files: `train/` with 128 and
/// `val/` with 50 images of each of three classes (enough for `fashion-mnist-tiny`'s
/// 384 training and 128 validation images).
fn image_folder(root: &Path) {
    let dir = Path::new(fnas_child::idx::DEFAULT_DATA_DIR);
    let set = fnas_child::idx::load_split(dir, "t10k").expect("Fashion-MNIST installed");
    for (label, name) in [(0u8, "tshirt"), (1, "trouser"), (9, "boot")] {
        let mut picked = (0..set.n).filter(|&i| set.labels[i] == label);
        for (split, count) in [("train", 128), ("val", 50)] {
            let d = root.join(split).join(name);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..count {
                let i = picked.next().unwrap();
                image::GrayImage::from_raw(28, 28, set.image(i).to_vec())
                    .unwrap()
                    .save(d.join(format!("{k:03}.png")))
                    .unwrap();
            }
        }
    }
}

/// `fnas search --images DIR` trains children on the folder to the end of its budget,
/// under the recipe of --task, with the folder stored in the experiment; a SIGKILL after
/// the first recorded child and `--resume` train every child once.
#[test]
fn image_folder_search_runs_and_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("my photos");
    image_folder(&photos);
    let p = photos.to_str().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let o = run(&[
        "search",
        "--task",
        "fashion-mnist-tiny",
        "--images",
        p,
        "--strategy",
        "random",
        "--budget",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--store",
        s,
        "--name",
        "two",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = show_json(&store, "two").unwrap();
    assert_eq!(v["experiment"]["status"], "finished");
    let shown = v.to_string();
    assert!(shown.contains("fashion-mnist-tiny+my_photos"), "{shown}");
    let trials = v["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    assert!(trials.iter().all(|t| t["status"] == "done"), "{shown}");
    assert!(image_cache().is_dir());

    kill_and_resume("random", &["--images", p]);

    // --images and --data-dir exclude each other
    let o = run(&["train", "--arch", "median", "--images", p, "--data-dir", p]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--data-dir"), "{}", stderr(&o));
}

fn run(args: &[&str]) -> Output {
    fnas().args(args).output().expect("fnas binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn show_json(store: &Path, name: &str) -> Option<serde_json::Value> {
    let o = run(&["show", name, "--store", store.to_str()?, "--json"]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).expect("show --json prints JSON"))
}

fn finished_trials(v: &serde_json::Value) -> usize {
    v["trials"]
        .as_array()
        .map_or(0, |t| t.iter().filter(|t| t["status"] != "pending").count())
}

#[test]
fn train_prints_metrics_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w");
    let o = run(&[
        "train",
        "--arch",
        "median",
        "--task",
        "fashion-mnist-tiny",
        "--weights-dir",
        w.to_str().unwrap(),
        "--latency-runs",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.trim_end().lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    let acc = v["val_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(v["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(v["flops"].as_f64().unwrap() > 1e5);
    assert!(v["params"].as_f64().unwrap() > 1e4);
    assert_eq!(v["cost"]["evaluations"], 1);
    assert_eq!(v["cost"]["images"], 384);
    let weights = v["weights"].as_str().unwrap();
    assert!(Path::new(weights).exists(), "{weights}");
    assert!(Path::new(weights).with_extension("arch").exists());
}

#[test]
fn train_rejects_bad_input_with_one_line() {
    for (args, needle) in [
        (
            vec![
                "train",
                "--arch",
                "b1.op=nope",
                "--task",
                "fashion-mnist-tiny",
            ],
            "b1.op",
        ),
        (
            vec!["train", "--arch", "median", "--task", "no-such-task"],
            "no-such-task",
        ),
        (
            vec![
                "train",
                "--arch",
                "median",
                "--task",
                "fashion-mnist-tiny",
                "--data-dir",
                "/nonexistent",
            ],
            "/nonexistent",
        ),
    ] {
        let o = run(&args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!e.contains("panicked"), "{e}");
        assert!(
            e.starts_with("error:") && e.trim_end().lines().count() == 1,
            "{e}"
        );
        assert!(e.contains(needle), "`{needle}` not in {e}");
    }
}

#[test]
fn real_training_search_survives_sigkill_and_resumes() {
    kill_and_resume("ppo", &[]);
}

/// The same with full FNAS and the knowledge pool: the pool settings and budget class
/// come back from the store, and warm starts go on after the resume.
#[test]
fn fnas_search_with_the_pool_survives_sigkill_and_resumes() {
    let v = kill_and_resume(
        "fnas",
        &["--pool-min-networks", "1", "--warm-max-distance", "1000"],
    );
    let warm = v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["warm_start"] == 1.0)
        .count();
    assert!(warm >= 1, "{}", v["pool"]);
    assert_eq!(v["pool"]["budget_class"], 384);
    // on real training the critic acts from 16 points, not the benchmarks' 32
    let shown = v.to_string();
    assert!(shown.contains("\"min_points\":16"), "{shown}");
}

/// Starts a 4-child search, SIGKILLs it once a child is stored, resumes it with the same
/// command and checks the finished experiment; returns `show --json`.
fn kill_and_resume(strategy: &str, extra: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("train.db");
    let s = store.to_str().unwrap();
    let mut args = vec![
        "search",
        "--task",
        "fashion-mnist-tiny",
        "--strategy",
        strategy,
        "--budget",
        "4",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--store",
        s,
        "--name",
        "exp",
        "--resume",
    ];
    args.extend_from_slice(extra);
    // kill once at least one child is trained and recorded
    let mut child = fnas()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(300) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if show_json(&store, "exp").is_some_and(|v| finished_trials(&v) >= 1) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait().unwrap();
    assert!(killed, "the search finished before it could be killed");
    let before = finished_trials(&show_json(&store, "exp").unwrap());
    assert!(before < 4);

    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = show_json(&store, "exp").unwrap();
    assert_eq!(v["experiment"]["status"], "finished");
    let trials = v["trials"].as_array().unwrap();
    let evaluated: Vec<&serde_json::Value> = trials
        .iter()
        .filter(|t| t["source"] == "evaluated")
        .collect();
    assert_eq!(evaluated.len(), 4, "budget 4 = 4 trained children");
    for t in &evaluated {
        assert_eq!(t["status"], "done", "{t}");
        let m = &t["metrics"];
        assert!(m["val_accuracy"].as_f64().is_some(), "{t}");
        assert!(m["latency_ms"].as_f64().unwrap() > 0.0, "{t}");
        assert!(m["flops"].as_f64().unwrap() > 0.0, "{t}");
        assert!(m["params"].as_f64().unwrap() > 0.0, "{t}");
        assert_eq!(t["cost"]["images"], 384, "{t}");
    }
    let weights = tmp.path().join("train.db.weights").join("exp");
    let saved = std::fs::read_dir(&weights).unwrap().count();
    assert!(
        saved >= 8,
        "4 children x (safetensors + arch) in {}",
        weights.display()
    );
    // the table of `fnas show` lists accuracy, latency, FLOPs, params, cost
    let o = run(&["show", "exp", "--store", s]);
    let out = String::from_utf8_lossy(&o.stdout);
    for col in ["VAL", "LAT_MS", "PARAMS", "MFLOPS", "COST_S"] {
        assert!(out.contains(col), "{col} missing: {out}");
    }
    v
}

/// `fnas search --strategy fnas` on real training: the first children (the seed rule, 2
/// here) train from scratch and fill the pool; later ones are warm-started from it with
/// half the epochs (half the images), and `show --json` reports each trial's hit ratio.
/// A second search with `--transfer-from` starts warm at once; one without does not; one
/// on another task only with `--warm-other-tasks`.
#[test]
fn fnas_search_warm_starts_children_from_the_knowledge_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let search_on =
        |task: &str, name: &str, budget: &str, warm_max_distance: &str, extra: &[&str]| {
            let mut args = vec![
                "search",
                "--task",
                task,
                "--epochs",
                "2",
                "--strategy",
                "fnas",
                "--budget",
                budget,
                "--batch-size",
                "3",
                "--workers",
                "1",
                "--pool-min-networks",
                "2",
                "--warm-max-distance",
                warm_max_distance,
                "--store",
                s,
                "--name",
                name,
            ];
            args.extend_from_slice(extra);
            let o = run(&args);
            assert!(o.status.success(), "{}", stderr(&o));
            String::from_utf8_lossy(&o.stdout).to_string()
        };
    let search = |name: &str, budget: &str, warm_max_distance: &str, extra: &[&str]| {
        search_on("fashion-mnist-tiny", name, budget, warm_max_distance, extra)
    };
    let out = search("pooled", "5", "1000", &[]);
    assert!(out.contains("best child"), "{out}");
    assert!(out.contains("test accuracy"), "{out}");
    let v = show_json(&store, "pooled").unwrap();
    assert_eq!(v["pool"]["budget_class"], 768, "{}", v["pool"]);
    let trained: Vec<&serde_json::Value> = v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "evaluated")
        .collect();
    assert!(trained.len() >= 3, "{}", trained.len());
    for t in &trained[..2] {
        assert_eq!(t["pool_hit_ratio"], 0.0);
        assert_eq!(t["cost"]["images"], 768);
    }
    for t in &trained[2..] {
        assert_eq!(t["pool_hit_ratio"], 1.0);
        assert_eq!(t["warm_start"], 1.0);
        assert_eq!(t["cost"]["images"], 384);
    }
    let with = search("transferred", "1", "1000", &["--transfer-from", "pooled"]);
    assert!(with.contains("best child"), "{with}");
    let v = show_json(&store, "transferred").unwrap();
    let first = &v["trials"][0];
    assert_eq!(first["pool_hit_ratio"], 1.0, "{first}");
    search("isolated", "1", "1000", &[]);
    let v = show_json(&store, "isolated").unwrap();
    assert_eq!(v["trials"][0]["pool_hit_ratio"], 0.0);
    // another task (five of the classes, same budget class): the critic transfers, but
    // warm starts use only this task's entries unless --warm-other-tasks
    let tops = tmp.path().join("tiny-tops.toml");
    std::fs::write(&tops, TINY_TOPS_TASK).unwrap();
    let tops = tops.to_str().unwrap();
    // (name, extra flag, other tasks allowed, first child warm-started, its images)
    for (name, flag, other_tasks, warm, images) in [
        ("tops-own", None, false, 0.0, 768),
        ("tops-cross", Some("--warm-other-tasks"), true, 1.0, 384),
    ] {
        let mut extra = vec!["--transfer-from", "pooled"];
        extra.extend(flag);
        search_on(tops, name, "1", "1000", &extra);
        let v = show_json(&store, name).unwrap();
        assert_eq!(v["pool"]["other_tasks"], other_tasks, "{}", v["pool"]);
        let first = &v["trials"][0];
        assert_eq!(first["warm_start"], warm, "{first}");
        assert_eq!(first["cost"]["images"], images, "{first}");
    }
    // with --warm-max-distance 0 only an identical network may warm-start a child; the
    // others train the full proxy from scratch and say how far their sources were
    search(
        "near-only",
        "2",
        "0",
        &["--transfer-from", "pooled", "--seed", "7"],
    );
    let v = show_json(&store, "near-only").unwrap();
    let trials = v["trials"].as_array().unwrap();
    let declined: Vec<_> = trials
        .iter()
        .filter(|t| {
            t["pool_declined_distance"]
                .as_f64()
                .is_some_and(|d| d > 0.0)
        })
        .collect();
    assert!(!declined.is_empty(), "{}", v["trials"]);
    for t in &declined {
        assert_eq!(t["warm_start"], 0.0, "{t}");
        assert_eq!(t["cost"]["images"], 768, "{t}");
    }
    for t in trials.iter().filter(|t| t["warm_start"] == 1.0) {
        assert_eq!(t["pool_distance"], 0.0, "{t}");
    }
    assert_eq!(v["pool"]["declined"], declined.len(), "{}", v["pool"]);
}

/// `fashion-mnist-tiny` restricted to the five upper-body classes: another task of the
/// same budget class (384 images x the tests' 2 epochs).
const TINY_TOPS_TASK: &str = r#"
name = "tiny-tops"
description = "CI-sized transfer target"
train_images = 384
val_images = 128
classes = [0, 2, 3, 4, 6]
resolution = 14
resize = "bilinear"
seed = 0
epochs = 1
batch_size = 32
optimizer = { kind = "sgd", momentum = 0.9, nesterov = true }
lr = 0.1
weight_decay = 5e-4
warmup_epochs = 0.25
schedule = "cosine"
normalize = { mean = 0.2860, std = 0.3530 }
"#;

/// `--reward-seeds N` trains each child N times and rewards the mean: the first training
/// is the one a plain search does (same seed, same result), the cost is N times it, and
/// the setting is stored (a resume with another value is told it is ignored).
#[test]
fn search_with_reward_seeds_averages_several_trainings() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let s = store.to_str().unwrap();
    let search = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "search",
            "--task",
            "fashion-mnist-tiny",
            "--strategy",
            "random",
            "--budget",
            "2",
            "--workers",
            "1",
            "--seed",
            "3",
            "--store",
            s,
            "--name",
            name,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let o = search("one", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = search("three", &["--reward-seeds", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let one = show_json(&store, "one").unwrap();
    let three = show_json(&store, "three").unwrap();
    let (a, b) = (
        one["trials"].as_array().unwrap(),
        three["trials"].as_array().unwrap(),
    );
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["canonical"], y["canonical"]);
        let images = x["cost"]["images"].as_u64().unwrap();
        assert_eq!(y["cost"]["images"].as_u64().unwrap(), 3 * images, "{y}");
        assert_eq!(
            y["cost"]["evaluations"], 1,
            "a child counts once in a count budget"
        );
        let extra = &y["metrics"]["extra"];
        assert_eq!(extra["reward_seeds"], 3.0, "{extra}");
        assert_eq!(
            extra["val_accuracy_first_seed"], x["reward"],
            "the first training is the plain search's"
        );
        let std = extra["val_accuracy_std"].as_f64().unwrap();
        assert!(std.is_finite() && std >= 0.0, "{extra}");
        // with three values v1, v2, v3 the mean differs from v1 by at most 2/3 of their
        // range, and the range is at most 2 * std (n = 3, sample std)
        let (mean, first) = (y["reward"].as_f64().unwrap(), x["reward"].as_f64().unwrap());
        assert!((mean - first).abs() <= 2.0 * std * 2.0 / 3.0 + 1e-12, "{y}");
        assert_eq!(
            x["metrics"]["extra"]["reward_seeds"],
            serde_json::Value::Null
        );
    }
    let o = run(&["show", "three", "--store", s]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("mean validation accuracy of 3 trainings"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // resumed with another value: the stored one wins, and the user is told
    let o = search("three", &["--reward-seeds", "2", "--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--reward-seeds 2 is ignored: the experiment has --reward-seeds 3"),
        "{}",
        stderr(&o)
    );
    // not for benchmarks, and 0 is refused
    let o = run(&[
        "search",
        "--benchmark",
        "nas-bench-graph",
        "--dataset",
        "cora",
        "--reward-seeds",
        "2",
        "--store",
        s,
    ]);
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--reward-seeds"), "{}", stderr(&o));
    let o = search("zero", &["--reward-seeds", "0"]);
    assert!(!o.status.success() && !stderr(&o).contains("panicked"));
}
