//! [`PgPool`]: the architecture knowledge pool ([`fnas_core::pool`]) of a PostgreSQL
//! store. A PostgreSQL store has no file to keep tensors beside, so index rows live in
//! the database's `pool_entries` table and tensor files in a folder every worker mounts
//! (the search's artifacts folder). Files, atomic inserts, eviction order and cleanup
//! are those of [`SqlitePool`](crate::SqlitePool) (see its module docs; the file side
//! is the same code); this module only says what differs.
//!
//! # Locks
//!
//! SQLite has one write lock; PostgreSQL lets writers run side by side, so the pool
//! takes a transaction-level advisory lock ([`PgPool::LOCK_KEY`]) where `SqlitePool`
//! relies on the write lock:
//!
//! - *exclusive* for the cleanup on connect and for eviction: a cleaner decides which
//!   files have no row while no insert can add one, and two evictions never both
//!   delete for the same overflow;
//! - *shared* for inserts (which re-check their files exist under it, so a file a
//!   cleaner removed is never indexed) and touches (which lock their rows in id order,
//!   so neither two touches nor a touch and an eviction can deadlock).
//!
//! Advisory locks are per database, so pools of different databases never wait on
//! each other. The table is created on connect (`CREATE TABLE IF NOT EXISTS`, under
//! another advisory lock so that first connects do not race); it sits beside the
//! store's tables and is not part of [`PG_SCHEMA_VERSION`](crate::postgres::PG_SCHEMA_VERSION).
//!
//! # Clocks
//!
//! `created_at` and `last_used` come from the server's clock (as the store's leases
//! do), so the eviction order of a pool shared by many machines does not depend on
//! whose clock is fast. The cleanup compares file modification times with this
//! machine's clock: keep the artifacts folder's clock within [`ORPHAN_GRACE`] of it.
//!
//! # Connection
//!
//! One connection per pool, behind a mutex ([`BlockPool`] is shared by the training
//! workers). When the server closed it (a restart), the call that met the closed
//! connection fails and the next one reconnects. Errors name the URL with any password
//! redacted (a URL holding one is refused anyway: the password comes from
//! `PGPASSWORD` or `~/.pgpass`).
//!
//! [`ORPHAN_GRACE`]: crate::ORPHAN_GRACE

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use fnas_core::pool::{BlockPool, PoolEntry, PoolError, PoolTensor};
use postgres::{Client, Row};

use crate::pool::PoolStats;
use crate::pool_files::{self, corrupt, RawEntry, Stale, Written};
use crate::postgres::{client, redact};

/// The `pool_entries` table; columns as in the SQLite store's schema v3, with
/// PostgreSQL types (`BIGINT` where SQLite's `INTEGER` holds 64 bits).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS pool_entries (
    -- a sequence: trials record the entry ids their weights came from, so an evicted
    -- entry's id is never handed out again
    id            BIGSERIAL PRIMARY KEY,
    space         TEXT    NOT NULL,
    part          TEXT    NOT NULL CHECK (part IN ('stem', 'block', 'head')),
    position      BIGINT  NOT NULL CHECK (position >= 0),
    config        TEXT    NOT NULL,   -- JSON of fnas_core::pool::BlockConfig, as written
    resolution    BIGINT  NOT NULL CHECK (resolution >= 0),
    task          TEXT    NOT NULL,
    classes       BIGINT  NOT NULL CHECK (classes >= 0),
    experiment    TEXT    NOT NULL,   -- '' for a standalone `fnas train`
    arch          TEXT    NOT NULL,
    budget_images BIGINT  NOT NULL,   -- u64 stored as its two's-complement i64
    -- finite (NaN compares above infinity in PostgreSQL)
    val_accuracy  DOUBLE PRECISION NOT NULL CHECK (abs(val_accuracy) < 'Infinity'),
    file          TEXT    NOT NULL UNIQUE,   -- name inside the pool folder
    bytes         BIGINT  NOT NULL CHECK (bytes >= 0),
    created_at    DOUBLE PRECISION NOT NULL,
    last_used     DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS pool_entries_by_budget ON pool_entries(space, budget_images);
-- the file's SHA-256 (hex), checked on every load; none on rows indexed before
ALTER TABLE pool_entries ADD COLUMN IF NOT EXISTS sha256 TEXT
    CHECK (sha256 IS NULL OR length(sha256) = 64);
"#;

/// Serialises first connects' `CREATE TABLE IF NOT EXISTS` (which can fail when two
/// sessions create the same table at once).
const SCHEMA_LOCK: i64 = 727_173;

/// The columns [`PgPool::entry_from_row`] reads, in order.
const ENTRY_COLUMNS: &str = "id, space, part, position, config, resolution, task, classes, \
     experiment, arch, budget_images, val_accuracy, file, bytes, created_at, sha256";

/// The time of the current transaction on the server's clock: every row of one insert
/// gets the same `created_at`.
const TX_NOW: &str = "extract(epoch from transaction_timestamp())::double precision";

/// The server's clock now, seconds since the Unix epoch.
const NOW: &str = "extract(epoch from clock_timestamp())::double precision";

/// The knowledge pool of one PostgreSQL database (see the module docs).
pub struct PgPool {
    client: Mutex<Client>,
    /// The URL as given, to reconnect with (it never holds a password).
    raw_url: String,
    /// The URL as shown in errors.
    url: String,
    dir: PathBuf,
    max_bytes: u64,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("url", &self.url)
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl PgPool {
    /// The advisory lock key (`pg_advisory_xact_lock`) of the pool's writers: held
    /// exclusively by the cleanup and eviction, shared by inserts and touches. Another
    /// tool that removes pool files takes it exclusively too.
    pub const LOCK_KEY: i64 = 727_174;

    /// Connects to `url` (`postgresql://user@host[:port]/db`, password from `PGPASSWORD`
    /// or `~/.pgpass`), creates the `pool_entries` table and the folder `dir` (with its
    /// parents) if missing, and removes stale leftovers from `dir`. `max_bytes` limits
    /// the pool's size (0: no limit). Every pool of one database must use the same
    /// folder, since the index names files relative to it.
    pub fn connect(url: &str, dir: &Path, max_bytes: u64) -> Result<PgPool, PoolError> {
        let c = client(url).map_err(|e| PoolError::Index(e.to_string()))?;
        let pool = PgPool {
            client: Mutex::new(c),
            raw_url: url.to_string(),
            url: redact(url),
            dir: dir.to_path_buf(),
            max_bytes,
        };
        pool.ensure_schema()?;
        pool_files::ensure_dir(dir)?;
        pool.clean()?;
        Ok(pool)
    }

    /// The folder holding the tensor files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entries, networks and bytes of the whole pool (all spaces), from one snapshot.
    pub fn stats(&self) -> Result<PoolStats, PoolError> {
        let row = self
            .conn()?
            .query_one(
                "SELECT count(*),
                        (SELECT count(*) FROM (SELECT 1 FROM pool_entries
                                                GROUP BY experiment, arch) n),
                        coalesce(sum(bytes), 0)::bigint
                   FROM pool_entries",
                &[],
            )
            .map_err(|e| self.pg(e))?;
        let count = |i: usize| -> Result<u64, PoolError> {
            let v: i64 = row.try_get(i).map_err(|e| self.pg(e))?;
            u64::try_from(v).map_err(|e| self.index(e))
        };
        Ok(PoolStats {
            entries: count(0)?,
            networks: count(1)?,
            bytes: count(2)?,
        })
    }

    /// The connection, re-established first when the server closed it. A panic in
    /// another thread cannot leave it mid-transaction (a dropped transaction rolls
    /// back), so a poisoned lock is still usable.
    fn conn(&self) -> Result<MutexGuard<'_, Client>, PoolError> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_closed() {
            *c = client(&self.raw_url).map_err(|e| PoolError::Index(e.to_string()))?;
        }
        Ok(c)
    }

    fn index(&self, e: impl std::fmt::Display) -> PoolError {
        PoolError::Index(format!("{}: {e}", self.url))
    }

    fn pg(&self, e: postgres::Error) -> PoolError {
        self.index(crate::postgres::pg_reason(&e))
    }

    /// Creates the table unless it exists, one connection at a time.
    fn ensure_schema(&self) -> Result<(), PoolError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(|e| self.pg(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(|e| self.pg(e))?;
        tx.batch_execute(SCHEMA).map_err(|e| self.pg(e))?;
        tx.commit().map_err(|e| self.pg(e))
    }

    /// Removes stale leftovers ([`Stale`]) under the exclusive lock, so that no insert
    /// indexes a file while it goes (an insert re-checks its files under the shared
    /// lock). Returns how many went.
    fn clean(&self) -> Result<usize, PoolError> {
        let Some(stale) = Stale::list(&self.dir)? else {
            return Ok(0);
        };
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(|e| self.pg(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&Self::LOCK_KEY])
            .map_err(|e| self.pg(e))?;
        let stmt = tx
            .prepare("SELECT 1 FROM pool_entries WHERE file = $1")
            .map_err(|e| self.pg(e))?;
        let removed = stale.remove_unindexed(|name| {
            tx.query_opt(&stmt, &[&name])
                .map(|r| r.is_some())
                .map_err(|e| self.pg(e))
        })?;
        tx.commit().map_err(|e| self.pg(e))?;
        drop(c);
        if removed > 0 {
            pool_files::sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Indexes the files of one network (already written) in one transaction.
    /// A damaged file costs its network its place in the pool (rows, then files, as an
    /// eviction does), so the damage is reported once and no later child tries it again.
    fn drop_damaged(&self, entry: &PoolEntry, e: PoolError) -> PoolError {
        let PoolError::Corrupt { id, message } = e else {
            return e;
        };
        let dropped = (|| -> Result<Vec<String>, PoolError> {
            let mut c = self.conn()?;
            let mut tx = c.transaction().map_err(|e| self.pg(e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&Self::LOCK_KEY])
                .map_err(|e| self.pg(e))?;
            let files = tx
                .query(
                    "DELETE FROM pool_entries WHERE experiment = $1 AND arch = $2 RETURNING file",
                    &[&entry.experiment, &entry.arch],
                )
                .map_err(|e| self.pg(e))?
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.pg(e))?;
            tx.commit().map_err(|e| self.pg(e))?;
            Ok(files)
        })();
        pool_files::dropped(&self.dir, id, &message, dropped)
    }

    fn index_rows(&self, rows: &[Written<'_>]) -> Result<Vec<i64>, PoolError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(|e| self.pg(e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock_shared($1)",
            &[&Self::LOCK_KEY],
        )
        .map_err(|e| self.pg(e))?;
        let stmt = tx
            .prepare(&format!(
                "INSERT INTO pool_entries (space, part, position, config, resolution, task,
                    classes, experiment, arch, budget_images, val_accuracy, file, bytes,
                    created_at, last_used, sha256)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, {TX_NOW}, {TX_NOW}, $14)
                 RETURNING id"
            ))
            .map_err(|e| self.pg(e))?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            // under the shared lock: a cleaner cannot remove it from here on
            row.check_present(&self.dir)?;
            let e = row.entry;
            let inserted = tx
                .query_one(
                    &stmt,
                    &[
                        &e.space,
                        &e.part.as_str(),
                        &i64::from(e.position),
                        &row.config,
                        &i64::from(e.resolution),
                        &e.task,
                        &i64::from(e.classes),
                        &e.experiment,
                        &e.arch,
                        &(e.budget_images as i64),
                        &e.val_accuracy,
                        &row.file,
                        &row.bytes,
                        &row.checksum,
                    ],
                )
                .map_err(|e| self.pg(e))?;
            ids.push(inserted.try_get(0).map_err(|e| self.pg(e))?);
        }
        tx.commit().map_err(|e| self.pg(e))?;
        Ok(ids)
    }

    /// Applies the size limit (as `SqlitePool` does); `keep` is the network just
    /// inserted. Returns the number of networks evicted.
    fn evict(&self, keep: (&str, &str)) -> Result<usize, PoolError> {
        if self.max_bytes == 0 {
            return Ok(0);
        }
        let limit = i128::from(self.max_bytes);
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(|e| self.pg(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&Self::LOCK_KEY])
            .map_err(|e| self.pg(e))?;
        let networks = tx
            .query(
                "SELECT experiment, arch, sum(bytes)::bigint FROM pool_entries
                  GROUP BY experiment, arch
                  ORDER BY max(last_used), max(val_accuracy), min(id)",
                &[],
            )
            .map_err(|e| self.pg(e))?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<(String, String, i64)>, postgres::Error>>()
            .map_err(|e| self.pg(e))?;
        let mut total: i128 = networks.iter().map(|n| i128::from(n.2)).sum();
        let delete = tx
            .prepare("DELETE FROM pool_entries WHERE experiment = $1 AND arch = $2 RETURNING file")
            .map_err(|e| self.pg(e))?;
        let mut files = Vec::new();
        let mut evicted = 0;
        for (experiment, arch, bytes) in &networks {
            if total <= limit {
                break;
            }
            if (experiment.as_str(), arch.as_str()) == keep {
                continue;
            }
            for r in tx
                .query(&delete, &[experiment, arch])
                .map_err(|e| self.pg(e))?
            {
                files.push(r.try_get::<_, String>(0).map_err(|e| self.pg(e))?);
            }
            total -= i128::from(*bytes);
            evicted += 1;
        }
        if evicted == 0 {
            return Ok(0);
        }
        tx.commit().map_err(|e| self.pg(e))?;
        drop(c);
        pool_files::remove_evicted(&self.dir, &files)?;
        Ok(evicted)
    }

    fn entry_from_row(&self, r: &Row) -> Result<PoolEntry, PoolError> {
        let id: i64 = r.try_get(0).map_err(|e| self.pg(e))?;
        macro_rules! col {
            ($i:expr, $name:expr) => {
                r.try_get($i)
                    .map_err(|e| corrupt(id, format!("bad {}: {e}", $name)))?
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

impl BlockPool for PgPool {
    fn insert(&self, parts: Vec<(PoolEntry, Vec<PoolTensor>)>) -> Result<Vec<i64>, PoolError> {
        let ids = pool_files::insert(&self.dir, &parts, |rows| self.index_rows(rows))?;
        // the insert is committed whatever happens here: the next insert evicts again
        if let Some((first, _)) = parts.first() {
            let _ = self.evict((&first.experiment, &first.arch));
        }
        Ok(ids)
    }

    fn entries(&self, space: &str) -> Result<Vec<PoolEntry>, PoolError> {
        let rows = self
            .conn()?
            .query(
                &format!("SELECT {ENTRY_COLUMNS} FROM pool_entries WHERE space = $1 ORDER BY id"),
                &[&space],
            )
            .map_err(|e| self.pg(e))?;
        rows.iter().map(|r| self.entry_from_row(r)).collect()
    }

    fn load(&self, entry: &PoolEntry) -> Result<Vec<PoolTensor>, PoolError> {
        pool_files::load(&self.dir, entry).map_err(|e| self.drop_damaged(entry, e))
    }

    fn touch(&self, ids: &[i64]) -> Result<(), PoolError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(|e| self.pg(e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock_shared($1)",
            &[&Self::LOCK_KEY],
        )
        .map_err(|e| self.pg(e))?;
        tx.execute(
            &format!(
                "UPDATE pool_entries SET last_used = greatest(last_used, {NOW})
                  WHERE id IN (SELECT id FROM pool_entries WHERE id = ANY($1)
                                ORDER BY id FOR UPDATE)"
            ),
            &[&ids],
        )
        .map_err(|e| self.pg(e))?;
        tx.commit().map_err(|e| self.pg(e))
    }
}
