//! `fnas report`: the HTML report of a store's experiments (see [`crate::report`]).

use anyhow::Result;

use crate::cli::ReportArgs;

pub fn run(a: ReportArgs) -> Result<()> {
    let store = fnas_run::stores::open_read_only(&a.store.store)?;
    let shown = match a.store.store.to_str() {
        Some(s) if fnas_run::stores::is_url(&a.store.store) => fnas_store::postgres::redact(s),
        _ => a.store.store.display().to_string(),
    };
    crate::report::write(store.as_ref(), &shown, &a.experiments, &a.out, a.top.max(1))?;
    println!("wrote {}", a.out.display());
    Ok(())
}
