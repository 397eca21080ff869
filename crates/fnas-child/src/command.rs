//! An external trial command: the user's own training script trains each child.
//!
//! For each child fnas makes a trial folder holding `trial.json` (what to train: the
//! architecture, its layer plan, seed, budget, the task's recipe and, on a warm start,
//! the initial weights in the exported PyTorch naming) and `model.py` (the export's
//! PyTorch module of the child), then runs the command with `FNAS_TRIAL_DIR` set. The
//! command writes `result.json`; see [`TrialReport`] for its fields. The command's
//! stdout and stderr go to `stdout.log` and `stderr.log` in the folder.
//!
//! A trial run again (after a crash or a lost lease) starts from a clean folder: the
//! files a former run left (`result.json`, logs, returned weights) are removed first,
//! so a stale result is never read as the new one.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Name of the file the command reads.
pub const TRIAL_FILE: &str = "trial.json";
/// Name of the file the command writes.
pub const RESULT_FILE: &str = "result.json";
/// Initial weights of a warm-started child (exported PyTorch naming).
pub const INIT_WEIGHTS_FILE: &str = "init.safetensors";
/// The child's PyTorch module (the export's `model.py`).
pub const MODEL_FILE: &str = "model.py";
/// Where the command's standard output goes.
pub const STDOUT_FILE: &str = "stdout.log";
/// Where the command's standard error goes.
pub const STDERR_FILE: &str = "stderr.log";

/// Lines of stderr kept in a failed trial's reason.
const TAIL_LINES: usize = 5;

/// How children are trained by an external command.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialCommand {
    /// A shell command line (`sh -c`).
    pub command: String,
    /// The folder the command runs in (the user's code).
    pub code_dir: PathBuf,
    /// A run longer than this is killed and the trial failed.
    pub timeout: Option<Duration>,
    /// Where the trial folders go (one per child, named by its architecture hash).
    pub trials_dir: PathBuf,
    /// The experiment the trials belong to (written into `trial.json`).
    pub experiment: String,
}

/// Why a trial command did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A file of the trial folder could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The shell could not find or run the command (exit 126/127): every child would
    /// fail the same way, so the search stops.
    #[error("trial command `{command}` could not be run (exit {code}): {tail}")]
    NotRunnable {
        command: String,
        code: i32,
        tail: String,
    },
    /// The command exited with a non-zero status or was killed by a signal.
    #[error("trial command {status}; stderr: {tail}")]
    Exit { status: String, tail: String },
    /// The command ran past the timeout and was killed.
    #[error("trial command ran past --trial-timeout ({seconds} s) and was killed; stderr: {tail}")]
    Timeout { seconds: f64, tail: String },
    /// `result.json` is missing or not what it must be.
    #[error("{}: {message}", path.display())]
    Result { path: PathBuf, message: String },
}

impl CommandError {
    /// Whether the search must stop (rather than record a failed trial).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            CommandError::NotRunnable { .. } | CommandError::Io { .. }
        )
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CommandError + '_ {
    move |source| CommandError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the command reported in `result.json`. `val_accuracy` (in [0, 1]) is required;
/// `test_accuracy`, `latency_ms`, `params`, `flops`, `images` (the training cost in
/// images processed), `epochs` and `weights` (a safetensors file in the exported PyTorch
/// naming, relative to the trial folder, for the knowledge pool) are optional; any other
/// number is kept as an extra metric.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrialReport {
    pub val_accuracy: f64,
    pub test_accuracy: Option<f64>,
    pub latency_ms: Option<f64>,
    pub params: Option<f64>,
    pub flops: Option<f64>,
    pub images: Option<u64>,
    pub epochs: Option<f64>,
    pub weights: Option<PathBuf>,
    pub extra: BTreeMap<String, f64>,
}

impl TrialCommand {
    /// The folder of the child whose architecture hash is `hash`.
    pub fn trial_dir(&self, hash: u64) -> PathBuf {
        self.trials_dir.join(format!("{hash:016x}"))
    }

    /// Makes (or cleans) the trial folder and writes `trial.json` (atomically) and the
    /// child's `model.py`.
    pub fn prepare(&self, dir: &Path, trial: &Value, model_py: &str) -> Result<(), CommandError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // a former run of this trial may still be training (fnas was killed and the
        // command's children outlived it): stop it before starting again
        kill_leftovers(dir);
        // a former run's output must not pass for this run's
        for name in [RESULT_FILE, STDOUT_FILE, STDERR_FILE, INIT_WEIGHTS_FILE] {
            let p = dir.join(name);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p)(e)),
            }
        }
        let model = dir.join(MODEL_FILE);
        std::fs::write(&model, model_py).map_err(io(&model))?;
        let path = dir.join(TRIAL_FILE);
        let tmp = dir.join(format!("{TRIAL_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(trial).map_err(|e| CommandError::Result {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }

    /// Runs the command for the trial folder `dir` and reads its `result.json`.
    /// `threads` is exported as `FNAS_THREADS` (and `OMP_NUM_THREADS` unless set), so
    /// children running side by side do not each take every core.
    pub fn run(&self, dir: &Path, threads: usize) -> Result<TrialReport, CommandError> {
        let out_path = dir.join(STDOUT_FILE);
        let err_path = dir.join(STDERR_FILE);
        let stdout = std::fs::File::create(&out_path).map_err(io(&out_path))?;
        let stderr = std::fs::File::create(&err_path).map_err(io(&err_path))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&self.command)
            .current_dir(&self.code_dir)
            .env("FNAS_TRIAL_DIR", dir)
            .env("FNAS_THREADS", threads.max(1).to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            cmd.env("OMP_NUM_THREADS", threads.max(1).to_string());
        }
        isolate(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| CommandError::Io {
            path: self.code_dir.clone(),
            source: e,
        })?;
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().map_err(io(dir))? {
                break s;
            }
            if let Some(t) = self.timeout {
                if started.elapsed() > t {
                    kill_group(&mut child);
                    return Err(CommandError::Timeout {
                        seconds: t.as_secs_f64(),
                        tail: tail(&err_path),
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            return Err(match status.code() {
                Some(code @ (126 | 127)) => CommandError::NotRunnable {
                    command: self.command.clone(),
                    code,
                    tail: tail(&err_path),
                },
                Some(code) => CommandError::Exit {
                    status: format!("exited with status {code}"),
                    tail: tail(&err_path),
                },
                None => CommandError::Exit {
                    status: "was killed by a signal".to_string(),
                    tail: tail(&err_path),
                },
            });
        }
        read_result(&dir.join(RESULT_FILE))
    }
}

/// Starts the command in its own process group (so a timeout kills everything it
/// started) and, on Linux, has it killed when fnas dies: a search killed and resumed
/// must not leave an orphan training beside the new run of the same trial.
fn isolate(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Kills every process of this machine still running for trial folder `dir` (they all
/// carry `FNAS_TRIAL_DIR=dir` in their environment, whatever they were started by).
fn kill_leftovers(dir: &Path) {
    let mut marker = b"FNAS_TRIAL_DIR=".to_vec();
    marker.extend_from_slice(dir.as_os_str().as_encoded_bytes());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|v| v == marker.as_slice()) {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: signals one process that runs for this very trial folder.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Kills the command's whole process group and reaps it.
fn kill_group(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: signals the process group this child leads (made by `isolate`).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of a log file, on one line (at most 4 KiB are read).
pub fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        text = String::from_utf8_lossy(&buf).into_owned();
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return "(empty)".to_string();
    }
    lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ")
}

/// Reads and checks `result.json`.
pub fn read_result(path: &Path) -> Result<TrialReport, CommandError> {
    let bad = |message: String| CommandError::Result {
        path: path.to_path_buf(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(
                "not written: the command exited with status 0 but wrote no result.json"
                    .to_string(),
            ))
        }
        Err(e) => return Err(bad(format!("cannot read ({e})"))),
    };
    let value: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(bad("expected a JSON object".to_string()));
    };
    let number = |key: &str| -> Result<Option<f64>, CommandError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                _ => Err(bad(format!(
                    "`{key}` must be a finite number >= 0 (found {n})"
                ))),
            },
            Some(other) => Err(bad(format!("`{key}` must be a number (found {other})"))),
        }
    };
    let fraction = |key: &str| -> Result<Option<f64>, CommandError> {
        match number(key)? {
            Some(v) if v > 1.0 => Err(bad(format!(
                "`{key}` must be a fraction in [0, 1] (found {v}; a percentage?)"
            ))),
            v => Ok(v),
        }
    };
    let val_accuracy = fraction("val_accuracy")?
        .ok_or_else(|| bad("`val_accuracy` is required (a number in [0, 1])".to_string()))?;
    let images = match number("images")? {
        Some(v) if v.fract() != 0.0 => {
            return Err(bad(format!("`images` must be a whole number (found {v})")))
        }
        Some(v) => Some(v as u64),
        None => None,
    };
    let weights = match map.get("weights") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => {
            let p = PathBuf::from(s);
            Some(if p.is_absolute() {
                p
            } else {
                path.parent().unwrap_or(Path::new(".")).join(p)
            })
        }
        Some(other) => {
            return Err(bad(format!(
                "`weights` must be the path of a safetensors file (found {other})"
            )))
        }
    };
    const KNOWN: [&str; 8] = [
        "val_accuracy",
        "test_accuracy",
        "latency_ms",
        "params",
        "flops",
        "images",
        "epochs",
        "weights",
    ];
    let extra = map
        .iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64().filter(|x| x.is_finite())?)))
        .collect();
    Ok(TrialReport {
        val_accuracy,
        test_accuracy: fraction("test_accuracy")?,
        latency_ms: number("latency_ms")?,
        params: number("params")?,
        flops: number("flops")?,
        images,
        epochs: number("epochs")?,
        weights,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(text: &str) -> Result<TrialReport, CommandError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(RESULT_FILE);
        std::fs::write(&p, text).unwrap();
        read_result(&p)
    }

    #[test]
    fn result_fields_are_checked() {
        let r = result(
            r#"{"val_accuracy": 0.8, "images": 1200, "weights": "w.safetensors", "loss": 0.3}"#,
        )
        .unwrap();
        assert_eq!(r.val_accuracy, 0.8);
        assert_eq!(r.images, Some(1200));
        assert!(r.weights.unwrap().ends_with("w.safetensors"));
        assert_eq!(r.extra.get("loss"), Some(&0.3));
        for (text, needle) in [
            ("{}", "`val_accuracy` is required"),
            (r#"{"val_accuracy": 80}"#, "a percentage?"),
            (r#"{"val_accuracy": "0.8"}"#, "must be a number"),
            (r#"{"val_accuracy": 0.8, "images": 1.5}"#, "whole number"),
            (r#"{"val_accuracy": 0.8, "latency_ms": -1}"#, "latency_ms"),
            ("[1]", "JSON object"),
            ("{\"val_accuracy\": 0.8", "not valid JSON"),
        ] {
            let e = result(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains(RESULT_FILE), "{e}");
        }
    }

    #[test]
    fn exit_timeout_and_missing_result_are_failures_with_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |command: &str, timeout: Option<Duration>| TrialCommand {
            command: command.to_string(),
            code_dir: dir.path().to_path_buf(),
            timeout,
            trials_dir: dir.path().join("trials"),
            experiment: "e".into(),
        };
        let t = dir.path().join("trials/0");
        std::fs::create_dir_all(&t).unwrap();
        let e = mk("echo boom >&2; exit 3", None).run(&t, 1).unwrap_err();
        assert!(!e.is_fatal());
        assert!(
            e.to_string().contains("status 3") && e.to_string().contains("boom"),
            "{e}"
        );
        let e = mk("true", None).run(&t, 1).unwrap_err();
        assert!(e.to_string().contains("wrote no result.json"), "{e}");
        let start = Instant::now();
        let e = mk("echo slow >&2; sleep 30", Some(Duration::from_millis(300)))
            .run(&t, 1)
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(
            e.to_string().contains("--trial-timeout") && e.to_string().contains("slow"),
            "{e}"
        );
        let e = mk("no-such-program-xyz", None).run(&t, 1).unwrap_err();
        assert!(e.is_fatal(), "{e}");
        let ok = mk(
            r#"echo "{\"val_accuracy\": 0.5, \"threads\": $FNAS_THREADS}" > "$FNAS_TRIAL_DIR/result.json""#,
            None,
        )
        .run(&t, 3)
        .unwrap();
        assert_eq!(ok.val_accuracy, 0.5);
        assert_eq!(ok.extra.get("threads"), Some(&3.0));
    }
}
