//! Names are data, not paths. Experiment and task names become folder names (an
//! experiment's weights, trial folders and pool files live under `.../EXPERIMENT/`), so a
//! name must never be able to point outside the folder it is put in.
//!
//! A new name is 1-100 characters of ASCII letters, digits, `.`, `_`, `-` and `+`,
//! starting with a letter or digit. A name that is only looked up (an experiment recorded
//! by an older build) is refused only when it could escape a folder: a path separator, a
//! `..`, a NUL or another control character, or more than 255 bytes.

/// Longest new name.
pub const MAX_NAME_LEN: usize = 100;

/// The characters a new name may hold, as the help texts say it.
pub const NAME_CHARSET: &str =
    "ASCII letters, digits, `.`, `_`, `-` and `+`, starting with a letter or digit, at most 100 characters";

/// Why a name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name {shown}: {reason} (a name may hold {NAME_CHARSET})")]
pub struct NameError {
    /// What the name names: "experiment", "task", ...
    pub kind: String,
    /// The name, quoted and escaped so it prints on one line.
    pub shown: String,
    /// What is wrong with it.
    pub reason: String,
}

fn error(kind: &str, name: &str, reason: impl Into<String>) -> NameError {
    let mut shown: String = format!("{name:?}").chars().take(120).collect();
    if shown.len() < format!("{name:?}").len() {
        shown.push_str("...");
    }
    NameError {
        kind: kind.to_string(),
        shown,
        reason: reason.into(),
    }
}

/// Checks a name an experiment or task is about to be recorded under.
pub fn check_new(kind: &str, name: &str) -> Result<(), NameError> {
    check_lookup(kind, name)?;
    if name.chars().count() > MAX_NAME_LEN {
        return Err(error(
            kind,
            name,
            format!("longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(error(kind, name, "must start with a letter or digit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(error(kind, name, format!("holds {c:?}")));
    }
    Ok(())
}

/// Checks a name that is looked up or joined to a path: it must stay one path component.
pub fn check_lookup(kind: &str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(error(kind, name, "is empty"));
    }
    if name.len() > 255 {
        return Err(error(kind, name, "longer than 255 bytes"));
    }
    if name.contains(['/', '\\']) {
        return Err(error(kind, name, "holds a path separator"));
    }
    if name == "." || name == ".." || name.contains("..") {
        return Err(error(kind, name, "holds `..`"));
    }
    if name.chars().any(char::is_control) {
        return Err(error(kind, name, "holds a NUL or control character"));
    }
    Ok(())
}

/// Names a test tries on every command that takes one (each must be refused).
pub const HOSTILE_NAMES: &[&str] = &[
    "../../evil",
    "..",
    ".",
    "a/b",
    "/etc/passwd",
    "a\\b",
    "x\0y",
    "line\nbreak",
    "tab\there",
    "esc\u{1b}[31m",
    "",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused_and_ordinary_ones_pass() {
        for n in HOSTILE_NAMES {
            let e = check_new("experiment", n).unwrap_err().to_string();
            assert!(!e.contains('\n') && !e.contains('\0'), "{e:?}");
            assert!(check_lookup("experiment", n).is_err(), "{n:?}");
        }
        for n in ["-rf", "with space", "é", "a:b", &"x".repeat(101)] {
            assert!(check_new("experiment", n).is_err(), "{n:?}");
        }
        for n in [
            "fnas-select-train-fashion-mnist-s0",
            "a",
            "run.2+transfer",
            "UPPER_1",
        ] {
            check_new("experiment", n).unwrap();
        }
        // recorded by an older build: looked up as long as it cannot escape a folder
        check_lookup("experiment", "with space:and=more").unwrap();
    }
}
