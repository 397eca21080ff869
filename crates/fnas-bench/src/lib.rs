//! Tabular NAS benchmarks read straight from the files their Python packages ship
//! (pickles), so searches on them need no Python and cost one lookup per evaluation.
//!
//! - [`NasBenchGraph`]: 9 graph datasets over one GNN architecture space.
//! - [`AnalogNasBench`]: the NAS-Bench-201 cell space on CIFAR-10 with digital and
//!   analog-hardware accuracies.
//!
//! [`load`] gives either behind [`TabularBenchmark`], the interface the CLI and the
//! experiments use.

// A panic on input is a bug: library code returns errors; a justified exception says why
// it cannot fail, next to an `allow`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod analog;
mod data_dir;
mod error;
#[cfg(test)]
mod fuzz;
mod graph;
mod pickle;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use fnas_core::{Architecture, Evaluator};

pub use analog::{AnalogNasBench, ANALOG_BENCH, ANALOG_COLUMNS};
pub use data_dir::{resolve_data_dir, DATA_DIR_ENV};
pub use error::{BenchError, SETUP_HINT};
pub use graph::{GraphRecord, NasBenchGraph, GRAPH_BENCH, GRAPH_DATASETS};

/// A tabular benchmark: an [`Evaluator`] that also exposes its whole table, so targets,
/// optima and regret can be computed without spending evaluations.
pub trait TabularBenchmark: Evaluator {
    /// Every distinct (canonical) architecture's (validation accuracy, test accuracy),
    /// in a fixed order: for target thresholds and regret.
    fn table(&self) -> Vec<(f64, f64)>;

    /// (validation accuracy, test accuracy) of an architecture, from the benchmark's
    /// own lookup (canonicalised where the space merges duplicates); `None` if the
    /// architecture is invalid or absent. Costs nothing.
    fn val_test(&self, arch: &Architecture) -> Option<(f64, f64)>;

    /// The benchmark as a plain evaluator (trait upcasting needs Rust 1.86).
    fn as_evaluator(&self) -> &dyn Evaluator;
}

/// The tabular benchmarks this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Benchmark {
    /// `nas-bench-graph`: datasets are graph tasks.
    NasBenchGraph,
    /// `analog-nasbench`: "datasets" are the accuracy columns of its one table.
    AnalogNasBench,
}

impl Benchmark {
    /// Every benchmark, in the order they are listed in messages.
    pub const ALL: [Benchmark; 2] = [Benchmark::NasBenchGraph, Benchmark::AnalogNasBench];

    /// The name used on the command line and in task names.
    pub fn name(&self) -> &'static str {
        match self {
            Benchmark::NasBenchGraph => GRAPH_BENCH,
            Benchmark::AnalogNasBench => ANALOG_BENCH,
        }
    }

    /// What a task of this benchmark can name: NAS-Bench-Graph's datasets, or
    /// AnalogNAS-Bench's accuracy columns.
    pub fn datasets(&self) -> &'static [&'static str] {
        match self {
            Benchmark::NasBenchGraph => GRAPH_DATASETS,
            Benchmark::AnalogNasBench => ANALOG_COLUMNS,
        }
    }

    /// The file a dataset is read from (all AnalogNAS columns share one file).
    pub fn path(&self, data_dir: &Path, dataset: &str) -> PathBuf {
        match self {
            Benchmark::NasBenchGraph => NasBenchGraph::path(data_dir, dataset),
            Benchmark::AnalogNasBench => AnalogNasBench::path(data_dir),
        }
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Benchmark {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Benchmark::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| BenchError::UnknownBenchmark {
                name: s.to_string(),
                known: Benchmark::ALL.map(|b| b.name()).join(", "),
            })
    }
}

/// Loads one dataset of a benchmark from `data_dir` (see [`resolve_data_dir`]).
pub fn load(
    bench: Benchmark,
    data_dir: &Path,
    dataset: &str,
) -> Result<Box<dyn TabularBenchmark>, BenchError> {
    Ok(match bench {
        Benchmark::NasBenchGraph => Box::new(NasBenchGraph::load(data_dir, dataset)?),
        Benchmark::AnalogNasBench => Box::new(AnalogNasBench::load(data_dir, dataset)?),
    })
}

/// A missing data directory gets its own message: it usually means set-up never ran.
pub(crate) fn check_data_dir(data_dir: &Path) -> Result<(), BenchError> {
    if data_dir.is_dir() {
        Ok(())
    } else {
        Err(BenchError::MissingDataDir {
            dir: error::show(data_dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_names_round_trip_and_unknown_is_clear() {
        for b in Benchmark::ALL {
            assert_eq!(b.name().parse::<Benchmark>().unwrap(), b);
        }
        let e = "nasbench101".parse::<Benchmark>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown benchmark `nasbench101` (known: nas-bench-graph, analog-nasbench)"
        );
    }
}
