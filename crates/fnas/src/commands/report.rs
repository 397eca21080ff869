//! `fnas report`: the HTML report of a store's experiments (see [`crate::report`]).

use anyhow::Result;

use crate::cli::ReportArgs;

pub fn run(a: ReportArgs) -> Result<()> {
    if !a.bench.is_empty() {
        if !a.experiments.is_empty() {
            anyhow::bail!("--bench reports bench files; name experiments without --bench");
        }
        crate::report::write_bench(&a.bench, &a.out)?;
        println!("wrote {}", a.out.display());
        return Ok(());
    }
    let store = fnas_run::stores::open_read_only(&a.store.store)?;
    let shown = match a.store.store.to_str() {
        Some(s) if fnas_run::stores::is_url(&a.store.store) => fnas_store::postgres::redact(s),
        _ => a.store.store.display().to_string(),
    };
    crate::report::write(store.as_ref(), &shown, &a.experiments, &a.out, a.top.max(1))?;
    println!("wrote {}", a.out.display());
    Ok(())
}
