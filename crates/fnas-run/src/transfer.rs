//! Architecture knowledge from earlier experiments of the same store, for pre-training
//! a critic (`--transfer-from`).

use fnas_core::store::TrialSource;
use fnas_core::{Architecture, SearchSpace, Store};
use fnas_learn::transfer::SourcePoints;

use crate::error::{invalid, Result};
use crate::settings::TransferSource;

/// Per-task normalised (architecture, z-score) points for the critic, from earlier
/// searches, one list per source experiment: each source's evaluated rewards are
/// z-scored within that source (and the critic weighs the sources separately).
pub type TransferPoints = Vec<SourcePoints>;

/// Z-scores one source's evaluated rewards (see [`TransferPoints`]).
pub fn normalise_source(points: &[(Architecture, f64)]) -> SourcePoints {
    let rewards: Vec<f64> = points.iter().map(|p| p.1).collect();
    let z = fnas_learn::critic::zscores(&rewards);
    points
        .iter()
        .zip(z)
        .map(|(p, z)| (p.0.clone(), z))
        .collect()
}

/// Architecture knowledge from earlier experiments of the same space in a store:
/// `names` = `None` takes all of them (except `exclude`, the experiment being run).
pub fn transfer_from_store(
    store: &dyn Store,
    space: &SearchSpace,
    names: Option<&[String]>,
    exclude: &str,
) -> Result<(TransferPoints, Vec<TransferSource>)> {
    let mut points = Vec::new();
    let mut sources = Vec::new();
    let experiments = store.list_experiments()?;
    if let Some(names) = names {
        for n in names {
            if !experiments.iter().any(|e| &e.experiment.spec.name == n) {
                invalid!("--transfer-from: no experiment `{n}` in the store (see `fnas ls`)");
            }
        }
    }
    for e in experiments {
        let spec = &e.experiment.spec;
        let wanted = names.is_none_or(|n| n.contains(&spec.name));
        if !wanted || spec.name == exclude {
            continue;
        }
        if spec.space != space.name() {
            if names.is_some() {
                invalid!(
                    "--transfer-from: experiment `{}` searched space {}, not {}",
                    spec.name,
                    spec.space,
                    space.name()
                );
            }
            continue;
        }
        let mut own = Vec::new();
        for t in store.trials(e.experiment.id)? {
            if t.source != Some(TrialSource::Evaluated) {
                continue;
            }
            // a non-finite reward (a store written by an older build) would poison the
            // source's z-scores
            let r = t.reward.filter(|r| r.is_finite());
            if let (Some(r), Ok(a)) = (r, space.parse(&t.arch)) {
                own.push((a, r));
            }
        }
        if own.len() < 2 {
            continue;
        }
        sources.push(TransferSource {
            experiment: spec.name.clone(),
            task: spec.task.clone(),
            points: own.len(),
        });
        points.push(normalise_source(&own));
    }
    Ok((points, sources))
}

/// The points of the sources recorded with an experiment (so a resumed search, or one
/// rebuilt after a reconnect, transfers the same).
pub fn recorded_points(
    store: &dyn Store,
    space: &SearchSpace,
    sources: &[TransferSource],
    experiment: &str,
) -> Result<TransferPoints> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = sources.iter().map(|t| t.experiment.clone()).collect();
    Ok(transfer_from_store(store, space, Some(&names), experiment)?.0)
}
