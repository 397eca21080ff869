//! Schema migrations: a store written by the v1 schema (no critic) is upgraded in
//! place to the current one when opened for writing, keeping every row bit for bit.

use std::path::Path;

use fnas_core::store::{NewTrial, TrialResult, TrialSource, TrialStatus};
use fnas_core::{Cost, Metrics, Prediction};
use fnas_store::{SqliteStore, Store, StoreError, APPLICATION_ID, SCHEMA_VERSION};
use rusqlite::types::Value;
use rusqlite::Connection;

/// The v1 schema exactly as released (`MIGRATIONS[0]`; a unit test in `sqlite.rs`
/// checks the two stay identical).
const V1_SCHEMA: &str = include_str!("fixtures/schema_v1.sql");

/// The columns of the v1 `trials` table.
const V1_TRIAL_COLUMNS: &str = "id, experiment_id, batch, idx, arch, canonical, log_prob, \
     status, source, metrics, reward, cost, cost_evaluations, error, created_at, finished_at";

/// An empty v1 store, created the way a v1 build did (WAL, application id, schema and
/// version in one transaction).
fn create_v1(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         PRAGMA application_id = {APPLICATION_ID};
         {V1_SCHEMA}
         PRAGMA user_version = 1;
         COMMIT;"
    ))
    .unwrap();
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    c
}

fn json<T: serde::Serialize>(x: &T) -> String {
    serde_json::to_string(x).unwrap()
}

fn metrics(acc: f64) -> Metrics {
    Metrics {
        val_accuracy: acc,
        test_accuracy: Some(acc * 0.99),
        ..Metrics::default()
    }
}

/// Fills a v1 store with what a v1 build writes: an experiment with a closed batch of
/// finished trials (evaluated, cached, failed) and an open batch with a finished and a
/// pending trial plus its open checkpoint, and an experiment without trials.
/// Returns (experiment id, id of the pending trial).
fn populate_v1(c: &Connection) -> (i64, i64) {
    c.execute(
        "INSERT INTO experiments (name, space, task, strategy, seed, budget, config, status,
                                  created_at)
         VALUES ('old', 'nas-bench-201', 'nas-bench-201/cifar10', 'evolution', ?1, 50,
                 '{\"population\":10,\"lr\":0.30000000000000004}', 'running', 1700000000.25)",
        [u64::MAX as i64],
    )
    .unwrap();
    let exp = c.last_insert_rowid();
    c.execute(
        "INSERT INTO experiments (name, space, task, strategy, seed, budget, config, status,
                                  created_at)
         VALUES ('empty', 's', 't', 'random', 1, 2, '{}', 'finished', 1700000001.5)",
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO batches (experiment_id, batch, open, size, created_at, closed_at)
         VALUES (?1, 0, 0, 4, 1700000010.0, 1700000020.0),
                (?1, 1, 1, 2, 1700000030.0, NULL)",
        [exp],
    )
    .unwrap();
    let finished = |batch: i64,
                    idx: i64,
                    (arch, canonical, log_prob): (&str, &str, Option<f64>),
                    (status, source, error): (&str, &str, Option<&str>),
                    (m, reward, cost): (Option<Metrics>, Option<f64>, Cost)| {
        c.execute(
            "INSERT INTO trials (experiment_id, batch, idx, arch, canonical, log_prob,
                                 status, source, metrics, reward, cost, cost_evaluations,
                                 error, created_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            rusqlite::params![
                exp,
                batch,
                idx,
                arch,
                canonical,
                log_prob,
                status,
                source,
                m.as_ref().map(json),
                reward,
                json(&cost),
                cost.evaluations as i64,
                error,
                1700000010.5 + idx as f64,
                1700000011.5 + idx as f64,
            ],
        )
        .unwrap();
    };
    let ok = ("done", "evaluated", None);
    let acc = |x: f64| (Some(metrics(x)), Some(x), Cost::query());
    finished(0, 0, ("a0", "c0", Some(-0.0)), ok, acc(0.1 + 0.2));
    finished(
        0,
        1,
        ("a1", "c0", Some(-1.2345678901234567e-300)),
        ("done", "cached", None),
        (Some(metrics(0.1 + 0.2)), Some(0.1 + 0.2), Cost::default()),
    );
    finished(
        0,
        2,
        ("a2", "c2", None),
        ("failed", "evaluated", Some("diverged")),
        (None, None, Cost::query()),
    );
    finished(0, 3, ("a3", "c3", Some(f64::NEG_INFINITY)), ok, acc(5e-324));
    finished(1, 0, ("b0", "d0", Some(-2.5)), ok, acc(0.75));
    c.execute(
        "INSERT INTO trials (experiment_id, batch, idx, arch, canonical, log_prob, status,
                             created_at)
         VALUES (?1, 1, 1, 'b1', 'd1', 0.1, 'pending', 1700000030.0)",
        [exp],
    )
    .unwrap();
    let pending = c.last_insert_rowid();
    c.execute(
        "INSERT INTO checkpoints (experiment_id, batch, open, state, updated_at)
         VALUES (?1, 1, 1, x'00ff61736b2d3100', 1700000030.0)",
        [exp],
    )
    .unwrap();
    (exp, pending)
}

/// Every row of a query, each value shown exactly (reals by their bits, so that -0.0
/// and 0.0 differ).
fn dump(c: &Connection, sql: &str) -> Vec<Vec<String>> {
    let mut stmt = c.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get::<_, Value>(i)? {
                    Value::Null => "null".to_string(),
                    Value::Integer(x) => format!("int {x}"),
                    Value::Real(x) => format!("real {:#018x}", x.to_bits()),
                    Value::Text(s) => format!("text {s:?}"),
                    Value::Blob(b) => format!("blob {b:?}"),
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// Everything a v1 store holds, as v1 columns.
fn dump_v1(c: &Connection) -> Vec<Vec<Vec<String>>> {
    vec![
        dump(c, "SELECT * FROM experiments ORDER BY id"),
        dump(c, "SELECT * FROM batches ORDER BY experiment_id, batch"),
        dump(
            c,
            &format!("SELECT {V1_TRIAL_COLUMNS} FROM trials ORDER BY id"),
        ),
        dump(c, "SELECT * FROM checkpoints ORDER BY experiment_id"),
    ]
}

fn user_version(c: &Connection) -> u32 {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// The schema objects (not SQLite's own), as (type, name, table).
fn schema_objects(c: &Connection) -> Vec<(String, String, String)> {
    let mut stmt = c
        .prepare(
            "SELECT type, name, tbl_name FROM sqlite_master
              WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn trials_sql(c: &Connection) -> String {
    c.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'trials'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn v1_store_is_upgraded_in_place() {
    assert_eq!(SCHEMA_VERSION, 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let c = create_v1(&path);
    let (exp, pending) = populate_v1(&c);
    let before = dump_v1(&c);
    let objects_v1 = schema_objects(&c);
    assert!(!trials_sql(&c).contains("critic"));
    drop(c);

    // a read-only open does not upgrade
    let m = SqliteStore::open_read_only(&path).unwrap_err().to_string();
    assert!(
        m.contains("schema v1") && m.contains("open it once for writing"),
        "{m}"
    );

    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    s.integrity_check().unwrap();

    // every row survived, bit for bit, and no trial has a prediction
    {
        let c = Connection::open(&path).unwrap();
        assert_eq!(user_version(&c), SCHEMA_VERSION);
        assert_eq!(dump_v1(&c), before, "every row survives the migration");
        let with_prediction: i64 = c
            .query_row(
                "SELECT count(*) FROM trials WHERE pred_mean IS NOT NULL
                    OR pred_std IS NOT NULL OR pred_trusted IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(with_prediction, 0);
        // same tables, index and trigger as before plus v3's pool index and v4's queue
        // index and driver table; no leftover of the rebuild
        let mut expected = objects_v1.clone();
        for (kind, name, table) in [
            ("index", "pool_entries_by_budget", "pool_entries"),
            ("table", "pool_entries", "pool_entries"),
            ("index", "trials_queue", "trials"),
            ("table", "drivers", "drivers"),
        ] {
            expected.push((kind.into(), name.into(), table.into()));
        }
        expected.sort();
        assert_eq!(schema_objects(&c), expected);
        assert!(trials_sql(&c).contains("'critic'"));
        let fk: i64 = c
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk, 0);
        // the index still serves find_evaluated
        let plan: String = c
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM trials
                  WHERE experiment_id = 1 AND canonical = 'c0'",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("trials_by_canonical"), "{plan}");
    }

    // the API reads the old rows
    let trials = s.trials(exp).unwrap();
    assert_eq!(trials.len(), 6);
    assert!(trials.iter().all(|t| t.prediction.is_none()));
    assert_eq!(
        trials.iter().map(|t| t.source).collect::<Vec<_>>(),
        [
            Some(TrialSource::Evaluated),
            Some(TrialSource::Cached),
            Some(TrialSource::Evaluated),
            Some(TrialSource::Evaluated),
            Some(TrialSource::Evaluated),
            None
        ]
    );
    assert_eq!(
        trials[0].log_prob.map(f64::to_bits),
        Some((-0.0f64).to_bits())
    );
    assert_eq!(
        trials[3].reward.map(f64::to_bits),
        Some(5e-324f64.to_bits())
    );
    assert_eq!(trials[3].log_prob, Some(f64::NEG_INFINITY));
    assert_eq!(trials[0].metrics, Some(metrics(0.1 + 0.2)));
    assert_eq!(trials[2].status, TrialStatus::Failed);
    assert_eq!(trials[2].error.as_deref(), Some("diverged"));
    assert_eq!(trials[5].id, pending);
    assert_eq!(trials[5].status, TrialStatus::Pending);
    let cp = s.checkpoint(exp).unwrap().unwrap();
    assert_eq!((cp.batch, cp.open), (1, true));
    assert_eq!(cp.state, b"\x00\xffask-1\x00");
    assert_eq!(
        s.find_evaluated(exp, "c0").unwrap().unwrap().id,
        trials[0].id
    );
    let list = s.list_experiments().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].experiment.spec.seed, u64::MAX);
    assert_eq!(list[0].experiment.created_at, 1700000000.25);
    assert_eq!(
        (list[0].trials, list[0].finished_trials, list[0].cost),
        (6, 5, 4)
    );
    assert_eq!(list[0].best_reward, Some(0.75));
    assert_eq!(list[1].experiment.spec.name, "empty");
    assert_eq!(list[1].experiment.status, "finished");

    // the interrupted search resumes: the pending trial can be finished, the batch closed
    s.finish_trial(
        pending,
        &TrialResult {
            status: TrialStatus::Done,
            source: TrialSource::Evaluated,
            metrics: Some(metrics(0.5)),
            reward: Some(0.5),
            cost: Cost::query(),
            error: None,
        },
    )
    .unwrap();
    s.end_batch(exp, 1, b"tell-1").unwrap();
    // and the next batch can use the critic
    let ids = s
        .begin_batch(
            exp,
            2,
            &[NewTrial {
                arch: "n0".into(),
                canonical: "e0".into(),
                log_prob: None,
                prediction: Some(Prediction {
                    mean: 0.99,
                    std: 0.01,
                    trusted: true,
                }),
            }],
            b"ask-2",
        )
        .unwrap();
    s.finish_trial(
        ids[0],
        &TrialResult {
            status: TrialStatus::Done,
            source: TrialSource::Critic,
            metrics: None,
            reward: Some(0.99),
            cost: Cost::default(),
            error: None,
        },
    )
    .unwrap();
    s.end_batch(exp, 2, b"tell-2").unwrap();
    let x = &s.list_experiments().unwrap()[0];
    assert_eq!((x.trials, x.finished_trials, x.cost), (7, 7, 5));
    assert_eq!(x.best_reward, Some(0.75), "the critic's 0.99 is not found");
    s.integrity_check().unwrap();
    let after = s.trials(exp).unwrap();
    drop(s);

    // the trigger still forbids changing a finished trial, the CHECKs still hold
    let c = Connection::open(&path).unwrap();
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    for (sql, why) in [
        ("UPDATE trials SET reward = 1.0 WHERE id = ?1", "immutable"),
        (
            "DELETE FROM batches WHERE batch = 0 AND ?1 > 0",
            "FOREIGN KEY",
        ),
    ] {
        let err = c.execute(sql, [pending]).unwrap_err().to_string();
        assert!(err.contains(why), "{sql}: {err}");
    }
    for id in after.iter().map(|t| t.id) {
        let err = c
            .execute("UPDATE trials SET error = 'x' WHERE id = ?1", [id])
            .unwrap_err();
        assert!(err.to_string().contains("immutable"), "trial {id}: {err}");
    }
    drop(c);

    // reopening (read-only too) is a no-op: already current
    let ro = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(ro.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(ro.trials(exp).unwrap(), after);
    ro.integrity_check().unwrap();
    drop(ro);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.trials(exp).unwrap(), after);
}

#[test]
fn migrated_schema_equals_a_new_stores() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("v1.db");
    populate_v1(&create_v1(&old));
    drop(SqliteStore::open(&old).unwrap());
    let new = dir.path().join("new.db");
    drop(SqliteStore::open(&new).unwrap());
    let schema = |p: &Path| {
        dump(
            &Connection::open(p).unwrap(),
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
        )
    };
    assert_eq!(schema(&old), schema(&new));
}

#[test]
fn critic_rules_hold_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let (exp, pending) = populate_v1(&create_v1(&path));
    let mut s = SqliteStore::open(&path).unwrap();
    // the pending trial has no prediction: the store refuses a critic result for it
    let critic = TrialResult {
        status: TrialStatus::Done,
        source: TrialSource::Critic,
        metrics: None,
        reward: Some(0.9),
        cost: Cost::default(),
        error: None,
    };
    let err = s.finish_trial(pending, &critic).unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("trusted prediction")),
        "{err:?}"
    );
    s.finish_trial(
        pending,
        &TrialResult {
            source: TrialSource::Evaluated,
            metrics: Some(metrics(0.9)),
            cost: Cost::query(),
            ..critic.clone()
        },
    )
    .unwrap();
    s.end_batch(exp, 1, b"t").unwrap();
    let untrusted = Prediction {
        mean: 0.9,
        std: 0.3,
        trusted: false,
    };
    let ids = s
        .begin_batch(
            exp,
            2,
            &[
                NewTrial {
                    arch: "u".into(),
                    canonical: "u".into(),
                    log_prob: None,
                    prediction: Some(untrusted),
                },
                NewTrial {
                    arch: "t".into(),
                    canonical: "t".into(),
                    log_prob: None,
                    prediction: Some(Prediction {
                        trusted: true,
                        ..untrusted
                    }),
                },
            ],
            b"a",
        )
        .unwrap();
    let err = s.finish_trial(ids[0], &critic).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "untrusted: {err:?}");
    drop(s);

    // raw writes get the same answers from the table's CHECKs
    let c = Connection::open(&path).unwrap();
    let finish = "UPDATE trials SET status = ?2, source = ?3, metrics = ?4, reward = ?5,
                         cost = '{}', cost_evaluations = ?6, error = ?7, finished_at = 1
                   WHERE id = ?1";
    type Row<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<f64>,
        i64,
        Option<&'a str>,
    );
    let refused: [(i64, Row); 6] = [
        (ids[0], ("done", "critic", None, Some(0.9), 0, None)), // untrusted
        (ids[1], ("failed", "critic", None, Some(0.9), 0, Some("x"))),
        (ids[1], ("done", "critic", None, None, 0, None)),
        (ids[1], ("done", "critic", Some("{}"), Some(0.9), 0, None)),
        (ids[1], ("done", "critic", None, Some(0.9), 1, None)),
        (ids[1], ("done", "oracle", None, Some(0.9), 0, None)),
    ];
    for (id, (status, source, m, reward, evals, error)) in refused {
        let err = c
            .execute(
                finish,
                rusqlite::params![id, status, source, m, reward, evals, error],
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("CHECK constraint failed"),
            "{status} {source} {m:?} {reward:?} {evals}: {err}"
        );
    }
    // a partial prediction, a non-real one, a trusted flag that is not a boolean
    for set in [
        "pred_mean = NULL",
        "pred_std = NULL",
        "pred_trusted = NULL",
        "pred_mean = 'high'",
        "pred_std = 1",
        "pred_trusted = 2",
    ] {
        let err = c
            .execute(&format!("UPDATE trials SET {set} WHERE id = ?1"), [ids[1]])
            .unwrap_err();
        assert!(
            err.to_string().contains("CHECK constraint failed"),
            "{set}: {err}"
        );
    }
    let n = c
        .execute(
            finish,
            rusqlite::params![
                ids[1],
                "done",
                "critic",
                None::<String>,
                0.9,
                0,
                None::<String>
            ],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn failed_migration_leaves_the_v1_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let c = create_v1(&path);
    populate_v1(&c);
    // a row a v1 build never writes: a trial of a batch that does not exist
    c.pragma_update(None, "foreign_keys", "OFF").unwrap();
    c.execute(
        "INSERT INTO trials (experiment_id, batch, idx, arch, canonical, status, created_at)
         VALUES (1, 9, 0, 'orphan', 'orphan', 'pending', 1)",
        [],
    )
    .unwrap();
    let before = dump_v1(&c);
    let sql_before = trials_sql(&c);
    drop(c);

    let m = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        m.contains("violate a foreign key") && m.contains("left at v1"),
        "{m}"
    );
    let c = Connection::open(&path).unwrap();
    assert_eq!(user_version(&c), 1);
    assert_eq!(trials_sql(&c), sql_before, "the old table is still there");
    assert_eq!(dump_v1(&c), before);
    assert!(
        !schema_objects(&c)
            .iter()
            .any(|(_, name, _)| name == "trials_v2"),
        "the rebuild was rolled back"
    );
    assert!(schema_objects(&c)
        .iter()
        .any(|(_, name, _)| name == "trials_finished_are_immutable"));
}
