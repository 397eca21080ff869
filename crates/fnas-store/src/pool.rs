//! [`SqlitePool`]: the architecture knowledge pool ([`fnas_core::pool`]) kept beside a
//! store. Index rows live in the store file's `pool_entries` table (schema v3), each
//! part's tensors in one safetensors file (F32, little-endian) in the folder
//! `<store>.pool/` (`runs.db` -> `runs.db.pool/`), or in the folder given to
//! [`SqlitePool::open_in`]. The file side (checks, encoding, durable writes, cleanup
//! listing) is shared with [`PgPool`](crate::PgPool) in `pool_files`; what follows is
//! the same for both, with SQLite's write lock where `PgPool` takes an advisory lock.
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
//! [`SqlitePool::open`] removes `*.tmp` files and orphan `*.safetensors` files older
//! than [`ORPHAN_GRACE`](crate::ORPHAN_GRACE) (10 minutes): a younger one may belong to
//! another process that is between writing and indexing it. The cleaner decides and deletes while holding the
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

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fnas_core::pool::{BlockPool, PoolEntry, PoolError, PoolTensor};
use rusqlite::{params, Connection, OpenFlags, Row, TransactionBehavior};

use crate::pool_files::{self, since_epoch, RawEntry, Stale, Written};
use crate::SqliteStore;

/// How long a pool connection waits for another connection's write lock. Longer than
/// the store's: a pool write may wait behind another process's eviction.
pub const POOL_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The columns `entry_from_row` reads, in order.
const ENTRY_COLUMNS: &str = "id, space, part, position, config, resolution, task, classes, \
     experiment, arch, budget_images, val_accuracy, file, bytes, created_at, sha256";

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

impl SqlitePool {
    /// Opens the pool of the store at `store_path` (creating the store, upgrading its
    /// schema and creating the folder `<store_path>.pool/` as needed), with a size limit
    /// of `max_bytes` (0: none), and removes stale leftovers (see the module docs).
    pub fn open(store_path: &Path, max_bytes: u64) -> Result<SqlitePool, PoolError> {
        let mut dir = store_path.as_os_str().to_owned();
        dir.push(".pool");
        Self::open_in(store_path, Path::new(&dir), max_bytes)
    }

    /// [`SqlitePool::open`] with the tensor files in `dir` (created with its missing
    /// parents) instead of `<store_path>.pool/`: for a search whose artifacts live in a
    /// folder of their own. Every pool of one store must use the same folder, since the
    /// index names files relative to it.
    pub fn open_in(store_path: &Path, dir: &Path, max_bytes: u64) -> Result<SqlitePool, PoolError> {
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

        pool_files::ensure_dir(dir)?;
        let pool = SqlitePool {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
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

    /// Removes stale leftovers ([`Stale`]), holding the write lock so that no insert
    /// indexes a file while it goes (an insert re-checks its files under the same
    /// lock). Returns how many went.
    fn clean(&self) -> Result<usize, PoolError> {
        let Some(stale) = Stale::list(&self.dir)? else {
            return Ok(0);
        };
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.index(e))?;
        let removed = {
            let mut stmt = tx
                .prepare("SELECT 1 FROM pool_entries WHERE file = ?1")
                .map_err(|e| self.index(e))?;
            stale.remove_unindexed(|name| stmt.exists([name]).map_err(|e| self.index(e)))?
        };
        tx.commit().map_err(|e| self.index(e))?;
        drop(conn);
        if removed > 0 {
            pool_files::sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Indexes the files of one network (already written) in one transaction.
    fn index_rows(&self, rows: &[Written<'_>]) -> Result<Vec<i64>, PoolError> {
        let created_at = since_epoch().as_secs_f64();
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
                        created_at, last_used, sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15)",
                )
                .map_err(|e| self.index(e))?;
            for row in rows {
                // under the write lock: a cleaner cannot remove it from here on
                row.check_present(&self.dir)?;
                let e = row.entry;
                stmt.execute(params![
                    e.space,
                    e.part.as_str(),
                    e.position,
                    row.config,
                    e.resolution,
                    e.task,
                    e.classes,
                    e.experiment,
                    e.arch,
                    e.budget_images as i64,
                    e.val_accuracy,
                    row.file,
                    row.bytes,
                    created_at,
                    row.checksum,
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
        pool_files::remove_evicted(&self.dir, &files)?;
        Ok(evicted)
    }

    /// A damaged file costs its network its place in the pool: the network's rows and
    /// files go, so the damage is reported once and no later child tries it again.
    fn drop_damaged(&self, entry: &PoolEntry, e: PoolError) -> PoolError {
        let PoolError::Corrupt { id, message } = e else {
            return e;
        };
        let dropped = (|| -> Result<Vec<String>, PoolError> {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "DELETE FROM pool_entries WHERE experiment = ?1 AND arch = ?2 RETURNING file",
                )
                .map_err(|e| self.index(e))?;
            let files = stmt
                .query_map([&entry.experiment, &entry.arch], |r| r.get::<_, String>(0))
                .map_err(|e| self.index(e))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.index(e))?;
            Ok(files)
        })();
        pool_files::dropped(&self.dir, id, &message, dropped)
    }

    fn entry_from_row(&self, r: &Row<'_>) -> Result<PoolEntry, PoolError> {
        let id: i64 = r.get(0).map_err(|e| self.index(e))?;
        macro_rules! col {
            ($i:expr, $name:expr) => {
                r.get($i)
                    .map_err(|e| pool_files::corrupt(id, format!("bad {}: {e}", $name)))?
            };
        }
        RawEntry {
            id,
            space: col!(1, "space"),
            part: col!(2, "part"),
            position: col!(3, "position"),
            config: col!(4, "config"),
            resolution: col!(5, "resolution"),
            task: col!(6, "task"),
            classes: col!(7, "classes"),
            experiment: col!(8, "experiment"),
            arch: col!(9, "arch"),
            budget_images: col!(10, "budget_images"),
            val_accuracy: col!(11, "val_accuracy"),
            file: col!(12, "file"),
            bytes: col!(13, "bytes"),
            created_at: col!(14, "created_at"),
            checksum: col!(15, "sha256"),
        }
        .into_entry()
    }
}

impl BlockPool for SqlitePool {
    fn insert(&self, parts: Vec<(PoolEntry, Vec<PoolTensor>)>) -> Result<Vec<i64>, PoolError> {
        let ids = pool_files::insert(&self.dir, &parts, |rows| self.index_rows(rows))?;
        // the insert is committed whatever happens here (see the module docs)
        if let Some((first, _)) = parts.first() {
            let _ = self.evict((&first.experiment, &first.arch));
        }
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
        pool_files::load(&self.dir, entry).map_err(|e| self.drop_damaged(entry, e))
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
