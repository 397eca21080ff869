//! Damaged, missing and wrong files: every failure is an `Err` with a one-line
//! message naming the file, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fnas_bench::{load, AnalogNasBench, BenchError, Benchmark, NasBenchGraph};

fn assert_one_line(e: &BenchError, names: &str) -> String {
    let msg = e.to_string();
    assert!(
        !msg.contains('\n') && !msg.contains('\r'),
        "not one line: {msg:?}"
    );
    assert!(msg.contains(names), "`{msg}` does not name `{names}`");
    msg
}

/// A data dir holding `bytes` where `bench` expects the file of `dataset`.
fn dir_with(bench: Benchmark, dataset: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = bench.path(tmp.path(), dataset);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
    (tmp, path)
}

fn load_err(bench: Benchmark, dir: &Path, dataset: &str) -> BenchError {
    match load(bench, dir, dataset) {
        Ok(_) => panic!("{bench}/{dataset} loaded from a damaged file"),
        Err(e) => e,
    }
}

fn real(bench: Benchmark, dataset: &str) -> Vec<u8> {
    std::fs::read(bench.path(&crate::common::data_dir(), dataset)).expect("real file")
}

#[test]
fn truncated_files_are_reported_as_corrupt() {
    for (bench, dataset) in [
        (Benchmark::NasBenchGraph, "cora"),
        (Benchmark::NasBenchGraph, "proteins"),
        (Benchmark::AnalogNasBench, "baseline"),
    ] {
        let full = real(bench, dataset);
        for n in [0, 1, 2, 11, 100, 4096, full.len() / 2, full.len() - 1] {
            let (tmp, path) = dir_with(bench, dataset, &full[..n]);
            let e = load_err(bench, tmp.path(), dataset);
            let msg = assert_one_line(&e, &path.display().to_string());
            assert!(matches!(e, BenchError::Corrupt { .. }), "{n} bytes: {msg}");
            assert!(msg.contains("re-run scripts/setup.sh"), "{msg}");
        }
    }
}

#[test]
fn garbage_and_flipped_bytes_never_panic() {
    // deterministic pseudo-random garbage
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for len in [1, 7, 64, 1000, 100_000] {
        let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        for (bench, dataset) in [
            (Benchmark::NasBenchGraph, "cora"),
            (Benchmark::AnalogNasBench, "ptq"),
        ] {
            let (tmp, path) = dir_with(bench, dataset, &garbage);
            let e = load_err(bench, tmp.path(), dataset);
            assert_one_line(&e, &path.display().to_string());
        }
    }
    // single flipped bytes in a real file: an error or a checked table, never a panic
    let full = real(Benchmark::NasBenchGraph, "proteins");
    for _ in 0..40 {
        let mut bytes = full.clone();
        let i = (next() % bytes.len() as u64) as usize;
        bytes[i] ^= (next() as u8) | 1;
        let (tmp, path) = dir_with(Benchmark::NasBenchGraph, "proteins", &bytes);
        if let Err(e) = NasBenchGraph::load(tmp.path(), "proteins") {
            assert_one_line(&e, &path.display().to_string());
        }
    }
}

#[test]
fn well_formed_pickles_of_the_wrong_shape_are_malformed() {
    let row = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    let ok = row(&[
        ("valid_perf", 0.5),
        ("perf", 0.5),
        ("latency", 0.01),
        ("para", 1.0),
    ]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            serde_pickle::to_vec(&5i64, Default::default()).expect("ser"),
            "top level is a int",
        ),
        (
            serde_pickle::to_vec(
                &BTreeMap::<i64, BTreeMap<String, f64>>::new(),
                Default::default(),
            )
            .expect("ser"),
            "empty",
        ),
        (
            serde_pickle::to_vec(
                &BTreeMap::from([(1i64, row(&[("perf", 0.5)]))]),
                Default::default(),
            )
            .expect("ser"),
            "key 1: field `valid_perf` is missing",
        ),
        (
            serde_pickle::to_vec(
                &BTreeMap::from([
                    (1i64, ok.clone()),
                    (2, {
                        let mut r = ok.clone();
                        r.insert("perf".into(), 85.0);
                        r
                    }),
                ]),
                Default::default(),
            )
            .expect("ser"),
            "key 2: `perf` = 85 is not an accuracy in [0, 1]",
        ),
        (
            serde_pickle::to_vec(&BTreeMap::from([(-3i64, ok.clone())]), Default::default())
                .expect("ser"),
            "is not a non-negative int",
        ),
        (
            serde_pickle::to_vec(
                &BTreeMap::from([(1i64, {
                    let mut r = ok.clone();
                    r.insert("latency".into(), f64::NAN);
                    r
                })]),
                Default::default(),
            )
            .expect("ser"),
            "`latency` = NaN",
        ),
    ];
    for (bytes, expect) in cases {
        let (tmp, path) = dir_with(Benchmark::NasBenchGraph, "cora", &bytes);
        let e = load_err(Benchmark::NasBenchGraph, tmp.path(), "cora");
        let msg = assert_one_line(&e, &path.display().to_string());
        assert!(matches!(e, BenchError::Malformed { .. }), "{msg}");
        assert!(msg.contains(expect), "`{msg}` lacks `{expect}`");
    }
    // an AnalogNAS file whose keys are not 6-tuples
    let bytes =
        serde_pickle::to_vec(&BTreeMap::from([(1i64, ok)]), Default::default()).expect("ser");
    let (tmp, path) = dir_with(Benchmark::AnalogNasBench, "baseline", &bytes);
    let e = load_err(Benchmark::AnalogNasBench, tmp.path(), "baseline");
    let msg = assert_one_line(&e, &path.display().to_string());
    assert!(msg.contains("is not a tuple of 6 op indices"), "{msg}");
}

#[test]
fn unknown_and_missing_datasets_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = load_err(Benchmark::NasBenchGraph, tmp.path(), "foo");
    let msg = assert_one_line(&e, "`foo`");
    assert!(
        msg.starts_with("unknown dataset `foo` for nas-bench-graph (known: cora, citeseer,"),
        "{msg}"
    );
    let e = load_err(Benchmark::AnalogNasBench, tmp.path(), "baseline_accuracy");
    assert_one_line(
        &e,
        "(known: baseline, ptq, qat, noisy, analog, baseline_drift_60,",
    );

    // a known dataset whose file is absent
    for (bench, dataset) in [
        (Benchmark::NasBenchGraph, "pubmed"),
        (Benchmark::AnalogNasBench, "analog"),
    ] {
        let e = load_err(bench, tmp.path(), dataset);
        let path = bench.path(tmp.path(), dataset).display().to_string();
        let msg = assert_one_line(&e, &path);
        assert_eq!(
            msg,
            format!("{path} does not exist: run scripts/setup.sh (or pass --data-dir / set FNAS_DATA_DIR)")
        );
    }
    // a directory where the file should be
    let path = NasBenchGraph::path(tmp.path(), "cs");
    std::fs::create_dir_all(&path).expect("mkdir");
    let e = load_err(Benchmark::NasBenchGraph, tmp.path(), "cs");
    assert_one_line(&e, &path.display().to_string());
}

#[test]
fn a_missing_data_dir_says_to_run_setup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("no-such-dir");
    for (bench, dataset) in [
        (Benchmark::NasBenchGraph, "cora"),
        (Benchmark::AnalogNasBench, "noisy"),
    ] {
        let e = load_err(bench, &dir, dataset);
        let msg = assert_one_line(&e, &dir.display().to_string());
        assert_eq!(
            msg,
            format!(
                "data directory {} does not exist: run scripts/setup.sh (or pass --data-dir / set FNAS_DATA_DIR)",
                dir.display()
            )
        );
    }
    assert!(AnalogNasBench::load(&dir, "analog").is_err());
}
