//! The store contract against a real PostgreSQL server (`scripts/postgres.sh` starts one;
//! `.ci/run` runs it through `scripts/setup.sh`). Every check gets a database of its
//! own, dropped afterwards. The server: `$FNAS_TEST_POSTGRES`, by default
//! `postgresql://fnas@127.0.0.1:5432/fnas`, password from `PGPASSWORD` or `~/.pgpass`.

use fnas_store::postgres::TestDatabase;
use fnas_store::{conformance, PgStore, Store};

/// A fresh database on the test server; dropped when the guard goes.
struct Db(TestDatabase);

impl Db {
    fn new() -> Self {
        Self(TestDatabase::create("test").unwrap_or_else(|e| {
            panic!("PostgreSQL server for the store tests: {e} (start it with scripts/postgres.sh)")
        }))
    }

    fn url(&self) -> String {
        self.0.url()
    }
}

#[test]
fn postgres_passes_the_store_conformance_suite() {
    for (name, check) in conformance::CHECKS {
        let db = Db::new();
        let mut store = PgStore::connect(&db.url()).unwrap();
        eprintln!("check {name}");
        check(&mut store);
    }
}

#[test]
fn a_second_connection_sees_the_same_store_and_schema_is_created_once() {
    let db = Db::new();
    let mut a = PgStore::connect(&db.url()).unwrap();
    let b = PgStore::connect(&db.url()).unwrap();
    let spec = fnas_core::store::ExperimentSpec {
        name: "e".into(),
        space: "s".into(),
        task: "t".into(),
        strategy: "random".into(),
        seed: u64::MAX,
        budget: 3,
        config: serde_json::json!({"b": 1, "a": 0.1}),
    };
    a.create_experiment(&spec).unwrap();
    let got = b.experiment("e").unwrap().unwrap();
    assert_eq!(got.spec, spec);
}

#[test]
fn bad_urls_are_clear_errors_without_the_password() {
    let m = PgStore::connect("postgresql://fnas:hunter2@127.0.0.1/fnas")
        .unwrap_err()
        .to_string();
    assert!(m.contains("PGPASSWORD") && !m.contains("hunter2"), "{m}");
    let m = PgStore::connect("postgresql://fnas@127.0.0.1:1/fnas")
        .unwrap_err()
        .to_string();
    assert!(m.contains("cannot connect"), "{m}");
    let m = PgStore::connect("postgresql://fnas@127.0.0.1:5432/no_such_db_here")
        .unwrap_err()
        .to_string();
    assert!(m.contains("no_such_db_here"), "{m}");
}
