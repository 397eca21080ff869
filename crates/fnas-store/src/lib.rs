//! The fnas knowledge store: [`SqliteStore`], the SQLite implementation of
//! [`fnas_core::Store`], the [`conformance`] suite every backend must pass, and
//! [`SqlitePool`], the architecture knowledge pool kept beside a store file, and
//! [`PgPool`], the same pool with its index in a PostgreSQL store (both checked by
//! [`pool_conformance`]).
//!
//! # What SQLite guarantees here
//!
//! The contract is written in `fnas_core::store`; this is how `SqliteStore` keeps it.
//!
//! | call | transaction |
//! |------|-------------|
//! | `create_experiment` | one `INSERT` (autocommit); a duplicate name violates `UNIQUE(name)` and becomes [`StoreError::Exists`] |
//! | `set_experiment_status` | one `UPDATE` (autocommit) |
//! | `begin_batch` | one `BEGIN IMMEDIATE` transaction: the `batches` row, every trial (`pending`, with the critic's prediction if any) and the post-`ask` checkpoint; all or nothing |
//! | `finish_trial` | one `UPDATE ... WHERE id = ? AND status = 'pending'` (autocommit): 0 rows changed means [`StoreError::AlreadyFinished`] (or an `Invalid` error when no such trial exists) |
//! | `end_batch` | one `BEGIN IMMEDIATE` transaction: refuses with [`StoreError::BatchIncomplete`] while a trial is pending, else closes the batch and writes the post-`tell` checkpoint |
//! | readers | one statement each; a statement sees one committed snapshot, so a half-written trial, batch or checkpoint is never visible |
//!
//! * **Durability.** A file store runs in WAL mode with `synchronous = FULL`: every
//!   commit syncs the WAL before the call returns, so once a write call has returned its
//!   effect survives the process being killed (SIGKILL) *and* an OS crash or power loss.
//!   (`NORMAL` would already survive SIGKILL, which is the contract; `FULL` costs one
//!   fsync per commit, negligible next to an evaluation, and makes "returned = on disk"
//!   true without caveats. Benchmarks that run hundreds of thousands of trials use
//!   [`SqliteStore::in_memory`], where none of this applies.) After a crash the next
//!   open replays the committed part of the WAL; an uncommitted transaction, such as a
//!   `begin_batch` cut off halfway, leaves no trace.
//! * **Immutability.** A finished (`done`/`failed`) trial never changes: the API
//!   refuses it, and a trigger (`trials_finished_are_immutable`) aborts any `UPDATE` of
//!   a finished row, whoever issues it. CHECK constraints tie `status` to
//!   `finished_at`/`source`/`cost` (NULL exactly while pending).
//! * **Critic.** A trial records the critic's prediction made when it was proposed
//!   (`pred_mean`, `pred_std`, `pred_trusted`: all three or none; `None` for strategies
//!   without a critic), whatever happens to it next. A trial the search did not
//!   evaluate because the prediction was trusted is finished with source `critic`:
//!   `done`, with a reward (the search loop records the prediction's mean), no metrics,
//!   no error, zero evaluations, and only on a trial with a trusted prediction.
//!   `finish_trial` refuses anything else with [`StoreError::Invalid`], and a CHECK
//!   constraint enforces the same on every write.
//!   Such a trial is never what `find_evaluated` returns (only source `evaluated` is:
//!   a prediction is no reason to skip an evaluation) and never counts for
//!   `list_experiments`' `best_reward` (a prediction never makes an architecture
//!   found); it counts as finished, at its zero cost.
//! * **Batches.** Per experiment, batch numbers strictly increase and at most one batch
//!   is open; `begin_batch` of an existing batch, of a smaller number, or while another
//!   batch is open is an [`StoreError::Invalid`] error. The store keeps only the
//!   *latest* checkpoint of each experiment (`checkpoints` has one row per experiment,
//!   overwritten by each `begin_batch`/`end_batch`; strategy states can be megabytes),
//!   and the `batches` table keeps the history (size, open/closed, timestamps).
//! * **Exact values.** `log_prob`, `reward` and the prediction's mean and std are stored
//!   as SQLite reals (IEEE doubles) in columns without type affinity (a `REAL` column
//!   would turn `-0.0` into `0`); metrics and cost are JSON written by `serde_json` and
//!   read back with its `float_roundtrip` parser, and `finish_trial` checks that what
//!   it writes parses back equal. So every finite `f64`, `-0.0` included, round-trips
//!   bit for bit. NaN is refused with [`StoreError::Invalid`] (SQLite would turn it
//!   into NULL); infinities are kept in `log_prob`/`reward`/the prediction but refused
//!   inside metrics and cost (JSON cannot hold them). `u64` seeds and budgets are
//!   stored as their two's-complement `i64`.
//! * **Timestamps** are seconds since the Unix epoch as `f64`.
//!
//! # Concurrent writers
//!
//! Several processes may open the same file: WAL lets readers (`fnas ls`) run while a
//! search writes, and writers queue on SQLite's single write lock. Write transactions
//! start with `BEGIN IMMEDIATE`, so a writer takes the lock up front instead of
//! failing on a read-to-write upgrade, and every connection waits up to
//! [`BUSY_TIMEOUT`] (10 s) for it; only a lock held longer than that surfaces as a
//! [`StoreError::Backend`] "database is locked" error. Each search should still use
//! its own experiment: the store keeps rows consistent, not two strategies that
//! share one experiment. WAL needs shared memory, so a store must live on a local
//! filesystem (not NFS).
//!
//! # Files
//!
//! [`SqliteStore::open`] creates the file but never its directory. A new store is built
//! in a hidden file beside `PATH`, synced, and hard-linked into place, so a file at
//! `PATH` is always a complete store (a kill during creation can only leave the hidden
//! `.NAME.PID.NANOS.creating` file). A file is an fnas
//! store when `PRAGMA application_id` is [`APPLICATION_ID`] and `PRAGMA user_version`
//! (the schema version, brought up to [`SCHEMA_VERSION`] by an ordered list of
//! migrations run in one transaction) is set; an empty file or empty database becomes
//! a store. Anything else (not SQLite, or an SQLite database of another program) is
//! refused before anything is written to it, and a store from a newer fnas (higher
//! schema version) is refused too. [`SqliteStore::integrity_check`] verifies the file
//! and the invariants above.
//!
//! # Schema versions
//!
//! | version | what |
//! |---------|------|
//! | 1 | experiments, batches, trials (sources `evaluated`, `cached`), checkpoints |
//! | 2 | trials gain the critic's prediction (`pred_mean`, `pred_std`, `pred_trusted`) and the source `critic` |
//! | 3 | `pool_entries`: the index of the architecture knowledge pool ([`SqlitePool`]) |
//!
//! [`SqliteStore::open`] upgrades an older store in place, in the same single
//! transaction as any migration: either the store is at the new version with every row
//! kept (ids, bits and bytes included) or it is left as it was. v2 rebuilds the
//! `trials` table (SQLite cannot alter a CHECK constraint): create the new table, copy
//! every row, drop the old one, rename, re-create its index and trigger. Foreign keys
//! are turned off around the migration transaction (they cannot be switched inside one,
//! and a table rebuild must not trigger them) and back on after it, and
//! `PRAGMA foreign_key_check` must come back empty before it commits. A read-only
//! open of an older store is refused with a message to open it once for writing;
//! older fnas builds refuse a store of a newer schema. v3 only adds a table and its index.

// A panic on input is a bug: library code returns errors; a justified exception says why
// it cannot fail, next to an `allow`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod conformance;
mod pg_pool;
mod pool;
pub mod pool_conformance;
mod pool_files;
pub mod postgres;
mod sqlite;

pub use fnas_core::store;
pub use fnas_core::{Store, StoreError};
pub use pg_pool::PgPool;
pub use pool::{PoolStats, SqlitePool, POOL_BUSY_TIMEOUT};
pub use pool_files::ORPHAN_GRACE;
pub use postgres::{is_postgres_url, PgStore};
pub use sqlite::{SqliteStore, APPLICATION_ID, BUSY_TIMEOUT, SCHEMA_VERSION};
