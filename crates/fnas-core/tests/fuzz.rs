//! Property-based fuzzing of the text parsers of fnas-core: the architecture text form of
//! every shipped space and the MNAS space TOML. Random valid inputs must round-trip;
//! mutated ones (byte flips, truncation, inserted junk, duplicated or deleted parts, huge
//! numbers, unicode) must give a value that round-trips or a one-line error, never a
//! panic or a hang.
//!
//! `FNAS_FUZZ_CASES` sets the cases per property (default 256, a few seconds in CI); a
//! long run: `FNAS_FUZZ_CASES=100000 cargo test --release -p fnas-core --test fuzz`
//! (docs/fuzzing.md).

use fnas_core::space::{Encoding, SHIPPED_SPACES};
use fnas_core::{Architecture, SearchSpace};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::SeedableRng;

const MNAS_TOML: &str = include_str!("../../../spaces/mnas-28.toml");

fn config() -> ProptestConfig {
    let cases = std::env::var("FNAS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // failing inputs are kept as regression tests below, not in files
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text that tends to break parsers.
const JUNK: &[&str] = &[
    "=",
    " ",
    "\n",
    "\r\n",
    "\t",
    "\0",
    "#",
    "\"",
    "'",
    "[",
    "]",
    "[[blocks]]",
    "[choices]",
    "{",
    "}",
    ",",
    ".",
    "-",
    "==",
    "é",
    "🦀",
    "\u{202e}",
    "\u{feff}",
    "\u{10ffff}",
    "-1",
    "0",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "4294967296",
    "65536",
    "0.0",
    "1.0e-400",
    "b1.op=conv",
    "b1.layers=2",
    "in2=0",
    "op1=gcn",
    "e1_2=none",
    "layers = 9223372036854775807",
    "width = 1e308",
    "stride = 0",
    "layers_delta = [-9223372036854775808, 9223372036854775807]",
    "name = \"x\"",
];

/// One edit of a text.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(usize, u8),
    /// Cut the text at a position.
    Truncate(usize),
    /// Insert a junk string.
    Insert(usize, usize),
    /// Insert random bytes.
    InsertBytes(usize, Vec<u8>),
    /// Delete a range.
    Delete(usize, usize),
    /// Duplicate a line (a TOML key or table) or a space-separated token.
    Duplicate(usize),
    /// Replace the first digit run at or after a position by a junk number.
    Number(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, m)| Mutation::Flip(p, m)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0..JUNK.len()).prop_map(|(p, j)| Mutation::Insert(p, j)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Mutation::InsertBytes(p, b)),
        (any::<usize>(), 1..64usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), 24..37usize).prop_map(|(p, j)| Mutation::Number(p, j)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

/// Applies the edits to `bytes` (positions taken modulo the current length).
fn mutate(mut bytes: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let n = bytes.len();
        let at = |p: usize| if n == 0 { 0 } else { p % (n + 1) };
        match m {
            Mutation::Flip(p, mask) if n > 0 => bytes[p % n] ^= mask,
            Mutation::Flip(..) => {}
            Mutation::Truncate(p) => bytes.truncate(at(*p)),
            Mutation::Insert(p, j) => {
                let p = at(*p);
                bytes.splice(p..p, JUNK[*j].bytes());
            }
            Mutation::InsertBytes(p, b) => {
                let p = at(*p);
                bytes.splice(p..p, b.iter().copied());
            }
            Mutation::Delete(p, len) => {
                let p = at(*p);
                let end = (p + len).min(n);
                bytes.drain(p..end);
            }
            Mutation::Duplicate(p) => {
                let p = at(*p).min(n);
                let start = bytes[..p]
                    .iter()
                    .rposition(|&b| b == b'\n' || b == b' ')
                    .map_or(0, |i| i + 1);
                let end = bytes[p..]
                    .iter()
                    .position(|&b| b == b'\n' || b == b' ')
                    .map_or(n, |i| p + i + 1);
                let part = bytes[start..end].to_vec();
                bytes.splice(end..end, part);
            }
            Mutation::Number(p, j) => {
                let p = at(*p).min(n);
                if let Some(s) = bytes[p..].iter().position(u8::is_ascii_digit) {
                    let s = p + s;
                    let e = bytes[s..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(n, |i| s + i);
                    bytes.splice(s..e, JUNK[*j].bytes());
                }
            }
        }
    }
    bytes
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn spaces() -> Vec<SearchSpace> {
    SHIPPED_SPACES
        .iter()
        .map(|n| SearchSpace::by_name_or_path(n).expect("shipped space"))
        .collect()
}

fn one_line(e: &dyn std::fmt::Display) -> Result<(), TestCaseError> {
    let s = e.to_string();
    prop_assert!(
        !s.contains('\n') && !s.contains('\r'),
        "error is not one line: {s:?}"
    );
    Ok(())
}

/// Everything a valid architecture of `s` must satisfy: the text form round-trips, the
/// canonical form is valid, idempotent and round-trips, the encodings are computable.
fn check_valid(s: &SearchSpace, a: &Architecture) -> Result<(), TestCaseError> {
    prop_assert!(s.is_valid(a));
    let text = s.format(a);
    let back = s.parse(&text);
    prop_assert!(back.is_ok(), "{text}: {:?}", back.err());
    prop_assert_eq!(back.ok(), Some(a.clone()));
    let c = s.canonical(a);
    prop_assert!(s.is_valid(&c), "canonical of {text} is invalid");
    prop_assert_eq!(&s.canonical(&c), &c);
    prop_assert_eq!(s.parse(&s.format(&c)).ok(), Some(c));
    prop_assert_eq!(
        s.one_hot(a).len(),
        s.decisions().iter().map(|d| d.choices.len()).sum::<usize>()
    );
    for e in [Encoding::OneHot, Encoding::Structure] {
        let len = s.encoding_len(e);
        let f = s.encode(e, a);
        prop_assert!(
            f.iter().all(|&(i, v)| (i as usize) < len && v.is_finite()),
            "{e:?} of {text}: {f:?}"
        );
    }
    Ok(())
}

/// Parsing any text gives a valid, round-tripping architecture or a one-line error.
fn check_parse(s: &SearchSpace, text: &str) -> Result<(), TestCaseError> {
    match s.parse(text) {
        Ok(a) => check_valid(s, &a),
        Err(e) => one_line(&e),
    }
}

/// A space read from TOML works: its architectures round-trip and encode.
fn check_space(s: &SearchSpace, seed: u64) -> Result<(), TestCaseError> {
    prop_assert!(!s.decisions().is_empty());
    prop_assert!(s.decisions().iter().all(|d| !d.choices.is_empty()));
    prop_assert!(s.raw_size() >= 1.0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..3 {
        let a = s.sample(&mut rng);
        check_valid(s, &a)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random valid architectures of every shipped space: format -> parse round-trips.
    #[test]
    fn valid_architectures_round_trip(seed in any::<u64>()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for s in spaces() {
            let a = s.sample(&mut rng);
            check_valid(&s, &a)?;
        }
    }

    /// Mutated texts of valid architectures: a valid architecture or an error.
    #[test]
    fn mutated_architecture_texts_never_panic(seed in any::<u64>(), edits in mutations()) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for s in spaces() {
            let a = s.sample(&mut rng);
            let text = text_of(&mutate(s.format(&a).into_bytes(), &edits));
            check_parse(&s, &text)?;
        }
    }

    /// Arbitrary strings, including the text of another space.
    #[test]
    fn random_strings_never_panic(text in any::<String>(), seed in any::<u64>()) {
        let spaces = spaces();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let other = spaces[seed as usize % spaces.len()].sample(&mut rng);
        let other_text = spaces[seed as usize % spaces.len()].format(&other);
        for s in &spaces {
            check_parse(s, &text)?;
            check_parse(s, &other_text)?;
        }
    }

    /// Arbitrary choice vectors (as a store or a strategy state might hold): the space's
    /// functions answer without panicking; valid ones behave as valid architectures.
    #[test]
    fn arbitrary_choice_vectors_never_panic(
        choices in prop::collection::vec(any::<u16>(), 0..40),
        small in prop::collection::vec(0..12u16, 0..40),
    ) {
        for s in spaces() {
            for c in [&choices, &small] {
                let a = Architecture(c.clone());
                let _ = s.format(&a);
                let _ = s.canonical(&a);
                let _ = s.graph_key(&a);
                if s.is_valid(&a) {
                    check_valid(&s, &a)?;
                }
            }
        }
    }

    /// Mutated copies of the shipped MNAS space file: a working space or an error naming
    /// the file.
    #[test]
    fn mutated_space_files_never_panic(edits in mutations(), seed in any::<u64>()) {
        let text = text_of(&mutate(MNAS_TOML.as_bytes().to_vec(), &edits));
        match SearchSpace::mnas_from_toml(&text, "fuzz.toml") {
            Ok(s) => check_space(&s, seed)?,
            Err(e) => {
                one_line(&e)?;
                prop_assert!(e.to_string().contains("fuzz.toml"), "{e}");
            }
        }
    }

    /// Arbitrary text as a space file.
    #[test]
    fn random_space_texts_never_panic(text in any::<String>()) {
        if let Err(e) = SearchSpace::mnas_from_toml(&text, "fuzz.toml") {
            one_line(&e)?;
        }
    }
}

/// The unmodified space file is a space (the mutations start from a valid input).
#[test]
fn shipped_space_file_is_valid() {
    let s = SearchSpace::mnas_from_toml(MNAS_TOML, "spaces/mnas-28.toml").unwrap();
    assert_eq!(s, SearchSpace::mnas_default());
}

// Regressions: inputs the fuzzer found, kept as plain tests.

/// A control character before a line break made a two-line error message.
#[test]
fn architecture_errors_stay_on_one_line() {
    let s = SearchSpace::nas_bench_graph();
    let e = s
        .parse("\u{e}\nin2=0 in3=1 in4=2 op1=sage op2=graph op3=gcn op4=gcn")
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("is not name=choice"), "{e}");
    let e = s.parse("in2=\r0").unwrap_err().to_string();
    assert!(!e.contains('\r') && e.contains("must be one of"), "{e}");
}

/// Canonicalising a choice vector outside the graph space indexed out of bounds.
#[test]
fn graph_canonical_of_a_foreign_vector_is_identity() {
    let s = SearchSpace::nas_bench_graph();
    for c in [
        vec![],
        vec![0; 3],
        vec![60678; 7],
        vec![0, 0, 0, 0, 0, 0, 9],
    ] {
        let a = Architecture(c);
        assert_eq!(s.canonical(&a), a);
        assert_eq!(s.graph_key(&a), None);
        assert!(!s.is_valid(&a));
    }
}

/// toml's multi-line messages ("invalid string\nexpected ...") reached the error as is.
#[test]
fn space_toml_errors_stay_on_one_line() {
    let e = SearchSpace::mnas_from_toml("0=𐍐", "fuzz.toml")
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n') && e.starts_with("fuzz.toml: "), "{e}");
    assert!(e.contains("line 1"), "{e}");
}

/// A choice listed twice printed the same; the architecture then read back as another.
#[test]
fn duplicate_choices_are_refused() {
    for (from, to, field) in [
        ("kernel = [3, 5, 7]", "kernel = [3, 5, 3]", "choices.kernel"),
        (
            "op = [\"conv\", \"dwsep\", \"mbconv3\", \"mbconv6\"]",
            "op = [\"conv\", \"conv\"]",
            "choices.op",
        ),
        ("se = [0.0, 0.25]", "se = [0.0, -0.0]", "choices.se"),
        (
            "width = [0.75, 1.0, 1.25]",
            "width = [1.0, 1.00]",
            "choices.width",
        ),
    ] {
        assert!(MNAS_TOML.contains(from), "{from}");
        let e = SearchSpace::mnas_from_toml(&MNAS_TOML.replace(from, to), "dup.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dup.toml") && e.contains(field) && e.contains("distinct"),
            "{e}"
        );
    }
}

/// A huge layer count overflowed `base + delta` (a panic in debug builds) or, merely
/// large, made the size estimate loop for ever; huge widths and channels likewise.
#[test]
fn huge_numbers_in_a_space_file_are_refused() {
    for (from, to, field) in [
        (
            "layers = 1\n",
            "layers = 9223372036854775807\n",
            "blocks[0]",
        ),
        ("layers = 1\n", "layers = 1000000000\n", "blocks[0]"),
        (
            "layers_delta = [-1, 0, 1]",
            "layers_delta = [-9223372036854775808, 0]",
            "choices.layers_delta",
        ),
        ("width = 16\n", "width = 100000000\n", "blocks[0]"),
        ("channels = 128", "channels = 9223372036854775807", "head"),
        ("resolution = 28", "resolution = 1000000", "input"),
        (
            "classes = 10",
            "classes = 9223372036854775807",
            "input.classes",
        ),
    ] {
        assert!(MNAS_TOML.contains(from), "{from}");
        let e = SearchSpace::mnas_from_toml(&MNAS_TOML.replacen(from, to, 1), "big.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("big.toml") && e.contains(field), "{field}: {e}");
    }
}
