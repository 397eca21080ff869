//! Deterministic crash points for the crash-matrix tests: with `FNAS_CRASH_AT=POINT` (or
//! `POINT:N`) in its environment, a process kills itself with SIGKILL the N-th time (1st
//! by default) it reaches the write point named POINT, exactly as a power cut or the OOM
//! killer would stop it there. Without the variable a point costs one relaxed load.
//!
//! Points: `trial-begin` (a batch of trials recorded), `weights-write` (a trained
//! child's weights written to their temporary file, not yet renamed into place),
//! `pool-write` (a child's pool files written and synced, their index rows not yet
//! committed), `result-commit` (a trial's result committed), `checkpoint` (a batch ended
//! with the strategy's state saved).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Every point, for the tests and the help text.
pub const POINTS: &[&str] = &[
    "trial-begin",
    "weights-write",
    "pool-write",
    "result-commit",
    "checkpoint",
];

fn armed() -> Option<&'static (String, u64)> {
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let v = std::env::var("FNAS_CRASH_AT").ok()?;
        match v.split_once(':') {
            Some((p, n)) => Some((p.to_string(), n.parse().ok().filter(|&n| n > 0)?)),
            None => Some((v, 1)),
        }
    })
    .as_ref()
}

/// Marks write point `name`; kills the process here when `FNAS_CRASH_AT` says so.
pub fn point(name: &str) {
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let Some((at, n)) = armed() else {
        return;
    };
    if at == name && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        eprintln!("FNAS_CRASH_AT={at}:{n}: killing this process at `{name}`");
        // SAFETY: sends SIGKILL to this very process; nothing after it runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
