//! `fnas export` end to end: a real 2-child search on `fashion-mnist-tiny`, its best
//! child exported and run in Debian's PyTorch (`/usr/bin/python3`, python3-torch; see
//! scripts/setup.sh) on the same 64 t10k images as fnas, the refusals of bad input, and
//! the export of a tabular-benchmark trial.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PYTHON: &str = "/usr/bin/python3";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fnas"))
        .args(args)
        .output()
        .expect("fnas binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The logits JSON files of fnas and of PyTorch: rows of floats.
fn read_logits(path: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap()
}

/// A refused export: one-line error naming `needle`, and nothing written beside `out`.
fn refused(args: &[&str], needle: &str, out: &Path) {
    let before = listing(out.parent().unwrap());
    let o = run(args);
    let e = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(!e.contains("panicked"), "{e}");
    assert!(
        e.starts_with("error:") && e.trim_end().lines().count() == 1,
        "{args:?}: {e}"
    );
    assert!(e.contains(needle), "`{needle}` not in {e}");
    assert_eq!(
        listing(out.parent().unwrap()),
        before,
        "{args:?} wrote something"
    );
}

/// Names in a folder, with the names in its sub-folders: to see that nothing was added.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            // the store's own files (SQLite may add -wal/-shm files on reading)
            if e.file_name().to_string_lossy().contains(".db") {
                continue;
            }
            if p.is_dir() {
                v.extend(listing(&p));
            }
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn real_training_export_runs_in_pytorch_and_bad_input_is_refused() {
    let has_torch = Command::new(PYTHON)
        .args(["-c", "import torch"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_torch,
        "{PYTHON} cannot import torch: run scripts/setup.sh (apt-get install python3-torch)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s.db");
    let o = run(&[
        "search",
        "--task",
        "fashion-mnist-tiny",
        "--strategy",
        "random",
        "--budget",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--store",
        s(&store),
        "--name",
        "e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // export the best child, with fnas's logits of the first 64 test images
    let out = tmp.path().join("best");
    let fnas_logits = tmp.path().join("fnas-logits.json");
    let o = run(&[
        "export",
        "e",
        "--best",
        "--store",
        s(&store),
        "--out",
        s(&out),
        "--check-logits",
        s(&fnas_logits),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "arch.txt",
        "plan.json",
        "weights.safetensors",
        "model.py",
        "preprocess.json",
        "record.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let model_py = std::fs::read_to_string(out.join("model.py")).unwrap();
    assert!(!model_py.contains("fnas_") && !model_py.contains("import fnas"));
    let pre: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("preprocess.json")).unwrap())
            .unwrap();
    assert_eq!(pre["resolution"], 14);
    assert_eq!(pre["channels"], 1);
    assert_eq!(pre["color"], "gray");
    assert_eq!(pre["classes"], 10);
    assert_eq!(pre["class_names"][9], "9");
    assert_eq!(pre["resize"], "bilinear");
    assert!((pre["mean"][0].as_f64().unwrap() - 0.2860).abs() < 1e-12);
    assert!((pre["std"][0].as_f64().unwrap() - 0.3530).abs() < 1e-12);

    // the same images through PyTorch
    let torch_logits = tmp.path().join("torch-logits.json");
    let onnx = tmp.path().join("model.onnx");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export_check.py");
    let o = Command::new(PYTHON)
        .arg(&script)
        .args([s(&out), "64", s(&torch_logits), s(&onnx)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let a = read_logits(&fnas_logits);
    let b = read_logits(&torch_logits);
    assert_eq!(a.len(), 64);
    assert_eq!(b.len(), 64);
    let mut max_diff = 0f64;
    for (ra, rb) in a.iter().zip(&b) {
        assert_eq!(ra.len(), 10);
        assert_eq!(ra.len(), rb.len());
        for (x, y) in ra.iter().zip(rb) {
            max_diff = max_diff.max((x - y).abs());
        }
        assert_eq!(argmax(ra), argmax(rb), "{ra:?} vs {rb:?}");
    }
    eprintln!("max |fnas - torch| logit difference over 64 images: {max_diff:e}");
    assert!(max_diff < 1e-4, "max logit difference {max_diff}");
    // torch.onnx.export wrote a model
    let size = std::fs::metadata(&onnx).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "ONNX file missing or empty");

    // bad input: one line, non-zero exit, nothing written
    let fresh = tmp.path().join("fresh");
    let st = s(&store);
    refused(
        &[
            "export",
            "nope",
            "--best",
            "--store",
            st,
            "--out",
            s(&fresh),
        ],
        "no experiment `nope`",
        &fresh,
    );
    refused(
        &[
            "export",
            "e",
            "--trial",
            "999",
            "--store",
            st,
            "--out",
            s(&fresh),
        ],
        "no trial 999",
        &fresh,
    );
    // an output folder with files, refused without --force, replaced with it
    refused(
        &["export", "e", "--best", "--store", st, "--out", s(&out)],
        "--force",
        &out,
    );
    let o = run(&[
        "export",
        "e",
        "--trial",
        "2",
        "--store",
        st,
        "--out",
        s(&out),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let record = std::fs::read_to_string(out.join("record.json")).unwrap();
    assert!(record.contains("\"trial\": 2"), "{record}");
    // a path that cannot be a folder (below a file)
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let below = file.join("out");
    refused(
        &["export", "e", "--best", "--store", st, "--out", s(&below)],
        "a-file",
        &below,
    );
    // weights moved away
    let weights_dir = tmp.path().join("s.db.weights").join("e");
    let moved = tmp.path().join("moved-weights");
    std::fs::rename(&weights_dir, &moved).unwrap();
    refused(
        &["export", "e", "--best", "--store", st, "--out", s(&fresh)],
        "not found",
        &fresh,
    );
    std::fs::rename(&moved, &weights_dir).unwrap();

    // Trials without weights of their own. A 2-child random search produces none, so
    // trial 2 is rewritten in the store as the search records them (the store's guard
    // against changing finished trials is lifted in this test's copy only).
    let db = rusqlite::Connection::open(&store).unwrap();
    let triggers: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'trials'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|n| n.unwrap())
        .collect();
    for t in triggers {
        db.execute(&format!("DROP TRIGGER \"{t}\""), []).unwrap();
    }
    db.execute(
        "UPDATE trials SET source = 'critic', metrics = NULL, cost_evaluations = 0, \
         pred_mean = reward, pred_std = 0.01, pred_trusted = 1 WHERE id = 2",
        [],
    )
    .unwrap();
    refused(
        &[
            "export",
            "e",
            "--trial",
            "2",
            "--store",
            st,
            "--out",
            s(&fresh),
        ],
        "critic",
        &fresh,
    );
    db.execute(
        "UPDATE trials SET status = 'failed', source = 'evaluated', reward = NULL, \
         pred_mean = NULL, pred_std = NULL, pred_trusted = NULL, \
         error = 'diverged at epoch 0' WHERE id = 2",
        [],
    )
    .unwrap();
    refused(
        &[
            "export",
            "e",
            "--trial",
            "2",
            "--store",
            st,
            "--out",
            s(&fresh),
        ],
        "failed",
        &fresh,
    );
    // a cached trial exports the trial whose result it reused
    db.execute(
        "UPDATE trials SET status = 'done', source = 'cached', error = NULL, \
         reward = (SELECT reward FROM trials WHERE id = 1), \
         arch = (SELECT arch FROM trials WHERE id = 1), \
         canonical = (SELECT canonical FROM trials WHERE id = 1) WHERE id = 2",
        [],
    )
    .unwrap();
    let o = run(&[
        "export",
        "e",
        "--trial",
        "2",
        "--store",
        st,
        "--out",
        s(&fresh),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("trial 2 is cached"), "{}", stderr(&o));
    let record = std::fs::read_to_string(fresh.join("record.json")).unwrap();
    assert!(record.contains("\"trial\": 1"), "{record}");
}

#[test]
fn benchmark_export_writes_the_architecture_and_record_only() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("b.db");
    let o = run(&[
        "search",
        "--task",
        "nas-bench-graph/cora",
        "--strategy",
        "random",
        "--budget",
        "5",
        "--store",
        s(&store),
        "--name",
        "b",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = tmp.path().join("out");
    let o = run(&[
        "export",
        "b",
        "--best",
        "--store",
        s(&store),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("architecture and its benchmark record only"),
        "{}",
        stderr(&o)
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["arch.txt", "record.json"]);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap()).unwrap();
    let arch = std::fs::read_to_string(out.join("arch.txt")).unwrap();
    assert_eq!(arch.trim_end(), record["arch"].as_str().unwrap());
    assert!(
        record["metrics"]["val_accuracy"].as_f64().is_some(),
        "{record}"
    );
    assert!(record["reward"].as_f64().is_some(), "{record}");
}
