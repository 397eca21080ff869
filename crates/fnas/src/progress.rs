//! Progress display for long work: a bar on a terminal; plain, spaced-out lines when
//! stderr is a log file (nohup, CI, a scheduler), where the bar would be hidden and a
//! 15-minute search would look dead.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fnas_child::evaluator::{ProgressHook, WorkerProgress};
use fnas_child::train::TrainProgress;
use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting cost units towards a budget.
pub fn budget_bar(budget: u64, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(budget);
    let style =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Progress as plain stderr lines, at most one per `every` (the first at once), for when
/// no terminal shows the bar.
pub struct LogLines {
    enabled: bool,
    every: Duration,
    start: Instant,
    /// When the last line was printed, and its position.
    last: Option<(Instant, u64)>,
}

impl LogLines {
    /// Lines on when stderr is not a terminal and output is not `--json`.
    pub fn for_stderr(json: bool, every: Duration) -> Self {
        Self::new(!json && !std::io::stderr().is_terminal(), every)
    }

    pub fn new(enabled: bool, every: Duration) -> Self {
        Self {
            enabled,
            every,
            start: Instant::now(),
            last: None,
        }
    }

    /// Prints "[elapsed] pos/len msg" unless a line was printed less than `every` ago;
    /// `force` prints anyway (the last update) unless that position was just printed.
    pub fn update(&mut self, pos: u64, len: u64, msg: &str, force: bool) {
        if let Some(line) = self.line(pos, len, msg, force, Instant::now()) {
            eprintln!("{line}");
        }
    }

    fn line(&mut self, pos: u64, len: u64, msg: &str, force: bool, now: Instant) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let due = match self.last {
            None => true,
            Some((_, p)) if force => p != pos,
            Some((t, _)) => now.duration_since(t) >= self.every,
        };
        if !due {
            return None;
        }
        self.last = Some((now, pos));
        let s = now.duration_since(self.start).as_secs();
        Some(format!(
            "[{:02}:{:02}:{:02}] {pos}/{len} {msg}",
            s / 3600,
            s / 60 % 60,
            s % 60
        ))
    }
}

/// A hook that shows the workers' training progress in `bar`'s message.
pub fn progress_hook(bar: ProgressBar, prefix: String) -> ProgressHook {
    progress_hook_shared(bar, Arc::new(Mutex::new(prefix)))
}

/// Like [`progress_hook`], with a prefix the caller keeps updating (search counts).
pub fn progress_hook_shared(bar: ProgressBar, prefix: Arc<Mutex<String>>) -> ProgressHook {
    Arc::new(move |p: WorkerProgress| {
        let prefix = prefix.lock().map(|s| s.clone()).unwrap_or_default();
        if let TrainProgress::Step {
            epoch,
            epochs,
            step,
            total_steps,
            loss,
            ..
        } = p.event
        {
            if step % 5 == 0 || step + 1 == total_steps {
                bar.set_message(format!(
                    "{prefix}  worker {} child {}: epoch {}/{epochs} step {}/{total_steps} loss {loss:.3}",
                    p.worker,
                    &p.arch[..8.min(p.arch.len())],
                    epoch + 1,
                    step + 1
                ));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_spaced_out_and_off_when_disabled() {
        let mut l = LogLines::new(true, Duration::from_secs(30));
        let t0 = l.start;
        let first = l.line(1, 10, "trained 1", false, t0 + Duration::from_secs(5));
        assert_eq!(first.as_deref(), Some("[00:00:05] 1/10 trained 1"));
        assert!(l
            .line(2, 10, "x", false, t0 + Duration::from_secs(20))
            .is_none());
        assert!(l
            .line(3, 10, "x", true, t0 + Duration::from_secs(21))
            .is_some());
        // the final forced line is not a repeat of the one just printed
        assert!(l
            .line(3, 10, "x", true, t0 + Duration::from_secs(22))
            .is_none());
        let late = l.line(4, 10, "y", false, t0 + Duration::from_secs(3725));
        assert_eq!(late.as_deref(), Some("[01:02:05] 4/10 y"));
        let mut off = LogLines::new(false, Duration::ZERO);
        assert!(off.line(1, 1, "x", true, t0).is_none());
    }
}
