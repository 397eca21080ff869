//! Integration tests of the tabular benchmarks, built as one test binary.

mod common;

mod analog;
mod data_dir;
mod errors;
mod graph;
