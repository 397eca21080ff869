//! The data directory rule (alone in its binary: it sets an environment variable).

use std::path::{Path, PathBuf};

use fnas_bench::{resolve_data_dir, DATA_DIR_ENV};

#[test]
fn explicit_then_env_then_local_then_checkout() {
    let explicit = Path::new("/some/where");
    std::env::set_var(DATA_DIR_ENV, "/from/env");
    assert_eq!(resolve_data_dir(Some(explicit)), explicit);
    assert_eq!(resolve_data_dir(None), PathBuf::from("/from/env"));
    std::env::set_var(DATA_DIR_ENV, "");
    let fallback = resolve_data_dir(None);
    std::env::remove_var(DATA_DIR_ENV);
    assert_eq!(resolve_data_dir(None), fallback);
    // tests run in the crate directory, which has no data/: the checkout's data/
    if !Path::new("data").is_dir() {
        assert_eq!(
            fallback,
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
        );
    }
}
