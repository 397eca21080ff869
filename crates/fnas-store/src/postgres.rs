//! The PostgreSQL backend of the [`Store`] contract: one transactional store that many
//! drivers and workers on many machines share (`--store postgresql://user@host/db`).
//!
//! - The password never travels in the URL: it comes from `PGPASSWORD` or `~/.pgpass`
//!   (as for `psql`), and a URL that carries one is refused, so it cannot end up in
//!   shell history, process lists, logs or error messages.
//! - The schema is created on first connection, in one transaction, and versioned in
//!   `fnas_schema`; a store written by a newer fnas is refused.
//! - Deadlines of leases use the server's clock, so machines whose clocks disagree still
//!   agree on who holds what.
//! - Claims take the oldest free queued trial with `FOR UPDATE SKIP LOCKED`: concurrent
//!   workers never wait on each other's row and never get the same trial.

use std::cell::{RefCell, RefMut};
use std::path::PathBuf;

use fnas_core::store::{
    Checkpoint, DriverInfo, DriverLease, Experiment, ExperimentSpec, ExperimentSummary, Holder,
    Lease, NewTrial, Reaped, Trial, TrialId, TrialResult, TrialSource, TrialStatus,
};
use fnas_core::{Cost, Metrics, Prediction, Store, StoreError};
use postgres::{Client, NoTls, Row};

use crate::sqlite::{batch_i64, critic_result_ok, exact_json, parse_source, source_str};

/// The schema version this build writes and understands.
pub const PG_SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS fnas_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    space       TEXT    NOT NULL,
    task        TEXT    NOT NULL,
    strategy    TEXT    NOT NULL,
    seed        BIGINT  NOT NULL,   -- u64 as its two's-complement i64
    budget      BIGINT  NOT NULL,
    config      TEXT    NOT NULL,   -- JSON, as written (key order and floats kept)
    status      TEXT    NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    experiment_id BIGINT  NOT NULL REFERENCES experiments(id),
    batch         BIGINT  NOT NULL CHECK (batch >= 0),
    open          BOOLEAN NOT NULL,
    size          BIGINT  NOT NULL CHECK (size >= 0),
    created_at    DOUBLE PRECISION NOT NULL,
    closed_at     DOUBLE PRECISION,
    PRIMARY KEY (experiment_id, batch),
    CHECK (open = (closed_at IS NULL))
);
CREATE TABLE IF NOT EXISTS trials (
    id               BIGSERIAL PRIMARY KEY,
    experiment_id    BIGINT  NOT NULL REFERENCES experiments(id),
    batch            BIGINT  NOT NULL,
    idx              BIGINT  NOT NULL CHECK (idx >= 0),
    arch             TEXT    NOT NULL,
    canonical        TEXT    NOT NULL,
    log_prob         DOUBLE PRECISION,
    pred_mean        DOUBLE PRECISION,
    pred_std         DOUBLE PRECISION,
    pred_trusted     BOOLEAN,
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'done', 'failed')),
    source           TEXT    CHECK (source IN ('evaluated', 'cached', 'critic')),
    metrics          TEXT,
    reward           DOUBLE PRECISION,
    cost             TEXT,
    cost_evaluations BIGINT  NOT NULL DEFAULT 0 CHECK (cost_evaluations >= 0),
    error            TEXT,
    created_at       DOUBLE PRECISION NOT NULL,
    finished_at      DOUBLE PRECISION,
    queued           BOOLEAN NOT NULL DEFAULT FALSE,
    attempts         BIGINT  NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_token      BIGINT,
    lease_holder     TEXT,
    lease_deadline   DOUBLE PRECISION,
    claimed_at       DOUBLE PRECISION,
    UNIQUE (experiment_id, batch, idx),
    FOREIGN KEY (experiment_id, batch) REFERENCES batches(experiment_id, batch),
    CHECK ((status = 'pending') = (finished_at IS NULL)),
    CHECK ((status = 'pending') = (source IS NULL)),
    CHECK ((status = 'pending') = (cost IS NULL)),
    CHECK ((pred_mean IS NULL) = (pred_std IS NULL)
           AND (pred_mean IS NULL) = (pred_trusted IS NULL)),
    CHECK (source IS DISTINCT FROM 'critic'
           OR (status = 'done' AND reward IS NOT NULL AND metrics IS NULL
               AND error IS NULL AND cost_evaluations = 0 AND pred_trusted IS TRUE))
);
CREATE INDEX IF NOT EXISTS trials_by_canonical ON trials(experiment_id, canonical);
CREATE INDEX IF NOT EXISTS trials_queue ON trials(experiment_id, status, queued, id);
CREATE TABLE IF NOT EXISTS checkpoints (
    experiment_id BIGINT PRIMARY KEY REFERENCES experiments(id),
    batch         BIGINT  NOT NULL,
    open          BOOLEAN NOT NULL,
    state         BYTEA   NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    FOREIGN KEY (experiment_id, batch) REFERENCES batches(experiment_id, batch)
);
CREATE TABLE IF NOT EXISTS drivers (
    experiment_id BIGINT PRIMARY KEY REFERENCES experiments(id),
    token         BIGINT NOT NULL,
    holder        TEXT   NOT NULL,
    since         DOUBLE PRECISION NOT NULL,
    deadline      DOUBLE PRECISION NOT NULL
);
CREATE OR REPLACE FUNCTION fnas_finished_is_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'a finished trial is immutable';
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS trials_finished_are_immutable ON trials;
CREATE TRIGGER trials_finished_are_immutable BEFORE UPDATE ON trials
    FOR EACH ROW WHEN (OLD.status <> 'pending') EXECUTE FUNCTION fnas_finished_is_immutable();
"#;

/// The trial columns [`PgStore::trial_from_row`] reads, in order.
const TRIAL_COLUMNS: &str = "id, experiment_id, batch, idx, arch, canonical, log_prob, status, \
     source, metrics, reward, cost, error, created_at, finished_at, pred_mean, pred_std, \
     pred_trusted, attempts, queued, lease_holder, claimed_at, lease_token IS NOT NULL";

const EXPERIMENT_COLUMNS: &str =
    "e.id, e.name, e.space, e.task, e.strategy, e.seed, e.budget, e.config, e.status, e.created_at";

/// The server's clock, seconds since the Unix epoch.
const NOW: &str = "extract(epoch from clock_timestamp())::double precision";

/// A random 63-bit token, drawn by the server.
const TOKEN: &str = "(floor(random() * 9.2e18))::bigint";

/// A store in a PostgreSQL database.
pub struct PgStore {
    client: RefCell<Client>,
    /// The URL as shown (it never holds a password).
    url: String,
    /// The URL as given, to reconnect with.
    raw_url: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `url` with any password replaced by `***`, for messages.
/// The credentials are what precedes the first `@`, after `://` (or, in a mistyped URL
/// such as `postgresql:/user:pw@host`, after the last `/` before the `@`).
pub fn redact(url: &str) -> String {
    let Some(at) = url.find('@') else {
        return url.to_string();
    };
    let start = match url[..at].find("://") {
        Some(i) => i + 3,
        None => url[..at].rfind('/').map_or(0, |i| i + 1),
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_string(),
    }
}

/// Whether `store` names a PostgreSQL store rather than a SQLite file.
pub fn is_postgres_url(store: &str) -> bool {
    store.starts_with("postgresql://") || store.starts_with("postgres://")
}

/// The password for (host, port, db, user) from `PGPASSWORD` or `~/.pgpass`
/// (`PGPASSFILE`), as libpq looks it up.
fn password_for(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    if let Ok(p) = std::env::var("PGPASSWORD") {
        return Some(p);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let field_ok = |pat: &str, value: &str| pat == "*" || pat == value;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // fields separated by `:`, with `\:` and `\\` escapes
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() == 5
            && field_ok(&fields[0], host)
            && field_ok(&fields[1], &port.to_string())
            && field_ok(&fields[2], db)
            && field_ok(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

/// Parses a store URL without connecting: its configuration and user. Refused: what
/// is not a PostgreSQL URL, a URL with a password, a URL without a user. The error names
/// the URL with any password redacted, on one line.
pub fn parse_url(url: &str) -> Result<(postgres::Config, String), StoreError> {
    let bad = |m: String| StoreError::Backend {
        path: one_line(&redact(url)),
        message: one_line(&m),
    };
    let config: postgres::Config = url.parse().map_err(|e| {
        bad(format!(
            "not a PostgreSQL URL (postgresql://user@host[:port]/database): {e}"
        ))
    })?;
    if config.get_password().is_some() {
        return Err(bad(
            "the URL holds a password; put it in PGPASSWORD or ~/.pgpass instead, so it stays out of shell history and logs"
                .into(),
        ));
    }
    let user = config
        .get_user()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("the URL names no user (postgresql://USER@host/database)".into()))?
        .to_string();
    Ok((config, user))
}

/// Control characters (line breaks included) escaped, so a message stays on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A plain client for `url`, the password from `PGPASSWORD` or `~/.pgpass` (a URL with
/// a password is refused). For administration (tests create and drop databases).
pub fn client(url: &str) -> Result<Client, StoreError> {
    let shown = redact(url);
    let bad = |m: String| StoreError::Backend {
        path: shown.clone(),
        message: m,
    };
    let (mut config, user) = parse_url(url)?;
    let db = config.get_dbname().unwrap_or(&user).to_string();
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    if let Some(pw) = password_for(&host, port, &db, &user) {
        config.password(pw);
    }
    config.connect_timeout(std::time::Duration::from_secs(10));
    config.application_name("fnas");
    config
        .connect(NoTls)
        .map_err(|e| bad(format!("cannot connect: {}", pg_reason(&e))))
}

impl PgStore {
    /// Connects to `url` (`postgresql://user@host[:port]/db`) and creates or checks the
    /// schema. Errors name the URL (never a password) and what was expected.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self {
            client: RefCell::new(client(url)?),
            url: redact(url),
            raw_url: url.to_string(),
        };
        store.ensure_schema()?;
        Ok(store)
    }

    /// The URL this store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            path: self.url.clone(),
            message: e.to_string(),
        }
    }

    fn pg(&self, e: postgres::Error) -> StoreError {
        store_error(&self.url, &e)
    }

    /// The connection, re-established first when the server closed it (a restart or a
    /// failover): the call that met the closed connection failed with
    /// [`StoreError::Unavailable`], and the caller decides whether to try again.
    fn conn(&self) -> Result<RefMut<'_, Client>, StoreError> {
        let mut c = self.client.borrow_mut();
        if c.is_closed() {
            *c = client(&self.raw_url).map_err(|e| match e {
                StoreError::Backend { path, message } => StoreError::Unavailable { path, message },
                e => e,
            })?;
        }
        Ok(c)
    }

    fn ensure_schema(&self) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(|e| self.pg(e))?;
        // one schema creation at a time, whoever connects first
        tx.execute("SELECT pg_advisory_xact_lock(727172)", &[])
            .map_err(|e| self.pg(e))?;
        let exists: bool = tx
            .query_one("SELECT to_regclass('fnas_schema') IS NOT NULL", &[])
            .map_err(|e| self.pg(e))?
            .get(0);
        let version: Option<i32> = if exists {
            tx.query_opt("SELECT max(version) FROM fnas_schema", &[])
                .map_err(|e| self.pg(e))?
                .and_then(|r| r.get(0))
        } else {
            None
        };
        match version {
            Some(v) if v > PG_SCHEMA_VERSION => {
                return Err(self.err(format!(
                    "store was written by a newer fnas (schema v{v}); this build knows up to v{PG_SCHEMA_VERSION}"
                )))
            }
            Some(_) => {}
            None => {
                tx.batch_execute(SCHEMA).map_err(|e| self.pg(e))?;
                tx.execute(
                    "INSERT INTO fnas_schema (version) VALUES ($1)",
                    &[&PG_SCHEMA_VERSION],
                )
                .map_err(|e| self.pg(e))?;
            }
        }
        tx.commit().map_err(|e| self.pg(e))
    }

    fn trial_from_row(&self, r: &Row) -> Result<Trial, StoreError> {
        let id: i64 = r.get(0);
        let bad = |what: &str, m: &dyn std::fmt::Display| {
            self.err(format!("trial {id}: bad {what}: {m}"))
        };
        let status: String = r.get(7);
        let status = TrialStatus::parse(&status).ok_or_else(|| bad("status", &status))?;
        let source: Option<String> = r.get(8);
        let source = match source.as_deref() {
            None => None,
            Some(s) => Some(parse_source(s).ok_or_else(|| bad("source", &s))?),
        };
        let metrics: Option<String> = r.get(9);
        let metrics = match metrics {
            None => None,
            Some(s) => {
                Some(serde_json::from_str::<Metrics>(&s).map_err(|e| bad("metrics JSON", &e))?)
            }
        };
        let cost: Option<String> = r.get(11);
        let cost = match cost {
            None => Cost::default(),
            Some(s) => serde_json::from_str::<Cost>(&s).map_err(|e| bad("cost JSON", &e))?,
        };
        let prediction = match (
            r.get::<_, Option<f64>>(15),
            r.get::<_, Option<f64>>(16),
            r.get::<_, Option<bool>>(17),
        ) {
            (None, None, None) => None,
            (Some(mean), Some(std), Some(trusted)) => Some(Prediction { mean, std, trusted }),
            _ => return Err(bad("prediction", &"only part of it is stored")),
        };
        let batch: i64 = r.get(2);
        let index: i64 = r.get(3);
        let attempts: i64 = r.get(18);
        Ok(Trial {
            id,
            experiment_id: r.get(1),
            batch: batch as u64,
            index: index as u32,
            arch: r.get(4),
            canonical: r.get(5),
            log_prob: r.get(6),
            prediction,
            status,
            source,
            metrics,
            reward: r.get(10),
            cost,
            error: r.get(12),
            created_at: r.get(13),
            finished_at: r.get(14),
            attempts: attempts.clamp(0, i64::from(u32::MAX)) as u32,
            queued: r.get(19),
            worker: r.get(20),
            claimed_at: r.get(21),
            leased: r.get(22),
        })
    }

    fn experiment_from_row(&self, r: &Row) -> Result<Experiment, StoreError> {
        let id: i64 = r.get(0);
        let config: String = r.get(7);
        let config = serde_json::from_str(&config)
            .map_err(|e| self.err(format!("experiment {id}: bad config JSON: {e}")))?;
        let seed: i64 = r.get(5);
        let budget: i64 = r.get(6);
        Ok(Experiment {
            id,
            spec: ExperimentSpec {
                name: r.get(1),
                space: r.get(2),
                task: r.get(3),
                strategy: r.get(4),
                seed: seed as u64,
                budget: budget as u64,
                config,
            },
            status: r.get(8),
            created_at: r.get(9),
        })
    }

    fn query_trials(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Trial>, StoreError> {
        let rows = self.conn()?.query(sql, params).map_err(|e| self.pg(e))?;
        rows.iter().map(|r| self.trial_from_row(r)).collect()
    }

    fn update_experiment(
        &self,
        experiment: i64,
        sql: &str,
        value: &(dyn postgres::types::ToSql + Sync),
    ) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute(sql, &[&experiment, value])
            .map_err(|e| self.pg(e))?;
        if n == 0 {
            return Err(StoreError::Invalid(format!(
                "no experiment with id {experiment} in the store"
            )));
        }
        Ok(())
    }

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
        let token = lease.map(|l| l.token);
        let sql = format!(
            "UPDATE trials
                SET status = $2, source = $3, metrics = $4, reward = $5, cost = $6,
                    cost_evaluations = $7, error = $8, finished_at = {NOW}
              WHERE id = $1 AND status = 'pending'
                AND ($9::bigint IS NULL OR lease_token = $9::bigint)"
        );
        let n = self
            .conn()?
            .execute(
                &sql,
                &[
                    &trial,
                    &result.status.as_str(),
                    &source_str(result.source),
                    &metrics,
                    &result.reward,
                    &cost,
                    &evaluations,
                    &result.error,
                    &token,
                ],
            )
            .map_err(|e| {
                if e.code() == Some(&postgres::error::SqlState::CHECK_VIOLATION)
                    && result.source == TrialSource::Critic
                {
                    StoreError::Invalid(format!(
                        "trial {trial}: a critic-scored result needs a trusted prediction \
                         recorded with the trial"
                    ))
                } else {
                    self.pg(e)
                }
            })?;
        if n == 1 {
            return Ok(());
        }
        let status: Option<String> = self
            .conn()?
            .query_opt("SELECT status FROM trials WHERE id = $1", &[&trial])
            .map_err(|e| self.pg(e))?
            .map(|r| r.get(0));
        match status {
            None => Err(StoreError::Invalid(format!(
                "no trial with id {trial} in the store"
            ))),
            Some(s) if s != "pending" || lease.is_none() => Err(StoreError::AlreadyFinished(trial)),
            Some(_) => Err(StoreError::LeaseLost(trial)),
        }
    }
}

/// `e` as a store error: [`StoreError::Unavailable`] when the connection is gone (the
/// next call reconnects), else a backend error.
fn store_error(url: &str, e: &postgres::Error) -> StoreError {
    let (path, message) = (url.to_string(), pg_reason(e));
    if connection_lost(e) {
        StoreError::Unavailable { path, message }
    } else {
        StoreError::Backend { path, message }
    }
}

/// Whether `e` means the connection is gone (closed, or the server is shutting down or
/// starting): SQLSTATE classes 08 (connection exception) and 57 (operator intervention).
fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P")
        }
        // an I/O error on the socket
        None => {
            e.code().is_none()
                && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// A PostgreSQL error as one line: the server's message (with its SQLSTATE), or the
/// client's.
pub(crate) fn pg_reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                m = format!("{m}: {s}");
                src = s.source();
            }
            m
        }
    }
}

impl Store for PgStore {
    fn create_experiment(&mut self, spec: &ExperimentSpec) -> Result<Experiment, StoreError> {
        let config = serde_json::to_string(&spec.config)
            .map_err(|e| StoreError::Invalid(format!("experiment config: {e}")))?;
        let sql = format!(
            "INSERT INTO experiments (name, space, task, strategy, seed, budget, config, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', {NOW}) RETURNING id, created_at"
        );
        let row = self
            .conn()?
            .query_one(
                &sql,
                &[
                    &spec.name,
                    &spec.space,
                    &spec.task,
                    &spec.strategy,
                    &(spec.seed as i64),
                    &(spec.budget as i64),
                    &config,
                ],
            )
            .map_err(|e| {
                if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
                    StoreError::Exists(spec.name.clone())
                } else {
                    self.pg(e)
                }
            })?;
        Ok(Experiment {
            id: row.get(0),
            spec: spec.clone(),
            status: "running".to_string(),
            created_at: row.get(1),
        })
    }

    fn experiment(&self, name: &str) -> Result<Option<Experiment>, StoreError> {
        let sql = format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments e WHERE e.name = $1");
        let row = self
            .conn()?
            .query_opt(&sql, &[&name])
            .map_err(|e| self.pg(e))?;
        row.map(|r| self.experiment_from_row(&r)).transpose()
    }

    fn list_experiments(&self) -> Result<Vec<ExperimentSummary>, StoreError> {
        let sql = format!(
            "SELECT {EXPERIMENT_COLUMNS},
                    (SELECT count(*) FROM trials t WHERE t.experiment_id = e.id),
                    (SELECT count(*) FROM trials t
                      WHERE t.experiment_id = e.id AND t.status <> 'pending'),
                    (SELECT coalesce(sum(t.cost_evaluations), 0)::bigint FROM trials t
                      WHERE t.experiment_id = e.id AND t.status <> 'pending'),
                    (SELECT max(t.reward) FROM trials t
                      WHERE t.experiment_id = e.id AND t.status <> 'pending'
                        AND t.source <> 'critic'
                        AND t.reward > '-Infinity'::float8 AND t.reward < 'Infinity'::float8)
               FROM experiments e ORDER BY e.id"
        );
        let rows = self.conn()?.query(&sql, &[]).map_err(|e| self.pg(e))?;
        rows.iter()
            .map(|r| {
                let trials: i64 = r.get(10);
                let finished: i64 = r.get(11);
                let cost: i64 = r.get(12);
                Ok(ExperimentSummary {
                    experiment: self.experiment_from_row(r)?,
                    trials: trials as u64,
                    finished_trials: finished as u64,
                    cost: cost as u64,
                    best_reward: r.get(13),
                })
            })
            .collect()
    }

    fn set_experiment_status(&mut self, experiment: i64, status: &str) -> Result<(), StoreError> {
        if status != "running" && status != "finished" {
            return Err(StoreError::Invalid(format!(
                "experiment status must be `running` or `finished`, not `{status}`"
            )));
        }
        self.update_experiment(
            experiment,
            "UPDATE experiments SET status = $2 WHERE id = $1",
            &status,
        )
    }

    fn set_experiment_budget(&mut self, experiment: i64, budget: u64) -> Result<(), StoreError> {
        self.update_experiment(
            experiment,
            "UPDATE experiments SET budget = $2 WHERE id = $1",
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
        let url = self.url.clone();
        let e = |e: postgres::Error| store_error(&url, &e);
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(e)?;
        // the experiment row, locked: batches of one experiment are begun one at a time
        let exists = tx
            .query_opt(
                "SELECT 1 FROM experiments WHERE id = $1 FOR UPDATE",
                &[&experiment],
            )
            .map_err(e)?
            .is_some();
        if !exists {
            return Err(StoreError::Invalid(format!(
                "no experiment with id {experiment} in the store"
            )));
        }
        let last = tx
            .query_opt(
                "SELECT batch, open FROM batches WHERE experiment_id = $1 ORDER BY batch DESC LIMIT 1",
                &[&experiment],
            )
            .map_err(e)?
            .map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1)));
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
                    .query_opt(
                        "SELECT 1 FROM batches WHERE experiment_id = $1 AND open AND batch < $2",
                        &[&experiment, &last],
                    )
                    .map_err(e)?
                    .is_some();
                if older_open {
                    return Err(StoreError::Invalid(format!(
                        "batches of experiment {experiment} up to {last} are still open; end the older one before beginning batch {batch}"
                    )));
                }
            }
        }
        tx.execute(
            &format!(
                "INSERT INTO batches (experiment_id, batch, open, size, created_at)
                 VALUES ($1, $2, TRUE, $3, {NOW})"
            ),
            &[&experiment, &b, &(trials.len() as i64)],
        )
        .map_err(e)?;
        let ins = tx
            .prepare(&format!(
                "INSERT INTO trials (experiment_id, batch, idx, arch, canonical, log_prob,
                                     pred_mean, pred_std, pred_trusted, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', {NOW}) RETURNING id"
            ))
            .map_err(e)?;
        let mut ids = Vec::with_capacity(trials.len());
        for (i, t) in trials.iter().enumerate() {
            let row = tx
                .query_one(
                    &ins,
                    &[
                        &experiment,
                        &b,
                        &(i as i64),
                        &t.arch,
                        &t.canonical,
                        &t.log_prob,
                        &t.prediction.map(|p| p.mean),
                        &t.prediction.map(|p| p.std),
                        &t.prediction.map(|p| p.trusted),
                    ],
                )
                .map_err(e)?;
            ids.push(row.get(0));
        }
        tx.execute(
            &format!(
                "INSERT INTO checkpoints (experiment_id, batch, open, state, updated_at)
                 VALUES ($1, $2, TRUE, $3, {NOW})
                 ON CONFLICT (experiment_id) DO UPDATE
                   SET batch = excluded.batch, open = TRUE, state = excluded.state,
                       updated_at = excluded.updated_at"
            ),
            &[&experiment, &b, &checkpoint],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(ids)
    }

    fn finish_trial(&mut self, trial: TrialId, result: &TrialResult) -> Result<(), StoreError> {
        self.finish_with(trial, result, None)
    }

    fn end_batch(
        &mut self,
        experiment: i64,
        batch: u64,
        checkpoint: &[u8],
    ) -> Result<(), StoreError> {
        let b = batch_i64(batch)?;
        let url = self.url.clone();
        let e = |e: postgres::Error| store_error(&url, &e);
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(e)?;
        let open: Option<bool> = tx
            .query_opt(
                "SELECT open FROM batches WHERE experiment_id = $1 AND batch = $2 FOR UPDATE",
                &[&experiment, &b],
            )
            .map_err(e)?
            .map(|r| r.get(0));
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
            .query_opt(
                "SELECT 1 FROM trials WHERE experiment_id = $1 AND batch = $2 AND status = 'pending' LIMIT 1",
                &[&experiment, &b],
            )
            .map_err(e)?
            .is_some();
        if pending {
            return Err(StoreError::BatchIncomplete { experiment, batch });
        }
        let r = tx
            .query_one(
                "SELECT (SELECT min(batch) FROM batches
                          WHERE experiment_id = $1 AND open AND batch < $2),
                        (SELECT max(batch) FROM batches
                          WHERE experiment_id = $1 AND open AND batch > $2)",
                &[&experiment, &b],
            )
            .map_err(e)?;
        let (older, later): (Option<i64>, Option<i64>) = (r.get(0), r.get(1));
        if let Some(older) = older {
            return Err(StoreError::Invalid(format!(
                "batch {older} of experiment {experiment} is still open; batches end in order"
            )));
        }
        tx.execute(
            &format!(
                "UPDATE batches SET open = FALSE, closed_at = {NOW} WHERE experiment_id = $1 AND batch = $2"
            ),
            &[&experiment, &b],
        )
        .map_err(e)?;
        // the checkpoint names the latest batch begun: a lookahead batch stays open in it
        let (cp_batch, cp_open) = match later {
            Some(l) => (l, true),
            None => (b, false),
        };
        tx.execute(
            &format!(
                "INSERT INTO checkpoints (experiment_id, batch, open, state, updated_at)
                 VALUES ($1, $2, $4, $3, {NOW})
                 ON CONFLICT (experiment_id) DO UPDATE
                   SET batch = excluded.batch, open = excluded.open, state = excluded.state,
                       updated_at = excluded.updated_at"
            ),
            &[&experiment, &cp_batch, &checkpoint, &cp_open],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    fn open_batches(&self, experiment: i64) -> Result<Vec<u64>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT batch FROM batches WHERE experiment_id = $1 AND open ORDER BY batch",
                &[&experiment],
            )
            .map_err(|e| self.pg(e))?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, i64>(0).max(0) as u64)
            .collect())
    }

    fn checkpoint(&self, experiment: i64) -> Result<Option<Checkpoint>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT batch, open, state FROM checkpoints WHERE experiment_id = $1",
                &[&experiment],
            )
            .map_err(|e| self.pg(e))?;
        Ok(row.map(|r| Checkpoint {
            batch: r.get::<_, i64>(0) as u64,
            open: r.get(1),
            state: r.get(2),
        }))
    }

    fn trials(&self, experiment: i64) -> Result<Vec<Trial>, StoreError> {
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE experiment_id = $1 ORDER BY batch, idx"
        );
        self.query_trials(&sql, &[&experiment])
    }

    fn batch_trials(&self, experiment: i64, batch: u64) -> Result<Vec<Trial>, StoreError> {
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE experiment_id = $1 AND batch = $2 ORDER BY idx"
        );
        self.query_trials(&sql, &[&experiment, &batch_i64(batch)?])
    }

    fn find_evaluated(
        &self,
        experiment: i64,
        canonical: &str,
    ) -> Result<Option<Trial>, StoreError> {
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials
              WHERE experiment_id = $1 AND canonical = $2
                AND status IN ('done', 'failed') AND source = 'evaluated'
              ORDER BY id LIMIT 1"
        );
        Ok(self
            .query_trials(&sql, &[&experiment, &canonical])?
            .into_iter()
            .next())
    }

    fn queue_trials(&mut self, trials: &[TrialId]) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "UPDATE trials SET queued = TRUE WHERE id = ANY($1) AND status = 'pending' AND NOT queued",
                &[&trials],
            )
            .map_err(|e| self.pg(e))?;
        Ok(())
    }

    fn claim_trial(
        &mut self,
        experiment: i64,
        holder: &Holder,
        lease_seconds: f64,
    ) -> Result<Option<(Trial, Lease)>, StoreError> {
        let sql = format!(
            "UPDATE trials
                SET lease_token = {TOKEN}, lease_holder = $2,
                    lease_deadline = {NOW} + $3, attempts = attempts + 1,
                    claimed_at = {NOW}
              WHERE id = (SELECT id FROM trials
                           WHERE experiment_id = $1 AND status = 'pending' AND queued
                             AND lease_token IS NULL
                           ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
              RETURNING {TRIAL_COLUMNS}, lease_token"
        );
        let row = self
            .conn()?
            .query_opt(&sql, &[&experiment, &holder.encode(), &lease_seconds])
            .map_err(|e| self.pg(e))?;
        let Some(r) = row else {
            return Ok(None);
        };
        let trial = self.trial_from_row(&r)?;
        let lease = Lease {
            trial: trial.id,
            token: r.get(23),
            attempt: trial.attempts,
        };
        Ok(Some((trial, lease)))
    }

    fn heartbeat(&mut self, lease: &Lease, lease_seconds: f64) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute(
                &format!(
                    "UPDATE trials SET lease_deadline = {NOW} + $3
                      WHERE id = $1 AND lease_token = $2 AND status = 'pending'"
                ),
                &[&lease.trial, &lease.token, &lease_seconds],
            )
            .map_err(|e| self.pg(e))?;
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
        let url = self.url.clone();
        let e = |e: postgres::Error| store_error(&url, &e);
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(e)?;
        let rows = tx
            .query(
                &format!(
                    "SELECT id, lease_token, lease_holder, lease_deadline < {NOW}, attempts FROM trials
                      WHERE experiment_id = $1 AND status = 'pending' AND lease_token IS NOT NULL
                      FOR UPDATE SKIP LOCKED"
                ),
                &[&experiment],
            )
            .map_err(e)?;
        let mut reaped = Reaped::default();
        for r in rows {
            let (id, token): (i64, i64) = (r.get(0), r.get(1));
            let holder: Option<String> = r.get(2);
            let expired: Option<bool> = r.get(3);
            let attempts: i64 = r.get(4);
            let who = holder.as_deref().and_then(Holder::decode);
            if !(expired.unwrap_or(true) || who.as_ref().is_some_and(dead)) {
                continue;
            }
            if attempts >= i64::from(max_attempts.max(1)) {
                let reason = format!(
                    "given up after {attempts} lease(s) expired; the last holder was {}",
                    who.map_or_else(|| "unknown".to_string(), |h| h.to_string())
                );
                tx.execute(
                    &format!(
                        "UPDATE trials SET status = 'failed', source = 'evaluated',
                                cost = '{{\"evaluations\":0}}', error = $3, finished_at = {NOW}
                          WHERE id = $1 AND lease_token = $2 AND status = 'pending'"
                    ),
                    &[&id, &token, &reason],
                )
                .map_err(e)?;
                reaped.failed += 1;
            } else {
                tx.execute(
                    "UPDATE trials SET lease_token = NULL, lease_deadline = NULL
                      WHERE id = $1 AND lease_token = $2 AND status = 'pending'",
                    &[&id, &token],
                )
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
        let url = self.url.clone();
        let e = |e: postgres::Error| store_error(&url, &e);
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(e)?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM experiments WHERE id = $1 FOR UPDATE",
                &[&experiment],
            )
            .map_err(e)?
            .is_some();
        if !exists {
            return Err(StoreError::Invalid(format!(
                "no experiment with id {experiment} in the store"
            )));
        }
        let current = tx
            .query_opt(
                &format!(
                    "SELECT holder, since, deadline, deadline >= {NOW} FROM drivers WHERE experiment_id = $1"
                ),
                &[&experiment],
            )
            .map_err(e)?;
        if let Some(r) = current {
            let h: String = r.get(0);
            let who = Holder::decode(&h).unwrap_or(Holder {
                host: h.clone(),
                pid: 0,
                role: "driver".into(),
            });
            let live: bool = r.get(3);
            if live && !dead(&who) {
                return Ok(Err(DriverInfo {
                    holder: who,
                    since: r.get(1),
                    deadline: r.get(2),
                }));
            }
        }
        let token: i64 = tx
            .query_one(
                &format!(
                    "INSERT INTO drivers (experiment_id, token, holder, since, deadline)
                     VALUES ($1, {TOKEN}, $2, {NOW}, {NOW} + $3)
                     ON CONFLICT (experiment_id) DO UPDATE
                       SET token = excluded.token, holder = excluded.holder,
                           since = excluded.since, deadline = excluded.deadline
                     RETURNING token"
                ),
                &[&experiment, &holder.encode(), &lease_seconds],
            )
            .map_err(e)?
            .get(0);
        tx.commit().map_err(e)?;
        Ok(Ok(DriverLease { experiment, token }))
    }

    fn renew_driver(&mut self, lease: &DriverLease, lease_seconds: f64) -> Result<(), StoreError> {
        let n = self.conn()?
            .execute(
                &format!(
                    "UPDATE drivers SET deadline = {NOW} + $3 WHERE experiment_id = $1 AND token = $2"
                ),
                &[&lease.experiment, &lease.token, &lease_seconds],
            )
            .map_err(|e| self.pg(e))?;
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
        self.conn()?
            .execute(
                "DELETE FROM drivers WHERE experiment_id = $1 AND token = $2",
                &[&lease.experiment, &lease.token],
            )
            .map_err(|e| self.pg(e))?;
        Ok(())
    }
}

/// The server the PostgreSQL tests use: `$FNAS_TEST_POSTGRES`, by default the one
/// `scripts/postgres.sh` starts (password from `PGPASSWORD` or `~/.pgpass`).
pub fn test_server() -> String {
    std::env::var("FNAS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://fnas@127.0.0.1:5432/fnas".to_string())
}

/// A fresh database on [`test_server`] with a unique name, dropped when this goes: every
/// test and benchmark run gets a store of its own.
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    /// Creates `fnas_<tag>_<pid>_<nanos>_<n>` (tag: lowercase letters, digits, `_`).
    pub fn create(tag: &str) -> Result<Self, StoreError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!(
            "fnas_{tag}_{}_{nanos}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let server = test_server();
        let mut admin = client(&server)?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| StoreError::Backend {
                path: redact(&server),
                message: pg_reason(&e),
            })?;
        Ok(Self { name })
    }

    /// The database's URL (the server's, with this database).
    pub fn url(&self) -> String {
        let base = test_server();
        let cut = base.rfind('/').unwrap_or(base.len());
        format!("{}/{}", &base[..cut], self.name)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = client(&test_server()) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
