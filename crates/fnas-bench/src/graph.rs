//! NAS-Bench-Graph: one table per dataset, keyed by the benchmark's integer hash of a
//! canonical architecture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fnas_core::{Architecture, Cost, EvalError, Evaluation, Evaluator, Metrics, SearchSpace};
use serde_pickle::{HashableValue, Value};

use crate::error::{show, BenchError};
use crate::pickle::{field, kind, number};
use crate::{check_data_dir, TabularBenchmark};

/// The benchmark's name, as in task names and messages.
pub const GRAPH_BENCH: &str = "nas-bench-graph";

/// Datasets the package ships a table for. Proteins covers only a subset of the ops.
pub const GRAPH_DATASETS: &[&str] = &[
    "cora",
    "citeseer",
    "pubmed",
    "cs",
    "physics",
    "photo",
    "computers",
    "arxiv",
    "proteins",
];

/// One architecture's row, in the file's own units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraphRecord {
    /// Validation accuracy (`valid_perf`), a fraction.
    pub val: f64,
    /// Test accuracy (`perf`), a fraction.
    pub test: f64,
    /// Inference latency in seconds (`latency`).
    pub latency_s: f64,
    /// Parameters in millions (`para`).
    pub params_m: f64,
}

/// A loaded NAS-Bench-Graph table for one dataset, usable as an [`Evaluator`].
#[derive(Clone, Debug)]
pub struct NasBenchGraph {
    dataset: String,
    file: String,
    space: SearchSpace,
    records: HashMap<u64, GraphRecord>,
    /// All keys, ascending, so [`TabularBenchmark::table`] is deterministic.
    keys: Vec<u64>,
}

impl NasBenchGraph {
    /// Where `scripts/setup.sh` puts a dataset's file.
    pub fn path(data_dir: &Path, dataset: &str) -> PathBuf {
        data_dir
            .join(GRAPH_BENCH)
            .join("light")
            .join(format!("{dataset}.bench"))
    }

    /// The search space a dataset's table covers (proteins: its op subset).
    pub fn space_for(dataset: &str) -> SearchSpace {
        if dataset == "proteins" {
            SearchSpace::nas_bench_graph_proteins()
        } else {
            SearchSpace::nas_bench_graph()
        }
    }

    /// Loads `<data_dir>/nas-bench-graph/light/<dataset>.bench`, checking every row.
    pub fn load(data_dir: &Path, dataset: &str) -> Result<Self, BenchError> {
        if !GRAPH_DATASETS.contains(&dataset) {
            return Err(BenchError::UnknownDataset {
                bench: GRAPH_BENCH.into(),
                name: dataset.into(),
                known: GRAPH_DATASETS.join(", "),
            });
        }
        check_data_dir(data_dir)?;
        let path = Self::path(data_dir, dataset);
        let value = crate::pickle::read(&path, GRAPH_BENCH)?;
        let malformed = |detail: String| BenchError::Malformed {
            file: show(&path),
            bench: GRAPH_BENCH.into(),
            detail,
        };
        let records = parse(&value).map_err(malformed)?;
        let mut keys: Vec<u64> = records.keys().copied().collect();
        keys.sort_unstable();
        Ok(Self {
            dataset: dataset.into(),
            file: show(&path),
            space: Self::space_for(dataset),
            records,
            keys,
        })
    }

    /// The dataset this table is for.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// Number of distinct (canonical) architectures in the table.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the table is empty (never, for a loaded file).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The file's keys, ascending.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The row of a key.
    pub fn record(&self, key: u64) -> Option<&GraphRecord> {
        self.records.get(&key)
    }

    /// The row of an architecture (canonicalised first); `None` if the architecture is
    /// not valid in this dataset's space or absent from the file.
    pub fn lookup(&self, arch: &Architecture) -> Option<&GraphRecord> {
        if !self.space.is_valid(arch) {
            return None;
        }
        self.space
            .graph_key(arch)
            .and_then(|k| self.records.get(&k))
    }
}

pub(crate) fn parse(value: &Value) -> Result<HashMap<u64, GraphRecord>, String> {
    let Value::Dict(top) = value else {
        return Err(format!("top level is a {}, expected a dict", kind(value)));
    };
    if top.is_empty() {
        return Err("the table is empty".into());
    }
    let mut records = HashMap::with_capacity(top.len());
    for (k, v) in top {
        let key = match k {
            HashableValue::I64(i) if *i >= 0 => *i as u64,
            other => return Err(format!("key {other:?} is not a non-negative int")),
        };
        let Value::Dict(row) = v else {
            return Err(format!("key {key}: row is a {}, expected a dict", kind(v)));
        };
        let get = |name: &str| -> Result<f64, String> {
            let v =
                field(row, name).ok_or_else(|| format!("key {key}: field `{name}` is missing"))?;
            let x = number(v).ok_or_else(|| {
                format!("key {key}: `{name}` is a {}, expected a number", kind(v))
            })?;
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(format!(
                    "key {key}: `{name}` = {x} is not a finite non-negative number"
                ))
            }
        };
        let rec = GraphRecord {
            val: get("valid_perf")?,
            test: get("perf")?,
            latency_s: get("latency")?,
            params_m: get("para")?,
        };
        for (name, acc) in [("valid_perf", rec.val), ("perf", rec.test)] {
            if acc > 1.0 {
                return Err(format!(
                    "key {key}: `{name}` = {acc} is not an accuracy in [0, 1]"
                ));
            }
        }
        records.insert(key, rec);
    }
    Ok(records)
}

impl Evaluator for NasBenchGraph {
    fn space(&self) -> &SearchSpace {
        &self.space
    }

    fn task(&self) -> String {
        format!("{GRAPH_BENCH}/{}", self.dataset)
    }

    fn evaluate(&self, arch: &Architecture) -> Result<Evaluation, EvalError> {
        if !self.space.is_valid(arch) {
            return Err(EvalError::Fatal(format!(
                "architecture `{}` is not valid in space {} ({})",
                self.space.format(arch),
                self.space.name(),
                self.task()
            )));
        }
        let key = self.space.graph_key(arch).unwrap_or(u64::MAX);
        let r = self.records.get(&key).ok_or_else(|| {
            EvalError::Fatal(format!(
                "{}: no entry for key {key} (architecture `{}`): the file is incomplete; re-run scripts/setup.sh",
                self.file,
                self.space.format(arch)
            ))
        })?;
        Ok(Evaluation {
            metrics: Metrics {
                val_accuracy: r.val,
                test_accuracy: Some(r.test),
                latency_ms: Some(r.latency_s * 1000.0),
                // the file stores millions with 6 decimals: an exact count
                params: Some((r.params_m * 1e6).round()),
                ..Metrics::default()
            },
            cost: Cost::query(),
        })
    }
}

impl TabularBenchmark for NasBenchGraph {
    fn table(&self) -> Vec<(f64, f64)> {
        self.keys
            .iter()
            .filter_map(|k| self.records.get(k))
            .map(|r| (r.val, r.test))
            .collect()
    }

    fn val_test(&self, arch: &Architecture) -> Option<(f64, f64)> {
        self.lookup(arch).map(|r| (r.val, r.test))
    }

    fn as_evaluator(&self) -> &dyn Evaluator {
        self
    }
}
