//! AnalogNAS-Bench: every NAS-Bench-201 cell on CIFAR-10, with its digital, quantised,
//! noisy and analog-hardware accuracies and their drift over time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fnas_core::{Architecture, Cost, EvalError, Evaluation, Evaluator, Metrics, SearchSpace};
use serde_pickle::{HashableValue, Value};

use crate::error::{show, BenchError};
use crate::pickle::{field, kind, number};
use crate::{check_data_dir, TabularBenchmark};

/// The benchmark's name, as in task names and messages.
pub const ANALOG_BENCH: &str = "analog-nasbench";

/// Number of accuracy columns; each is stored in the file as `<name>_accuracy`.
const N_ACCURACY: usize = 5;

/// The columns a search can optimise (the "datasets" of this benchmark): five
/// accuracies, then the drift accuracies after 60 s .. 30 days on digital and analog
/// hardware (the measured value; the file's uncertainty is not used).
pub const ANALOG_COLUMNS: &[&str] = &[
    "baseline",
    "ptq",
    "qat",
    "noisy",
    "analog",
    "baseline_drift_60",
    "baseline_drift_3600",
    "baseline_drift_86400",
    "baseline_drift_2592000",
    "analog_drift_60",
    "analog_drift_3600",
    "analog_drift_86400",
    "analog_drift_2592000",
];

const N_COLUMNS: usize = 13;
const N_EDGES: usize = 6;
const N_OPS: i64 = 5;

/// Ops per edge, in the file's tuple order (NB201 edge order, op indices 0..5).
type Cell = [u8; N_EDGES];

/// The parsed file, shared by every column's view of it.
#[derive(Debug)]
struct Table {
    file: String,
    /// Every column, as fractions, in [`ANALOG_COLUMNS`] order.
    rows: HashMap<Cell, [f64; N_COLUMNS]>,
    /// All cells, ascending, so [`TabularBenchmark::table`] is deterministic.
    cells: Vec<Cell>,
}

/// AnalogNAS-Bench with one column chosen as the accuracy to optimise; usable as an
/// [`Evaluator`]. Views of other columns share the parsed file ([`Self::with_column`]).
#[derive(Clone, Debug)]
pub struct AnalogNasBench {
    column: usize,
    space: SearchSpace,
    table: Arc<Table>,
}

fn column_index(column: &str) -> Result<usize, BenchError> {
    ANALOG_COLUMNS
        .iter()
        .position(|c| *c == column)
        .ok_or_else(|| BenchError::UnknownDataset {
            bench: ANALOG_BENCH.into(),
            name: column.into(),
            known: ANALOG_COLUMNS.join(", "),
        })
}

impl AnalogNasBench {
    /// Where `scripts/setup.sh` puts the file.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(ANALOG_BENCH).join("data.anb")
    }

    /// Loads `<data_dir>/analog-nasbench/data.anb` with `column` (one of
    /// [`ANALOG_COLUMNS`]) as the accuracy, checking every row.
    pub fn load(data_dir: &Path, column: &str) -> Result<Self, BenchError> {
        let column = column_index(column)?;
        check_data_dir(data_dir)?;
        let path = Self::path(data_dir);
        let value = crate::pickle::read(&path, ANALOG_BENCH)?;
        let rows = parse(&value).map_err(|detail| BenchError::Malformed {
            file: show(&path),
            bench: ANALOG_BENCH.into(),
            detail,
        })?;
        let mut cells: Vec<Cell> = rows.keys().copied().collect();
        cells.sort_unstable();
        Ok(Self {
            column,
            space: SearchSpace::nas_bench_201(),
            table: Arc::new(Table {
                file: show(&path),
                rows,
                cells,
            }),
        })
    }

    /// The same table with another column as the accuracy, without re-reading the file
    /// (e.g. to compare digital and analog rankings).
    pub fn with_column(&self, column: &str) -> Result<Self, BenchError> {
        Ok(Self {
            column: column_index(column)?,
            space: self.space.clone(),
            table: Arc::clone(&self.table),
        })
    }

    /// The column used as the accuracy.
    pub fn column(&self) -> &'static str {
        ANALOG_COLUMNS.get(self.column).copied().unwrap_or("?")
    }

    /// Number of cells in the table.
    pub fn len(&self) -> usize {
        self.table.rows.len()
    }

    /// Whether the table is empty (never, for a loaded file).
    pub fn is_empty(&self) -> bool {
        self.table.rows.is_empty()
    }

    /// Every column of an architecture, as fractions in [`ANALOG_COLUMNS`] order.
    pub fn row(&self, arch: &Architecture) -> Option<&[f64]> {
        cell(arch)
            .and_then(|c| self.table.rows.get(&c))
            .map(|r| &r[..])
    }

    fn value(&self, row: &[f64; N_COLUMNS]) -> f64 {
        row.get(self.column).copied().unwrap_or(f64::NAN)
    }
}

/// An architecture's key in the file: NB201 choice index i is the benchmark's op i.
fn cell(arch: &Architecture) -> Option<Cell> {
    let c = arch.choices();
    if c.len() != N_EDGES {
        return None;
    }
    let mut out = [0u8; N_EDGES];
    for (o, &x) in out.iter_mut().zip(c) {
        if i64::from(x) >= N_OPS {
            return None;
        }
        *o = x as u8;
    }
    Some(out)
}

pub(crate) fn parse(value: &Value) -> Result<HashMap<Cell, [f64; N_COLUMNS]>, String> {
    let Value::Dict(top) = value else {
        return Err(format!("top level is a {}, expected a dict", kind(value)));
    };
    if top.is_empty() {
        return Err("the table is empty".into());
    }
    let mut rows = HashMap::with_capacity(top.len());
    for (k, v) in top {
        let key = parse_key(k)?;
        let Value::Dict(obj) = v else {
            return Err(format!(
                "cell {key:?}: entry is a {}, expected an object",
                kind(v)
            ));
        };
        let mut row = [0.0; N_COLUMNS];
        for (i, (slot, col)) in row.iter_mut().zip(ANALOG_COLUMNS).enumerate() {
            let name = if i < N_ACCURACY {
                format!("{col}_accuracy")
            } else {
                (*col).to_string()
            };
            let v = field(obj, &name)
                .ok_or_else(|| format!("cell {key:?}: field `{name}` is missing"))?;
            // drift columns are DriftMeasurement objects {value, uncertainty}
            let v = match v {
                Value::Dict(d) => field(d, "value")
                    .ok_or_else(|| format!("cell {key:?}: `{name}` has no `value`"))?,
                other => other,
            };
            let pct = number(v).ok_or_else(|| {
                format!("cell {key:?}: `{name}` is a {}, expected a number", kind(v))
            })?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(format!(
                    "cell {key:?}: `{name}` = {pct} is not a percentage in [0, 100]"
                ));
            }
            *slot = pct / 100.0;
        }
        rows.insert(key, row);
    }
    Ok(rows)
}

fn parse_key(k: &HashableValue) -> Result<Cell, String> {
    let bad = || format!("key {k:?} is not a tuple of {N_EDGES} op indices in 0..{N_OPS}");
    let HashableValue::Tuple(items) = k else {
        return Err(bad());
    };
    if items.len() != N_EDGES {
        return Err(bad());
    }
    let mut out = [0u8; N_EDGES];
    for (o, item) in out.iter_mut().zip(items) {
        match item {
            HashableValue::I64(x) if (0..N_OPS).contains(x) => *o = *x as u8,
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

impl Evaluator for AnalogNasBench {
    fn space(&self) -> &SearchSpace {
        &self.space
    }

    fn task(&self) -> String {
        format!("{ANALOG_BENCH}/{}", self.column())
    }

    fn evaluate(&self, arch: &Architecture) -> Result<Evaluation, EvalError> {
        let key = cell(arch).ok_or_else(|| {
            EvalError::Fatal(format!(
                "architecture `{}` is not valid in space {} ({})",
                self.space.format(arch),
                self.space.name(),
                self.task()
            ))
        })?;
        let row = self.table.rows.get(&key).ok_or_else(|| {
            EvalError::Fatal(format!(
                "{}: no entry for cell {key:?} (architecture `{}`): the file is incomplete; re-run scripts/setup.sh",
                self.table.file,
                self.space.format(arch)
            ))
        })?;
        let acc = self.value(row);
        let extra: BTreeMap<String, f64> = ANALOG_COLUMNS
            .iter()
            .zip(row)
            .enumerate()
            .filter(|(i, _)| *i != self.column)
            .map(|(_, (c, x))| ((*c).to_string(), *x))
            .collect();
        Ok(Evaluation {
            metrics: Metrics {
                val_accuracy: acc,
                test_accuracy: Some(acc),
                extra,
                ..Metrics::default()
            },
            cost: Cost::query(),
        })
    }
}

impl TabularBenchmark for AnalogNasBench {
    fn table(&self) -> Vec<(f64, f64)> {
        self.table
            .cells
            .iter()
            .filter_map(|c| self.table.rows.get(c))
            .map(|r| {
                let x = self.value(r);
                (x, x)
            })
            .collect()
    }

    fn val_test(&self, arch: &Architecture) -> Option<(f64, f64)> {
        let row = cell(arch).and_then(|c| self.table.rows.get(&c))?;
        let x = self.value(row);
        Some((x, x))
    }

    fn as_evaluator(&self) -> &dyn Evaluator {
        self
    }
}
