//! The SQLite implementation of [`Store`]. See the crate docs for the guarantees.

use std::fmt::Display;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fnas_core::store::{
    Checkpoint, DriverInfo, DriverLease, Experiment, ExperimentSpec, ExperimentSummary, Holder,
    Lease, NewTrial, Reaped, Trial, TrialId, TrialResult, TrialSource, TrialStatus,
};
use fnas_core::{Cost, Metrics, Prediction, Store, StoreError};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

/// `PRAGMA application_id` of an fnas store (`"fnas"` in ASCII). Together with
/// `PRAGMA user_version` it tells an fnas store from any other SQLite database.
pub const APPLICATION_ID: i32 = 0x666e_6173;

/// The schema version this build writes and understands (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a writer waits for another connection's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema migrations: step `i` takes a store from version `i` to `i + 1`. They run in
/// order, all in one `BEGIN IMMEDIATE` transaction together with the `user_version`
/// bump, so a store is always at exactly one version. Never edit a released step;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    // v1: initial schema.
    r#"
CREATE TABLE experiments (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    space       TEXT    NOT NULL,
    task        TEXT    NOT NULL,
    strategy    TEXT    NOT NULL,
    seed        INTEGER NOT NULL,   -- u64 stored as its two's-complement i64
    budget      INTEGER NOT NULL,   -- u64 stored as its two's-complement i64
    config      TEXT    NOT NULL,   -- JSON
    status      TEXT    NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
    created_at  REAL    NOT NULL    -- seconds since the Unix epoch
);

-- One row per batch ever begun; `size` is the number of trials recorded with it.
CREATE TABLE batches (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    batch         INTEGER NOT NULL CHECK (batch >= 0),
    open          INTEGER NOT NULL CHECK (open IN (0, 1)),
    size          INTEGER NOT NULL CHECK (size >= 0),
    created_at    REAL    NOT NULL,
    closed_at     REAL,
    PRIMARY KEY (experiment_id, batch),
    CHECK ((open = 1) = (closed_at IS NULL))
) WITHOUT ROWID;

CREATE TABLE trials (
    id               INTEGER PRIMARY KEY,
    experiment_id    INTEGER NOT NULL REFERENCES experiments(id),
    batch            INTEGER NOT NULL,
    idx              INTEGER NOT NULL CHECK (idx >= 0),
    arch             TEXT    NOT NULL,
    canonical        TEXT    NOT NULL,
    -- log_prob and reward: IEEE doubles. Declared without a type on purpose: a REAL
    -- column would store -0.0 as the integer 0 and give back +0.0.
    log_prob                 CHECK (typeof(log_prob) IN ('real', 'null')),
    status           TEXT    NOT NULL DEFAULT 'pending'
                             -- not `IN (a, b, c)`: SQLite builds a temporary b-tree
                             -- for a list of three or more at every execution
                             CHECK (status = 'pending' OR status = 'done' OR status = 'failed'),
    source           TEXT    CHECK (source IN ('evaluated', 'cached')),
    metrics          TEXT,   -- JSON of fnas_core::Metrics
    reward                   CHECK (typeof(reward) IN ('real', 'null')),
    cost             TEXT,   -- JSON of fnas_core::Cost; NULL while pending
    cost_evaluations INTEGER NOT NULL DEFAULT 0 CHECK (cost_evaluations >= 0),
    error            TEXT,
    created_at       REAL    NOT NULL,
    finished_at      REAL,
    UNIQUE (experiment_id, batch, idx),
    FOREIGN KEY (experiment_id, batch) REFERENCES batches(experiment_id, batch),
    CHECK ((status = 'pending') = (finished_at IS NULL)),
    CHECK ((status = 'pending') = (source IS NULL)),
    CHECK ((status = 'pending') = (cost IS NULL))
);
CREATE INDEX trials_by_canonical ON trials(experiment_id, canonical);

-- A finished trial is immutable, whoever writes to the file.
CREATE TRIGGER trials_finished_are_immutable
BEFORE UPDATE ON trials WHEN OLD.status <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a finished trial is immutable');
END;

-- The latest strategy checkpoint of each experiment (older ones are overwritten:
-- a PPO state can be megabytes and only the latest is ever restored).
CREATE TABLE checkpoints (
    experiment_id INTEGER PRIMARY KEY REFERENCES experiments(id),
    batch         INTEGER NOT NULL,
    open          INTEGER NOT NULL CHECK (open IN (0, 1)),
    state         BLOB    NOT NULL,
    updated_at    REAL    NOT NULL,
    FOREIGN KEY (experiment_id, batch) REFERENCES batches(experiment_id, batch)
);
"#,
    // v2: the critic (FNAS). Trials gain the prediction made at proposal time
    // (pred_mean, pred_std, pred_trusted: all three or none) and the source 'critic'
    // (not evaluated: the reward is the trusted prediction, free). SQLite cannot alter
    // a CHECK, so `trials` is rebuilt: create the new table, copy every row (ids kept),
    // drop the old one, rename, and re-create its index and trigger. The runner turns
    // foreign keys off around the transaction and runs `foreign_key_check` before the
    // commit (https://sqlite.org/lang_altertable.html#otheralter). Nothing references
    // `trials`, so no other table needs rebuilding.
    r#"
CREATE TABLE trials_v2 (
    id               INTEGER PRIMARY KEY,
    experiment_id    INTEGER NOT NULL REFERENCES experiments(id),
    batch            INTEGER NOT NULL,
    idx              INTEGER NOT NULL CHECK (idx >= 0),
    arch             TEXT    NOT NULL,
    canonical        TEXT    NOT NULL,
    -- log_prob, reward, pred_mean and pred_std: IEEE doubles. Declared without a type
    -- on purpose: a REAL column would store -0.0 as the integer 0 and give back +0.0.
    log_prob                 CHECK (typeof(log_prob) IN ('real', 'null')),
    -- the critic's prediction at proposal time (NULL: none was made)
    pred_mean                CHECK (typeof(pred_mean) IN ('real', 'null')),
    pred_std                 CHECK (typeof(pred_std) IN ('real', 'null')),
    pred_trusted     INTEGER CHECK (pred_trusted IN (0, 1)),
    status           TEXT    NOT NULL DEFAULT 'pending'
                             -- not `IN (a, b, c)`: SQLite builds a temporary b-tree
                             -- for a list of three or more at every execution
                             CHECK (status = 'pending' OR status = 'done' OR status = 'failed'),
    source           TEXT    CHECK (source = 'evaluated' OR source = 'cached'
                                    OR source = 'critic'),
    metrics          TEXT,   -- JSON of fnas_core::Metrics
    reward                   CHECK (typeof(reward) IN ('real', 'null')),
    cost             TEXT,   -- JSON of fnas_core::Cost; NULL while pending
    cost_evaluations INTEGER NOT NULL DEFAULT 0 CHECK (cost_evaluations >= 0),
    error            TEXT,
    created_at       REAL    NOT NULL,
    finished_at      REAL,
    UNIQUE (experiment_id, batch, idx),
    FOREIGN KEY (experiment_id, batch) REFERENCES batches(experiment_id, batch),
    CHECK ((status = 'pending') = (finished_at IS NULL)),
    CHECK ((status = 'pending') = (source IS NULL)),
    CHECK ((status = 'pending') = (cost IS NULL)),
    CHECK ((pred_mean IS NULL) = (pred_std IS NULL)
           AND (pred_mean IS NULL) = (pred_trusted IS NULL)),
    -- a critic-scored trial was not evaluated: done, with the trusted prediction as its
    -- reward, no metrics, no error, and free (`IS`, not `=`: a NULL would pass a CHECK)
    CHECK (source IS NOT 'critic'
           OR (status = 'done' AND reward IS NOT NULL AND metrics IS NULL
               AND error IS NULL AND cost_evaluations = 0 AND pred_trusted IS 1))
);
INSERT INTO trials_v2
       (id, experiment_id, batch, idx, arch, canonical, log_prob, status, source, metrics,
        reward, cost, cost_evaluations, error, created_at, finished_at)
SELECT id, experiment_id, batch, idx, arch, canonical, log_prob, status, source, metrics,
       reward, cost, cost_evaluations, error, created_at, finished_at
  FROM trials;
DROP TABLE trials;
ALTER TABLE trials_v2 RENAME TO trials;
CREATE INDEX trials_by_canonical ON trials(experiment_id, canonical);

-- A finished trial is immutable, whoever writes to the file.
CREATE TRIGGER trials_finished_are_immutable
BEFORE UPDATE ON trials WHEN OLD.status <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a finished trial is immutable');
END;
"#,
    // v3: the index of the architecture knowledge pool (`crate::pool`): one row per
    // stored part of a trained network; its tensors live in a file of the pool folder.
    // AUTOINCREMENT: trials record the entry ids their weights came from, so an evicted
    // entry's id must never be handed out again.
    r#"
CREATE TABLE pool_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    space         TEXT    NOT NULL,
    part          TEXT    NOT NULL CHECK (part = 'stem' OR part = 'block' OR part = 'head'),
    position      INTEGER NOT NULL CHECK (position >= 0),
    config        TEXT    NOT NULL,   -- JSON of fnas_core::pool::BlockConfig
    resolution    INTEGER NOT NULL CHECK (resolution >= 0),
    task          TEXT    NOT NULL,
    classes       INTEGER NOT NULL CHECK (classes >= 0),
    experiment    TEXT    NOT NULL,   -- '' for a standalone `fnas train`
    arch          TEXT    NOT NULL,
    budget_images INTEGER NOT NULL,   -- u64 stored as its two's-complement i64
    -- no type on purpose: a REAL column would turn -0.0 into the integer 0
    val_accuracy          NOT NULL CHECK (typeof(val_accuracy) = 'real'),
    file          TEXT    NOT NULL UNIQUE,   -- name inside the pool folder
    bytes         INTEGER NOT NULL CHECK (bytes >= 0),
    created_at    REAL    NOT NULL,
    last_used     REAL    NOT NULL
);
CREATE INDEX pool_entries_by_budget ON pool_entries(space, budget_images);
"#,
    // v4: trials as a queue (fnas_core::store, "Trials as a queue"). A pending trial the
    // driver queued can be claimed by one worker at a time under a lease (a random token,
    // its holder, a deadline in seconds since the Unix epoch); `attempts` counts claims.
    // The lease columns of a finished trial are kept: they say who evaluated it. One
    // driver lease per experiment in `drivers`.
    r#"
ALTER TABLE trials ADD COLUMN queued INTEGER NOT NULL DEFAULT 0 CHECK (queued IN (0, 1));
ALTER TABLE trials ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0);
ALTER TABLE trials ADD COLUMN lease_token INTEGER;
ALTER TABLE trials ADD COLUMN lease_holder TEXT;
ALTER TABLE trials ADD COLUMN lease_deadline REAL;
ALTER TABLE trials ADD COLUMN claimed_at REAL;
CREATE INDEX trials_queue ON trials(experiment_id, status, queued, id);
CREATE TABLE drivers (
    experiment_id INTEGER PRIMARY KEY REFERENCES experiments(id),
    token         INTEGER NOT NULL,
    holder        TEXT    NOT NULL,
    since         REAL    NOT NULL,
    deadline      REAL    NOT NULL
);
"#,
    // v5: each knowledge-pool file's SHA-256 (hex) in its index row, checked on every
    // load: a file changed on disk (a bit flip that still parses) is caught. Rows indexed
    // before have none and are checked by size and format only.
    r#"
ALTER TABLE pool_entries ADD COLUMN sha256 TEXT CHECK (sha256 IS NULL OR length(sha256) = 64);
"#,
];

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// A live lease as `reap_expired` reads it: id, token, holder, deadline, attempts.
type LeaseRow = (i64, i64, Option<String>, Option<f64>, i64);

/// The columns `trial_from_row` reads, in order.
macro_rules! trial_columns {
    () => {
        "id, experiment_id, batch, idx, arch, canonical, log_prob, status, source, metrics, \
         reward, cost, error, created_at, finished_at, pred_mean, pred_std, pred_trusted, \
         attempts, queued, lease_holder, claimed_at, lease_token IS NOT NULL"
    };
}

/// The columns `experiment_from_row` reads, in order (qualified: `e` is experiments).
macro_rules! experiment_columns {
    () => {
        "e.id, e.name, e.space, e.task, e.strategy, e.seed, e.budget, e.config, e.status, \
         e.created_at"
    };
}

/// The SQLite-backed store.
///
/// Write methods run in `BEGIN IMMEDIATE` transactions (or are a single autocommit
/// statement); see the crate docs for what each guarantees.
pub struct SqliteStore {
    conn: Connection,
    path: String,
    /// Declared after `conn`, so it runs once the connection is closed.
    guard: Option<OpenGuard>,
}

/// Connections this process has open, per store file: the side files of a store are
/// only ever removed when no other connection of this process uses them.
static OPEN_FILES: std::sync::Mutex<Vec<(std::path::PathBuf, usize)>> =
    std::sync::Mutex::new(Vec::new());

/// Registers a file store's connection, and removes the `-wal` and `-shm` files an open
/// that failed (a damaged store) created: SQLite makes them on the first read of a WAL
/// store and a read-only connection cannot remove them when it closes. They are removed
/// only when this open created them, nothing is in the log, and no other connection of
/// this process or of another process (a lock on the `-shm` file) uses them.
struct OpenGuard {
    path: std::path::PathBuf,
    /// Neither side file existed before the open, and the open has not succeeded.
    clean: bool,
}

impl OpenGuard {
    fn new(path: &Path) -> Self {
        let path = path.to_path_buf();
        let clean = !side(&path, "-wal").exists() && !side(&path, "-shm").exists();
        if let Ok(mut open) = OPEN_FILES.lock() {
            match open.iter_mut().find(|(p, _)| *p == path) {
                Some((_, n)) => *n += 1,
                None => open.push((path.clone(), 1)),
            }
        }
        Self { path, clean }
    }
}

/// `path` with `suffix` appended (`s.db` -> `s.db-wal`).
fn side(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    std::path::PathBuf::from(p)
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let Ok(mut open) = OPEN_FILES.lock() else {
            return;
        };
        let mut others = 0;
        if let Some(i) = open.iter().position(|(p, _)| *p == self.path) {
            open[i].1 -= 1;
            others = open[i].1;
            if others == 0 {
                open.swap_remove(i);
            }
        }
        if !self.clean || others > 0 {
            return;
        }
        let (wal, shm) = (side(&self.path, "-wal"), side(&self.path, "-shm"));
        let empty_log = std::fs::metadata(&wal).map_or(true, |m| m.len() == 0);
        // probing the lock opens and closes the file, which would drop this process's
        // own locks on it: done only with no other connection of this process open
        if empty_log && !locked_by_another_process(&shm) {
            let _ = std::fs::remove_file(&wal);
            let _ = std::fs::remove_file(&shm);
        }
    }
}

/// Whether another process holds a POSIX lock on any byte of `file` (SQLite locks the
/// `-shm` file while a connection uses it). A file that cannot be opened has no user.
fn locked_by_another_process(file: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
    else {
        return false;
    };
    // SAFETY: a zeroed flock is a valid argument; F_GETLK only fills it in.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0;
    // SAFETY: `f` is an open descriptor and `lock` a valid flock for F_GETLK.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut lock) };
    // on error, assume it is in use (keep the files)
    r != 0 || lock.l_type != libc::F_UNLCK as libc::c_short
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a database file holds, judged from its header and schema.
enum Kind {
    /// An empty database: becomes a store.
    Fresh,
    /// An fnas store of this schema version.
    Ours(u32),
    /// Something else; the message says what.
    Foreign(String),
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn backend(path: &str, message: impl Display) -> StoreError {
    let message = message.to_string();
    let message = if message.contains("database is locked") || message.contains("database is busy")
    {
        format!(
            "{message} (another process held the store for more than {} s)",
            BUSY_TIMEOUT.as_secs()
        )
    } else if message.contains("database or disk is full") {
        // SQLITE_FULL: the write was rolled back; nothing recorded is lost
        format!("{message}: free space, then continue with `fnas search --resume`")
    } else {
        message
    };
    StoreError::Backend {
        path: path.to_string(),
        message,
    }
}

fn newer_error(path: &str, version: u32) -> StoreError {
    backend(
        path,
        format!(
            "store was written by a newer fnas (schema v{version}); this build knows up to v{SCHEMA_VERSION}"
        ),
    )
}

/// Reads the first 16 bytes of an existing file and refuses anything that is neither
/// empty nor an SQLite database, before SQLite ever touches it.
fn check_header(path: &Path, shown: &str) -> Result<(), StoreError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| backend(shown, format!("cannot open: {}", io_reason(&e))))?;
    let mut head = Vec::with_capacity(16);
    (&mut f)
        .take(16)
        .read_to_end(&mut head)
        .map_err(|e| backend(shown, format!("cannot read: {}", io_reason(&e))))?;
    if !head.is_empty() && head.as_slice() != SQLITE_MAGIC {
        return Err(backend(
            shown,
            "not an fnas store: the file is not an SQLite database (left unchanged)",
        ));
    }
    Ok(())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    }
}

/// Judges the database from one consistent snapshot (another process may be creating
/// the schema right now).
fn classify(conn: &Connection) -> rusqlite::Result<Kind> {
    if conn.is_autocommit() {
        let tx = conn.unchecked_transaction()?;
        let kind = classify_in(&tx)?;
        tx.commit()?;
        Ok(kind)
    } else {
        classify_in(conn)
    }
}

fn classify_in(conn: &Connection) -> rusqlite::Result<Kind> {
    let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'
          ORDER BY type = 'table' DESC, name",
    )?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(if app == APPLICATION_ID {
        if version == 0 && names.is_empty() {
            Kind::Fresh
        } else if version == 0 {
            Kind::Foreign(
                "not an fnas store: it carries the fnas id but no schema version (left unchanged)"
                    .into(),
            )
        } else {
            Kind::Ours(version)
        }
    } else if app == 0 && version == 0 && names.is_empty() {
        Kind::Fresh
    } else {
        let mut shown: Vec<String> = names.iter().take(5).cloned().collect();
        if names.len() > 5 {
            shown.push(format!("... {} more", names.len() - 5));
        }
        let what = if names.is_empty() {
            format!("application_id {app:#x}, user_version {version}")
        } else {
            format!("containing {}", shown.join(", "))
        };
        Kind::Foreign(format!(
            "not an fnas store: an SQLite database of something else ({what}); left unchanged"
        ))
    })
}

/// Creates a complete, empty store at `path` (which does not exist yet) without ever
/// letting `path` hold a half-made one: the schema is written to a hidden file in the
/// same directory, synced, then hard-linked into place (which fails, harmlessly, if
/// another process created `path` meanwhile). A kill during creation can leave only
/// that hidden `.NAME.PID.NANOS.creating` file behind, never a broken store.
/// A store on read-only media (a read-only folder without a `-wal` file beside the store:
/// every write was checkpointed into it) is read as an immutable file: SQLite cannot make
/// the `-shm` file a WAL store is otherwise read through, and no writer can change it.
fn immutable_open(path: &Path) -> Option<Connection> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if side(path, "-wal").exists() || check_folder_writable(dir, "").is_ok() {
        return None;
    }
    let abs = std::path::absolute(path).ok()?;
    let uri = format!(
        "file:{}?immutable=1",
        abs.to_str()?
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23")
    );
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(uri, flags).ok()
}

/// Refuses, before any work, a store whose folder cannot take new files: SQLite writes
/// its `-wal` and `-shm` files beside the store, and a search that cannot record its
/// results must not start.
pub fn check_folder_writable(dir: &Path, shown: &str) -> Result<(), StoreError> {
    let probe = dir.join(format!(".fnas-probe-{}", std::process::id()));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match made {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(backend(
            shown,
            format!(
                "cannot write in its folder {} ({}): a store writes its files beside it",
                dir.display(),
                match e.kind() {
                    std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system".to_string(),
                    std::io::ErrorKind::StorageFull => "no space left".to_string(),
                    _ => io_reason(&e),
                }
            ),
        )),
    }
}

fn create_store_file(path: &Path, dir: &Path, shown: &str) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{name}.{}.{nanos}.creating", std::process::id()));
    let cant_create = |e: &dyn Display| {
        backend(
            shown,
            format!("cannot create in directory {}: {e}", dir.display()),
        )
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| cant_create(&io_reason(&e)))?;
    let result = (|| {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&tmp, flags).map_err(|e| cant_create(&e))?;
        let mut store = SqliteStore {
            conn,
            path: shown.to_string(),
            guard: None,
        };
        store.configure()?;
        // WAL from the first write, so the store at `path` never needs a rollback
        // journal (a hot one would stop read-only opens after a kill)
        store.set_wal()?;
        store.migrate()?;
        // the last connection's close checkpoints the WAL into the file and removes it
        store.conn.close().map_err(|(_, e)| cant_create(&e))?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // a filesystem without hard links
            Err(_) if !path.exists() => {
                std::fs::rename(&tmp, path).map_err(|e| cant_create(&io_reason(&e)))?
            }
            Err(_) => {}
        }
        // make the new directory entry durable too
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file (not its directory) if absent and
    /// bringing its schema up to date. A new store appears at `path` complete or not at
    /// all (it is built beside it and hard-linked into place), so an existing file is
    /// never a half-created store, even after a kill. Refuses, without modifying it, any file that is
    /// not an fnas store, and any store written by a newer schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.exists() {
            return Err(backend(
                &shown,
                format!("cannot open: directory {} does not exist", dir.display()),
            ));
        }
        if !dir.is_dir() {
            return Err(backend(
                &shown,
                format!("cannot open: {} is not a directory", dir.display()),
            ));
        }
        if path.is_dir() {
            return Err(backend(&shown, "cannot open: it is a directory"));
        }
        check_folder_writable(dir, &shown)?;
        if !path.exists() {
            create_store_file(path, dir, &shown)?;
        }
        check_header(path, &shown)?;
        let guard = OpenGuard::new(path);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| backend(&shown, format!("cannot open: {e}")))?;
        if conn
            .is_readonly(rusqlite::DatabaseName::Main)
            .unwrap_or(false)
        {
            return Err(backend(
                &shown,
                "cannot open for writing: permission denied",
            ));
        }
        let mut store = Self {
            conn,
            path: shown,
            guard: Some(guard),
        };
        store.configure()?;
        // Judge the file before anything writes to it.
        match classify(&store.conn).map_err(|e| store.err(e))? {
            Kind::Fresh => {}
            Kind::Ours(v) if v > SCHEMA_VERSION => return Err(newer_error(&store.path, v)),
            Kind::Ours(_) => {}
            Kind::Foreign(m) => return Err(store.err(m)),
        }
        store.set_wal()?;
        store.migrate()?;
        store.opened();
        Ok(store)
    }

    /// The open succeeded: the side files are the store's own from now on.
    fn opened(&mut self) {
        if let Some(g) = self.guard.as_mut() {
            g.clean = false;
        }
    }

    /// Opens an existing store for reading (`fnas ls`, `fnas show`). Never creates a
    /// file; writes through this handle fail.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(backend(&shown, format!("no store at {shown}")));
        }
        if path.is_dir() {
            return Err(backend(&shown, "cannot open: it is a directory"));
        }
        check_header(path, &shown)?;
        let guard = OpenGuard::new(path);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(path, flags) {
            Ok(c) => c,
            Err(e) => match immutable_open(path) {
                Some(c) => c,
                None => return Err(backend(&shown, format!("cannot open: {e}"))),
            },
        };
        let store = Self {
            conn,
            path: shown,
            guard: Some(guard),
        };
        store.configure()?;
        let kind = classify(&store.conn).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ReadOnly) => store.err(format!(
                "{e}: the store needs crash recovery, which a read-only open cannot do; \
                 open it for writing once (e.g. `fnas search --resume`)"
            )),
            _ => store.err(e),
        })?;
        match kind {
            Kind::Fresh => Err(store.err(format!(
                "no store at {} (the file is an empty database)",
                store.path
            ))),
            Kind::Ours(v) if v > SCHEMA_VERSION => Err(newer_error(&store.path, v)),
            Kind::Ours(v) if v < SCHEMA_VERSION => Err(store.err(format!(
                "store uses schema v{v}; open it once for writing to upgrade it to v{SCHEMA_VERSION}"
            ))),
            Kind::Ours(_) => {
                let mut store = store;
                store.opened();
                Ok(store)
            }
            Kind::Foreign(m) => Err(store.err(m)),
        }
    }

    /// A fresh store in memory (tests, benchmarks): same schema and rules, no file.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(|e| backend(":memory:", e))?;
        let mut store = Self {
            conn,
            path: ":memory:".to_string(),
            guard: None,
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Where the store lives (`:memory:` for an in-memory one).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The store's schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Checks the file (`PRAGMA integrity_check`, `PRAGMA foreign_key_check`) and the
    /// store's own invariants: no pending trial in a closed batch, at most one open
    /// batch per experiment, every batch holds exactly the trials it was begun with
    /// (indices `0..size`), each checkpoint matches its batch's open flag and is the
    /// experiment's latest batch, the JSON columns parse, the index and the
    /// immutability trigger of `trials` exist (a table rebuild re-creates them), and
    /// every knowledge-pool row has its file with the recorded size.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        // one snapshot for all the checks, even while another process writes
        let snapshot = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let mut problems: Vec<String> = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("PRAGMA integrity_check")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| self.err(e))?;
            for row in rows {
                let row = row.map_err(|e| self.err(e))?;
                if row != "ok" {
                    problems.push(format!("sqlite: {row}"));
                }
            }
        }
        let n_fk: i64 = self
            .conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?;
        if n_fk > 0 {
            problems.push(format!("{n_fk} rows violate a foreign key"));
        }
        let checks: &[(&str, &str)] = &[
            (
                "pending trials in a closed batch",
                "SELECT count(*) FROM trials t JOIN batches b
                   ON b.experiment_id = t.experiment_id AND b.batch = t.batch
                 WHERE b.open = 0 AND t.status = 'pending'",
            ),
            (
                "experiments with more than one open batch",
                "SELECT count(*) FROM (SELECT experiment_id FROM batches WHERE open = 1
                 GROUP BY experiment_id HAVING count(*) > 1)",
            ),
            (
                "open batches that are not their experiment's latest",
                "SELECT count(*) FROM batches b WHERE b.open = 1 AND b.batch <
                   (SELECT max(batch) FROM batches x WHERE x.experiment_id = b.experiment_id)",
            ),
            (
                "batches whose trials are not exactly indices 0..size",
                "SELECT count(*) FROM batches b
                 WHERE b.size <> (SELECT count(*) FROM trials t
                                   WHERE t.experiment_id = b.experiment_id
                                     AND t.batch = b.batch AND t.idx < b.size)
                    OR EXISTS (SELECT 1 FROM trials t
                                WHERE t.experiment_id = b.experiment_id
                                  AND t.batch = b.batch AND t.idx >= b.size)",
            ),
            (
                "trials without a batch",
                "SELECT count(*) FROM trials t WHERE NOT EXISTS
                   (SELECT 1 FROM batches b
                     WHERE b.experiment_id = t.experiment_id AND b.batch = t.batch)",
            ),
            (
                "checkpoints that disagree with their batch or are not the latest batch",
                "SELECT count(*) FROM checkpoints c
                 LEFT JOIN batches b ON b.experiment_id = c.experiment_id AND b.batch = c.batch
                 WHERE b.batch IS NULL OR b.open <> c.open
                    OR c.batch <> (SELECT max(batch) FROM batches x
                                    WHERE x.experiment_id = c.experiment_id)",
            ),
            (
                "experiments with batches but no checkpoint",
                "SELECT count(DISTINCT experiment_id) FROM batches b WHERE NOT EXISTS
                   (SELECT 1 FROM checkpoints c WHERE c.experiment_id = b.experiment_id)",
            ),
            (
                "finished trials whose cost_evaluations disagree with their cost",
                "SELECT count(*) FROM trials WHERE status <> 'pending' AND
                   (NOT json_valid(cost)
                    OR coalesce(json_extract(cost, '$.evaluations'), -1) <> cost_evaluations)",
            ),
            (
                "trials with invalid metrics JSON",
                "SELECT count(*) FROM trials WHERE metrics IS NOT NULL AND NOT json_valid(metrics)",
            ),
            (
                "experiments with invalid config JSON",
                "SELECT count(*) FROM experiments WHERE NOT json_valid(config)",
            ),
            (
                "missing schema objects (index trials_by_canonical, trigger \
                 trials_finished_are_immutable)",
                "SELECT 2 - count(*) FROM sqlite_master
                  WHERE (type = 'index' AND name = 'trials_by_canonical'
                         AND tbl_name = 'trials')
                     OR (type = 'trigger' AND name = 'trials_finished_are_immutable'
                         AND tbl_name = 'trials')",
            ),
        ];
        for (what, sql) in checks {
            let n: i64 = self
                .conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            if n > 0 {
                problems.push(format!("{n} {what}"));
            }
        }
        problems.extend(self.pool_file_problems()?);
        snapshot.commit().map_err(|e| self.err(e))?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.err(format!("integrity check failed: {}", problems.join("; "))))
        }
    }

    /// The knowledge pool's side of the integrity check: every index row's file is in
    /// `<store>.pool/` with the recorded size, and its configuration parses.
    fn pool_file_problems(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, file, bytes, json_valid(config) FROM pool_entries ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let dir = std::path::PathBuf::from(format!("{}.pool", self.path));
        let mut problems = Vec::new();
        for row in rows {
            let (id, file, bytes, config_ok) = row.map_err(|e| self.err(e))?;
            if !config_ok {
                problems.push(format!("pool entry {id}: invalid config JSON"));
            }
            let path = dir.join(&file);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() as i64 == bytes => {}
                Ok(m) => problems.push(format!(
                    "pool entry {id}: {} holds {} bytes, the index says {bytes}",
                    path.display(),
                    m.len()
                )),
                Err(e) => problems.push(format!("pool entry {id}: {}: {e}", path.display())),
            }
        }
        Ok(problems)
    }

    fn err(&self, message: impl Display) -> StoreError {
        backend(&self.path, message)
    }

    /// Runs an `UPDATE experiments ... WHERE id = ?1` with `value` as `?2`; no row
    /// changed means no such experiment.
    fn update_experiment(
        &self,
        experiment: i64,
        sql: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let n = stmt
            .execute(params![experiment, value])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StoreError::Invalid(format!(
                "no experiment with id {experiment} in the store"
            )));
        }
        Ok(())
    }

    /// WAL: readers (`fnas ls`) never block the writer and vice versa; FULL: the WAL
    /// is synced at every commit, so a returned write survives power loss too. (A no-op
    /// write-wise on a store already in WAL mode, which every store created here is.)
    fn set_wal(&self) -> Result<(), StoreError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(self.err(format!(
                "cannot switch to WAL journal (got `{mode}`); is the file on a network filesystem?"
            )));
        }
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| self.err(e))
    }

    /// Connection settings that are not stored in the file.
    fn configure(&self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.err(e))?;
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| self.err(e))?;
        self.conn.set_prepared_statement_cache_capacity(32);
        Ok(())
    }

    /// Brings the schema up to [`SCHEMA_VERSION`], re-judging the file inside the
    /// write transaction (another process may have created or upgraded the store
    /// meanwhile).
    ///
    /// A migration may rebuild a table (SQLite cannot alter a constraint), which must
    /// run with foreign keys off; `PRAGMA foreign_keys` cannot change inside a
    /// transaction, so it is turned off before the migration transaction and back on
    /// after it, whatever the outcome. In between, `PRAGMA foreign_key_check` must find
    /// nothing before the transaction commits.
    fn migrate(&mut self) -> Result<(), StoreError> {
        self.set_foreign_keys(false)?;
        let result = self.migrate_in_transaction();
        // the transaction is over (committed, or rolled back when it was dropped)
        let restored = self.set_foreign_keys(true);
        result?;
        restored
    }

    fn set_foreign_keys(&self, on: bool) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "foreign_keys", on)
            .map_err(|e| self.err(e))?;
        let now: bool = self
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if now != on {
            return Err(self.err(format!(
                "cannot turn foreign keys {}",
                if on { "on" } else { "off" }
            )));
        }
        Ok(())
    }

    fn migrate_in_transaction(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| backend(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let from = match classify(&tx).map_err(e)? {
            Kind::Fresh => {
                tx.pragma_update(None, "application_id", APPLICATION_ID)
                    .map_err(e)?;
                0
            }
            Kind::Ours(v) if v > SCHEMA_VERSION => return Err(newer_error(&path, v)),
            Kind::Ours(v) => v,
            Kind::Foreign(m) => return Err(backend(&path, m)),
        };
        if from == SCHEMA_VERSION {
            return tx.commit().map_err(e);
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            tx.execute_batch(step)
                .map_err(|err| backend(&path, format!("migration to v{}: {err}", i + 1)))?;
        }
        let violations: i64 = tx
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(e)?;
        if violations > 0 {
            // dropping `tx` rolls everything back: the file stays at v{from}
            return Err(backend(
                &path,
                format!(
                    "migration from v{from} to v{SCHEMA_VERSION}: {violations} rows violate a \
                     foreign key (the store is left at v{from}; see `PRAGMA foreign_key_check`)"
                ),
            ));
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(e)?;
        tx.commit().map_err(e)
    }

    fn query_trials(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Trial>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            out.push(self.trial_from_row(row)?);
        }
        Ok(out)
    }

    fn trial_from_row(&self, r: &Row<'_>) -> Result<Trial, StoreError> {
        let g = |e: rusqlite::Error| self.err(format!("reading a trial: {e}"));
        let id: i64 = r.get(0).map_err(g)?;
        let bad = |what: &str, m: &dyn Display| self.err(format!("trial {id}: bad {what}: {m}"));
        let status: String = r.get(7).map_err(g)?;
        let status = TrialStatus::parse(&status).ok_or_else(|| bad("status", &status))?;
        let source: Option<String> = r.get(8).map_err(g)?;
        let source = match source.as_deref() {
            None => None,
            Some(s) => Some(parse_source(s).ok_or_else(|| bad("source", &s))?),
        };
        let metrics: Option<String> = r.get(9).map_err(g)?;
        let metrics = match metrics {
            None => None,
            Some(s) => {
                Some(serde_json::from_str::<Metrics>(&s).map_err(|e| bad("metrics JSON", &e))?)
            }
        };
        let cost: Option<String> = r.get(11).map_err(g)?;
        let cost = match cost {
            None => Cost::default(),
            Some(s) => serde_json::from_str::<Cost>(&s).map_err(|e| bad("cost JSON", &e))?,
        };
        let prediction = match (
            r.get::<_, Option<f64>>(15).map_err(g)?,
            r.get::<_, Option<f64>>(16).map_err(g)?,
            r.get::<_, Option<bool>>(17).map_err(g)?,
        ) {
            (None, None, None) => None,
            (Some(mean), Some(std), Some(trusted)) => Some(Prediction { mean, std, trusted }),
            _ => return Err(bad("prediction", &"only part of it is stored")),
        };
        let batch: i64 = r.get(2).map_err(g)?;
        let index: i64 = r.get(3).map_err(g)?;
        Ok(Trial {
            id,
            experiment_id: r.get(1).map_err(g)?,
            batch: batch as u64,
            index: index as u32,
            arch: r.get(4).map_err(g)?,
            canonical: r.get(5).map_err(g)?,
            log_prob: r.get(6).map_err(g)?,
            prediction,
            status,
            source,
            metrics,
            reward: r.get(10).map_err(g)?,
            cost,
            error: r.get(12).map_err(g)?,
            created_at: r.get(13).map_err(g)?,
            finished_at: r.get(14).map_err(g)?,
            attempts: r
                .get::<_, i64>(18)
                .map_err(g)?
                .clamp(0, i64::from(u32::MAX)) as u32,
            queued: r.get(19).map_err(g)?,
            worker: r.get(20).map_err(g)?,
            claimed_at: r.get(21).map_err(g)?,
            leased: r.get(22).map_err(g)?,
        })
    }

    fn experiment_from_row(&self, r: &Row<'_>) -> Result<Experiment, StoreError> {
        let g = |e: rusqlite::Error| self.err(format!("reading an experiment: {e}"));
        let id: i64 = r.get(0).map_err(g)?;
        let config: String = r.get(7).map_err(g)?;
        let config = serde_json::from_str(&config)
            .map_err(|e| self.err(format!("experiment {id}: bad config JSON: {e}")))?;
        let seed: i64 = r.get(5).map_err(g)?;
        let budget: i64 = r.get(6).map_err(g)?;
        Ok(Experiment {
            id,
            spec: ExperimentSpec {
                name: r.get(1).map_err(g)?,
                space: r.get(2).map_err(g)?,
                task: r.get(3).map_err(g)?,
                strategy: r.get(4).map_err(g)?,
                seed: seed as u64,
                budget: budget as u64,
                config,
            },
            status: r.get(8).map_err(g)?,
            created_at: r.get(9).map_err(g)?,
        })
    }
}

pub(crate) fn parse_source(s: &str) -> Option<TrialSource> {
    match s {
        "evaluated" => Some(TrialSource::Evaluated),
        "cached" => Some(TrialSource::Cached),
        "critic" => Some(TrialSource::Critic),
        _ => None,
    }
}

pub(crate) fn source_str(s: TrialSource) -> &'static str {
    match s {
        TrialSource::Evaluated => "evaluated",
        TrialSource::Cached => "cached",
        TrialSource::Critic => "critic",
    }
}

/// What a result with source `critic` must look like (the table's CHECK enforces the
/// same, plus a trusted prediction; checked here first for a clear error).
pub(crate) fn critic_result_ok(trial: TrialId, r: &TrialResult) -> Result<(), StoreError> {
    let problem = if r.status != TrialStatus::Done {
        "its status must be `done`"
    } else if r.reward.is_none() {
        "it must have a reward (the trusted prediction)"
    } else if r.metrics.is_some() {
        "it has no metrics (it was not evaluated)"
    } else if r.error.is_some() {
        "it has no error"
    } else if r.cost.evaluations != 0 {
        "it costs no evaluation"
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid(format!(
        "trial {trial}: a critic-scored result is not an evaluation: {problem}"
    )))
}

pub(crate) fn batch_i64(batch: u64) -> Result<i64, StoreError> {
    i64::try_from(batch)
        .map_err(|_| StoreError::Invalid(format!("batch number {batch} is too large")))
}

/// Serializes a value to JSON and checks it parses back to an equal value, so what is
/// stored always round-trips (non-finite floats, which JSON cannot hold, are refused).
pub(crate) fn exact_json<T>(value: &T, what: &str, trial: TrialId) -> Result<String, StoreError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
{
    let s = serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("trial {trial}: cannot serialize {what}: {e}")))?;
    match serde_json::from_str::<T>(&s) {
        Ok(back) if back == *value => Ok(s),
        _ => Err(StoreError::Invalid(format!(
            "trial {trial}: {what} cannot be stored exactly (a NaN or infinite number?)"
        ))),
    }
}

impl Store for SqliteStore {
    fn create_experiment(&mut self, spec: &ExperimentSpec) -> Result<Experiment, StoreError> {
        let config = serde_json::to_string(&spec.config)
            .map_err(|e| StoreError::Invalid(format!("experiment config: {e}")))?;
        let created_at = now();
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT INTO experiments
                   (name, space, task, strategy, seed, budget, config, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8)",
            )
            .map_err(|e| self.err(e))?;
        match stmt.execute(params![
            spec.name,
            spec.space,
            spec.task,
            spec.strategy,
            spec.seed as i64,
            spec.budget as i64,
            config,
            created_at,
        ]) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                return Err(StoreError::Exists(spec.name.clone()));
            }
            Err(e) => return Err(self.err(e)),
        }
        Ok(Experiment {
            id: self.conn.last_insert_rowid(),
            spec: spec.clone(),
            status: "running".to_string(),
            created_at,
        })
    }

    fn experiment(&self, name: &str) -> Result<Option<Experiment>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            experiment_columns!(),
            " FROM experiments e WHERE e.name = ?1"
        );
        let mut stmt = self.conn.prepare_cached(SQL).map_err(|e| self.err(e))?;
        let mut rows = stmt.query([name]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(r) => Ok(Some(self.experiment_from_row(r)?)),
            None => Ok(None),
        }
    }

    fn list_experiments(&self) -> Result<Vec<ExperimentSummary>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            experiment_columns!(),
            ",
                    (SELECT count(*) FROM trials t WHERE t.experiment_id = e.id),
                    (SELECT count(*) FROM trials t
                      WHERE t.experiment_id = e.id AND t.status <> 'pending'),
                    (SELECT coalesce(sum(t.cost_evaluations), 0) FROM trials t
                      WHERE t.experiment_id = e.id AND t.status <> 'pending'),
                    (SELECT max(t.reward) FROM trials t
                      WHERE t.experiment_id = e.id AND t.status <> 'pending'
                        AND t.source <> 'critic'
                        AND t.reward > -9e999 AND t.reward < 9e999)
               FROM experiments e ORDER BY e.id"
        );
        let mut stmt = self.conn.prepare_cached(SQL).map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let g = |e: rusqlite::Error| self.err(format!("listing experiments: {e}"));
            let experiment = self.experiment_from_row(r)?;
            let trials: i64 = r.get(10).map_err(g)?;
            let finished: i64 = r.get(11).map_err(g)?;
            let cost: i64 = r.get(12).map_err(g)?;
            out.push(ExperimentSummary {
                experiment,
                trials: trials as u64,
                finished_trials: finished as u64,
                cost: cost as u64,
                best_reward: r.get(13).map_err(g)?,
            });
        }
        Ok(out)
    }

    fn set_experiment_status(&mut self, experiment: i64, status: &str) -> Result<(), StoreError> {
        if status != "running" && status != "finished" {
            return Err(StoreError::Invalid(format!(
                "experiment status must be `running` or `finished`, not `{status}`"
            )));
        }
        self.update_experiment(
            experiment,
            "UPDATE experiments SET status = ?2 WHERE id = ?1",
            &status,
        )
    }

    fn set_experiment_budget(&mut self, experiment: i64, budget: u64) -> Result<(), StoreError> {
        self.update_experiment(
            experiment,
            "UPDATE experiments SET budget = ?2 WHERE id = ?1",
            &(budget as i64),
        )
    }

    fn begin_batch(
        &mut self,
        experiment: i64,
        batch: u64,
        trials: &[NewTrial],
        checkpoint: &[u8],
    ) -> Result<Vec<TrialId>, StoreError> {
        let b = batch_i64(batch)?;
        for t in trials {
            // SQLite would store a NaN as NULL
            let nan = if t.log_prob.is_some_and(f64::is_nan) {
                Some("log_prob")
            } else if t.prediction.is_some_and(|p| p.mean.is_nan()) {
                Some("predicted mean")
            } else if t.prediction.is_some_and(|p| p.std.is_nan()) {
                Some("predicted std")
            } else {
                None
            };
            if let Some(what) = nan {
                return Err(StoreError::Invalid(format!(
                    "batch {batch} of experiment {experiment}: {what} of `{}` is NaN",
                    t.arch
                )));
            }
        }
        let path = self.path.clone();
        let e = |e: rusqlite::Error| backend(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        // one query: does the experiment exist, and what is its latest batch?
        let (exists, last_batch, last_open): (bool, Option<i64>, Option<bool>) = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM experiments WHERE id = ?1), b.batch, b.open
                   FROM (SELECT 1) LEFT JOIN
                        (SELECT batch, open FROM batches WHERE experiment_id = ?1
                          ORDER BY batch DESC LIMIT 1) b",
            )
            .and_then(|mut s| s.query_row([experiment], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .map_err(e)?;
        if !exists {
            return Err(StoreError::Invalid(format!(
                "no experiment with id {experiment} in the store"
            )));
        }
        let last = last_batch.zip(last_open);
        if let Some((last, open)) = last {
            if last == b {
                return Err(StoreError::Invalid(format!(
                    "batch {batch} of experiment {experiment} already exists"
                )));
            }
            if last > b {
                return Err(StoreError::Invalid(format!(
                    "batch {batch} of experiment {experiment} comes after batch {last}; batch numbers must increase"
                )));
            }
            if open {
                // one lookahead batch at most (see the contract in fnas_core::store)
                let older_open = tx
                    .prepare_cached(
                        "SELECT 1 FROM batches WHERE experiment_id = ?1 AND open = 1 AND batch < ?2",
                    )
                    .and_then(|mut s| s.exists(params![experiment, last]))
                    .map_err(e)?;
                if older_open {
                    return Err(StoreError::Invalid(format!(
                        "batches of experiment {experiment} up to {last} are still open; end the older one before beginning batch {batch}"
                    )));
                }
            }
        }
        let at = now();
        tx.prepare_cached(
            "INSERT INTO batches (experiment_id, batch, open, size, created_at)
             VALUES (?1, ?2, 1, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![experiment, b, trials.len() as i64, at]))
        .map_err(e)?;
        let mut ids = Vec::with_capacity(trials.len());
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO trials (experiment_id, batch, idx, arch, canonical, log_prob,
                                         pred_mean, pred_std, pred_trusted, status, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10)",
                )
                .map_err(e)?;
            for (i, t) in trials.iter().enumerate() {
                ins.execute(params![
                    experiment,
                    b,
                    i as i64,
                    t.arch,
                    t.canonical,
                    t.log_prob,
                    t.prediction.map(|p| p.mean),
                    t.prediction.map(|p| p.std),
                    t.prediction.map(|p| p.trusted),
                    at
                ])
                .map_err(e)?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.prepare_cached(
            "INSERT INTO checkpoints (experiment_id, batch, open, state, updated_at)
             VALUES (?1, ?2, 1, ?3, ?4)
             ON CONFLICT (experiment_id) DO UPDATE
               SET batch = excluded.batch, open = 1, state = excluded.state,
                   updated_at = excluded.updated_at",
        )
        .and_then(|mut s| s.execute(params![experiment, b, checkpoint, at]))
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(ids)
    }

    fn finish_trial(&mut self, trial: TrialId, result: &TrialResult) -> Result<(), StoreError> {
        self.finish_with(trial, result, None)
    }

    fn queue_trials(&mut self, trials: &[TrialId]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| backend(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        {
            let mut up = tx
                .prepare_cached("UPDATE trials SET queued = 1 WHERE id = ?1 AND status = 'pending'")
                .map_err(e)?;
            for t in trials {
                up.execute([t]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    fn claim_trial(
        &mut self,
        experiment: i64,
        holder: &Holder,
        lease_seconds: f64,
    ) -> Result<Option<(Trial, Lease)>, StoreError> {
        // one statement: SQLite runs it under its write lock, so two workers can never
        // claim the same trial
        let claimed: Option<(i64, i64, i64)> = self
            .conn
            .prepare_cached(
                "UPDATE trials
                    SET lease_token = random(), lease_holder = ?2, lease_deadline = ?3,
                        attempts = attempts + 1, claimed_at = ?4
                  WHERE id = (SELECT id FROM trials INDEXED BY trials_queue
                               WHERE experiment_id = ?1 AND status = 'pending' AND queued = 1
                                 AND lease_token IS NULL
                               ORDER BY id LIMIT 1)
                  RETURNING id, lease_token, attempts",
            )
            .and_then(|mut st| {
                st.query_row(
                    params![experiment, holder.encode(), now() + lease_seconds, now()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some((id, token, attempts)) = claimed else {
            return Ok(None);
        };
        const SQL: &str = concat!("SELECT ", trial_columns!(), " FROM trials WHERE id = ?1");
        let trial = self
            .query_trials(SQL, [id])?
            .pop()
            .ok_or_else(|| self.err(format!("claimed trial {id} vanished")))?;
        let lease = Lease {
            trial: id,
            token,
            attempt: attempts.clamp(0, i64::from(u32::MAX)) as u32,
        };
        Ok(Some((trial, lease)))
    }

    fn heartbeat(&mut self, lease: &Lease, lease_seconds: f64) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE trials SET lease_deadline = ?3
                  WHERE id = ?1 AND lease_token = ?2 AND status = 'pending'",
            )
            .and_then(|mut st| st.execute(params![lease.trial, lease.token, now() + lease_seconds]))
            .map_err(|e| self.err(e))?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(lease.trial))
        }
    }

    fn finish_leased(&mut self, lease: &Lease, result: &TrialResult) -> Result<(), StoreError> {
        self.finish_with(lease.trial, result, Some(lease))
    }

    fn reap_expired(
        &mut self,
        experiment: i64,
        max_attempts: u32,
        dead: &dyn Fn(&Holder) -> bool,
    ) -> Result<Reaped, StoreError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| backend(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let at = now();
        let leased: Vec<LeaseRow> = tx
            .prepare_cached(
                "SELECT id, lease_token, lease_holder, lease_deadline, attempts FROM trials
                  WHERE experiment_id = ?1 AND status = 'pending' AND lease_token IS NOT NULL",
            )
            .and_then(|mut st| {
                st.query_map([experiment], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            })
            .map_err(e)?;
        let mut reaped = Reaped::default();
        for (id, token, holder, deadline, attempts) in leased {
            let who = holder.as_deref().and_then(Holder::decode);
            let gone = who.as_ref().is_some_and(dead);
            if !gone && deadline.is_some_and(|d| d >= at) {
                continue;
            }
            if attempts >= i64::from(max_attempts.max(1)) {
                let reason = format!(
                    "given up after {attempts} lease(s) expired; the last holder was {}",
                    who.map_or_else(|| "unknown".to_string(), |h| h.to_string())
                );
                tx.prepare_cached(
                    "UPDATE trials SET status = 'failed', source = 'evaluated', cost = ?3,
                            error = ?4, finished_at = ?5
                      WHERE id = ?1 AND lease_token = ?2 AND status = 'pending'",
                )
                .and_then(|mut st| {
                    st.execute(params![id, token, "{\"evaluations\":0}", reason, at])
                })
                .map_err(e)?;
                reaped.failed += 1;
            } else {
                tx.prepare_cached(
                    "UPDATE trials SET lease_token = NULL, lease_deadline = NULL
                      WHERE id = ?1 AND lease_token = ?2 AND status = 'pending'",
                )
                .and_then(|mut st| st.execute(params![id, token]))
                .map_err(e)?;
                reaped.requeued += 1;
            }
        }
        tx.commit().map_err(e)?;
        Ok(reaped)
    }

    fn acquire_driver(
        &mut self,
        experiment: i64,
        holder: &Holder,
        lease_seconds: f64,
        dead: &dyn Fn(&Holder) -> bool,
    ) -> Result<Result<DriverLease, DriverInfo>, StoreError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| backend(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let at = now();
        let current: Option<(String, f64, f64)> = tx
            .prepare_cached("SELECT holder, since, deadline FROM drivers WHERE experiment_id = ?1")
            .and_then(|mut st| {
                st.query_row([experiment], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(e)?;
        if let Some((h, since, deadline)) = current {
            let who = Holder::decode(&h).unwrap_or(Holder {
                host: h.clone(),
                pid: 0,
                role: "driver".into(),
            });
            if deadline >= at && !dead(&who) {
                return Ok(Err(DriverInfo {
                    holder: who,
                    since,
                    deadline,
                }));
            }
        }
        let token: i64 = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO drivers (experiment_id, token, holder, since, deadline)
                 VALUES (?1, random(), ?2, ?3, ?4) RETURNING token",
            )
            .and_then(|mut st| {
                st.query_row(
                    params![experiment, holder.encode(), at, at + lease_seconds],
                    |r| r.get(0),
                )
            })
            .map_err(|err| match err {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::Invalid(format!("no experiment with id {experiment} in the store"))
                }
                err => e(err),
            })?;
        tx.commit().map_err(e)?;
        Ok(Ok(DriverLease { experiment, token }))
    }

    fn renew_driver(&mut self, lease: &DriverLease, lease_seconds: f64) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE drivers SET deadline = ?3 WHERE experiment_id = ?1 AND token = ?2",
            )
            .and_then(|mut st| {
                st.execute(params![
                    lease.experiment,
                    lease.token,
                    now() + lease_seconds
                ])
            })
            .map_err(|e| self.err(e))?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "the driver lease of experiment {} was taken over by another process",
                lease.experiment
            )))
        }
    }

    fn release_driver(&mut self, lease: &DriverLease) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM drivers WHERE experiment_id = ?1 AND token = ?2")
            .and_then(|mut st| st.execute(params![lease.experiment, lease.token]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }
    fn end_batch(
        &mut self,
        experiment: i64,
        batch: u64,
        checkpoint: &[u8],
    ) -> Result<(), StoreError> {
        let b = batch_i64(batch)?;
        let path = self.path.clone();
        let e = |e: rusqlite::Error| backend(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let open: Option<bool> = tx
            .prepare_cached("SELECT open FROM batches WHERE experiment_id = ?1 AND batch = ?2")
            .and_then(|mut s| s.query_row(params![experiment, b], |r| r.get(0)).optional())
            .map_err(e)?;
        match open {
            None => {
                return Err(StoreError::Invalid(format!(
                    "batch {batch} of experiment {experiment} was never begun"
                )))
            }
            Some(false) => {
                return Err(StoreError::Invalid(format!(
                    "batch {batch} of experiment {experiment} is already closed"
                )))
            }
            Some(true) => {}
        }
        let pending = tx
            .prepare_cached(
                "SELECT 1 FROM trials
                  WHERE experiment_id = ?1 AND batch = ?2 AND status = 'pending' LIMIT 1",
            )
            .and_then(|mut s| s.exists(params![experiment, b]))
            .map_err(e)?;
        if pending {
            return Err(StoreError::BatchIncomplete { experiment, batch });
        }
        let (older, later): (Option<i64>, Option<i64>) = tx
            .prepare_cached(
                "SELECT (SELECT min(batch) FROM batches
                          WHERE experiment_id = ?1 AND open = 1 AND batch < ?2),
                        (SELECT max(batch) FROM batches
                          WHERE experiment_id = ?1 AND open = 1 AND batch > ?2)",
            )
            .and_then(|mut s| s.query_row(params![experiment, b], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(e)?;
        if let Some(older) = older {
            return Err(StoreError::Invalid(format!(
                "batch {older} of experiment {experiment} is still open; batches end in order"
            )));
        }
        let at = now();
        tx.prepare_cached(
            "UPDATE batches SET open = 0, closed_at = ?3 WHERE experiment_id = ?1 AND batch = ?2",
        )
        .and_then(|mut s| s.execute(params![experiment, b, at]))
        .map_err(e)?;
        // the checkpoint names the latest batch begun: a lookahead batch stays open in it
        let (cp_batch, cp_open) = match later {
            Some(l) => (l, true),
            None => (b, false),
        };
        tx.prepare_cached(
            "INSERT INTO checkpoints (experiment_id, batch, open, state, updated_at)
             VALUES (?1, ?2, ?5, ?3, ?4)
             ON CONFLICT (experiment_id) DO UPDATE
               SET batch = excluded.batch, open = excluded.open, state = excluded.state,
                   updated_at = excluded.updated_at",
        )
        .and_then(|mut s| s.execute(params![experiment, cp_batch, checkpoint, at, cp_open]))
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    fn open_batches(&self, experiment: i64) -> Result<Vec<u64>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT batch FROM batches WHERE experiment_id = ?1 AND open = 1 ORDER BY batch",
            )
            .and_then(|mut s| {
                s.query_map([experiment], |r| r.get::<_, i64>(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()
            })
            .map(|v| v.into_iter().map(|b| b.max(0) as u64).collect())
            .map_err(|e| self.err(e))
    }

    fn checkpoint(&self, experiment: i64) -> Result<Option<Checkpoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT batch, open, state FROM checkpoints WHERE experiment_id = ?1")
            .map_err(|e| self.err(e))?;
        let cp = stmt
            .query_row([experiment], |r| {
                Ok(Checkpoint {
                    batch: r.get::<_, i64>(0)? as u64,
                    open: r.get(1)?,
                    state: r.get(2)?,
                })
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(cp)
    }

    fn trials(&self, experiment: i64) -> Result<Vec<Trial>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            trial_columns!(),
            " FROM trials WHERE experiment_id = ?1 ORDER BY batch, idx"
        );
        self.query_trials(SQL, [experiment])
    }

    fn batch_trials(&self, experiment: i64, batch: u64) -> Result<Vec<Trial>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            trial_columns!(),
            " FROM trials WHERE experiment_id = ?1 AND batch = ?2 ORDER BY idx"
        );
        self.query_trials(SQL, params![experiment, batch_i64(batch)?])
    }

    fn find_evaluated(
        &self,
        experiment: i64,
        canonical: &str,
    ) -> Result<Option<Trial>, StoreError> {
        // Served by trials_by_canonical; rows come out in id order, so the first
        // evaluated one ends the scan.
        const SQL: &str = concat!(
            "SELECT ",
            trial_columns!(),
            " FROM trials INDEXED BY trials_by_canonical
              WHERE experiment_id = ?1 AND canonical = ?2
                AND status IN ('done', 'failed') AND source = 'evaluated'
              ORDER BY id LIMIT 1"
        );
        Ok(self
            .query_trials(SQL, params![experiment, canonical])?
            .into_iter()
            .next())
    }
}

impl SqliteStore {
    /// `finish_trial`, and with `lease` only while it is the trial's current lease.
    fn finish_with(
        &mut self,
        trial: TrialId,
        result: &TrialResult,
        lease: Option<&Lease>,
    ) -> Result<(), StoreError> {
        if result.status == TrialStatus::Pending {
            return Err(StoreError::Invalid(format!(
                "trial {trial}: a result must be `done` or `failed`, not `pending`"
            )));
        }
        if result.reward.is_some_and(f64::is_nan) {
            return Err(StoreError::Invalid(format!("trial {trial}: reward is NaN")));
        }
        if result.source == TrialSource::Critic {
            critic_result_ok(trial, result)?;
        }
        let evaluations = i64::try_from(result.cost.evaluations).map_err(|_| {
            StoreError::Invalid(format!(
                "trial {trial}: cost of {} evaluations is too large",
                result.cost.evaluations
            ))
        })?;
        let metrics = match &result.metrics {
            Some(m) => Some(exact_json(m, "metrics", trial)?),
            None => None,
        };
        let cost = exact_json(&result.cost, "cost", trial)?;
        // One autocommit statement: atomic on its own. The `status = 'pending'` guard
        // makes a second finish a no-op that we report as AlreadyFinished.
        let n = self
            .conn
            .prepare_cached(
                "UPDATE trials
                    SET status = ?2, source = ?3, metrics = ?4, reward = ?5, cost = ?6,
                        cost_evaluations = ?7, error = ?8, finished_at = ?9
                  WHERE id = ?1 AND status = 'pending' AND (?10 IS NULL OR lease_token = ?10)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    trial,
                    result.status.as_str(),
                    source_str(result.source),
                    metrics,
                    result.reward,
                    cost,
                    evaluations,
                    result.error,
                    now(),
                    lease.map(|l| l.token),
                ])
            })
            .map_err(|e| match e {
                // only the critic rule can fail here (the other checks hold by
                // construction): the trial has no trusted prediction
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_CHECK
                        && result.source == TrialSource::Critic =>
                {
                    StoreError::Invalid(format!(
                        "trial {trial}: a critic-scored result needs a trusted prediction \
                         recorded with the trial"
                    ))
                }
                e => self.err(e),
            })?;
        if n == 1 {
            return Ok(());
        }
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM trials WHERE id = ?1")
            .and_then(|mut s| s.exists([trial]))
            .map_err(|e| self.err(e))?;
        let finished = self
            .conn
            .prepare_cached("SELECT 1 FROM trials WHERE id = ?1 AND status <> 'pending'")
            .and_then(|mut s| s.exists([trial]))
            .map_err(|e| self.err(e))?;
        if exists && (finished || lease.is_none()) {
            Err(StoreError::AlreadyFinished(trial))
        } else if exists {
            Err(StoreError::LeaseLost(trial))
        } else {
            Err(StoreError::Invalid(format!(
                "no trial with id {trial} in the store"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A released migration step never changes: stores in the field were built by it.
    /// (`tests/migration.rs` builds v1 stores from the same file.)
    #[test]
    fn released_v1_schema_is_unchanged() {
        assert_eq!(
            MIGRATIONS[0],
            include_str!("../tests/fixtures/schema_v1.sql")
        );
    }

    fn foreign_keys(s: &SqliteStore) -> bool {
        s.conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap()
    }

    /// The migration runner turns foreign keys off around its transaction; every
    /// store handed out has them on again, whether it migrated or not.
    #[test]
    fn foreign_keys_are_on_after_migrating() {
        assert!(foreign_keys(&SqliteStore::in_memory().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; BEGIN; PRAGMA application_id = {APPLICATION_ID};
                 {} PRAGMA user_version = 1; COMMIT;",
                MIGRATIONS[0]
            ))
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(foreign_keys(&s));
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert!(foreign_keys(&s));
        assert!(foreign_keys(&SqliteStore::open_read_only(&path).unwrap()));
    }
}
