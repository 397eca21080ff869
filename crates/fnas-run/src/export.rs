//! Exports one trial of a recorded experiment into a folder (`fnas export`): for a
//! real-training trial the architecture, its layer plan, the trained weights under
//! PyTorch's parameter names, a standalone `model.py` and the task's preprocessing; for
//! a tabular-benchmark trial the architecture and its benchmark record only (a table
//! row has no weights). See [`fnas_child::export`] for the files.

use std::path::{Path, PathBuf};

use fnas_child::export::{self as child, Preprocess};
use fnas_core::store::{Trial, TrialId, TrialSource, TrialStatus};
use fnas_core::Evaluator;

use crate::error::RunError;
use crate::prepare::settings_of;
use crate::target::{target, Target};

/// Which trial to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialChoice {
    /// The evaluated trial with the best reward (ties: the earlier one).
    Best,
    Id(TrialId),
}

/// What [`export`] needs.
pub struct ExportOptions<'a> {
    pub store: &'a Path,
    /// The benchmark data (see [`fnas_bench::resolve_data_dir`]).
    pub data_dir: Option<&'a Path>,
    pub experiment: &'a str,
    pub trial: TrialChoice,
    pub out: &'a Path,
    /// Replace a non-empty output folder.
    pub force: bool,
    /// Also compute the logits of the first N test (t10k) images with the loaded
    /// network, for checking an export against another framework.
    pub check_logits: Option<usize>,
}

/// What was exported.
#[derive(Debug)]
pub struct ExportReport {
    /// The trial whose result was exported.
    pub trial: TrialId,
    /// The cached trial that was asked for, when its original was exported instead.
    pub requested: Option<TrialId>,
    pub arch: String,
    /// Trained weights were exported (false: a benchmark record only).
    pub trained: bool,
    /// File names written into the output folder.
    pub files: Vec<String>,
    /// Logits of the first test images (with [`ExportOptions::check_logits`]).
    pub logits: Option<Vec<Vec<f32>>>,
}

/// Why an export was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no experiment `{experiment}` in {store} (see `fnas ls`)")]
    NoExperiment { experiment: String, store: String },
    #[error("experiment `{experiment}` has no trial {trial}")]
    NoTrial { experiment: String, trial: TrialId },
    #[error("experiment `{0}` has no evaluated trial to export")]
    NoBest(String),
    /// The trial has no result of its own to export.
    #[error("trial {trial} cannot be exported: {reason}")]
    NotExportable { trial: TrialId, reason: String },
    #[error("trial {trial}: weights file {} not found (were the artifacts moved?)", path.display())]
    MissingWeights { trial: TrialId, path: PathBuf },
    /// The saved weights could not be loaded into the trial's network.
    #[error("trial {trial}: {message}")]
    Load { trial: TrialId, message: String },
    #[error(transparent)]
    Write(#[from] child::ExportError),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<fnas_core::StoreError> for ExportError {
    fn from(e: fnas_core::StoreError) -> Self {
        ExportError::Run(e.into())
    }
}

/// The trial to export: `choice`, or for a cached trial the one whose result it reused.
/// Failed, pending and critic-trusted trials have no weights (nor a measured record).
fn pick<'t>(
    trials: &'t [Trial],
    experiment: &str,
    choice: TrialChoice,
) -> Result<(&'t Trial, Option<TrialId>), ExportError> {
    let evaluated = |t: &&Trial| {
        t.status == TrialStatus::Done
            && t.source == Some(TrialSource::Evaluated)
            && t.reward.is_some()
    };
    let t = match choice {
        TrialChoice::Best => trials
            .iter()
            .filter(evaluated)
            .min_by(|a, b| {
                b.reward
                    .unwrap_or(f64::MIN)
                    .total_cmp(&a.reward.unwrap_or(f64::MIN))
                    .then(a.id.cmp(&b.id))
            })
            .ok_or_else(|| ExportError::NoBest(experiment.to_string()))?,
        TrialChoice::Id(id) => {
            trials
                .iter()
                .find(|t| t.id == id)
                .ok_or_else(|| ExportError::NoTrial {
                    experiment: experiment.to_string(),
                    trial: id,
                })?
        }
    };
    let refuse = |reason: String| ExportError::NotExportable {
        trial: t.id,
        reason,
    };
    match (t.status, t.source) {
        (TrialStatus::Done, Some(TrialSource::Evaluated)) => Ok((t, None)),
        (TrialStatus::Done, Some(TrialSource::Cached)) => trials
            .iter()
            .filter(evaluated)
            .find(|o| o.canonical == t.canonical)
            .map(|o| (o, Some(t.id)))
            .ok_or_else(|| refuse("it is cached and the trial it reused is not found".into())),
        (TrialStatus::Done, Some(TrialSource::Critic)) => Err(refuse(
            "it was trusted by the critic, never trained (no weights of its own)".into(),
        )),
        (TrialStatus::Done, None) => Err(refuse("it records no result source".into())),
        (TrialStatus::Failed, _) => Err(refuse(format!(
            "it failed ({})",
            t.error.as_deref().unwrap_or("no reason recorded")
        ))),
        (TrialStatus::Pending, _) => Err(refuse("it has not finished".into())),
    }
}

/// Writes the export of one trial into `opts.out` (see the module docs). Nothing is
/// written unless everything succeeds.
pub fn export(opts: &ExportOptions) -> Result<ExportReport, ExportError> {
    // refuse a bad output before loading any data
    child::check_output(opts.out, opts.force)?;
    let store = crate::stores::open_read_only(opts.store)?;
    let exp = store
        .experiment(opts.experiment)?
        .ok_or_else(|| ExportError::NoExperiment {
            experiment: opts.experiment.to_string(),
            store: opts.store.display().to_string(),
        })?;
    let trials = store.trials(exp.id)?;
    let (trial, requested) = pick(&trials, opts.experiment, opts.trial)?;
    let settings = settings_of(&exp)?;
    let record = serde_json::json!({
        "experiment": exp.spec.name,
        "task": exp.spec.task,
        "space": exp.spec.space,
        "trial": trial.id,
        "arch": trial.arch,
        "canonical": trial.canonical,
        "reward": trial.reward,
        "metrics": trial.metrics,
        "cost": trial.cost,
    });
    let mut report = ExportReport {
        trial: trial.id,
        requested,
        arch: trial.arch.clone(),
        trained: settings.training.is_some(),
        files: Vec::new(),
        logits: None,
    };
    if settings.training.is_none() {
        report.files = vec!["arch.txt".into(), "record.json".into()];
        child::publish(opts.out, opts.force, |dir| {
            write(dir, "arch.txt", format!("{}\n", trial.arch))?;
            write(dir, "record.json", pretty(&record)?)
        })?;
        return Ok(report);
    }
    let Target::Train(ev) = target(
        &settings,
        opts.store,
        opts.data_dir,
        &exp.spec.name,
        exp.spec.seed,
    )?
    else {
        return Err(
            RunError::invalid("a real-training experiment without a training evaluator").into(),
        );
    };
    let arch = ev.space().parse(&trial.arch).map_err(RunError::from)?;
    let weights = ev
        .weights_path(&arch)
        .ok_or_else(|| RunError::invalid("the experiment has no weights folder"))?;
    if !weights.is_file() {
        return Err(ExportError::MissingWeights {
            trial: trial.id,
            path: weights,
        });
    }
    let load = |e: fnas_core::EvalError| ExportError::Load {
        trial: trial.id,
        message: e.to_string(),
    };
    let recorded = trial
        .metrics
        .as_ref()
        .and_then(|m| m.extra.get(fnas_child::evaluator::WEIGHTS_CHECKSUM_KEY))
        .copied();
    fnas_child::evaluator::verify_weights(&weights, recorded).map_err(|message| {
        ExportError::Load {
            trial: trial.id,
            message,
        }
    })?;
    let (plan, net) = ev.load_saved(&arch).map_err(load)?;
    let state = child::torch_state(&net)?;
    let preprocess = Preprocess::of(ev.data());
    let model_py = child::model_py(&plan)?;
    if let Some(n) = opts.check_logits {
        let test = ev.data().test().map_err(|e| ExportError::Load {
            trial: trial.id,
            message: format!("loading the test images: {e}"),
        })?;
        report.logits = Some(child::logits(&net, test, n, &ev.settings().device)?);
    }
    report.files = [
        "arch.txt",
        "plan.json",
        "weights.safetensors",
        "model.py",
        "preprocess.json",
        "record.json",
    ]
    .map(String::from)
    .to_vec();
    child::publish(opts.out, opts.force, |dir| {
        write(
            dir,
            "arch.txt",
            format!("{}\n# {}\n", trial.arch, plan.describe()),
        )?;
        write(dir, "plan.json", pretty(&plan)?)?;
        child::write_safetensors(&state, &dir.join("weights.safetensors"))?;
        write(dir, "model.py", model_py.clone())?;
        write(dir, "preprocess.json", pretty(&preprocess)?)?;
        write(dir, "record.json", pretty(&record)?)
    })?;
    Ok(report)
}

fn pretty(v: &impl serde::Serialize) -> Result<String, child::ExportError> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

fn write(dir: &Path, name: &str, text: String) -> Result<(), child::ExportError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| child::ExportError::Io { path, source })
}
