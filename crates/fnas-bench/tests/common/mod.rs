//! The real benchmark files, as `scripts/setup.sh` places them.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use fnas_bench::{resolve_data_dir, AnalogNasBench, NasBenchGraph, GRAPH_DATASETS};

/// The data directory; fails the test (never skips it) when the files are absent.
pub fn data_dir() -> PathBuf {
    let dir = resolve_data_dir(None);
    let mut missing: Vec<String> = GRAPH_DATASETS
        .iter()
        .map(|d| NasBenchGraph::path(&dir, d))
        .chain([AnalogNasBench::path(&dir)])
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    missing.truncate(3);
    assert!(
        missing.is_empty(),
        "benchmark data missing ({} ...): run scripts/setup.sh (or set FNAS_DATA_DIR) before the tests",
        missing.join(", ")
    );
    dir
}

/// Every NAS-Bench-Graph dataset, loaded once per test binary.
pub fn graphs() -> &'static [NasBenchGraph] {
    static G: OnceLock<Vec<NasBenchGraph>> = OnceLock::new();
    G.get_or_init(|| {
        let dir = data_dir();
        GRAPH_DATASETS
            .iter()
            .map(|d| NasBenchGraph::load(&dir, d).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    })
}

/// AnalogNAS-Bench (baseline column), loaded once per test binary.
pub fn analog() -> &'static AnalogNasBench {
    static A: OnceLock<AnalogNasBench> = OnceLock::new();
    A.get_or_init(|| {
        AnalogNasBench::load(&data_dir(), "baseline").unwrap_or_else(|e| panic!("{e}"))
    })
}
