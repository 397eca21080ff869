//! Where the benchmark files live: one rule shared by the CLI, tests and benchmarks.

use std::path::{Path, PathBuf};

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "FNAS_DATA_DIR";

/// The data directory: `explicit` (e.g. `--data-dir`), else `$FNAS_DATA_DIR`, else
/// `./data` when it exists, else the checkout's `data/` (where `scripts/setup.sh` puts
/// the files), so tests and `cargo run` work from any working directory.
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let local = Path::new("data");
    if local.is_dir() {
        return local.to_path_buf();
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data"))
}
