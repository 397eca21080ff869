//! One error type for every way a benchmark can fail to load, each a single line that
//! names the file at fault and what to do about it.

use std::path::Path;

/// What the user should run when a benchmark file is absent.
pub const SETUP_HINT: &str = "run scripts/setup.sh (or pass --data-dir / set FNAS_DATA_DIR)";

/// Why a benchmark could not be loaded. Every message is one line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BenchError {
    #[error("unknown benchmark `{name}` (known: {known})")]
    UnknownBenchmark { name: String, known: String },
    #[error("unknown dataset `{name}` for {bench} (known: {known})")]
    UnknownDataset {
        bench: String,
        name: String,
        known: String,
    },
    #[error("data directory {dir} does not exist: {SETUP_HINT}")]
    MissingDataDir { dir: String },
    #[error("{file} does not exist: {SETUP_HINT}")]
    MissingFile { file: String },
    #[error("{file}: cannot read ({reason}); check the file, or {SETUP_HINT}")]
    Unreadable { file: String, reason: String },
    #[error("{file}: not a valid {bench} pickle (truncated or corrupt: {detail}); re-run scripts/setup.sh")]
    Corrupt {
        file: String,
        bench: String,
        detail: String,
    },
    #[error("{file}: not the expected {bench} data ({detail}); re-run scripts/setup.sh")]
    Malformed {
        file: String,
        bench: String,
        detail: String,
    },
}

/// Collapses any line breaks so a message stays on one line whatever a path or an
/// upstream error contains.
pub(crate) fn one_line(s: impl AsRef<str>) -> String {
    s.as_ref()
        .split(['\n', '\r'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A path as shown in messages.
pub(crate) fn show(path: &Path) -> String {
    one_line(path.display().to_string())
}
