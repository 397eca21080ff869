//! The PostgreSQL knowledge pool against a real server (`scripts/postgres.sh` starts
//! one): the shared pool behaviours (`pool_conformance`), then what only PostgreSQL has
//! (a pool beside a `PgStore`, racing first connects, URLs, reconnection). Every
//! backend gets a database of its own with a random name, dropped afterwards. The
//! server: `$FNAS_TEST_POSTGRES`, by default `postgresql://fnas@127.0.0.1:5432/fnas`,
//! password from `PGPASSWORD` or `~/.pgpass`.

use std::any::Any;
use std::path::PathBuf;

use fnas_core::pool::{BlockPool, PoolError};
use fnas_store::pool_conformance::{self, network, Backend, PoolUnderTest};
use fnas_store::postgres::{client, TestDatabase};
use fnas_store::{PgPool, PgStore, Store};

/// A fresh database on the test server; dropped when the guard goes.
struct Db(TestDatabase);

impl Db {
    fn new() -> Self {
        Self(TestDatabase::create("pool_test").unwrap_or_else(|e| {
            panic!("PostgreSQL server for the pool tests: {e} (start it with scripts/postgres.sh)")
        }))
    }

    fn url(&self) -> String {
        self.0.url()
    }
}

/// A fresh database and a pool folder (not created yet: connecting creates it).
struct Pg {
    db: Db,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Pg {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("artifacts").join("pool");
        Self {
            db: Db::new(),
            _tmp: tmp,
            dir,
        }
    }

    fn client(&self) -> postgres::Client {
        client(&self.db.url()).unwrap()
    }
}

/// An open transaction holding the pool's lock; rolled back when dropped.
struct Locked(postgres::Client);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.batch_execute("ROLLBACK");
    }
}

impl Backend for Pg {
    fn open(&self, max_bytes: u64) -> Result<Box<dyn PoolUnderTest>, PoolError> {
        Ok(Box::new(PgPool::connect(
            &self.db.url(),
            &self.dir,
            max_bytes,
        )?))
    }

    fn execute(&self, sql: &str) -> Result<(), String> {
        self.client().batch_execute(sql).map_err(|e| e.to_string())
    }

    fn reject_heads(&self, on: bool) {
        let sql = if on {
            "CREATE FUNCTION no_heads() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'no heads today'; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER no_heads BEFORE INSERT ON pool_entries
                 FOR EACH ROW WHEN (NEW.part = 'head') EXECUTE FUNCTION no_heads();"
        } else {
            "DROP TRIGGER no_heads ON pool_entries; DROP FUNCTION no_heads();"
        };
        self.execute(sql).unwrap();
    }

    fn lock_as_cleaner(&self) -> Box<dyn Any> {
        let mut c = self.client();
        c.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({})",
            PgPool::LOCK_KEY
        ))
        .unwrap();
        Box::new(Locked(c))
    }
}

#[test]
fn pg_pool_conforms() {
    pool_conformance::run_all(&|| Box::new(Pg::new()));
}

#[test]
fn the_pool_shares_a_database_with_the_store() {
    let pg = Pg::new();
    // either may connect first; each keeps its own tables
    let pool = PgPool::connect(&pg.db.url(), &pg.dir, 0).unwrap();
    let mut store = PgStore::connect(&pg.db.url()).unwrap();
    assert_eq!(pool.dir(), pg.dir);
    assert!(pg.dir.is_dir(), "the folder and its parent are created");
    pool.insert(network("a", 0.5)).unwrap();
    store
        .create_experiment(&fnas_core::store::ExperimentSpec {
            name: "e".into(),
            space: "fnas".into(),
            task: "fashion-mnist".into(),
            strategy: "random".into(),
            seed: 1,
            budget: 3,
            config: serde_json::json!({}),
        })
        .unwrap();
    let again = PgPool::connect(&pg.db.url(), &pg.dir, 0).unwrap();
    assert_eq!(again.stats().unwrap().entries, 4);
    assert_eq!(store.list_experiments().unwrap().len(), 1);
    for e in again.entries("fnas").unwrap() {
        again.load(&e).unwrap();
    }
}

#[test]
fn first_connects_racing_each_other_all_succeed() {
    let pg = Pg::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let pg = &pg;
                s.spawn(move || {
                    let pool = PgPool::connect(&pg.db.url(), &pg.dir, 0).unwrap();
                    pool.insert(network(&format!("n{i}"), 0.5)).unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().len(), 4);
        }
    });
    let pool = PgPool::connect(&pg.db.url(), &pg.dir, 0).unwrap();
    let stats = pool.stats().unwrap();
    assert_eq!((stats.entries, stats.networks), (24, 6));
}

#[test]
fn bad_urls_are_clear_errors_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let m = PgPool::connect("postgresql://fnas:hunter2@127.0.0.1/fnas", dir.path(), 0)
        .unwrap_err()
        .to_string();
    assert!(m.contains("PGPASSWORD") && !m.contains("hunter2"), "{m}");
    let m = PgPool::connect("postgresql://fnas@127.0.0.1:1/fnas", dir.path(), 0)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("cannot connect") && m.contains("127.0.0.1:1"),
        "{m}"
    );
    let m = PgPool::connect(
        "postgresql://fnas@127.0.0.1:5432/no_such_db_here",
        dir.path(),
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(m.contains("no_such_db_here"), "{m}");
    let pg = Pg::new();
    let pool = PgPool::connect(&pg.db.url(), &pg.dir, 7).unwrap();
    let shown = format!("{pool:?}");
    assert!(
        shown.contains(pg.db.0.name()) && shown.contains("max_bytes: 7"),
        "{shown}"
    );
}

#[test]
fn a_dropped_connection_is_re_established() {
    let pg = Pg::new();
    let pool = PgPool::connect(&pg.db.url(), &pg.dir, 0).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    // as a server restart would
    let n: i64 = pg
        .client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // the call that meets the closed connection may fail; the next one reconnects
    let first = pool.entries("fnas");
    if let Err(e) = &first {
        assert!(matches!(e, PoolError::Index(_)), "{e:?}");
    }
    let entries = pool.entries("fnas").unwrap();
    assert_eq!(entries.len(), 4);
    pool.touch(&[entries[0].id]).unwrap();
    pool.insert(network("b", 0.5)).unwrap();
    assert_eq!(pool.stats().unwrap().networks, 2);
}
