//! [`SqlitePool`]: the architecture knowledge pool ([`fnas_core::pool`]) kept beside a
//! store. Index rows live in the store file's `pool_entries` table (schema v3), each
//! part's tensors in one safetensors file (F32, little-endian) in the folder
//! `<store>.pool/` (`runs.db` -> `runs.db.pool/`).
//!
//! # Atomic inserts
//!
//! [`BlockPool::insert`] validates everything first, then writes each part's file as
//! `NAME.tmp`, syncs it and renames it to `NAME`, syncs the folder, and only then inserts
//! every row of the call in one `BEGIN IMMEDIATE` transaction. Any failure removes the
//! files this call wrote. So an index row never exists without its complete file; a
//! crash leaves at most files without a row (orphans), which nothing ever reads.
//!
//! # Cleanup
//!
//! [`SqlitePool::open`] removes `*.tmp` files and orphan `*.safetensors` files older than
//! [`ORPHAN_GRACE`] (10 minutes): a younger one may belong to another process that is
//! between writing and indexing it. The cleaner decides and deletes while holding the
//! store's write lock, and an insert checks its files still exist inside its own write
//! transaction, so a stalled insert whose files were cleaned fails instead of indexing a
//! missing file. Other files in the folder are left alone.
//!
//! # Eviction
//!
//! With a limit (`max_bytes > 0`), every insert ends by evicting whole networks (all rows
//! with the same `experiment` and `arch`) while the sum of `bytes` over the pool exceeds
//! the limit: the least recently used network first (smallest `max(last_used)`; an
//! entry's `last_used` is its insertion time until [`BlockPool::touch`] renews it), ties
//! broken towards the lower best `val_accuracy`, then the older network (smaller id).
//! The network just inserted is never evicted, even when it alone exceeds the limit.
//! A network's rows are deleted in one transaction, then its files. An eviction that
//! fails (e.g. the store stayed locked) does not fail the insert, whose rows are already
//! committed; the next insert applies the limit again.
//!
//! # Concurrency
//!
//! Each pool holds its own connection (WAL, `synchronous = FULL`, waits up to
//! [`POOL_BUSY_TIMEOUT`] for the write lock), so several pools, threads and processes
//! can share one store file with a running search. Another pool may evict an entry after
//! this one listed it: [`BlockPool::load`] then reports it as [`PoolError::Corrupt`]
//! (missing file), which a caller treats like an entry that is not there.

use std::collections::HashSet;
use std::fmt::Display;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fnas_core::pool::{BlockConfig, BlockPool, PoolEntry, PoolError, PoolPart, PoolTensor};
use rusqlite::{params, Connection, OpenFlags, Row, TransactionBehavior};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::SqliteStore;

/// How long a pool connection waits for another connection's write lock. Longer than
/// the store's: a pool write may wait behind another process's eviction.
pub const POOL_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Age after which a `*.tmp` file or a file without an index row is removed on open.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(600);

const TENSOR_SUFFIX: &str = ".safetensors";
const TMP_SUFFIX: &str = ".tmp";

/// Makes file names unique within the process (the pid and time do across processes).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The columns `entry_from_row` reads, in order.
const ENTRY_COLUMNS: &str = "id, space, part, position, config, resolution, task, classes, \
     experiment, arch, budget_images, val_accuracy, file, bytes, created_at";

/// Size of the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Index rows.
    pub entries: u64,
    /// Distinct `(experiment, arch)` pairs.
    pub networks: u64,
    /// Sum of the entries' file sizes.
    pub bytes: u64,
}

/// The knowledge pool of one store file (see the module docs).
pub struct SqlitePool {
    conn: Mutex<Connection>,
    dir: PathBuf,
    /// The store file, as shown in errors.
    db: String,
    max_bytes: u64,
}

impl std::fmt::Debug for SqlitePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlitePool")
            .field("db", &self.db)
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path, e: impl Display) -> PoolError {
    PoolError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn corrupt(id: i64, message: impl Display) -> PoolError {
    PoolError::Corrupt {
        id,
        message: message.to_string(),
    }
}

fn invalid(message: impl Display) -> PoolError {
    PoolError::Invalid(message.to_string())
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Syncs a folder so that renames and removals in it are durable.
fn sync_dir(dir: &Path) -> Result<(), PoolError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, format!("cannot sync the folder: {e}")))
}

/// `true` for a bare file name (no folder part, not `.`/`..`): what the index holds.
fn is_plain_name(name: &str) -> bool {
    let mut c = Path::new(name).components();
    matches!(
        (c.next(), c.next()),
        (Some(std::path::Component::Normal(n)), None) if n == name
    )
}

/// Refuses what the pool could not store faithfully, before anything is written.
fn validate(parts: &[(PoolEntry, Vec<PoolTensor>)]) -> Result<(), PoolError> {
    let Some((first, _)) = parts.first() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    for (i, (e, tensors)) in parts.iter().enumerate() {
        let what = format!("part {i} ({} {})", e.part.as_str(), e.position);
        if e.experiment != first.experiment || e.arch != first.arch {
            return Err(invalid(format!(
                "{what}: one insert holds one network, but its experiment/arch differ from \
                 part 0's"
            )));
        }
        if !seen.insert((e.part, e.position)) {
            return Err(invalid(format!("{what}: the network has it twice")));
        }
        if !e.val_accuracy.is_finite() {
            return Err(invalid(format!(
                "{what}: val_accuracy {} is not finite",
                e.val_accuracy
            )));
        }
        if !e.config.width.is_finite() {
            return Err(invalid(format!(
                "{what}: config width {} is not finite",
                e.config.width
            )));
        }
        let mut names = HashSet::new();
        for t in tensors {
            if t.name.is_empty() || t.name == "__metadata__" {
                return Err(invalid(format!(
                    "{what}: tensor name `{}` is not allowed",
                    t.name
                )));
            }
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!(
                    "{what}: tensor `{}` appears twice",
                    t.name
                )));
            }
            let elements = t
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if elements != Some(t.data.len()) {
                return Err(invalid(format!(
                    "{what}: tensor `{}` has {} values for shape {:?}",
                    t.name,
                    t.data.len(),
                    t.shape
                )));
            }
        }
    }
    Ok(())
}

/// The safetensors bytes of one part (F32, little-endian; no metadata).
fn encode(tensors: &[PoolTensor]) -> Result<Vec<u8>, PoolError> {
    let raw: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&raw)
        .map(|(t, bytes)| {
            TensorView::new(Dtype::F32, t.shape.clone(), bytes).map(|v| (t.name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("cannot encode tensors: {e}")))?;
    safetensors::serialize(views, None).map_err(|e| invalid(format!("cannot encode tensors: {e}")))
}

/// Writes `bytes` to `dir/name` through `name.tmp` (synced, then renamed). `written`
/// receives every path this left on disk, so the caller can remove them on failure.
fn write_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    written: &mut Vec<PathBuf>,
) -> Result<(), PoolError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let path = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, format!("cannot create: {e}")))?;
    written.push(tmp.clone());
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, format!("cannot write: {e}")))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, format!("cannot rename into place: {e}")))?;
    written.pop();
    written.push(path);
    Ok(())
}

impl SqlitePool {
    /// Opens the pool of the store at `store_path` (creating the store, upgrading its
    /// schema and creating the folder `<store_path>.pool/` as needed), with a size limit
    /// of `max_bytes` (0: none), and removes stale leftovers (see the module docs).
    pub fn open(store_path: &Path, max_bytes: u64) -> Result<SqlitePool, PoolError> {
        let db = store_path.display().to_string();
        // runs the migrations, and refuses a file that is not an fnas store
        drop(SqliteStore::open(store_path).map_err(|e| PoolError::Index(e.to_string()))?);
        let ix = |e: rusqlite::Error| PoolError::Index(format!("{db}: {e}"));
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(store_path, flags).map_err(ix)?;
        conn.busy_timeout(POOL_BUSY_TIMEOUT).map_err(ix)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(ix)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(PoolError::Index(format!(
                "{db}: cannot switch to WAL journal (got `{mode}`)"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(ix)?;
        conn.set_prepared_statement_cache_capacity(16);

        let mut dir = store_path.as_os_str().to_owned();
        dir.push(".pool");
        let dir = PathBuf::from(dir);
        match fs::create_dir(&dir) {
            Ok(()) => {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&dir, format!("cannot create the pool folder: {e}"))),
        }
        if !dir.is_dir() {
            return Err(io_err(&dir, "the pool folder is not a directory"));
        }
        let pool = SqlitePool {
            conn: Mutex::new(conn),
            dir,
            db,
            max_bytes,
        };
        pool.clean()?;
        Ok(pool)
    }

    /// The folder holding the tensor files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entries, networks and bytes of the whole pool (all spaces), from one snapshot.
    pub fn stats(&self) -> Result<PoolStats, PoolError> {
        let conn = self.conn();
        let (entries, networks, bytes): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM pool_entries),
                        (SELECT count(*) FROM (SELECT 1 FROM pool_entries
                                                GROUP BY experiment, arch)),
                        (SELECT coalesce(sum(bytes), 0) FROM pool_entries)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.index(e))?;
        Ok(PoolStats {
            entries: entries as u64,
            networks: networks as u64,
            bytes: bytes as u64,
        })
    }

    /// The connection; a panic in another thread cannot leave it mid-transaction (a
    /// dropped transaction rolls back), so a poisoned lock is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn index(&self, e: impl Display) -> PoolError {
        let m = e.to_string();
        let hint = if m.contains("database is locked") || m.contains("database is busy") {
            format!(
                " (another connection held the store for more than {} s)",
                POOL_BUSY_TIMEOUT.as_secs()
            )
        } else {
            String::new()
        };
        PoolError::Index(format!("{}: {m}{hint}", self.db))
    }

    /// Removes `*.tmp` files and unindexed `*.safetensors` files older than
    /// [`ORPHAN_GRACE`], holding the write lock so that no insert indexes a file while it
    /// goes (an insert re-checks its files under the same lock). Returns how many went.
    fn clean(&self) -> Result<usize, PoolError> {
        let Some(cutoff) = SystemTime::now().checked_sub(ORPHAN_GRACE) else {
            return Ok(0);
        };
        let old = |path: &Path| {
            fs::symlink_metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .is_some_and(|t| t <= cutoff)
        };
        let mut candidates = Vec::new();
        let listing = fs::read_dir(&self.dir)
            .map_err(|e| io_err(&self.dir, format!("cannot list the pool folder: {e}")))?;
        for item in listing {
            let item = item.map_err(|e| io_err(&self.dir, format!("cannot list: {e}")))?;
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            if (name.ends_with(TMP_SUFFIX) || name.ends_with(TENSOR_SUFFIX)) && old(&item.path()) {
                candidates.push(name);
            }
        }
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.index(e))?;
        let mut removed = 0;
        {
            let mut stmt = tx
                .prepare("SELECT 1 FROM pool_entries WHERE file = ?1")
                .map_err(|e| self.index(e))?;
            for name in candidates {
                let indexed = name.ends_with(TENSOR_SUFFIX)
                    && stmt.exists([&name]).map_err(|e| self.index(e))?;
                let path = self.dir.join(&name);
                // re-checked: the file may have been replaced since the listing
                if !indexed && old(&path) && fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        tx.commit().map_err(|e| self.index(e))?;
        drop(conn);
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Writes the files of one network, then indexes them in one transaction.
    fn write_and_index(
        &self,
        parts: &[(PoolEntry, Vec<PoolTensor>)],
        written: &mut Vec<PathBuf>,
    ) -> Result<Vec<i64>, PoolError> {
        let now = since_epoch();
        let created_at = now.as_secs_f64();
        let mut rows = Vec::with_capacity(parts.len());
        for (entry, tensors) in parts {
            let bytes = encode(tensors)?;
            let name = format!(
                "{}-{}-{}-{}{}{TENSOR_SUFFIX}",
                now.as_nanos(),
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                entry.part.as_str(),
                entry.position
            );
            write_file(&self.dir, &name, &bytes, written)?;
            let config = serde_json::to_string(&entry.config)
                .map_err(|e| invalid(format!("cannot encode the config: {e}")))?;
            rows.push((entry, config, name, bytes.len() as i64));
        }
        sync_dir(&self.dir)?;

        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.index(e))?;
        let mut ids = Vec::with_capacity(rows.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO pool_entries (space, part, position, config, resolution, task,
                        classes, experiment, arch, budget_images, val_accuracy, file, bytes,
                        created_at, last_used)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
                )
                .map_err(|e| self.index(e))?;
            for (e, config, name, bytes) in &rows {
                // under the write lock: a cleaner cannot remove it from here on
                let path = self.dir.join(name);
                if !path.is_file() {
                    return Err(io_err(&path, "the file vanished before it was indexed"));
                }
                stmt.execute(params![
                    e.space,
                    e.part.as_str(),
                    e.position,
                    config,
                    e.resolution,
                    e.task,
                    e.classes,
                    e.experiment,
                    e.arch,
                    e.budget_images as i64,
                    e.val_accuracy,
                    name,
                    bytes,
                    created_at,
                ])
                .map_err(|e| self.index(e))?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(|e| self.index(e))?;
        Ok(ids)
    }

    /// Applies the size limit (see the module docs); `keep` is the network just
    /// inserted. Returns the number of networks evicted.
    fn evict(&self, keep: (&str, &str)) -> Result<usize, PoolError> {
        if self.max_bytes == 0 {
            return Ok(0);
        }
        let limit = i64::try_from(self.max_bytes).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.index(e))?;
        let networks: Vec<(String, String, i64)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT experiment, arch, sum(bytes) FROM pool_entries
                      GROUP BY experiment, arch
                      ORDER BY max(last_used), max(val_accuracy), min(id)",
                )
                .map_err(|e| self.index(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| self.index(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.index(e))?
        };
        let mut total: i64 = networks.iter().map(|n| n.2).sum();
        let mut files = Vec::new();
        let mut evicted = 0;
        for (experiment, arch, bytes) in &networks {
            if total <= limit {
                break;
            }
            if (experiment.as_str(), arch.as_str()) == keep {
                continue;
            }
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM pool_entries WHERE experiment = ?1 AND arch = ?2 RETURNING file",
                )
                .map_err(|e| self.index(e))?;
            let gone = stmt
                .query_map([experiment, arch], |r| r.get::<_, String>(0))
                .map_err(|e| self.index(e))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.index(e))?;
            files.extend(gone);
            total -= bytes;
            evicted += 1;
        }
        if evicted == 0 {
            return Ok(0);
        }
        tx.commit().map_err(|e| self.index(e))?;
        drop(conn);
        // rows first, files second: a crash in between leaves only orphans
        for name in files.iter().filter(|n| is_plain_name(n)) {
            let _ = fs::remove_file(self.dir.join(name));
        }
        sync_dir(&self.dir)?;
        Ok(evicted)
    }

    fn entry_from_row(&self, r: &Row<'_>) -> Result<PoolEntry, PoolError> {
        let id: i64 = r.get(0).map_err(|e| self.index(e))?;
        let bad = |column: &str, e: &dyn Display| corrupt(id, format!("bad {column}: {e}"));
        macro_rules! col {
            ($i:expr, $name:expr) => {
                r.get($i).map_err(|e| bad($name, &e))?
            };
        }
        let part: String = col!(2, "part");
        let part = PoolPart::parse(&part).ok_or_else(|| bad("part", &part))?;
        let config: String = col!(4, "config");
        let config: BlockConfig =
            serde_json::from_str(&config).map_err(|e| bad("config JSON", &e))?;
        let budget_images: i64 = col!(10, "budget_images");
        let bytes: i64 = col!(13, "bytes");
        Ok(PoolEntry {
            id,
            space: col!(1, "space"),
            part,
            position: col!(3, "position"),
            config,
            resolution: col!(5, "resolution"),
            task: col!(6, "task"),
            classes: col!(7, "classes"),
            experiment: col!(8, "experiment"),
            arch: col!(9, "arch"),
            budget_images: budget_images as u64,
            val_accuracy: col!(11, "val_accuracy"),
            file: col!(12, "file"),
            bytes: u64::try_from(bytes).map_err(|e| bad("bytes", &e))?,
            created_at: col!(14, "created_at"),
        })
    }
}

impl BlockPool for SqlitePool {
    fn insert(&self, parts: Vec<(PoolEntry, Vec<PoolTensor>)>) -> Result<Vec<i64>, PoolError> {
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        validate(&parts)?;
        let mut written = Vec::new();
        let ids = match self.write_and_index(&parts, &mut written) {
            Ok(ids) => ids,
            Err(e) => {
                for path in &written {
                    let _ = fs::remove_file(path);
                }
                return Err(e);
            }
        };
        // the insert is committed whatever happens here (see the module docs)
        let (first, _) = &parts[0];
        let _ = self.evict((&first.experiment, &first.arch));
        Ok(ids)
    }

    fn entries(&self, space: &str) -> Result<Vec<PoolEntry>, PoolError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM pool_entries WHERE space = ?1 ORDER BY id"
            ))
            .map_err(|e| self.index(e))?;
        let mut rows = stmt.query([space]).map_err(|e| self.index(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.index(e))? {
            out.push(self.entry_from_row(row)?);
        }
        Ok(out)
    }

    fn load(&self, entry: &PoolEntry) -> Result<Vec<PoolTensor>, PoolError> {
        let id = entry.id;
        if !is_plain_name(&entry.file) {
            return Err(corrupt(
                id,
                format!(
                    "file `{}` is not a name inside {}",
                    entry.file,
                    self.dir.display()
                ),
            ));
        }
        let path = self.dir.join(&entry.file);
        let shown = path.display();
        let bytes = fs::read(&path).map_err(|e| corrupt(id, format!("{shown}: {e}")))?;
        if entry.bytes != 0 && bytes.len() as u64 != entry.bytes {
            return Err(corrupt(
                id,
                format!(
                    "{shown}: {} bytes, the index says {}",
                    bytes.len(),
                    entry.bytes
                ),
            ));
        }
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| corrupt(id, format!("{shown}: not a safetensors file: {e}")))?;
        let mut out = Vec::with_capacity(st.len());
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(corrupt(
                    id,
                    format!("{shown}: tensor `{name}` is {:?}, not F32", view.dtype()),
                ));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            out.push(PoolTensor {
                name,
                shape: view.shape().to_vec(),
                data,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn touch(&self, ids: &[i64]) -> Result<(), PoolError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = since_epoch().as_secs_f64();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.index(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE pool_entries SET last_used = max(last_used, ?1) WHERE id = ?2",
                )
                .map_err(|e| self.index(e))?;
            for id in ids {
                stmt.execute(params![now, id]).map_err(|e| self.index(e))?;
            }
        }
        tx.commit().map_err(|e| self.index(e))
    }
}
