//! Continuing a recorded search: finding it from the user's options, and preparing it
//! with its stored settings (the options that differ are reported, not applied; only
//! the budget may change).

use std::path::Path;

use fnas_core::store::Experiment;
use fnas_core::Store;

use crate::error::{invalid, Result};
use crate::new_search::{default_name, SearchOptions, TaskOptions};
use crate::prepare::{prepare, settings_of, PrepareOptions, PreparedSearch};
use crate::stores;

/// The experiment a resume names, if it exists: by `name`, else by the default name of
/// `strategy`, `seed` and the task. `Ok(None)`: start it (it does not exist, but the
/// task is given); an error if neither.
pub fn find_resumable(
    store: &Path,
    name: Option<&str>,
    strategy: &str,
    seed: u64,
    task: &TaskOptions,
) -> Result<Option<(Box<dyn Store>, Experiment)>> {
    let key = task.key();
    let name = match (name, &key) {
        (Some(n), _) => n.to_string(),
        (None, Some((b, d))) => default_name(strategy, b, d, seed),
        (None, None) => {
            invalid!("--resume needs --name EXP (see `fnas ls`) or the task options of the search")
        }
    };
    if !stores::is_url(store) && !store.exists() && key.is_some() {
        return Ok(None);
    }
    let opened = stores::open(store)?;
    match opened.experiment(&name)? {
        Some(exp) => Ok(Some((opened, exp))),
        None if key.is_some() => Ok(None),
        None => invalid!(
            "no experiment `{name}` in {} to resume; give the task options (--task, or --benchmark/--dataset) to start it",
            store.display()
        ),
    }
}

/// A recorded search prepared to continue.
pub struct Resumed {
    pub search: PreparedSearch,
    /// The options that differ from the stored settings, which win (see
    /// [`SearchOptions::ignored_on_resume`]).
    pub ignored: Vec<String>,
    /// The budget changed by the options: (old, new); already recorded in the store and
    /// in the experiment.
    pub budget_changed: Option<(u64, u64)>,
}

/// Prepares `experiment` to continue with its stored settings; a budget in `options`
/// replaces the stored one (a finished search is extended: it continues as a search
/// started with that budget would have).
pub fn resume(
    store: &mut dyn Store,
    experiment: &mut Experiment,
    options: &SearchOptions,
    opts: PrepareOptions,
) -> Result<Resumed> {
    let settings = settings_of(experiment)?;
    let new_budget = options.resumed_budget(&settings, &experiment.spec.name)?;
    let mut search = prepare(&*store, experiment, opts)?;
    let ignored = options.ignored_on_resume(&settings);
    let old = experiment.spec.budget;
    let budget_changed = match new_budget.filter(|b| *b != old) {
        Some(budget) => {
            store.set_experiment_budget(experiment.id, budget)?;
            store.set_experiment_status(experiment.id, "running")?;
            experiment.spec.budget = budget;
            search.config.budget = budget;
            Some((old, budget))
        }
        None => None,
    };
    Ok(Resumed {
        search,
        ignored,
        budget_changed,
    })
}
