//! SQLite-specific behaviour: files, schema versions, refusals, integrity, concurrency.

use std::path::Path;
use std::sync::{Arc, Barrier};

use fnas_core::store::{ExperimentSpec, NewTrial, TrialResult, TrialSource, TrialStatus};
use fnas_core::{Cost, Metrics, Prediction};
use fnas_store::{SqliteStore, Store, StoreError, APPLICATION_ID, SCHEMA_VERSION};

fn spec(name: &str) -> ExperimentSpec {
    ExperimentSpec {
        name: name.to_string(),
        space: "nb201".to_string(),
        task: "nas-bench-201/cifar10".to_string(),
        strategy: "evolution".to_string(),
        seed: 42,
        budget: 50,
        config: serde_json::json!({ "population": 10 }),
    }
}

fn trials(n: usize) -> Vec<NewTrial> {
    (0..n)
        .map(|i| NewTrial {
            arch: format!("a{i}"),
            canonical: format!("c{i}"),
            log_prob: Some(-1.0 - i as f64),
            prediction: None,
        })
        .collect()
}

fn ok(reward: f64) -> TrialResult {
    TrialResult {
        status: TrialStatus::Done,
        source: TrialSource::Evaluated,
        metrics: Some(Metrics {
            val_accuracy: reward,
            ..Metrics::default()
        }),
        reward: Some(reward),
        cost: Cost::query(),
        error: None,
    }
}

fn message(e: StoreError) -> String {
    match e {
        StoreError::Backend { message, .. } => message,
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

fn open_err(path: &Path) -> String {
    message(SqliteStore::open(path).expect_err("open must fail"))
}

fn ro_err(path: &Path) -> String {
    message(SqliteStore::open_read_only(path).expect_err("read-only open must fail"))
}

fn side_files(path: &Path) -> Vec<bool> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            Path::new(&p).exists()
        })
        .collect()
}

/// Fills a store with one closed and one open batch; returns the experiment id.
fn populate(s: &mut SqliteStore) -> i64 {
    let e = s.create_experiment(&spec("exp")).unwrap();
    let ids = s.begin_batch(e.id, 0, &trials(3), b"ask0").unwrap();
    for (i, id) in ids.iter().enumerate() {
        s.finish_trial(*id, &ok(0.1 * i as f64)).unwrap();
    }
    s.end_batch(e.id, 0, b"tell0").unwrap();
    let ids = s.begin_batch(e.id, 1, &trials(2), b"ask1").unwrap();
    s.finish_trial(ids[0], &ok(0.9)).unwrap();
    s.set_experiment_status(e.id, "finished").unwrap();
    e.id
}

#[test]
fn reopened_file_store_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = SqliteStore::open(&path).unwrap();
    let exp = populate(&mut s);
    let list = s.list_experiments().unwrap();
    let all = s.trials(exp).unwrap();
    let cp = s.checkpoint(exp).unwrap();
    drop(s);

    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.list_experiments().unwrap(), list);
    assert_eq!(s.trials(exp).unwrap(), all);
    assert_eq!(s.checkpoint(exp).unwrap(), cp);
    assert_eq!(cp.as_ref().map(|c| (c.batch, c.open)), Some((1, true)));
    assert_eq!(list[0].trials, 5);
    assert_eq!(list[0].finished_trials, 4);
    assert_eq!(list[0].experiment.status, "finished");
    s.integrity_check().unwrap();
    drop(s);

    let mut ro = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(ro.list_experiments().unwrap(), list);
    assert_eq!(ro.trials(exp).unwrap(), all);
    ro.integrity_check().unwrap();
    let err = ro.create_experiment(&spec("other")).unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    let pending = all
        .iter()
        .find(|t| t.status == TrialStatus::Pending)
        .unwrap();
    assert!(ro.finish_trial(pending.id, &ok(0.5)).is_err());
    drop(ro);
    assert_eq!(SqliteStore::open(&path).unwrap().trials(exp).unwrap(), all);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    populate(&mut SqliteStore::open(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let want = format!(
        "store was written by a newer fnas (schema v{}); this build knows up to v{}",
        SCHEMA_VERSION + 1,
        SCHEMA_VERSION
    );
    assert_eq!(open_err(&path), want);
    assert_eq!(ro_err(&path), want);
}

#[test]
fn garbage_file_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        (
            "random.db",
            (0..8192u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
                .collect::<Vec<u8>>(),
        ),
        ("text.db", b"hello, this is not a database\n".to_vec()),
        ("short.db", b"SQLite".to_vec()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let m = open_err(&path);
        assert!(
            m.contains("not an fnas store") && m.contains("not an SQLite database"),
            "{m}"
        );
        assert!(ro_err(&path).contains("not an fnas store"));
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name} was modified");
        assert_eq!(side_files(&path), [false, false, false]);
    }
}

#[test]
fn foreign_sqlite_database_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.db");
    {
        let c = rusqlite::Connection::open(&plain).unwrap();
        c.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO users (name) VALUES ('ada'), ('alan');
             CREATE TABLE orders (id INTEGER PRIMARY KEY);",
        )
        .unwrap();
    }
    // another program that also versions its schema, even with our table names
    let versioned = dir.path().join("versioned.db");
    {
        let c = rusqlite::Connection::open(&versioned).unwrap();
        c.execute_batch(
            "CREATE TABLE experiments (x); CREATE TABLE trials (y); PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    // only an application id of someone else, no tables
    let other_app = dir.path().join("other-app.db");
    {
        let c = rusqlite::Connection::open(&other_app).unwrap();
        c.execute_batch("PRAGMA application_id = 1234; PRAGMA user_version = 0;")
            .unwrap();
    }
    for path in [&plain, &versioned, &other_app] {
        let before = std::fs::read(path).unwrap();
        let m = open_err(path);
        assert!(m.contains("not an fnas store"), "{m}");
        assert!(m.contains("left unchanged"), "{m}");
        assert!(!m.contains('\n'), "one line: {m}");
        assert!(ro_err(path).contains("not an fnas store"));
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{} was modified",
            path.display()
        );
    }
    let m = open_err(&plain);
    assert!(
        m.contains("users") && m.contains("orders"),
        "names the tables: {m}"
    );
}

#[test]
fn creating_a_store_leaves_no_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = SqliteStore::open(&path).unwrap();
    populate(&mut s);
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert!(
        names().iter().all(|n| n.starts_with("s.db")),
        "{:?}",
        names()
    );
    drop(s);
    assert_eq!(names(), ["s.db"], "WAL files are removed on close");
    assert_eq!(
        SqliteStore::open_read_only(&path)
            .unwrap()
            .list_experiments()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn empty_file_becomes_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    assert!(ro_err(&path).contains("no store at"));
    let mut s = SqliteStore::open(&path).unwrap();
    populate(&mut s);
    s.integrity_check().unwrap();
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let app: i32 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    assert_eq!(mode, "wal");
}

#[test]
fn missing_parent_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no").join("such");
    let path = missing.join("s.db");
    let err = SqliteStore::open(&path).unwrap_err();
    let shown = err.to_string();
    assert_eq!(
        shown,
        format!(
            "store {}: cannot open: directory {} does not exist",
            path.display(),
            missing.display()
        )
    );
    assert!(!missing.exists(), "the directory is not created");
    // a file where the directory should be
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let m = open_err(&file.join("s.db"));
    assert!(m.contains("is not a directory"), "{m}");
    // a directory where the file should be
    let m = open_err(dir.path());
    assert!(m.contains("is a directory"), "{m}");
}

#[test]
fn unwritable_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"").is_ok() {
        eprintln!("running as root: permissions are not enforced, skipping");
        return;
    }
    let path = ro.join("s.db");
    let m = open_err(&path);
    assert!(m.contains("permission denied"), "{m}");
    assert!(!path.exists());
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn read_only_open_of_a_missing_file_does_not_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.db");
    let err = SqliteStore::open_read_only(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("store {0}: no store at {0}", path.display())
    );
    assert!(!path.exists());
    assert_eq!(side_files(&path), [false, false, false]);
    let in_missing_dir = dir.path().join("nope").join("s.db");
    assert!(ro_err(&in_missing_dir).contains("no store at"));
    assert!(!dir.path().join("nope").exists());
}

#[test]
fn integrity_check_finds_broken_invariants() {
    let dir = tempfile::tempdir().unwrap();
    // a pending trial in a closed batch
    let path = dir.path().join("a.db");
    let exp = populate(&mut SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE batches SET open = 0, closed_at = 1 WHERE experiment_id = ?1 AND batch = 1",
            [exp],
        )
        .unwrap();
    let m = message(
        SqliteStore::open(&path)
            .unwrap()
            .integrity_check()
            .unwrap_err(),
    );
    assert!(m.contains("pending trials in a closed batch"), "{m}");
    assert!(m.contains("checkpoints that disagree"), "{m}");

    // a half-present batch
    let path = dir.path().join("b.db");
    let exp = populate(&mut SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "DELETE FROM trials WHERE experiment_id = ?1 AND batch = 0 AND idx = 1",
            [exp],
        )
        .unwrap();
    let m = message(
        SqliteStore::open(&path)
            .unwrap()
            .integrity_check()
            .unwrap_err(),
    );
    assert!(m.contains("not exactly indices 0..size"), "{m}");

    // a dropped trigger
    let path = dir.path().join("d.db");
    populate(&mut SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DROP TRIGGER trials_finished_are_immutable", [])
        .unwrap();
    let m = message(
        SqliteStore::open(&path)
            .unwrap()
            .integrity_check()
            .unwrap_err(),
    );
    assert!(m.contains("1 missing schema objects"), "{m}");

    // and a healthy one passes
    let path = dir.path().join("c.db");
    populate(&mut SqliteStore::open(&path).unwrap());
    SqliteStore::open(&path).unwrap().integrity_check().unwrap();
}

#[test]
fn finished_trials_are_immutable_even_through_raw_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let exp = populate(&mut SqliteStore::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let err = c
        .execute(
            "UPDATE trials SET reward = 1.0 WHERE experiment_id = ?1 AND status = 'done'",
            [exp],
        )
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    // pending ones may still be finished
    let n = c
        .execute(
            "UPDATE trials SET error = 'x' WHERE experiment_id = ?1 AND status = 'pending'",
            [exp],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn batch_numbering_rules() {
    let mut s = SqliteStore::in_memory().unwrap();
    let e = s.create_experiment(&spec("e")).unwrap();
    let ids = s.begin_batch(e.id, 0, &trials(1), b"a").unwrap();
    // one lookahead batch may be begun while batch 0 is open, not a third
    let next = s.begin_batch(e.id, 1, &trials(1), b"a1").unwrap();
    let m = s
        .begin_batch(e.id, 2, &trials(1), b"a")
        .unwrap_err()
        .to_string();
    assert!(m.contains("still open"), "{m}");
    assert_eq!(s.open_batches(e.id).unwrap(), vec![0, 1]);
    // batches end in order
    s.finish_trial(next[0], &ok(0.3)).unwrap();
    let m = s.end_batch(e.id, 1, b"t1").unwrap_err().to_string();
    assert!(m.contains("end in order"), "{m}");
    s.finish_trial(ids[0], &ok(0.1)).unwrap();
    s.end_batch(e.id, 0, b"t").unwrap();
    // the checkpoint names the latest batch begun, still open, with the latest state
    let cp = s.checkpoint(e.id).unwrap().unwrap();
    assert_eq!(
        (cp.batch, cp.open, cp.state.as_slice()),
        (1, true, &b"t"[..])
    );
    let m = s.end_batch(e.id, 0, b"t").unwrap_err().to_string();
    assert!(m.contains("already closed"), "{m}");
    s.end_batch(e.id, 1, b"t1").unwrap();
    let cp = s.checkpoint(e.id).unwrap().unwrap();
    assert_eq!(
        (cp.batch, cp.open, cp.state.as_slice()),
        (1, false, &b"t1"[..])
    );
    assert!(s.open_batches(e.id).unwrap().is_empty());
    let m = s
        .begin_batch(e.id, 1, &trials(1), b"a")
        .unwrap_err()
        .to_string();
    assert!(m.contains("already exists"), "{m}");
    // gaps are fine, going back is not
    s.begin_batch(e.id, 5, &trials(2), b"a5").unwrap();
    let ids = s.batch_trials(e.id, 5).unwrap();
    for t in &ids {
        s.finish_trial(t.id, &ok(0.2)).unwrap();
    }
    s.end_batch(e.id, 5, b"t5").unwrap();
    let m = s
        .begin_batch(e.id, 3, &trials(1), b"a")
        .unwrap_err()
        .to_string();
    assert!(m.contains("must increase"), "{m}");
    assert_eq!(s.trials(e.id).unwrap().len(), 4);
    s.integrity_check().unwrap();
}

#[test]
fn non_finite_values_are_refused_or_kept() {
    let mut s = SqliteStore::in_memory().unwrap();
    let e = s.create_experiment(&spec("e")).unwrap();
    let mut bad = trials(2);
    bad[1].log_prob = Some(f64::NAN);
    assert!(matches!(
        s.begin_batch(e.id, 0, &bad, b"a"),
        Err(StoreError::Invalid(_))
    ));
    assert!(s.trials(e.id).unwrap().is_empty());
    assert_eq!(s.checkpoint(e.id).unwrap(), None);

    for (mean, std) in [(f64::NAN, 0.1), (0.5, f64::NAN)] {
        let mut bad = trials(2);
        bad[1].prediction = Some(Prediction {
            mean,
            std,
            trusted: true,
        });
        let m = match s.begin_batch(e.id, 0, &bad, b"a") {
            Err(StoreError::Invalid(m)) => m,
            r => panic!("a NaN prediction: expected Invalid, got {r:?}"),
        };
        assert!(m.contains("NaN") && m.contains("predicted"), "{m}");
    }
    assert!(s.trials(e.id).unwrap().is_empty());
    assert_eq!(s.checkpoint(e.id).unwrap(), None);

    let mut good = trials(4);
    good[0].log_prob = Some(f64::NEG_INFINITY);
    good[1].prediction = Some(Prediction {
        mean: f64::NEG_INFINITY,
        std: f64::INFINITY,
        trusted: false,
    });
    let ids = s.begin_batch(e.id, 0, &good, b"a").unwrap();
    assert_eq!(
        s.batch_trials(e.id, 0).unwrap()[0].log_prob,
        Some(f64::NEG_INFINITY)
    );
    assert_eq!(
        s.batch_trials(e.id, 0).unwrap()[1].prediction,
        good[1].prediction,
        "infinite predictions are kept"
    );

    let mut r = ok(0.5);
    r.reward = Some(f64::NAN);
    assert!(matches!(
        s.finish_trial(ids[0], &r),
        Err(StoreError::Invalid(_))
    ));
    let mut r = ok(0.5);
    r.metrics.as_mut().unwrap().latency_ms = Some(f64::INFINITY);
    assert!(matches!(
        s.finish_trial(ids[0], &r),
        Err(StoreError::Invalid(_))
    ));
    let mut r = ok(0.5);
    r.metrics
        .as_mut()
        .unwrap()
        .extra
        .insert("x".into(), f64::NAN);
    assert!(matches!(
        s.finish_trial(ids[0], &r),
        Err(StoreError::Invalid(_))
    ));
    let mut r = ok(0.5);
    r.cost.wall_seconds = f64::NAN;
    assert!(matches!(
        s.finish_trial(ids[0], &r),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.trials(e.id).unwrap()[0].status, TrialStatus::Pending);

    let mut r = ok(0.5);
    r.reward = Some(f64::NEG_INFINITY);
    s.finish_trial(ids[0], &r).unwrap();
    assert_eq!(s.trials(e.id).unwrap()[0].reward, Some(f64::NEG_INFINITY));

    // -0.0 is kept, in JSON and in the untyped reward column
    let mut r = ok(0.5);
    r.reward = Some(-0.0);
    r.metrics.as_mut().unwrap().val_accuracy = -0.0;
    s.finish_trial(ids[1], &r).unwrap();
    let t = &s.trials(e.id).unwrap()[1];
    assert_eq!(
        t.metrics.as_ref().unwrap().val_accuracy.to_bits(),
        (-0.0f64).to_bits()
    );
    assert_eq!(t.reward.map(f64::to_bits), Some((-0.0f64).to_bits()));
}

#[test]
fn concurrent_writers_and_readers_share_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("shared.db"));
    let writers = 3;
    let batches = 15u64;
    let barrier = Arc::new(Barrier::new(writers + 1));
    let mut handles = Vec::new();
    for w in 0..writers {
        let (path, barrier) = (path.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            // all open the same fresh file at once: one creates the schema
            let mut s = SqliteStore::open(&path).unwrap();
            let e = s.create_experiment(&spec(&format!("w{w}"))).unwrap();
            for b in 0..batches {
                let ids = s.begin_batch(e.id, b, &trials(4), b"a").unwrap();
                for id in ids {
                    s.finish_trial(id, &ok(0.5)).unwrap();
                }
                s.end_batch(e.id, b, b"t").unwrap();
            }
        }));
    }
    let reader = {
        let (path, barrier) = (path.clone(), barrier.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let mut reads = 0;
            for _ in 0..200 {
                if let Ok(s) = SqliteStore::open_read_only(&path) {
                    for x in s.list_experiments().unwrap() {
                        assert_eq!(x.trials % 4, 0, "a batch is seen whole or not at all");
                        assert!(x.finished_trials <= x.trials);
                    }
                    reads += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            reads
        })
    };
    for h in handles {
        h.join().unwrap();
    }
    assert!(reader.join().unwrap() > 0);
    let s = SqliteStore::open_read_only(&path).unwrap();
    s.integrity_check().unwrap();
    let list = s.list_experiments().unwrap();
    assert_eq!(list.len(), writers);
    for x in list {
        assert_eq!(x.trials, batches * 4);
        assert_eq!(x.finished_trials, batches * 4);
        assert_eq!(x.cost, batches * 4);
    }
}

#[test]
fn in_memory_stores_are_independent() {
    let mut a = SqliteStore::in_memory().unwrap();
    let b = SqliteStore::in_memory().unwrap();
    a.create_experiment(&spec("x")).unwrap();
    assert_eq!(a.list_experiments().unwrap().len(), 1);
    assert!(b.list_experiments().unwrap().is_empty());
    assert_eq!(a.path(), ":memory:");
    a.integrity_check().unwrap();
}

/// Opening a damaged store, for reading or writing, leaves no new file beside it.
#[test]
fn opening_leaves_no_new_files_beside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        populate(&mut s);
    }
    assert_eq!(side_files(&path), vec![false, false, false]);
    // damaged copies: bit flips past the header, and a truncation
    let good = std::fs::read(&path).unwrap();
    for (k, cut) in [(0u64, false), (1, false), (2, false), (3, true)] {
        let bad = dir.path().join(format!("bad{k}.db"));
        let mut bytes = good.clone();
        if cut {
            bytes.truncate(good.len() / 3);
        } else {
            let mut x = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k + 1);
            for _ in 0..40 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = 100 + (x as usize) % (bytes.len() - 100);
                bytes[i] ^= 0xFF;
            }
        }
        std::fs::write(&bad, &bytes).unwrap();
        let _ = SqliteStore::open_read_only(&bad).map(|s| s.list_experiments());
        assert_eq!(side_files(&bad), vec![false, false, false], "read {k}");
        let _ = SqliteStore::open(&bad).map(|s| s.list_experiments());
        assert_eq!(side_files(&bad), vec![false, false, false], "write {k}");
    }
}
