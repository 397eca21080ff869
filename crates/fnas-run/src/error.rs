//! The one error type of this crate: callers (the `fnas` binary, tests, other programs)
//! match the store and search failures they can act on, and print the rest.

use fnas_bench::BenchError;
use fnas_child::task::TaskError;
use fnas_core::pool::PoolError;
use fnas_core::search::SearchError;
use fnas_core::{SpaceError, StoreError, StrategyError};

/// Why a search could not be built or prepared. Every message is meant for the user;
/// [`RunError::Context`] prints as `what was being done` with its cause as the source,
/// so `anyhow`'s `{:#}` shows both on one line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Options or stored settings that do not make a search, with what to do instead.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Space(#[from] SpaceError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A failure while doing `context` (loading a task's images, opening the knowledge
    /// pool, creating the artifacts folder, ...).
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl RunError {
    /// An [`RunError::Invalid`] with this message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

/// `Result<T, RunError>`.
pub type Result<T, E = RunError> = std::result::Result<T, E>;

/// Adds what was being done to any error (the `anyhow::Context` of this crate).
pub(crate) trait Context<T> {
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| RunError::Context {
            context: context(),
            source: Box::new(e),
        })
    }
}

/// Returns `Err(RunError::Invalid(format!(...)))` from the enclosing function.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::RunError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
