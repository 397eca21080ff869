//! Stored settings of every version read through `migrate`: version 0 (written before
//! versions were recorded) gets the values its serde defaults used to give, the current
//! version reads back unchanged, a newer one is refused.

use fnas_child::task::ProxyTask;
use fnas_core::search::BudgetUnit;
use fnas_core::strategy::EvolutionConfig;
use fnas_core::RewardConfig;
use fnas_learn::fnas::FnasConfig;
use fnas_learn::ppo::PpoConfig;
use fnas_run::settings::{default_evolution, SETTINGS_VERSION};
use fnas_run::{migrate, PoolPolicy, SearchSettings, StrategyKind, TrainingConfig};
use serde_json::{json, Value};

fn reward() -> Value {
    serde_json::to_value(RewardConfig::default()).unwrap()
}

fn task() -> ProxyTask {
    ProxyTask::by_name_or_path("fashion-mnist-tiny").unwrap()
}

/// A benchmark search as the first versions stored it: no evolution, ppo, fnas, select,
/// transfer or version.
#[test]
fn v0_benchmark_search() {
    let v0 = json!({
        "benchmark": "nas-bench-graph",
        "dataset": "cora",
        "batch_size": 8,
        "reward": reward(),
    });
    let s = migrate(v0).unwrap();
    assert_eq!(s.version, SETTINGS_VERSION);
    // EvolutionConfig::default(), what `#[serde(default)]` gave; not the 20/5 of new ones
    assert_eq!(
        s.evolution,
        EvolutionConfig {
            population: 50,
            sample: 10
        }
    );
    assert_ne!(s.evolution, default_evolution());
    assert_eq!(s.ppo, PpoConfig::default());
    assert_eq!(s.fnas, None);
    assert_eq!(s.select, None);
    assert!(s.transfer.is_empty());
    assert_eq!(s.training, None);
    assert_eq!(s.simulate_eval_seconds, None);
    assert_eq!(s.artifacts, None);
    assert_eq!(s.budget_unit(), BudgetUnit::Evaluations);
}

/// A real-training search with the pool, stored before the device, the image budget,
/// reward seeds and the later pool settings existed.
#[test]
fn v0_real_training_with_pool() {
    let v0 = json!({
        "benchmark": "train",
        "dataset": "fashion-mnist-tiny",
        "batch_size": 4,
        "reward": reward(),
        "evolution": { "population": 20, "sample": 5 },
        "ppo": serde_json::to_value(PpoConfig::default()).unwrap(),
        "fnas": null,
        "transfer": [],
        "training": {
            "task": serde_json::to_value(task()).unwrap(),
            "space": "mnas-28",
            "workers": 2,
            "latency_runs": 20,
            "pool": { "warm_epochs": 2, "budget_class": 123456, "limit_mb": 512 },
        },
    });
    let s = migrate(v0).unwrap();
    let expected = TrainingConfig {
        task: task(),
        space: "mnas-28".into(),
        workers: 2,
        latency_runs: 20,
        device: "cpu".into(),
        pool: Some(PoolPolicy {
            warm_epochs: 2.0,
            budget_class: Some(123_456),
            limit_mb: 512,
            min_networks: 8,
            per_block: true,
            warm_lr_scale: 1.0,
            max_distance: None,
            other_tasks: true,
        }),
        budget_unit: BudgetUnit::Evaluations,
        reward_seeds: 1,
        command: None,
        kernels: None,
    };
    assert_eq!(s.training, Some(expected));
    assert_eq!(s.evolution, default_evolution());
    assert_eq!(s.reward_seeds(), 1);
    // stored values are kept, not replaced by the version-0 defaults
    let mut v0 = serde_json::to_value(&s).unwrap();
    let obj = v0.as_object_mut().unwrap();
    obj.remove("version");
    obj["training"]["device"] = json!("cuda:1");
    obj["training"]["budget_unit"] = json!("images");
    obj["training"]["pool"]["other_tasks"] = json!(false);
    obj["training"]["pool"]["max_distance"] = json!(0.8);
    let s = migrate(v0).unwrap();
    let t = s.training.as_ref().unwrap();
    assert_eq!(
        (t.device.as_str(), t.budget_unit),
        ("cuda:1", BudgetUnit::Images)
    );
    let p = t.pool.as_ref().unwrap();
    assert_eq!((p.other_tasks, p.max_distance), (false, Some(0.8)));
}

/// An FNAS search stored before transfer weighting existed pooled its transfer sources;
/// the fields the FNAS config itself lacks take its defaults.
#[test]
fn v0_fnas_strategy() {
    let v0 = json!({
        "benchmark": "nas-bench-graph",
        "dataset": "citeseer",
        "batch_size": 8,
        "reward": reward(),
        "fnas": { "gate": true, "tau": 0.7 },
        "transfer": [{ "experiment": "ppo-cora", "task": "nas-bench-graph/cora", "points": 500 }],
    });
    let s = migrate(v0).unwrap();
    let f = s.fnas.clone().unwrap();
    assert_eq!(
        f,
        FnasConfig {
            tau: 0.7,
            transfer_weighting: false,
            ..FnasConfig::default()
        }
    );
    assert_eq!(s.transfer.len(), 1);
    assert_eq!(s.transfer[0].points, 500);
    // a current FNAS search keeps its weighting
    let mut now = SearchSettings::new(
        fnas_bench::Benchmark::NasBenchGraph,
        "cora",
        8,
        RewardConfig::default(),
    );
    now.fnas = StrategyKind::Fnas.fnas_preset(&now.ppo);
    let back = migrate(serde_json::to_value(&now).unwrap()).unwrap();
    assert!(back.fnas.as_ref().unwrap().transfer_weighting);
    assert_eq!(back, now);
}

/// What this build writes reads back identically.
#[test]
fn current_settings_round_trip() {
    let tc = TrainingConfig {
        task: task(),
        space: "mnas-28".into(),
        workers: 1,
        latency_runs: 5,
        device: "cpu".into(),
        pool: Some(PoolPolicy {
            warm_epochs: 0.5,
            budget_class: None,
            limit_mb: 2048,
            min_networks: 8,
            per_block: false,
            warm_lr_scale: 0.3,
            max_distance: Some(1.0),
            other_tasks: false,
        }),
        budget_unit: BudgetUnit::Images,
        reward_seeds: 3,
        command: Some(fnas_run::TrialCommandConfig {
            command: "python3 train.py --fast".into(),
            code_dir: "/srv/code".into(),
            timeout_seconds: Some(600.0),
        }),
        kernels: None,
    };
    let mut s = SearchSettings::training(tc, 8, RewardConfig::default());
    s.select = StrategyKind::FnasSelectUcb.select_preset(&s.ppo);
    s.simulate_eval_seconds = Some(0.25);
    s.artifacts = Some("/shared/fnas".into());
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["version"], json!(SETTINGS_VERSION));
    assert_eq!(migrate(v).unwrap(), s);
}

#[test]
fn a_newer_version_is_refused() {
    let v = json!({
        "version": SETTINGS_VERSION + 1,
        "benchmark": "nas-bench-graph",
        "dataset": "cora",
        "batch_size": 8,
        "reward": reward(),
        "something_new": true,
    });
    let e = migrate(v).unwrap_err().to_string();
    assert!(e.contains("written by a newer fnas"), "{e}");
    assert!(
        e.contains(&format!("version {}", SETTINGS_VERSION + 1)),
        "{e}"
    );
    let e = migrate(json!({ "version": "one" }))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a version number"), "{e}");
    assert!(migrate(json!([1, 2])).is_err());
}

/// An image-folder task (its folder and channels) is stored with the experiment and read
/// back unchanged; a task stored before those fields existed reads as an IDX task.
#[test]
fn image_folder_task_round_trips_and_old_tasks_read_as_idx() {
    let mut t = fnas_run::task::resolve_task(
        "fashion-mnist-tiny",
        None,
        Some(std::path::Path::new("/data/my photos")),
        None,
    )
    .unwrap();
    assert_eq!(t.name, "fashion-mnist-tiny+my_photos");
    assert_eq!(
        t.images.as_deref(),
        Some(std::path::Path::new("/data/my photos"))
    );
    t.channels = Some(3);
    let tc = TrainingConfig {
        task: t.clone(),
        space: "mnas-28".into(),
        workers: 1,
        latency_runs: 20,
        device: "cpu".into(),
        pool: None,
        budget_unit: BudgetUnit::Evaluations,
        reward_seeds: 1,
        command: None,
        kernels: None,
    };
    let s = SearchSettings::training(tc, 2, RewardConfig::default());
    let back = migrate(serde_json::to_value(&s).unwrap()).unwrap();
    assert_eq!(back.training.unwrap().task, t);

    let mut old = serde_json::to_value(task()).unwrap();
    assert!(old.get("images").is_none());
    old.as_object_mut().unwrap().remove("channels");
    let read: ProxyTask = serde_json::from_value(old).unwrap();
    assert_eq!((&read.images, read.channels), (&None, None));
    assert_eq!(read, task());
}
