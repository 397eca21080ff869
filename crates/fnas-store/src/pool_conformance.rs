//! The behaviours every knowledge pool backend must show ([`SqlitePool`], [`PgPool`]):
//! exact round trips, atomic inserts, eviction order, cleanup of leftovers, concurrent
//! pools, damage reported as [`PoolError::Corrupt`]. Written once so that the backends
//! cannot drift apart; each backend's tests provide a [`Backend`] and call [`run_all`].
//!
//! A check gets a fresh, empty backend and panics (via `assert!`) on the first
//! violation.

// A test suite for backends: a failed `unwrap` is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fnas_core::pool::{BlockConfig, BlockPool, PoolEntry, PoolError, PoolPart, PoolTensor};

use crate::{PgPool, PoolStats, SqlitePool, ORPHAN_GRACE};

/// A pool as the checks see it: the contract plus the inspection both backends offer.
pub trait PoolUnderTest: BlockPool + std::fmt::Debug {
    /// The folder holding the tensor files.
    fn dir(&self) -> &Path;
    /// Entries, networks and bytes of the whole pool.
    fn stats(&self) -> Result<PoolStats, PoolError>;
}

impl PoolUnderTest for SqlitePool {
    fn dir(&self) -> &Path {
        SqlitePool::dir(self)
    }
    fn stats(&self) -> Result<PoolStats, PoolError> {
        SqlitePool::stats(self)
    }
}

impl PoolUnderTest for PgPool {
    fn dir(&self) -> &Path {
        PgPool::dir(self)
    }
    fn stats(&self) -> Result<PoolStats, PoolError> {
        PgPool::stats(self)
    }
}

/// One pool's index (a store file, a database) and folder, empty at first. What the
/// checks do through it stands for another process working on the same pool.
pub trait Backend: Sync {
    /// A new pool handle (its own connection) on this index and folder, with a size
    /// limit (0: none); opening cleans stale leftovers.
    fn open(&self, max_bytes: u64) -> Result<Box<dyn PoolUnderTest>, PoolError>;
    /// Runs `sql` (written to be valid for SQLite and PostgreSQL) on the index through
    /// a connection of its own.
    fn execute(&self, sql: &str) -> Result<(), String>;
    /// With `true`, makes every insert of a row with part `head` fail with an error
    /// whose message contains `no heads today`; with `false`, undoes it.
    fn reject_heads(&self, on: bool);
    /// Holds the lock a cleaner holds while it removes files (SQLite's write lock,
    /// [`PgPool::LOCK_KEY`] exclusively) until the returned guard is dropped.
    fn lock_as_cleaner(&self) -> Box<dyn Any>;
}

/// A check: gets a fresh, empty backend; panics on a violation.
pub type Check = fn(&dyn Backend);

/// Every check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[(&str, Check)] = &[
    (
        "tensors_and_entries_round_trip",
        tensors_and_entries_round_trip,
    ),
    (
        "ids_increase_and_are_never_reused",
        ids_increase_and_are_never_reused,
    ),
    (
        "concurrent_inserts_from_two_pools",
        concurrent_inserts_from_two_pools,
    ),
    (
        "least_recently_used_network_is_evicted",
        least_recently_used_network_is_evicted,
    ),
    ("touch_protects_a_network", touch_protects_a_network),
    (
        "ties_evict_the_less_accurate_network",
        ties_evict_the_less_accurate_network,
    ),
    (
        "the_network_just_inserted_is_never_evicted",
        the_network_just_inserted_is_never_evicted,
    ),
    ("invalid_input_writes_nothing", invalid_input_writes_nothing),
    (
        "unwritable_pool_folder_leaves_no_row",
        unwritable_pool_folder_leaves_no_row,
    ),
    (
        "failed_index_insert_removes_its_files",
        failed_index_insert_removes_its_files,
    ),
    (
        "stale_leftovers_are_removed_on_open",
        stale_leftovers_are_removed_on_open,
    ),
    (
        "an_insert_whose_files_were_cleaned_fails",
        an_insert_whose_files_were_cleaned_fails,
    ),
    ("damaged_files_are_corrupt", damaged_files_are_corrupt),
    (
        "a_flipped_bit_is_caught_by_the_checksum",
        a_flipped_bit_is_caught_by_the_checksum,
    ),
    ("unreadable_rows_are_corrupt", unreadable_rows_are_corrupt),
];

/// Runs every check, each on a fresh backend from `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn Backend>) {
    for (name, check) in CHECKS {
        let _guard = Named(name);
        let backend = make();
        check(backend.as_ref());
    }
}

/// Names the failing check when a check panics.
struct Named<'a>(&'a str);

impl Drop for Named<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("pool conformance check `{}` failed", self.0);
        }
    }
}

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
        checksum: None,
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
pub fn network(arch: &str, acc: f64) -> Vec<(PoolEntry, Vec<PoolTensor>)> {
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

/// The bytes one [`network`] takes in the pool (all have the same size).
fn network_bytes() -> u64 {
    network("probe", 0.5)
        .iter()
        .map(|(_, t)| crate::pool_files::encode(t).expect("encodable").len() as u64)
        .sum()
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
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("the pool folder can be listed")
        .map(|e| {
            e.expect("a listing entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

fn archs(pool: &dyn PoolUnderTest) -> Vec<String> {
    let mut v: Vec<String> = pool
        .entries("fnas")
        .unwrap()
        .into_iter()
        .map(|e| e.arch)
        .collect();
    v.dedup();
    v
}

/// Sets a file's modification time to before [`ORPHAN_GRACE`].
pub fn make_old(path: &Path) {
    let old = SystemTime::now() - ORPHAN_GRACE - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(old))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

pub fn tensors_and_entries_round_trip(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
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
        let on_disk = std::fs::read(pool.dir().join(&got.file)).unwrap();
        expected.checksum = Some(crate::pool_files::checksum(&on_disk));
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
    let pool = b.open(0).unwrap();
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

pub fn ids_increase_and_are_never_reused(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
    let a = pool.insert(network("a", 0.5)).unwrap();
    let bs = pool.insert(network("b", 0.5)).unwrap();
    assert!(a.iter().max() < bs.iter().min());
    // the newest network disappears (say, evicted by another process)
    b.execute("DELETE FROM pool_entries WHERE arch = 'b'")
        .unwrap();
    let c = pool.insert(network("c", 0.5)).unwrap();
    assert!(
        bs.iter().max() < c.iter().min(),
        "a trial may still name {bs:?}: ids are never handed out twice ({c:?})"
    );
}

/// Two pools on one index, each used by two threads at once: every insert lands once,
/// both pools see the same entries, and every file loads.
pub fn concurrent_inserts_from_two_pools(b: &dyn Backend) {
    let p1: Arc<dyn PoolUnderTest> = Arc::from(b.open(0).unwrap());
    let p2: Arc<dyn PoolUnderTest> = Arc::from(b.open(0).unwrap());
    p1.insert(network("one", 0.1)).unwrap();
    p2.insert(network("two", 0.2)).unwrap();
    assert_eq!(archs(p1.as_ref()), ["one", "two"]);
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
}

pub fn least_recently_used_network_is_evicted(b: &dyn Backend) {
    let net = network_bytes();
    let pool = b.open(net * 5 / 2).unwrap();
    pool.insert(network("a", 0.9)).unwrap();
    let a_files: Vec<String> = pool
        .entries("fnas")
        .unwrap()
        .into_iter()
        .map(|e| e.file)
        .collect();
    assert_eq!(pool.stats().unwrap().bytes, net, "network_bytes is right");
    pool.insert(network("b", 0.1)).unwrap();
    assert_eq!(archs(pool.as_ref()), ["a", "b"]);
    // a third network does not fit: the oldest goes, despite its accuracy
    pool.insert(network("c", 0.5)).unwrap();
    assert_eq!(archs(pool.as_ref()), ["b", "c"]);
    let left = files(pool.dir());
    assert_eq!(left.len(), 8);
    assert!(a_files.iter().all(|f| !left.contains(f)), "files removed");
    assert_eq!(pool.stats().unwrap().bytes, 2 * net);
}

pub fn touch_protects_a_network(b: &dyn Backend) {
    let net = network_bytes();
    let pool = b.open(net * 5 / 2).unwrap();
    let a = pool.insert(network("a", 0.5)).unwrap();
    pool.insert(network("b", 0.5)).unwrap();
    // using one entry of a network keeps the whole network
    pool.touch(&a[1..2]).unwrap();
    pool.touch(&[]).unwrap();
    pool.insert(network("c", 0.5)).unwrap();
    assert_eq!(archs(pool.as_ref()), ["a", "c"]);
    assert_eq!(files(pool.dir()).len(), 8);
}

pub fn ties_evict_the_less_accurate_network(b: &dyn Backend) {
    let net = network_bytes();
    let pool = b.open(net * 5 / 2).unwrap();
    pool.insert(network("a", 0.9)).unwrap();
    pool.insert(network("b", 0.2)).unwrap();
    b.execute("UPDATE pool_entries SET last_used = 1").unwrap();
    pool.insert(network("c", 0.5)).unwrap();
    assert_eq!(archs(pool.as_ref()), ["a", "c"]);
}

pub fn the_network_just_inserted_is_never_evicted(b: &dyn Backend) {
    let pool = b.open(1).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    assert_eq!(
        archs(pool.as_ref()),
        ["a"],
        "alone over the limit, still kept"
    );
    // even when everything else is more recently used
    pool.insert(network("b", 0.5)).unwrap();
    assert_eq!(archs(pool.as_ref()), ["b"]);
    assert_eq!(files(pool.dir()).len(), 4);
    let stats = pool.stats().unwrap();
    assert_eq!((stats.entries, stats.networks), (4, 1));
}

pub fn invalid_input_writes_nothing(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
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
    let mut infinite_width = network("a", 0.5);
    infinite_width[1].0.config.width = f64::INFINITY;
    for (what, parts) in [
        ("wrong data length", wrong_len),
        ("two networks", two_networks),
        ("a part twice", twice),
        ("a tensor twice", dup_tensor),
        ("NaN accuracy", nan),
        ("infinite width", infinite_width),
    ] {
        let err = pool.insert(parts).unwrap_err();
        assert!(matches!(err, PoolError::Invalid(_)), "{what}: {err:?}");
        assert_eq!(files(pool.dir()), Vec::<String>::new(), "{what}");
        assert_eq!(pool.stats().unwrap(), PoolStats::default(), "{what}");
    }
}

pub fn unwritable_pool_folder_leaves_no_row(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
    std::fs::remove_dir(pool.dir()).unwrap();
    std::fs::write(pool.dir(), b"in the way").unwrap();
    let err = pool.insert(network("a", 0.5)).unwrap_err();
    assert!(matches!(err, PoolError::Io { .. }), "{err:?}");
    assert_eq!(pool.stats().unwrap(), PoolStats::default());
    // and a pool cannot be opened there
    let err = b.open(0).unwrap_err();
    assert!(matches!(err, PoolError::Io { .. }), "{err:?}");
}

pub fn failed_index_insert_removes_its_files(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
    b.reject_heads(true);
    // the files of stem and blocks were in place when the head's row failed
    let err = pool.insert(network("a", 0.5)).unwrap_err();
    assert!(
        matches!(&err, PoolError::Index(m) if m.contains("no heads today")),
        "{err:?}"
    );
    assert_eq!(pool.stats().unwrap(), PoolStats::default(), "no row");
    assert_eq!(files(pool.dir()), Vec::<String>::new(), "no file");
    b.reject_heads(false);
    pool.insert(network("a", 0.5)).unwrap();
    assert_eq!(pool.stats().unwrap().entries, 4);
}

pub fn stale_leftovers_are_removed_on_open(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
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

    let pool = b.open(0).unwrap();
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

/// A cleaner that removes an insert's files while the insert waits for the lock (the
/// insert stalled longer than [`ORPHAN_GRACE`]) makes that insert fail: no row names
/// a missing file.
pub fn an_insert_whose_files_were_cleaned_fails(b: &dyn Backend) {
    let pool: Arc<dyn PoolUnderTest> = Arc::from(b.open(0).unwrap());
    let dir = pool.dir().to_path_buf();
    let guard = b.lock_as_cleaner();
    let inserter = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || pool.insert(network("a", 0.5)))
    };
    // the files are written before the insert asks for the lock
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = files(&dir);
        if names.len() == 4 && names.iter().all(|n| n.ends_with(".safetensors")) {
            break;
        }
        assert!(
            Instant::now() < deadline && !inserter.is_finished(),
            "the insert did not wait for the cleaner's lock: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for name in files(&dir) {
        std::fs::remove_file(dir.join(name)).unwrap();
    }
    drop(guard);
    let err = inserter.join().unwrap().unwrap_err();
    assert!(
        matches!(&err, PoolError::Io { message, .. } if message.contains("vanished")),
        "{err:?}"
    );
    assert_eq!(pool.stats().unwrap(), PoolStats::default(), "no row");
    assert_eq!(files(&dir), Vec::<String>::new());
    // the pool is still usable
    pool.insert(network("a", 0.5)).unwrap();
    for e in pool.entries("fnas").unwrap() {
        pool.load(&e).unwrap();
    }
}

/// A damaged, resized, missing or foreign file is [`PoolError::Corrupt`] naming the
/// entry and the file.
pub fn damaged_files_are_corrupt(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
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
    // missing (the first damage above already dropped the network's files)
    let _ = std::fs::remove_file(file(&entries[2]));
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
    for name in ["../runs.db", "/etc/passwd", ".", ""] {
        let mut e = entries[3].clone();
        e.file = name.into();
        assert!(
            matches!(pool.load(&e), Err(PoolError::Corrupt { .. })),
            "{name}"
        );
    }
}

/// A bit flipped in a file's tensor data still parses: the checksum recorded in the
/// index catches it, and the damaged network is dropped from the pool (rows and files),
/// so the damage is reported once; the other networks stay.
pub fn a_flipped_bit_is_caught_by_the_checksum(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
    pool.insert(network("a", 0.5)).unwrap();
    pool.insert(network("b", 0.5)).unwrap();
    let entries = pool.entries("fnas").unwrap();
    let a: Vec<&PoolEntry> = entries.iter().filter(|e| e.arch == "a").collect();
    let path = pool.dir().join(&a[0].file);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    // still a valid safetensors file of the recorded size
    assert!(crate::pool_files::decode(a[0].id, "probe", &bytes).is_ok());
    match pool.load(a[0]) {
        Err(PoolError::Corrupt { id, message }) => {
            assert_eq!(id, a[0].id);
            assert!(message.contains("checksum mismatch"), "{message}");
            assert!(message.contains("dropped from the pool"), "{message}");
        }
        other => panic!("a flipped bit was not caught: {other:?}"),
    }
    assert_eq!(
        archs(pool.as_ref()),
        ["b"],
        "the damaged network stays listed"
    );
    for e in &a {
        assert!(!pool.dir().join(&e.file).exists(), "{} stays", e.file);
    }
    for e in entries.iter().filter(|e| e.arch == "b") {
        pool.load(e).unwrap();
    }
}

/// A row whose values do not fit an entry is [`PoolError::Corrupt`] naming its id; the
/// index refuses an unknown part altogether.
pub fn unreadable_rows_are_corrupt(b: &dyn Backend) {
    let pool = b.open(0).unwrap();
    let ids = pool.insert(network("a", 0.5)).unwrap();
    b.execute(&format!(
        "UPDATE pool_entries SET config = '{{\"op\": 1}}' WHERE id = {}",
        ids[1]
    ))
    .unwrap();
    match pool.entries("fnas") {
        Err(PoolError::Corrupt { id, message }) => {
            assert_eq!(id, ids[1]);
            assert!(message.contains("config"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    b.execute(&format!(
        "UPDATE pool_entries SET config = (SELECT config FROM pool_entries WHERE id = {}),
                                 position = 1099511627776 WHERE id = {}",
        ids[0], ids[1]
    ))
    .unwrap();
    match pool.entries("fnas") {
        Err(PoolError::Corrupt { id, message }) => {
            assert_eq!(id, ids[1]);
            assert!(message.contains("position"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(b
        .execute(&format!(
            "UPDATE pool_entries SET part = 'tail' WHERE id = {}",
            ids[2]
        ))
        .is_err());
}
