//! Property-based fuzzing of the task TOML parser and the IDX readers: random valid tasks
//! and IDX files (plain and gzip) read back as written; mutated ones (byte flips,
//! truncation, inserted junk, duplicated or deleted parts, huge numbers, unicode) give a
//! value that passes every check or a one-line error naming the file, never a panic.
//!
//! `FNAS_FUZZ_CASES` sets the cases per property (default 256); a long run:
//! `FNAS_FUZZ_CASES=100000 cargo test --release -p fnas-child --lib fuzz` (docs/fuzzing.md).

use std::io::Write;

use proptest::prelude::*;
use serde::Serialize;

use crate::idx::{self, IdxImages, IMAGES_MAGIC, LABELS_MAGIC};
use crate::task::{Normalize, Optimizer, ProxyTask, Resize, Schedule, SHIPPED_TASKS};

fn config() -> ProptestConfig {
    let cases = std::env::var("FNAS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const JUNK: &[&str] = &[
    "=",
    " ",
    "\n",
    "\r\n",
    "\0",
    "#",
    "\"",
    "'",
    "[",
    "]",
    "[[task]]",
    "{",
    "}",
    ",",
    ".",
    "-",
    "é",
    "🦀",
    "\u{202e}",
    "\u{feff}",
    "-1",
    "0",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "0.0",
    "name = \"x\"",
    "epochs = 0",
    "batch_size = 9223372036854775807",
    "lr = nan",
    "classes = [1, 1]",
    "resolution = 1",
    "optimizer = { kind = \"adam\" }",
    "seed = -1",
];

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, usize),
    InsertBytes(usize, Vec<u8>),
    Delete(usize, usize),
    /// Duplicates the line around a position (a key given twice, a table repeated).
    Duplicate(usize),
    /// Replaces the digit run at or after a position by a junk number.
    Number(usize, usize),
    /// Overwrites bytes with an extreme value (a dimension of 2^32 - 1, 0, ...).
    Extreme(usize, u8, usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, m)| Mutation::Flip(p, m)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0..JUNK.len()).prop_map(|(p, j)| Mutation::Insert(p, j)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Mutation::InsertBytes(p, b)),
        (any::<usize>(), 1..64usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), 20..30usize).prop_map(|(p, j)| Mutation::Number(p, j)),
        (
            any::<usize>(),
            prop_oneof![Just(0xffu8), Just(0x7f), Just(0)],
            1..5usize
        )
            .prop_map(|(p, b, n)| Mutation::Extreme(p, b, n)),
    ];
    prop::collection::vec(one, 1..5)
}

fn mutate(mut b: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let n = b.len();
        let at = |p: usize| p % (n + 1);
        match m {
            Mutation::Flip(p, mask) if n > 0 => b[p % n] ^= mask,
            Mutation::Truncate(p) => b.truncate(at(*p)),
            Mutation::Insert(p, j) => {
                let p = at(*p);
                b.splice(p..p, JUNK[*j].bytes());
            }
            Mutation::InsertBytes(p, bytes) => {
                let p = at(*p);
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(p, len) => {
                let p = at(*p);
                b.drain(p..(p + len).min(n));
            }
            Mutation::Duplicate(p) => {
                let p = at(*p);
                let start = b[..p]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |i| i + 1);
                let end = b[p..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(n, |i| p + i + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
            Mutation::Number(p, j) => {
                let p = at(*p);
                if let Some(s) = b[p..].iter().position(u8::is_ascii_digit) {
                    let s = p + s;
                    let e = b[s..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .map_or(n, |i| s + i);
                    b.splice(s..e, JUNK[*j].bytes());
                }
            }
            Mutation::Extreme(p, byte, len) if n > 0 => {
                let p = p % n;
                let end = (p + len).min(n);
                b[p..end].fill(*byte);
            }
            Mutation::Flip(..) | Mutation::Extreme(..) => {}
        }
    }
    b
}

fn one_line(e: &dyn std::fmt::Display, file: &str) -> Result<(), TestCaseError> {
    let m = e.to_string();
    prop_assert!(!m.contains('\n') && !m.contains('\r'), "{m:?}");
    prop_assert!(m.contains(file), "{m}");
    Ok(())
}

#[derive(Serialize)]
struct TaskFile<'a> {
    task: &'a [ProxyTask],
}

/// A task's TOML, as a `[[task]]` file.
fn to_toml(tasks: &[ProxyTask]) -> String {
    toml::to_string(&TaskFile { task: tasks }).expect("a task serialises")
}

/// Parsed tasks are valid and read back from their own TOML as they are.
fn check_tasks(tasks: &[ProxyTask]) -> Result<(), TestCaseError> {
    prop_assert!(!tasks.is_empty());
    for t in tasks {
        prop_assert!(t.validate("f").is_ok(), "{t:?}");
    }
    let text = to_toml(tasks);
    let back = ProxyTask::parse(&text, "again.toml");
    prop_assert_eq!(back.as_deref().ok(), Some(tasks), "{}", text);
    Ok(())
}

fn task() -> impl Strategy<Value = ProxyTask> {
    (
        "[a-z][a-z0-9_-]{0,12}",
        1..100_000usize,
        1..10_000usize,
        1..100usize,
        // TOML integers are i64
        0..=i64::MAX as u64,
        (1e-6..1.0f64, 0.0..1.0f64, 0.0..0.9f64, 0.0..1.0f64),
        prop::option::of(4..=256usize),
        prop::option::of(prop::sample::subsequence(
            (0..10u8).collect::<Vec<_>>(),
            2..=10,
        )),
        any::<bool>(),
        prop::option::of(0.0..0.9f64),
    )
        .prop_map(
            |(
                name,
                train,
                val,
                epochs,
                seed,
                (lr, min_frac, wd, warm_frac),
                res,
                classes,
                adam,
                ls,
            )| {
                ProxyTask {
                    name,
                    description: "fuzz".into(),
                    data_dir: None,
                    images: None,
                    channels: if adam { Some(3) } else { None },
                    train_images: train,
                    val_images: val,
                    classes,
                    resolution: res,
                    resize: if adam {
                        Resize::Nearest
                    } else {
                        Resize::Bilinear
                    },
                    seed,
                    epochs,
                    batch_size: 1 + seed as usize % train,
                    optimizer: if adam {
                        Optimizer::Adam {
                            beta1: 0.9,
                            beta2: 0.999,
                            epsilon: 1e-8,
                        }
                    } else {
                        Optimizer::Sgd {
                            momentum: wd,
                            nesterov: true,
                        }
                    },
                    lr,
                    min_lr: lr * min_frac,
                    weight_decay: wd,
                    warmup_epochs: epochs as f64 * warm_frac,
                    schedule: if adam {
                        Schedule::Constant
                    } else {
                        Schedule::Cosine
                    },
                    label_smoothing: ls,
                    normalize: Normalize {
                        mean: wd,
                        std: 0.5 + lr,
                    },
                }
            },
        )
}

/// An IDX file of `dims` and `body`.
fn idx_bytes(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).expect("in memory");
    e.finish().expect("in memory")
}

/// Images that were read are consistent with their header.
fn check_images(r: Result<IdxImages, idx::DataError>, file: &str) -> Result<(), TestCaseError> {
    match r {
        Ok(im) => {
            prop_assert!(im.rows > 0 && im.cols > 0);
            prop_assert_eq!(Some(im.pixels.len()), im.n.checked_mul(im.rows * im.cols));
        }
        Err(e) => one_line(&e, file)?,
    }
    Ok(())
}

fn check_labels(r: Result<Vec<u8>, idx::DataError>, file: &str) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        one_line(&e, file)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random valid tasks: TOML -> parse round-trips.
    #[test]
    fn valid_tasks_round_trip(tasks in prop::collection::vec(task(), 1..4)) {
        let mut tasks = tasks;
        for (i, t) in tasks.iter_mut().enumerate() {
            t.name = format!("{}-{i}", t.name);
        }
        let parsed = ProxyTask::parse(&to_toml(&tasks), "t.toml");
        prop_assert_eq!(parsed.as_deref().ok(), Some(&tasks[..]));
        // one task at top level
        let single = toml::to_string(&tasks[0]).expect("serialises");
        prop_assert_eq!(ProxyTask::parse(&single, "t.toml").ok(), Some(vec![tasks[0].clone()]));
    }

    /// Mutated copies of the shipped task file: valid tasks or an error naming the file.
    #[test]
    fn mutated_task_files_never_panic(edits in mutations()) {
        let text = String::from_utf8_lossy(&mutate(SHIPPED_TASKS.as_bytes().to_vec(), &edits))
            .into_owned();
        match ProxyTask::parse(&text, "fuzz.toml") {
            Ok(tasks) => check_tasks(&tasks)?,
            Err(e) => one_line(&e, "fuzz.toml")?,
        }
    }

    /// Arbitrary text as a task file.
    #[test]
    fn random_task_texts_never_panic(text in any::<String>()) {
        if let Err(e) = ProxyTask::parse(&text, "fuzz.toml") {
            one_line(&e, "fuzz.toml")?;
        }
    }

    /// Random valid IDX files, plain and gzip: read back as written.
    #[test]
    fn valid_idx_files_round_trip(
        n in 0..6u32, rows in 1..5u32, cols in 1..5u32, seed in any::<u8>(), gz in any::<bool>(),
    ) {
        let body: Vec<u8> = (0..n * rows * cols).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i as u8) % 10).collect();
        let mut im = idx_bytes(IMAGES_MAGIC, &[n, rows, cols], &body);
        let mut lb = idx_bytes(LABELS_MAGIC, &[n], &labels);
        if gz {
            im = gzip(&im);
            lb = gzip(&lb);
        }
        let got = idx::images_from_bytes(&im, "i").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, IdxImages { pixels: body, n: n as usize, rows: rows as usize, cols: cols as usize });
        prop_assert_eq!(idx::labels_from_bytes(&lb, "l").ok(), Some(labels));
    }

    /// Mutated IDX files (plain, gzip, and gzip of mutated plain): images and labels
    /// consistent with their header, or an error naming the file.
    #[test]
    fn mutated_idx_files_never_panic(
        n in 0..4u32, rows in 1..4u32, cols in 1..4u32, edits in mutations(),
    ) {
        let body = vec![7u8; (n * rows * cols) as usize];
        let im = idx_bytes(IMAGES_MAGIC, &[n, rows, cols], &body);
        let lb = idx_bytes(LABELS_MAGIC, &[n], &vec![1u8; n as usize]);
        for (i, raw) in [
            mutate(im.clone(), &edits),
            mutate(gzip(&im), &edits),
            gzip(&mutate(im, &edits)),
        ].into_iter().enumerate() {
            check_images(idx::images_from_bytes(&raw, "images.idx"), "images.idx")?;
            // the same bytes as labels: another magic, the checks still hold
            check_labels(idx::labels_from_bytes(&raw, "labels.idx"), "labels.idx")?;
            let _ = i;
        }
        check_labels(idx::labels_from_bytes(&mutate(lb.clone(), &edits), "labels.idx"), "labels.idx")?;
        check_labels(idx::labels_from_bytes(&mutate(gzip(&lb), &edits), "labels.idx"), "labels.idx")?;
    }

    /// Arbitrary bytes, behind a valid magic number or not.
    #[test]
    fn random_idx_bytes_never_panic(mut b in prop::collection::vec(any::<u8>(), 0..64), magic in 0..3u8) {
        let head: &[u8] = match magic {
            0 => &IMAGES_MAGIC.to_be_bytes(),
            1 => &[0x1f, 0x8b],
            _ => &[],
        };
        b.splice(0..0, head.iter().copied());
        check_images(idx::images_from_bytes(&b, "x"), "x")?;
        check_labels(idx::labels_from_bytes(&b, "x"), "x")?;
    }
}

/// The file readers take paths: a mutated file on disk behaves as its bytes do.
#[test]
fn files_on_disk_read_as_their_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let im = idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &[1; 8]);
    for (name, bytes) in [
        ("a", im.clone()),
        ("b.gz", gzip(&im)),
        ("c", im[..10].to_vec()),
        ("d.gz", gzip(&im)[..12].to_vec()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).expect("write");
        let from_file = idx::read_images(&p).map_err(|e| e.to_string());
        let from_bytes =
            idx::images_from_bytes(&bytes, &p.display().to_string()).map_err(|e| e.to_string());
        assert_eq!(from_file, from_bytes, "{name}");
    }
}
