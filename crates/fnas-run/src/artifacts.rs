//! Where a real-training search keeps its files: each trained child's weights and the
//! knowledge pool's tensors. With a SQLite store they sit beside the store file by
//! default (`STORE.weights/EXP/`, `STORE.pool/`); a PostgreSQL store has no file to sit
//! beside, so its experiments record an artifacts folder (`--artifacts DIR`, on a file
//! system every worker mounts: `DIR/weights/EXP/`, `DIR/pool/`). Children trained by a
//! trial command get a trial folder each (`STORE.trials/EXP/HASH/`, `DIR/trials/EXP/HASH/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fnas_core::pool::BlockPool;

use crate::error::{invalid, Context, Result};

/// The artifacts layout of one store.
#[derive(Clone, Debug)]
pub struct Artifacts {
    store: PathBuf,
    root: Option<PathBuf>,
}

impl Artifacts {
    /// The layout of `store` with the experiment's recorded folder (`None`: beside a
    /// SQLite store; refused for a PostgreSQL store).
    pub fn new(store: &Path, root: Option<&Path>) -> Result<Self> {
        if root.is_none() && crate::stores::is_url(store) {
            invalid!(
                "a real-training search on a PostgreSQL store needs --artifacts DIR: a folder on a file system every worker mounts, for the trained weights and the knowledge pool"
            );
        }
        Ok(Self {
            store: store.to_path_buf(),
            root: root.map(Path::to_path_buf),
        })
    }

    /// The folder given with `--artifacts`, made absolute (workers on other machines
    /// and in other folders read it from the store), and checked.
    pub fn choose(dir: &Path) -> Result<PathBuf> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .context_with(|| format!("artifacts folder {}: cannot create it", dir.display()))?;
        }
        let abs = std::path::absolute(dir)
            .context_with(|| format!("artifacts folder {}: cannot resolve it", dir.display()))?;
        check_writable(&abs)?;
        Ok(abs)
    }

    /// Fails fast, before a worker claims anything, when the folder is missing or not
    /// writable here (a worker on a machine that does not mount it).
    pub fn check(&self) -> Result<()> {
        match &self.root {
            Some(r) => check_writable(r),
            None => Ok(()),
        }
    }

    /// The folder a search's trained weights go to.
    pub fn weights_dir(&self, experiment: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join("weights").join(experiment),
            None => {
                let mut name = self.store.file_name().unwrap_or_default().to_os_string();
                name.push(".weights");
                self.store.with_file_name(name).join(experiment)
            }
        }
    }

    /// The folder of a search's trial folders (children trained by a trial command).
    pub fn trials_dir(&self, experiment: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join("trials").join(experiment),
            None => {
                let mut name = self.store.file_name().unwrap_or_default().to_os_string();
                name.push(".trials");
                self.store.with_file_name(name).join(experiment)
            }
        }
    }

    /// The knowledge pool: its index in the store, its tensors in the pool folder.
    pub fn pool(&self, max_bytes: u64) -> Result<Arc<dyn BlockPool>> {
        let shown = self.store.display();
        match (
            &self.root,
            self.store
                .to_str()
                .filter(|s| crate::stores::is_url(Path::new(s))),
        ) {
            (Some(r), Some(url)) => Ok(Arc::new(
                fnas_store::PgPool::connect(url, &r.join("pool"), max_bytes).context_with(
                    || {
                        format!(
                            "opening the knowledge pool of {}",
                            fnas_store::postgres::redact(url)
                        )
                    },
                )?,
            )),
            (Some(r), None) => Ok(Arc::new(
                fnas_store::SqlitePool::open_in(&self.store, &r.join("pool"), max_bytes)
                    .context_with(|| format!("opening the knowledge pool of {shown}"))?,
            )),
            (None, _) => Ok(Arc::new(
                fnas_store::SqlitePool::open(&self.store, max_bytes)
                    .context_with(|| format!("opening the knowledge pool of {shown}"))?,
            )),
        }
    }
}

/// A folder this process can create files in.
fn check_writable(dir: &Path) -> Result<()> {
    let hint = "it must be a folder that every worker can write, e.g. on a shared file system";
    let meta = std::fs::metadata(dir).context_with(|| {
        format!(
            "artifacts folder {}: cannot reach it ({hint})",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        invalid!("artifacts folder {}: not a folder", dir.display());
    }
    let probe = dir.join(format!(".fnas-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .context_with(|| {
            format!(
                "artifacts folder {}: cannot write in it ({hint})",
                dir.display()
            )
        })
}
