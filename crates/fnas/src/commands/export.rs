//! `fnas export`: parses, calls [`fnas_run::export`] and reports what it wrote.

use anyhow::{Context, Result};
use fnas_run::{ExportOptions, TrialChoice};

use crate::cli::ExportArgs;

pub fn run(a: ExportArgs) -> Result<()> {
    let trial = match a.trial {
        Some(id) => TrialChoice::Id(id),
        None => TrialChoice::Best,
    };
    let report = fnas_run::export(&ExportOptions {
        store: &a.store.store,
        data_dir: a.data_dir.as_deref(),
        experiment: &a.experiment,
        trial,
        out: &a.out,
        force: a.force,
        check_logits: a.check_logits.as_ref().map(|_| a.check_images),
    })?;
    if let Some(req) = report.requested {
        eprintln!(
            "trial {req} is cached: exported trial {}, whose result it reused",
            report.trial
        );
    }
    if !report.trained {
        eprintln!(
            "tabular-benchmark trial: exported the architecture and its benchmark record only \
             (a table row has no weights)"
        );
    }
    if let (Some(path), Some(logits)) = (&a.check_logits, &report.logits) {
        std::fs::write(path, serde_json::to_string(logits)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "exported trial {} of {} to {}: {}",
        report.trial,
        a.experiment,
        a.out.display(),
        report.files.join(", ")
    );
    Ok(())
}
