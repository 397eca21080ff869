//! `fnas slurm`: a Slurm job array whose tasks are `fnas worker`s of one experiment.
//! Slurm starts, places and restarts the workers; the store hands them trials under
//! leases, so a task that Slurm kills or preempts only delays its trial.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::SlurmArgs;

pub fn run(a: SlurmArgs) -> Result<()> {
    if !(a.lease_seconds.is_finite() && a.lease_seconds >= 1.0) {
        bail!(
            "--lease-seconds must be at least 1, not {}",
            a.lease_seconds
        );
    }
    if let Some(t) = &a.time {
        check_time(t)?;
    }
    let store_arg = &a.store.store;
    let store =
        fnas_run::stores::open_existing(store_arg, "`fnas slurm` adds workers to a search")?;
    let exp = store.experiment(&a.experiment)?.ok_or_else(|| {
        anyhow!(
            "no experiment `{}` in store {} (start it with `fnas search ... --name {} --workers 0`)",
            a.experiment,
            store_arg.display(),
            a.experiment
        )
    })?;
    if exp.status == "finished" {
        bail!(
            "experiment `{}` has finished: there is nothing for workers to do (resume it with a larger budget first)",
            a.experiment
        );
    }
    drop(store);
    // the compute nodes see absolute paths only
    let store_for_workers = if fnas_run::stores::is_url(store_arg) {
        store_arg.display().to_string()
    } else {
        absolute(store_arg)?.display().to_string()
    };
    let fnas = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find this fnas executable to put in the job script")?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("fnas-worker-{}.sbatch", a.experiment)));
    let out = absolute(&out)?;
    let log_dir = match &a.log_dir {
        Some(d) => absolute(d)?,
        None => out
            .parent()
            .map_or_else(|| PathBuf::from("slurm-logs"), |p| p.join("slurm-logs")),
    };
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create the log folder {}", log_dir.display()))?;
    let data_dir = a.data_dir.as_deref().map(absolute).transpose()?;
    let script = job_script(&a, &fnas, &store_for_workers, &log_dir, data_dir.as_deref())?;
    write_script(&out, &script)?;
    if !fnas_run::stores::is_url(store_arg) {
        eprintln!(
            "note: a SQLite store is shared by workers on this machine's file system only; for workers on several nodes use a PostgreSQL store"
        );
    }
    if !a.submit {
        println!("wrote {}", out.display());
        println!("submit it with: sbatch {}", out.display());
        return Ok(());
    }
    let o = Command::new("sbatch")
        .arg("--parsable")
        .arg(&out)
        .output()
        .map_err(|e| {
            anyhow!(
                "cannot run sbatch ({e}): is Slurm's client installed here? The script is in {}",
                out.display()
            )
        })?;
    if !o.status.success() {
        bail!(
            "sbatch refused {}: {}",
            out.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    // `--parsable` prints "JOBID" or "JOBID;CLUSTER"
    let job = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    println!(
        "submitted job array {job}: {} worker{} on experiment `{}` (script {}, logs in {})",
        a.workers,
        if a.workers == 1 { "" } else { "s" },
        a.experiment,
        out.display(),
        log_dir.display()
    );
    println!("watch it with: squeue -j {job}; stop it with: scancel {job}");
    Ok(())
}

/// Slurm's `--time` forms: MIN, MIN:SEC, H:M:S, D-H, D-H:M, D-H:M:S, or UNLIMITED.
fn check_time(t: &str) -> Result<()> {
    let ok = t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") || {
        let (days, rest) = match t.split_once('-') {
            Some((d, r)) => (Some(d), r),
            None => (None, t),
        };
        let fields: Vec<&str> = rest.split(':').collect();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        days.is_none_or(digits) && fields.len() <= 3 && fields.iter().all(|f| digits(f))
    };
    if ok {
        Ok(())
    } else {
        bail!("--time {t:?} is not a Slurm time (MINUTES, HH:MM:SS, D-HH:MM, ...)")
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

/// One shell word, quoted where needed.
fn quote(s: &str) -> Result<String> {
    shlex::try_quote(s)
        .map(|q| q.into_owned())
        .map_err(|e| anyhow!("cannot put {s:?} in a job script: {e}"))
}

fn path_word(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| anyhow!("the path {} is not UTF-8", p.display()))?;
    quote(s)
}

/// The sbatch script: one array task per worker, each a long-lived `fnas worker`.
fn job_script(
    a: &SlurmArgs,
    fnas: &Path,
    store: &str,
    log_dir: &Path,
    data_dir: Option<&Path>,
) -> Result<String> {
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(s, "# fnas workers for experiment `{}`", a.experiment);
    let _ = writeln!(
        s,
        "# written by `fnas slurm`; submit with: sbatch THIS_FILE"
    );
    // #SBATCH lines are not parsed by a shell: names are kept to safe characters
    let job_name: String = a
        .experiment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let _ = writeln!(s, "#SBATCH --job-name=fnas-{job_name}");
    let _ = writeln!(s, "#SBATCH --array=0-{}", a.workers - 1);
    let _ = writeln!(s, "#SBATCH --ntasks=1");
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", a.cpus_per_worker);
    if a.gpus_per_worker > 0 {
        let _ = writeln!(s, "#SBATCH --gres=gpu:{}", a.gpus_per_worker);
    }
    if let Some(t) = &a.time {
        let _ = writeln!(s, "#SBATCH --time={t}");
    }
    if let Some(p) = &a.partition {
        if !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,".contains(c))
        {
            bail!("--partition {p:?} is not a partition name");
        }
        let _ = writeln!(s, "#SBATCH --partition={p}");
    }
    let logs = log_dir
        .to_str()
        .filter(|l| !l.contains(char::is_whitespace))
        .ok_or_else(|| {
            anyhow!(
                "the log folder {} must be a UTF-8 path without spaces (sbatch reads it unquoted)",
                log_dir.display()
            )
        })?;
    let _ = writeln!(s, "#SBATCH --output={logs}/fnas-worker-%A_%a.log");
    s.push_str("set -euo pipefail\n");
    // one child trains on the cores Slurm gave the task
    let _ = writeln!(
        s,
        "export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{}}}\"",
        a.cpus_per_worker
    );
    let mut cmd = vec![
        path_word(fnas)?,
        "worker".into(),
        "--store".into(),
        quote(store)?,
        "--experiment".into(),
        quote(&a.experiment)?,
        "--lease-seconds".into(),
        a.lease_seconds.to_string(),
    ];
    if let Some(d) = data_dir {
        cmd.push("--data-dir".into());
        cmd.push(path_word(d)?);
    }
    let _ = writeln!(s, "exec {}", cmd.join(" "));
    Ok(s)
}

/// Writes the script through a temporary file, executable.
fn write_script(out: &Path, script: &str) -> Result<()> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, script).with_context(|| format!("cannot write {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", tmp.display()))?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_are_checked() {
        for t in ["30", "1:00:00", "2-12", "2-12:30", "0:30", "UNLIMITED"] {
            assert!(check_time(t).is_ok(), "{t}");
        }
        for t in ["", "1h", "1:2:3:4", "x-1", "1-", "-5"] {
            assert!(check_time(t).is_err(), "{t}");
        }
    }
}
