//! Property-based fuzzing of store URL parsing: any string is either not a PostgreSQL URL
//! (a SQLite path), or parses, or is refused with a one-line error that never shows a
//! password; nothing panics and nothing connects.
//!
//! `FNAS_FUZZ_CASES` sets the cases per property (default 256); a long run:
//! `FNAS_FUZZ_CASES=100000 cargo test --release -p fnas-store --test fuzz`.

use fnas_store::is_postgres_url;
use fnas_store::postgres::{parse_url, redact};
use proptest::prelude::*;

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
    "",
    ":",
    "@",
    "/",
    "?",
    "&",
    "=",
    "%",
    "%zz",
    "%00",
    "#",
    " ",
    "\n",
    "\0",
    "é",
    "🦀",
    "[",
    "]",
    "[::1]",
    "99999999999",
    "-1",
    ":65536",
    ":0",
    "?host=/tmp",
    "?sslmode=require",
    "?connect_timeout=1e999",
    "?port=a",
    "?options=-c%20x",
    "?user=",
    "?password=x",
    ",",
    "localhost,",
    "?target_session_attrs=x",
    "?application_name=\n",
];

/// A URL of the accepted shape with optional password and junk spliced in.
fn url() -> impl Strategy<Value = (String, Option<String>)> {
    (
        prop_oneof![
            Just("postgresql://"),
            Just("postgres://"),
            Just("postgresql:/"),
            Just("")
        ],
        "[a-z][a-z0-9_]{0,8}",
        prop::option::of("PW[A-Z]{6,10}"),
        prop_oneof![
            Just("localhost".to_string()),
            "[a-z0-9.-]{1,12}",
            Just("[::1]".to_string())
        ],
        prop::option::of(0..70_000u32),
        "[a-z0-9_]{0,10}",
        prop::collection::vec((0..JUNK.len(), any::<usize>()), 0..3),
    )
        .prop_map(|(scheme, user, pw, host, port, db, junk)| {
            let mut u = format!("{scheme}{user}");
            if let Some(p) = &pw {
                u.push(':');
                u.push_str(p);
            }
            u.push('@');
            u.push_str(&host);
            if let Some(p) = port {
                u.push_str(&format!(":{p}"));
            }
            u.push('/');
            u.push_str(&db);
            let head = u.find('@').map_or(0, |i| i + 1);
            for (j, at) in junk {
                // junk after the credentials, so a password stays where redact finds it
                let mut at = head + at % (u.len() - head + 1);
                while !u.is_char_boundary(at) {
                    at -= 1;
                }
                u.insert_str(at, JUNK[j]);
            }
            (u, pw)
        })
}

fn check(url: &str, pw: Option<&str>) -> Result<(), TestCaseError> {
    let shown = redact(url);
    if let Some(pw) = pw {
        prop_assert!(!shown.contains(pw), "{shown}");
    }
    let _ = is_postgres_url(url);
    match parse_url(url) {
        Ok((_, user)) => {
            prop_assert!(!user.is_empty());
            prop_assert!(pw.is_none(), "a URL with a password was accepted: {url}");
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(!m.contains('\n') && !m.contains('\r'), "{m:?}");
            if let Some(pw) = pw {
                prop_assert!(!m.contains(pw), "{m}");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_strings_never_panic(s in any::<String>()) {
        check(&s, None)?;
        check(&format!("postgresql://{s}"), None)?;
    }

    #[test]
    fn mutated_urls_never_panic_nor_show_a_password((u, pw) in url()) {
        check(&u, pw.as_deref())?;
    }
}

#[test]
fn url_shapes() {
    assert!(parse_url("postgresql://fnas@localhost:5432/fnas").is_ok());
    let e = parse_url("postgresql://fnas:PWSECRET@localhost/fnas")
        .unwrap_err()
        .to_string();
    assert!(e.contains("password") && !e.contains("PWSECRET"), "{e}");
    let e = parse_url("postgresql://localhost/fnas\n")
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "{e}");
}

/// A mistyped scheme (one slash) showed the password in messages.
#[test]
fn redact_hides_the_password_of_a_mistyped_url() {
    assert_eq!(
        redact("postgresql:/a:PWAAAAAA@localhost/"),
        "postgresql:/a:***@localhost/"
    );
    assert_eq!(redact("a:PW@h/db"), "a:***@h/db");
    assert_eq!(
        redact("postgresql://u:p/w@h:5432/db"),
        "postgresql://u:***@h:5432/db"
    );
    assert_eq!(redact("/plain/file.db"), "/plain/file.db");
}

/// An empty user (`postgresql://@`, `?user=`) was accepted, to fail only at connection.
#[test]
fn an_empty_user_is_refused() {
    for u in ["postgresql://@", "postgresql://a@0000a/0?user="] {
        let e = parse_url(u).unwrap_err().to_string();
        assert!(e.contains("names no user"), "{e}");
    }
}
