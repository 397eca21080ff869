//! The SQLite knowledge pool: the shared pool behaviours (`pool_conformance`, with the
//! files beside the store and in a folder of their own), then what only a store file
//! has (its folder, integrity check, schema upgrade, coexistence with the store).

use std::any::Any;
use std::path::PathBuf;

use fnas_core::pool::{BlockPool, PoolError};
use fnas_core::store::ExperimentSpec;
use fnas_store::pool_conformance::{self, network, Backend, PoolUnderTest};
use fnas_store::{SqlitePool, SqliteStore, Store, SCHEMA_VERSION};
use rusqlite::Connection;

/// A fresh store file; the pool's files beside it or in `dir`.
struct Sqlite {
    _tmp: tempfile::TempDir,
    path: PathBuf,
    dir: Option<PathBuf>,
}

impl Sqlite {
    fn beside() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("runs.db");
        Self {
            _tmp: tmp,
            path,
            dir: None,
        }
    }

    /// Files in a folder that does not exist yet, two levels down.
    fn elsewhere() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("runs.db");
        let dir = Some(tmp.path().join("artifacts").join("pool"));
        Self {
            _tmp: tmp,
            path,
            dir,
        }
    }

    fn conn(&self) -> Connection {
        Connection::open(&self.path).unwrap()
    }
}

impl Backend for Sqlite {
    fn open(&self, max_bytes: u64) -> Result<Box<dyn PoolUnderTest>, PoolError> {
        Ok(Box::new(match &self.dir {
            None => SqlitePool::open(&self.path, max_bytes)?,
            Some(dir) => SqlitePool::open_in(&self.path, dir, max_bytes)?,
        }))
    }

    fn execute(&self, sql: &str) -> Result<(), String> {
        self.conn().execute_batch(sql).map_err(|e| e.to_string())
    }

    fn reject_heads(&self, on: bool) {
        let sql = if on {
            "CREATE TRIGGER no_heads BEFORE INSERT ON pool_entries WHEN NEW.part = 'head'
             BEGIN SELECT RAISE(ABORT, 'no heads today'); END;"
        } else {
            "DROP TRIGGER no_heads"
        };
        self.execute(sql).unwrap();
    }

    fn lock_as_cleaner(&self) -> Box<dyn Any> {
        let c = self.conn();
        // closing the connection rolls back and releases the lock
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        Box::new(c)
    }
}

fn store_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    (dir, path)
}

#[test]
fn sqlite_pool_conforms_with_files_beside_the_store() {
    pool_conformance::run_all(&|| Box::new(Sqlite::beside()));
}

#[test]
fn sqlite_pool_conforms_with_files_in_a_folder_of_their_own() {
    pool_conformance::run_all(&|| Box::new(Sqlite::elsewhere()));
}

#[test]
fn the_files_live_beside_the_store_or_where_open_in_says() {
    let b = Sqlite::beside();
    let pool = SqlitePool::open(&b.path, 0).unwrap();
    assert_eq!(pool.dir(), b.path.with_file_name("runs.db.pool"));
    assert!(pool.dir().is_dir());

    let e = Sqlite::elsewhere();
    let dir = e.dir.clone().unwrap();
    let pool = SqlitePool::open_in(&e.path, &dir, 0).unwrap();
    assert_eq!(pool.dir(), dir);
    assert!(dir.is_dir());
    pool.insert(network("a", 0.5)).unwrap();
    assert_eq!(pool_conformance::files(&dir).len(), 4);
    assert!(!e.path.with_file_name("runs.db.pool").exists());
    // a second pool on the same store and folder sees the entries
    let again = SqlitePool::open_in(&e.path, &dir, 0).unwrap();
    assert_eq!(
        again.entries("fnas").unwrap(),
        pool.entries("fnas").unwrap()
    );
}

#[test]
fn concurrent_inserts_leave_the_store_usable_meanwhile() {
    let b = Sqlite::beside();
    // the search loop holds its own connection meanwhile
    let mut store = SqliteStore::open(&b.path).unwrap();
    std::thread::scope(|s| {
        let checks = s.spawn(|| pool_conformance::concurrent_inserts_from_two_pools(&b));
        store
            .create_experiment(&ExperimentSpec {
                name: "meanwhile".into(),
                space: "fnas".into(),
                task: "fashion-mnist".into(),
                strategy: "random".into(),
                seed: 1,
                budget: 10,
                config: serde_json::json!({}),
            })
            .unwrap();
        checks.join().unwrap();
    });
    assert_eq!(store.list_experiments().unwrap().len(), 1);
    store.integrity_check().unwrap();
}

#[test]
fn the_integrity_check_finds_missing_and_resized_pool_files() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    let entries = pool.entries("fnas").unwrap();
    SqliteStore::open(&path).unwrap().integrity_check().unwrap();
    std::fs::remove_file(pool.dir().join(&entries[0].file)).unwrap();
    let bytes = std::fs::read(pool.dir().join(&entries[1].file)).unwrap();
    std::fs::write(pool.dir().join(&entries[1].file), &bytes[..10]).unwrap();
    let e = SqliteStore::open(&path)
        .unwrap()
        .integrity_check()
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("pool entry {}", entries[0].id)), "{e}");
    assert!(e.contains(&entries[0].file), "{e}");
    assert!(e.contains(&format!("pool entry {}", entries[1].id)), "{e}");
    assert!(e.contains("holds 10 bytes"), "{e}");
}

#[test]
fn the_store_still_works_on_the_pool_file() {
    assert_eq!(SCHEMA_VERSION, 5);
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let exp = s
        .create_experiment(&ExperimentSpec {
            name: "e".into(),
            space: "fnas".into(),
            task: "fashion-mnist".into(),
            strategy: "random".into(),
            seed: 1,
            budget: 10,
            config: serde_json::json!({}),
        })
        .unwrap()
        .id;
    s.begin_batch(exp, 0, &[], b"ask").unwrap();
    s.end_batch(exp, 0, b"tell").unwrap();
    s.integrity_check().unwrap();
    drop(s);
    let ro = SqliteStore::open_read_only(&path).unwrap();
    ro.integrity_check().unwrap();
    assert_eq!(ro.list_experiments().unwrap().len(), 1);
    assert_eq!(pool.stats().unwrap().entries, 4);
}

#[test]
fn a_v2_store_gains_the_pool_table() {
    let (_d, path) = store_path();
    {
        let mut s = SqliteStore::open(&path).unwrap();
        s.create_experiment(&ExperimentSpec {
            name: "old".into(),
            space: "fnas".into(),
            task: "fashion-mnist".into(),
            strategy: "random".into(),
            seed: 7,
            budget: 10,
            config: serde_json::json!({"k": 1}),
        })
        .unwrap();
    }
    // what a v2 build left: everything but the pool (and v4's queue)
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "BEGIN; DROP INDEX pool_entries_by_budget; DROP TABLE pool_entries;
             DROP INDEX trials_queue; DROP TABLE drivers;
             ALTER TABLE trials DROP COLUMN queued; ALTER TABLE trials DROP COLUMN attempts;
             ALTER TABLE trials DROP COLUMN lease_token;
             ALTER TABLE trials DROP COLUMN lease_holder;
             ALTER TABLE trials DROP COLUMN lease_deadline;
             ALTER TABLE trials DROP COLUMN claimed_at;
             PRAGMA user_version = 2; COMMIT;",
        )
        .unwrap();
    let pool = SqlitePool::open(&path, 0).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    let s = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    s.integrity_check().unwrap();
    assert_eq!(s.list_experiments().unwrap()[0].experiment.spec.seed, 7);
}

#[test]
fn a_foreign_file_is_refused() {
    let (_d, path) = store_path();
    std::fs::write(&path, b"not a database at all, just text").unwrap();
    let err = SqlitePool::open(&path, 0).unwrap_err();
    assert!(matches!(err, PoolError::Index(_)), "{err:?}");
    assert!(!path.with_file_name("runs.db.pool").exists());
}
