//! Helpers shared by the multi-process tests: the fnas binary, waiting for children,
//! the store's queue columns, a fresh PostgreSQL database per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn fnas() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fnas"));
    c.env("FNAS_DATA_DIR", data_dir());
    c
}

pub fn data_dir() -> PathBuf {
    let d = fnas_bench::resolve_data_dir(None);
    assert!(
        d.join("nas-bench-graph/light/cora.bench").exists(),
        "benchmark data missing in {}: run scripts/setup.sh",
        d.display()
    );
    d
}

pub fn run(args: &[&str]) -> Output {
    fnas().args(args).output().expect("fnas binary runs")
}

pub fn spawn(args: &[&str]) -> Child {
    fnas()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fnas binary runs")
}

pub fn show(store: &Path, name: &str) -> serde_json::Value {
    let o = run(&["show", name, "--store", store.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The trials' queue columns, straight from the file.
pub fn holders(store: &Path) -> Vec<(String, i64)> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut st = c
        .prepare(
            "SELECT coalesce(lease_holder, ''), attempts FROM trials
              WHERE source = 'evaluated' ORDER BY id",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The holder of every trial's latest lease (pending ones included).
pub fn holders_any(store: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut st = c
        .prepare("SELECT coalesce(lease_holder, '') FROM trials")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Waits until the driver has recorded experiment `name` (workers refuse an unknown one).
pub fn wait_for_experiment(store: &str, name: &str, limit: Duration) {
    let t0 = Instant::now();
    while !run(&["show", name, "--store", store, "--json"])
        .status
        .success()
    {
        assert!(
            t0.elapsed() < limit,
            "no experiment `{name}` after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_for(child: &mut Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("process still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    Output {
        status: child.wait().unwrap(),
        stdout: out,
        stderr: err,
    }
}

/// The tests share one PostgreSQL server and one test binary: a test that restarts the
/// server holds this exclusively, every other one that talks to it holds it shared.
static PG_SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held while a test uses the PostgreSQL server.
pub fn pg_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    PG_SERVER.read().unwrap_or_else(|p| p.into_inner())
}

/// Held while a test restarts (or otherwise disturbs) the PostgreSQL server.
pub fn pg_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    PG_SERVER.write().unwrap_or_else(|p| p.into_inner())
}

/// A fresh database on the test PostgreSQL server (scripts/postgres.sh), dropped after;
/// holds the server shared while it lives.
pub struct PgDb(
    fnas_store::postgres::TestDatabase,
    std::sync::RwLockReadGuard<'static, ()>,
);

pub fn pg_server() -> String {
    fnas_store::postgres::test_server()
}

impl PgDb {
    pub fn new(tag: &str) -> Self {
        let shared = pg_shared();
        Self(
            fnas_store::postgres::TestDatabase::create(&format!("cli_{tag}")).unwrap_or_else(|e| {
                panic!("PostgreSQL server for the tests: {e} (start it with scripts/postgres.sh)")
            }),
            shared,
        )
    }

    /// A database for a test that holds the server exclusively already.
    pub fn new_exclusive(tag: &str) -> fnas_store::postgres::TestDatabase {
        fnas_store::postgres::TestDatabase::create(&format!("cli_{tag}")).unwrap_or_else(|e| {
            panic!("PostgreSQL server for the tests: {e} (start it with scripts/postgres.sh)")
        })
    }

    pub fn url(&self) -> String {
        self.0.url()
    }
}
