//! Property-based fuzzing of the pickle reader and the two table parsers: pickles of
//! random valid tables (made here with serde-pickle) must parse back to the same rows;
//! mutated ones (byte flips, truncation, inserted or deleted bytes, huge lengths) must give
//! rows that pass every check or an error, never a panic. A truncated or bit-flipped copy
//! of the real files is tried too where `scripts/setup.sh` has put them.
//!
//! `FNAS_FUZZ_CASES` sets the cases per property (default 256); a long run:
//! `FNAS_FUZZ_CASES=100000 cargo test --release -p fnas-bench --lib fuzz` (docs/fuzzing.md).

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_pickle::{HashableValue, SerOptions, Value};

use crate::analog::{self, ANALOG_BENCH, ANALOG_COLUMNS};
use crate::graph::{self, GraphRecord, GRAPH_BENCH};
use crate::pickle::from_bytes;
use crate::{resolve_data_dir, AnalogNasBench, NasBenchGraph};

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

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copies a range to another position (repeated opcodes, duplicated keys).
    Duplicate(usize, usize, usize),
    /// Overwrites bytes with an extreme value (a length or count of 2^32 - 1, 2^31, 0...).
    Extreme(usize, u8, usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, m)| Mutation::Flip(p, m)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1..32usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), 1..32usize, any::<usize>())
            .prop_map(|(p, n, to)| Mutation::Duplicate(p, n, to)),
        (
            any::<usize>(),
            prop_oneof![Just(0xffu8), Just(0x7f), Just(0x80), Just(0)],
            1..9usize
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
            Mutation::Flip(..) => {}
            Mutation::Truncate(p) => b.truncate(at(*p)),
            Mutation::Insert(p, bytes) => {
                let p = at(*p);
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(p, len) => {
                let p = at(*p);
                b.drain(p..(p + len).min(n));
            }
            Mutation::Duplicate(p, len, to) => {
                let p = at(*p);
                let part = b[p..(p + len).min(n)].to_vec();
                let to = at(*to);
                b.splice(to..to, part);
            }
            Mutation::Extreme(p, byte, len) if n > 0 => {
                let p = p % n;
                let end = (p + len).min(n);
                b[p..end].fill(*byte);
            }
            Mutation::Extreme(..) => {}
        }
    }
    b
}

fn s(x: &str) -> HashableValue {
    HashableValue::String(x.into())
}

/// A number as the files store it: a float, or a pickled numpy float64 scalar.
fn num(x: f64, numpy: bool) -> Value {
    if numpy {
        let dtype = Value::Tuple(vec![
            Value::String("f8".into()),
            Value::Bool(false),
            Value::Bool(true),
        ]);
        Value::Tuple(vec![dtype, Value::Bytes(x.to_le_bytes().to_vec())])
    } else {
        Value::F64(x)
    }
}

fn graph_table(rows: &[(u32, [f64; 4], bool)]) -> Value {
    let mut top = BTreeMap::new();
    for &(key, [val, test, lat, para], numpy) in rows {
        let row = BTreeMap::from([
            (s("valid_perf"), num(val, numpy)),
            (s("perf"), num(test, numpy)),
            (s("latency"), num(lat, numpy)),
            (s("para"), num(para, numpy)),
        ]);
        top.insert(HashableValue::I64(i64::from(key)), Value::Dict(row));
    }
    Value::Dict(top)
}

fn analog_table(rows: &[([u8; 6], Vec<f64>)]) -> Value {
    let mut top = BTreeMap::new();
    for (cell, values) in rows {
        let mut row = BTreeMap::new();
        for (i, (col, &x)) in ANALOG_COLUMNS.iter().zip(values).enumerate() {
            if i < 5 {
                row.insert(s(&format!("{col}_accuracy")), Value::F64(x));
            } else {
                let drift = BTreeMap::from([
                    (s("value"), Value::F64(x)),
                    (s("uncertainty"), Value::F64(0.1)),
                ]);
                row.insert(s(col), Value::Dict(drift));
            }
        }
        let key = cell.iter().map(|&o| HashableValue::I64(i64::from(o)));
        top.insert(HashableValue::Tuple(key.collect()), Value::Dict(row));
    }
    Value::Dict(top)
}

fn bytes_of(v: &Value) -> Vec<u8> {
    serde_pickle::value_to_vec(v, SerOptions::new()).expect("serialisable")
}

/// Numbers mostly in range, sometimes not (NaN, infinities, negative, too large).
fn number(hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..=hi,
        1 => prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-1.0),
            Just(hi * 2.0),
            Just(f64::MAX),
        ],
    ]
}

fn graph_rows() -> impl Strategy<Value = Vec<(u32, [f64; 4], bool)>> {
    let row = (
        0..90_000u32,
        (number(1.0), number(1.0), number(10.0), number(100.0)),
        any::<bool>(),
    )
        .prop_map(|(k, (a, b, c, d), np)| (k, [a, b, c, d], np));
    prop::collection::vec(row, 1..12)
}

fn analog_rows() -> impl Strategy<Value = Vec<([u8; 6], Vec<f64>)>> {
    let row = (
        prop::array::uniform6(0..5u8),
        prop::collection::vec(number(100.0), ANALOG_COLUMNS.len()),
    );
    prop::collection::vec(row, 1..8)
}

/// Rows a parser accepted pass its checks.
fn check_graph(records: &HashMap<u64, GraphRecord>) -> Result<(), TestCaseError> {
    for r in records.values() {
        for x in [r.val, r.test, r.latency_s, r.params_m] {
            prop_assert!(x.is_finite() && x >= 0.0, "{r:?}");
        }
        prop_assert!(r.val <= 1.0 && r.test <= 1.0, "{r:?}");
    }
    Ok(())
}

fn check_analog(rows: &HashMap<[u8; 6], [f64; 13]>) -> Result<(), TestCaseError> {
    for (cell, row) in rows {
        prop_assert!(cell.iter().all(|&o| o < 5), "{cell:?}");
        prop_assert!(row.iter().all(|x| (0.0..=1.0).contains(x)), "{row:?}");
    }
    Ok(())
}

/// Parses bytes as both benchmarks' files: rows that pass the checks, or an error.
fn check_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    match from_bytes(bytes, "fuzz.bench", GRAPH_BENCH) {
        Ok(v) => {
            if let Ok(r) = graph::parse(&v) {
                check_graph(&r)?;
            }
            if let Ok(r) = analog::parse(&v) {
                check_analog(&r)?;
            }
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(!m.contains('\n') && m.contains("fuzz.bench"), "{m}");
        }
    }
    Ok(())
}

fn in_range(x: f64, hi: f64) -> bool {
    x.is_finite() && (0.0..=hi).contains(&x)
}

proptest! {
    #![proptest_config(config())]

    /// A pickled NAS-Bench-Graph table reads back as its rows (or is refused for the
    /// out-of-range values it holds).
    #[test]
    fn graph_tables_round_trip(rows in graph_rows()) {
        let bytes = bytes_of(&graph_table(&rows));
        let value = from_bytes(&bytes, "t.bench", GRAPH_BENCH)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        // later rows of a repeated key replace earlier ones, as in a Python dict
        let mut want: BTreeMap<u32, [f64; 4]> = BTreeMap::new();
        for (k, r, _) in &rows {
            want.insert(*k, *r);
        }
        let valid = want.values().all(|[v, t, l, p]| {
            in_range(*v, 1.0) && in_range(*t, 1.0) && in_range(*l, f64::MAX) && in_range(*p, f64::MAX)
        });
        match graph::parse(&value) {
            Ok(records) => {
                prop_assert!(valid);
                prop_assert_eq!(records.len(), want.len());
                for (k, [v, t, l, p]) in want {
                    let r = records.get(&u64::from(k));
                    prop_assert_eq!(r, Some(&GraphRecord { val: v, test: t, latency_s: l, params_m: p }));
                }
            }
            Err(e) => {
                prop_assert!(!valid, "refused a valid table: {e}");
                prop_assert!(!e.contains('\n'));
            }
        }
    }

    /// A pickled AnalogNAS-Bench table reads back as its rows, in fractions.
    #[test]
    fn analog_tables_round_trip(rows in analog_rows()) {
        let bytes = bytes_of(&analog_table(&rows));
        let value = from_bytes(&bytes, "data.anb", ANALOG_BENCH)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut want: BTreeMap<[u8; 6], Vec<f64>> = BTreeMap::new();
        for (k, r) in &rows {
            want.insert(*k, r.clone());
        }
        let valid = want.values().flatten().all(|x| in_range(*x, 100.0));
        match analog::parse(&value) {
            Ok(parsed) => {
                prop_assert!(valid);
                prop_assert_eq!(parsed.len(), want.len());
                for (k, r) in want {
                    let got = parsed.get(&k).map(|g| g.to_vec());
                    let r: Vec<f64> = r.iter().map(|x| x / 100.0).collect();
                    prop_assert_eq!(got, Some(r));
                }
            }
            Err(e) => prop_assert!(!valid, "refused a valid table: {e}"),
        }
    }

    /// Mutated pickles of valid tables: checked rows or an error, never a panic.
    #[test]
    fn mutated_pickles_never_panic(
        g in graph_rows(),
        a in analog_rows(),
        edits in mutations(),
    ) {
        check_bytes(&mutate(bytes_of(&graph_table(&g)), &edits))?;
        check_bytes(&mutate(bytes_of(&analog_table(&a)), &edits))?;
    }

    /// Arbitrary bytes, with and without the pickle protocol header.
    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..256), header in any::<bool>()) {
        if header {
            bytes.splice(0..0, [0x80, 0x04]);
        }
        check_bytes(&bytes)?;
    }
}

/// The real files, truncated and bit-flipped at spread positions (where present).
#[test]
fn damaged_real_files_are_refused_or_checked() {
    let dir = resolve_data_dir(None);
    let files = [
        NasBenchGraph::path(&dir, "cora"),
        AnalogNasBench::path(&dir),
    ];
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("{} absent: skipped (run scripts/setup.sh)", path.display());
            continue;
        };
        let n = bytes.len();
        // each parse of a whole file takes a while: a few positions per 256 cases
        let k = (config().cases as usize / 40).clamp(4, 100);
        for i in 0..k {
            let cut = n * i / k + i * 7 % 13;
            let mut b = bytes[..cut.min(n)].to_vec();
            check_bytes(&b).unwrap();
            b = bytes.clone();
            let at = (n * (2 * i + 1) / (2 * k)).min(n - 1);
            b[at] ^= 0x5a;
            check_bytes(&b).unwrap();
        }
    }
}
