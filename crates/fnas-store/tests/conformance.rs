//! The conformance suite against both flavours of `SqliteStore`.

use std::cell::Cell;

use fnas_store::{conformance, SqliteStore, Store};

#[test]
fn in_memory_store_conforms() {
    conformance::run_all(&|| Box::new(SqliteStore::in_memory().expect("in-memory store")));
}

#[test]
fn file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let n = Cell::new(0);
    let make = || -> Box<dyn Store> {
        n.set(n.get() + 1);
        let path = dir.path().join(format!("store-{}.db", n.get()));
        Box::new(SqliteStore::open(&path).expect("file store"))
    };
    conformance::run_all(&make);
    assert_eq!(n.get(), conformance::CHECKS.len());
}

#[test]
fn file_store_passes_integrity_check_after_every_check() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (name, check)) in conformance::CHECKS.iter().enumerate() {
        let path = dir.path().join(format!("check-{i}.db"));
        let mut store = SqliteStore::open(&path).unwrap();
        check(&mut store);
        drop(store);
        let store = SqliteStore::open_read_only(&path).unwrap();
        store
            .integrity_check()
            .unwrap_or_else(|e| panic!("after `{name}`: {e}"));
    }
}
