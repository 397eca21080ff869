//! Opening the store a search names: a SQLite file (the embedded default), or a
//! PostgreSQL database (`postgresql://user@host[:port]/db`) that drivers and workers on
//! several machines share.

use std::path::Path;

use fnas_core::Store;
use fnas_store::{is_postgres_url, PgStore, SqliteStore};

use crate::error::{invalid, Result};

/// Whether the store argument is a PostgreSQL URL.
pub fn is_url(store: &Path) -> bool {
    store.to_str().is_some_and(is_postgres_url)
}

/// Opens a store for writing (a SQLite file is created if missing).
pub fn open(store: &Path) -> Result<Box<dyn Store>> {
    match store.to_str().filter(|s| is_postgres_url(s)) {
        Some(url) => Ok(Box::new(PgStore::connect(url)?)),
        None => Ok(Box::new(SqliteStore::open(store)?)),
    }
}

/// Opens a store that must already exist (a SQLite file is never created); `what`
/// says why it must.
pub fn open_existing(store: &Path, what: &str) -> Result<Box<dyn Store>> {
    if !is_url(store) && !store.exists() {
        invalid!("store {}: no such file ({what})", store.display());
    }
    open(store)
}

/// Opens a store for reading only (a SQLite file is not upgraded or created).
pub fn open_read_only(store: &Path) -> Result<Box<dyn Store>> {
    match store.to_str().filter(|s| is_postgres_url(s)) {
        Some(url) => Ok(Box::new(PgStore::connect(url)?)),
        None => Ok(Box::new(SqliteStore::open_read_only(store)?)),
    }
}
