//! Reading the benchmarks' pickle files into `serde_pickle::Value`s, and the few
//! helpers that turn Python values (including numpy scalars) into numbers.

use std::collections::BTreeMap;
use std::path::Path;

use serde_pickle::{DeOptions, HashableValue, Value};

use crate::error::{one_line, show, BenchError};

/// Reads and parses one pickle file. `bench` names the benchmark in messages.
///
/// `keep_restore_state` is what makes these files readable at all: numpy scalars and
/// custom classes are globals serde-pickle cannot resolve, and this option keeps their
/// constructor arguments / `__setstate__` state instead of failing (or, with
/// `replace_unresolved_globals`, silently turning them into `None`).
pub(crate) fn read(path: &Path, bench: &str) -> Result<Value, BenchError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BenchError::MissingFile { file: show(path) },
        _ => BenchError::Unreadable {
            file: show(path),
            reason: one_line(e.to_string()),
        },
    })?;
    from_bytes(&bytes, &show(path), bench)
}

/// Parses the bytes of a pickle file; `file` and `bench` name it in messages.
pub(crate) fn from_bytes(bytes: &[u8], file: &str, bench: &str) -> Result<Value, BenchError> {
    serde_pickle::value_from_slice(bytes, DeOptions::new().keep_restore_state()).map_err(|e| {
        BenchError::Corrupt {
            file: file.to_string(),
            bench: bench.to_string(),
            detail: one_line(e.to_string()),
        }
    })
}

/// A Python number as f64: a float, an int, or a pickled numpy scalar.
///
/// With `keep_restore_state`, `numpy.core.multiarray.scalar(dtype, raw)` arrives as the
/// tuple `(dtype, raw bytes)`. The dtype is either its constructor arguments
/// (`("f8", False, True)`), or, at its first occurrence in a file (where the pickle
/// applies `__setstate__`), its state `(3, "<", None, ...)`, which carries the byte
/// order but not the type; there an 8-byte scalar is read as float64, the only scalar
/// type these files contain.
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::F64(x) => Some(*x),
        Value::I64(i) => Some(*i as f64),
        Value::Int(b) => b.to_string().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Tuple(parts) => match parts.as_slice() {
            [dtype, Value::Bytes(raw)] => numpy_scalar(dtype, raw),
            _ => None,
        },
        _ => None,
    }
}

fn numpy_scalar(dtype: &Value, raw: &[u8]) -> Option<f64> {
    let Value::Tuple(d) = dtype else { return None };
    match d.first()? {
        // constructor form: ("f8" | "<f8" | ..., align, copy)
        Value::String(code) => {
            let (big, code) = match code.as_bytes().first() {
                Some(b'>') => (true, &code[1..]),
                Some(b'<' | b'=' | b'|') => (false, &code[1..]),
                _ => (false, code.as_str()),
            };
            decode(code, big, raw)
        }
        // state form: (version, byte order, ...)
        Value::I64(_) => {
            let big = matches!(d.get(1), Some(Value::String(o)) if o == ">");
            decode("f8", big, raw)
        }
        _ => None,
    }
}

fn decode(code: &str, big: bool, raw: &[u8]) -> Option<f64> {
    macro_rules! num {
        ($t:ty) => {{
            let b = raw.try_into().ok()?;
            Some(
                (if big {
                    <$t>::from_be_bytes(b)
                } else {
                    <$t>::from_le_bytes(b)
                }) as f64,
            )
        }};
    }
    match code {
        "f8" => num!(f64),
        "f4" => num!(f32),
        "i8" => num!(i64),
        "i4" => num!(i32),
        "u8" => num!(u64),
        "u4" => num!(u32),
        _ => None,
    }
}

/// The entry `name` of a pickled dict (or object `__dict__`).
pub(crate) fn field<'a>(dict: &'a BTreeMap<HashableValue, Value>, name: &str) -> Option<&'a Value> {
    dict.get(&HashableValue::String(name.to_string()))
}

/// A short description of a value's type, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::I64(_) | Value::Int(_) => "int",
        Value::F64(_) => "float",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "str",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Set(_) | Value::FrozenSet(_) => "set",
        Value::Dict(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(dtype: Value, x: f64) -> Value {
        Value::Tuple(vec![dtype, Value::Bytes(x.to_le_bytes().to_vec())])
    }

    #[test]
    fn numbers_of_every_pickled_form() {
        assert_eq!(number(&Value::F64(0.5)), Some(0.5));
        assert_eq!(number(&Value::I64(3)), Some(3.0));
        let ctor = Value::Tuple(vec![
            Value::String("f8".into()),
            Value::Bool(false),
            Value::Bool(true),
        ]);
        assert_eq!(number(&np(ctor, 0.25)), Some(0.25));
        let state = Value::Tuple(vec![Value::I64(3), Value::String("<".into()), Value::None]);
        assert_eq!(number(&np(state, 1.75)), Some(1.75));
        let big = Value::Tuple(vec![Value::String(">f8".into())]);
        let v = Value::Tuple(vec![big, Value::Bytes(2.5f64.to_be_bytes().to_vec())]);
        assert_eq!(number(&v), Some(2.5));
    }

    #[test]
    fn non_numbers_are_none_not_panics() {
        let f8 = Value::Tuple(vec![Value::String("f8".into())]);
        assert_eq!(
            number(&Value::Tuple(vec![f8.clone(), Value::Bytes(vec![1, 2])])),
            None
        );
        assert_eq!(number(&Value::Tuple(vec![f8])), None);
        assert_eq!(number(&Value::Tuple(vec![])), None);
        assert_eq!(number(&Value::String("1.0".into())), None);
        let odd = Value::Tuple(vec![Value::String("U3".into())]);
        assert_eq!(number(&np(odd, 1.0)), None);
    }
}
