//! The SQLite knowledge pool: atomic inserts, exact tensors, eviction, cleanup, damage.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fnas_core::pool::{BlockConfig, BlockPool, PoolEntry, PoolError, PoolPart, PoolTensor};
use fnas_core::store::ExperimentSpec;
use fnas_store::{PoolStats, SqlitePool, SqliteStore, Store, ORPHAN_GRACE, SCHEMA_VERSION};
use rusqlite::Connection;

fn cfg(op: &str, cout: u32) -> BlockConfig {
    BlockConfig {
        op: op.into(),
        expansion: 1,
        kernel: 3,
        se: false,
        identity_skip: true,
        width: 0.1 + 0.2,
        layers: 2,
        cin: 16,
        cout,
        stride: 1,
        in_res: 14,
    }
}

fn entry(part: PoolPart, position: u32, arch: &str, acc: f64) -> PoolEntry {
    PoolEntry {
        id: 0,
        space: "fnas".into(),
        part,
        position,
        config: cfg("dwsep", 32),
        resolution: 28,
        task: "fashion-mnist".into(),
        classes: 10,
        experiment: "exp".into(),
        arch: arch.into(),
        budget_images: 60_000,
        val_accuracy: acc,
        file: String::new(),
        bytes: 0,
        created_at: 0.0,
    }
}

/// Values that a lossy path would change: signed zero, subnormals, extremes, a NaN
/// with a payload.
fn tensors(seed: f32) -> Vec<PoolTensor> {
    vec![
        PoolTensor {
            name: "conv.weight".into(),
            shape: vec![2, 1, 3, 3],
            data: (0..18).map(|i| seed * i as f32 - 0.37).collect(),
        },
        PoolTensor {
            name: "bn.bias".into(),
            shape: vec![6],
            data: vec![
                -0.0,
                1e-45,
                f32::MIN_POSITIVE,
                f32::MAX,
                f32::from_bits(0x7fc0_1234),
                seed,
            ],
        },
        PoolTensor {
            name: "scalar".into(),
            shape: vec![],
            data: vec![-seed],
        },
    ]
}

/// One network: stem, two blocks and head, all with the same tensor sizes.
fn network(arch: &str, acc: f64) -> Vec<(PoolEntry, Vec<PoolTensor>)> {
    [
        (PoolPart::Stem, 0),
        (PoolPart::Block, 0),
        (PoolPart::Block, 1),
        (PoolPart::Head, 0),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (part, pos))| (entry(part, pos, arch, acc), tensors(i as f32 + 0.5)))
    .collect()
}

fn bits(t: &[PoolTensor]) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let mut v: Vec<_> = t
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.shape.clone(),
                t.data.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

/// File names in the pool folder, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn archs(pool: &SqlitePool) -> Vec<String> {
    let mut v: Vec<String> = pool
        .entries("fnas")
        .unwrap()
        .into_iter()
        .map(|e| e.arch)
        .collect();
    v.dedup();
    v
}

fn store_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    (dir, path)
}

fn make_old(path: &Path) {
    let old = SystemTime::now() - ORPHAN_GRACE - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

/// The bytes of one `network(...)` (all have the same size).
fn network_bytes() -> u64 {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    pool.insert(network("probe", 0.5)).unwrap();
    pool.stats().unwrap().bytes
}

#[test]
fn tensors_and_entries_round_trip() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    assert_eq!(pool.dir(), path.with_file_name("runs.db.pool"));
    assert!(pool.dir().is_dir());
    assert_eq!(pool.entries("fnas").unwrap(), []);

    let mut parts = network("a", -0.0);
    parts[1].0.budget_images = u64::MAX;
    parts[2].0.val_accuracy = 5e-324;
    parts[3].1.push(PoolTensor {
        name: "empty".into(),
        shape: vec![0, 4],
        data: vec![],
    });
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ids = pool.insert(parts.clone()).unwrap();
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let got = pool.entries("fnas").unwrap();
    assert_eq!(got.len(), 4);
    for ((want, want_tensors), (got, id)) in parts.iter().zip(got.iter().zip(&ids)) {
        assert_eq!(got.id, *id);
        assert!(got.created_at >= before - 1.0 && got.created_at > 0.0);
        let on_disk = std::fs::metadata(pool.dir().join(&got.file)).unwrap().len();
        assert_eq!(got.bytes, on_disk);
        assert!(got.file.ends_with(".safetensors"), "{}", got.file);
        let mut expected = want.clone();
        expected.id = got.id;
        expected.file = got.file.clone();
        expected.bytes = got.bytes;
        expected.created_at = got.created_at;
        assert_eq!(*got, expected);
        assert_eq!(got.val_accuracy.to_bits(), want.val_accuracy.to_bits());
        assert_eq!(got.config.width.to_bits(), (0.1f64 + 0.2).to_bits());

        let loaded = pool.load(got).unwrap();
        let names: Vec<&str> = loaded.iter().map(|t| t.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "tensors come back sorted by name");
        assert_eq!(bits(&loaded), bits(want_tensors), "bit for bit");
    }
    assert_eq!(got[0].val_accuracy.to_bits(), (-0.0f64).to_bits());
    assert_eq!(got[1].budget_images, u64::MAX);
    assert_eq!(got[2].val_accuracy, 5e-324);
    // the file names are distinct, and only those files are in the folder
    let mut names: Vec<String> = got.iter().map(|e| e.file.clone()).collect();
    names.sort();
    assert_eq!(files(pool.dir()), names);

    // another space sees nothing; a reopened pool sees the same
    assert_eq!(pool.entries("other").unwrap(), []);
    drop(pool);
    let pool = SqlitePool::open(&path, 0).unwrap();
    assert_eq!(pool.entries("fnas").unwrap(), got);
    assert_eq!(
        pool.stats().unwrap(),
        PoolStats {
            entries: 4,
            networks: 1,
            bytes: got.iter().map(|e| e.bytes).sum()
        }
    );
    // an empty insert is a no-op
    assert_eq!(pool.insert(Vec::new()).unwrap(), Vec::<i64>::new());
}

#[test]
fn ids_increase_and_are_never_reused() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    let a = pool.insert(network("a", 0.5)).unwrap();
    let b = pool.insert(network("b", 0.5)).unwrap();
    assert!(a.iter().max() < b.iter().min());
    // the newest network disappears (say, evicted by another process)
    Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM pool_entries WHERE arch = 'b'", [])
        .unwrap();
    let c = pool.insert(network("c", 0.5)).unwrap();
    assert!(
        b.iter().max() < c.iter().min(),
        "a trial may still name {b:?}: ids are never handed out twice ({c:?})"
    );
}

#[test]
fn two_pools_on_one_store_see_each_others_entries() {
    let (_d, path) = store_path();
    // the search loop holds its own connection meanwhile
    let mut store = SqliteStore::open(&path).unwrap();
    let p1 = Arc::new(SqlitePool::open(&path, 0).unwrap());
    let p2 = Arc::new(SqlitePool::open(&path, 0).unwrap());
    p1.insert(network("one", 0.1)).unwrap();
    p2.insert(network("two", 0.2)).unwrap();
    assert_eq!(archs(&p1), ["one", "two"]);
    assert_eq!(p1.entries("fnas").unwrap(), p2.entries("fnas").unwrap());

    let threads: Vec<_> = [&p1, &p1, &p2, &p2]
        .into_iter()
        .enumerate()
        .map(|(t, pool)| {
            let pool = Arc::clone(pool);
            std::thread::spawn(move || {
                (0..5)
                    .flat_map(|i| pool.insert(network(&format!("t{t}-{i}"), 0.5)).unwrap())
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
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
    let mut ids: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4 * 5 * 4);

    for pool in [&p1, &p2] {
        let stats = pool.stats().unwrap();
        assert_eq!((stats.entries, stats.networks), (88, 22));
        let entries = pool.entries("fnas").unwrap();
        assert!(entries.windows(2).all(|w| w[0].id < w[1].id));
        for e in &entries {
            pool.load(e).unwrap();
        }
    }
    assert_eq!(files(p1.dir()).len(), 88);
    assert_eq!(store.list_experiments().unwrap().len(), 1);
}

#[test]
fn least_recently_used_network_is_evicted() {
    let net = network_bytes();
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, net * 5 / 2).unwrap();
    pool.insert(network("a", 0.9)).unwrap();
    let a_files: Vec<String> = pool
        .entries("fnas")
        .unwrap()
        .into_iter()
        .map(|e| e.file)
        .collect();
    pool.insert(network("b", 0.1)).unwrap();
    assert_eq!(archs(&pool), ["a", "b"]);
    // a third network does not fit: the oldest goes, despite its accuracy
    pool.insert(network("c", 0.5)).unwrap();
    assert_eq!(archs(&pool), ["b", "c"]);
    let left = files(pool.dir());
    assert_eq!(left.len(), 8);
    assert!(a_files.iter().all(|f| !left.contains(f)), "files removed");
    assert_eq!(pool.stats().unwrap().bytes, 2 * net);
}

#[test]
fn touch_protects_a_network() {
    let net = network_bytes();
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, net * 5 / 2).unwrap();
    let a = pool.insert(network("a", 0.5)).unwrap();
    pool.insert(network("b", 0.5)).unwrap();
    // using one entry of a network keeps the whole network
    pool.touch(&a[1..2]).unwrap();
    pool.touch(&[]).unwrap();
    pool.insert(network("c", 0.5)).unwrap();
    assert_eq!(archs(&pool), ["a", "c"]);
    assert_eq!(files(pool.dir()).len(), 8);
}

#[test]
fn ties_evict_the_less_accurate_network() {
    let net = network_bytes();
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, net * 5 / 2).unwrap();
    pool.insert(network("a", 0.9)).unwrap();
    pool.insert(network("b", 0.2)).unwrap();
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE pool_entries SET last_used = 1", [])
        .unwrap();
    pool.insert(network("c", 0.5)).unwrap();
    assert_eq!(archs(&pool), ["a", "c"]);
}

#[test]
fn the_network_just_inserted_is_never_evicted() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 1).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    assert_eq!(archs(&pool), ["a"], "alone over the limit, still kept");
    // even when everything else is more recently used
    pool.insert(network("b", 0.5)).unwrap();
    assert_eq!(archs(&pool), ["b"]);
    assert_eq!(files(pool.dir()).len(), 4);
    let stats = pool.stats().unwrap();
    assert_eq!((stats.entries, stats.networks), (4, 1));
}

#[test]
fn invalid_input_writes_nothing() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    let mut wrong_len = network("a", 0.5);
    wrong_len[3].1[0].data.pop();
    let mut two_networks = network("a", 0.5);
    two_networks[2].0.arch = "other".into();
    let mut twice = network("a", 0.5);
    twice[2].0.position = 0;
    let mut dup_tensor = network("a", 0.5);
    let t = dup_tensor[0].1[0].clone();
    dup_tensor[0].1.push(t);
    let mut nan = network("a", 0.5);
    nan[0].0.val_accuracy = f64::NAN;
    for (what, parts) in [
        ("wrong data length", wrong_len),
        ("two networks", two_networks),
        ("a part twice", twice),
        ("a tensor twice", dup_tensor),
        ("NaN accuracy", nan),
    ] {
        let err = pool.insert(parts).unwrap_err();
        assert!(matches!(err, PoolError::Invalid(_)), "{what}: {err:?}");
        assert_eq!(files(pool.dir()), Vec::<String>::new(), "{what}");
        assert_eq!(pool.stats().unwrap(), PoolStats::default(), "{what}");
    }
}

#[test]
fn unwritable_pool_folder_leaves_no_row() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    std::fs::remove_dir(pool.dir()).unwrap();
    std::fs::write(pool.dir(), b"in the way").unwrap();
    let err = pool.insert(network("a", 0.5)).unwrap_err();
    assert!(matches!(err, PoolError::Io { .. }), "{err:?}");
    assert_eq!(pool.stats().unwrap(), PoolStats::default());
    // and a pool cannot be opened there
    let err = SqlitePool::open(&path, 0).unwrap_err();
    assert!(matches!(err, PoolError::Io { .. }), "{err:?}");
}

#[test]
fn failed_index_insert_removes_its_files() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    let c = Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TRIGGER no_heads BEFORE INSERT ON pool_entries WHEN NEW.part = 'head'
         BEGIN SELECT RAISE(ABORT, 'no heads today'); END;",
    )
    .unwrap();
    // the files of stem and blocks were in place when the head's row failed
    let err = pool.insert(network("a", 0.5)).unwrap_err();
    assert!(
        matches!(&err, PoolError::Index(m) if m.contains("no heads today")),
        "{err:?}"
    );
    assert_eq!(pool.stats().unwrap(), PoolStats::default(), "no row");
    assert_eq!(files(pool.dir()), Vec::<String>::new(), "no file");
    c.execute_batch("DROP TRIGGER no_heads").unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    assert_eq!(pool.stats().unwrap().entries, 4);
}

#[test]
fn stale_leftovers_are_removed_on_open() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    let entries = pool.entries("fnas").unwrap();
    let dir = pool.dir().to_path_buf();
    drop(pool);
    let write = |name: &str, old: bool| {
        let p = dir.join(name);
        std::fs::write(&p, b"leftover").unwrap();
        if old {
            make_old(&p);
        }
    };
    write("1-2-3-block0.safetensors.tmp", true); // a kill before the rename
    write("1-2-4-head0.safetensors", true); // a kill between rename and insert
    write("9-9-9-stem0.safetensors.tmp", false); // another process, writing now
    write("9-9-9-head0.safetensors", false); // another process, about to index it
    write("notes.txt", true); // not the pool's
    for e in &entries {
        make_old(&dir.join(&e.file)); // indexed files stay, however old
    }

    let pool = SqlitePool::open(&path, 0).unwrap();
    let mut want: Vec<String> = entries.iter().map(|e| e.file.clone()).collect();
    want.extend(
        [
            "9-9-9-head0.safetensors",
            "9-9-9-stem0.safetensors.tmp",
            "notes.txt",
        ]
        .map(String::from),
    );
    want.sort();
    assert_eq!(files(&dir), want);
    assert_eq!(
        pool.entries("fnas").unwrap(),
        entries,
        "orphans are never listed"
    );
    for e in &entries {
        pool.load(e).unwrap();
    }
}

#[test]
fn damaged_files_are_corrupt() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    let entries = pool.entries("fnas").unwrap();
    let expect_corrupt = |e: &PoolEntry, why: &str| match pool.load(e) {
        Err(PoolError::Corrupt { id, message }) => {
            assert_eq!(id, e.id, "{why}");
            assert!(message.contains(&e.file), "{why}: {message}");
        }
        other => panic!("{why}: {other:?}"),
    };
    let file = |e: &PoolEntry| pool.dir().join(&e.file);

    // truncated
    let bytes = std::fs::read(file(&entries[0])).unwrap();
    std::fs::write(file(&entries[0]), &bytes[..bytes.len() - 3]).unwrap();
    expect_corrupt(&entries[0], "truncated");
    let mut unknown_size = entries[0].clone();
    unknown_size.bytes = 0;
    expect_corrupt(&unknown_size, "truncated, size not checked");
    // garbage of the right size
    std::fs::write(file(&entries[1]), vec![0xAB; entries[1].bytes as usize]).unwrap();
    expect_corrupt(&entries[1], "garbage");
    // missing
    std::fs::remove_file(file(&entries[2])).unwrap();
    expect_corrupt(&entries[2], "missing");
    // not F32
    let raw = [0u8; 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![2], &raw).unwrap();
    let f16 = safetensors::serialize([("w", view)], None).unwrap();
    std::fs::write(file(&entries[3]), &f16).unwrap();
    let mut e = entries[3].clone();
    e.bytes = f16.len() as u64;
    expect_corrupt(&e, "F16");
    // a name outside the folder is never read
    let mut e = entries[3].clone();
    e.file = "../runs.db".into();
    assert!(matches!(pool.load(&e), Err(PoolError::Corrupt { .. })));
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
fn unreadable_rows_are_corrupt() {
    let (_d, path) = store_path();
    let pool = SqlitePool::open(&path, 0).unwrap();
    let ids = pool.insert(network("a", 0.5)).unwrap();
    let c = Connection::open(&path).unwrap();
    c.execute(
        "UPDATE pool_entries SET config = '{\"op\": 1}' WHERE id = ?1",
        [ids[1]],
    )
    .unwrap();
    match pool.entries("fnas") {
        Err(PoolError::Corrupt { id, message }) => {
            assert_eq!(id, ids[1]);
            assert!(message.contains("config"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    c.execute(
        "UPDATE pool_entries SET config = (SELECT config FROM pool_entries WHERE id = ?1),
                                 position = 1 << 40 WHERE id = ?2",
        [ids[0], ids[1]],
    )
    .unwrap();
    assert!(matches!(
        pool.entries("fnas"),
        Err(PoolError::Corrupt { id, .. }) if id == ids[1]
    ));
    // the CHECK keeps out an unknown part altogether
    assert!(c
        .execute(
            "UPDATE pool_entries SET part = 'tail' WHERE id = ?1",
            [ids[2]]
        )
        .is_err());
}

#[test]
fn the_store_still_works_on_the_pool_file() {
    assert_eq!(SCHEMA_VERSION, 4);
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
