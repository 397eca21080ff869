//! Per-call overhead of `SqliteStore`.
//!
//! `cargo run --release -p fnas-store --example store_bench [cycles] [file-cycles]`
//!
//! Runs `cycles` (default 10,000) begin_batch(8) / 8 x finish_trial / end_batch cycles
//! on an in-memory store, then the same with the reads the search loop adds
//! (`batch_trials` twice and `find_evaluated` per trial), then a few cycles on a file
//! store (WAL, synchronous = FULL) to show the fsync cost.

use std::time::Instant;

use fnas_core::store::{ExperimentSpec, NewTrial, TrialResult, TrialSource, TrialStatus};
use fnas_core::{Cost, Metrics};
use fnas_store::{SqliteStore, Store};

const BATCH: usize = 8;

fn spec(name: &str) -> ExperimentSpec {
    ExperimentSpec {
        name: name.into(),
        space: "nas-bench-graph".into(),
        task: "nas-bench-graph/cora".into(),
        strategy: "random".into(),
        seed: 1,
        budget: 1_000_000,
        config: serde_json::json!({}),
    }
}

fn result(x: f64) -> TrialResult {
    TrialResult {
        status: TrialStatus::Done,
        source: TrialSource::Evaluated,
        metrics: Some(Metrics {
            val_accuracy: x,
            test_accuracy: Some(x * 0.98),
            latency_ms: Some(3.2 + x),
            params: Some(153_000.0),
            ..Metrics::default()
        }),
        reward: Some(x),
        cost: Cost::query(),
        error: None,
    }
}

fn proposals(batch: u64) -> Vec<NewTrial> {
    (0..BATCH)
        .map(|i| {
            let k = (batch * BATCH as u64 + i as u64).wrapping_mul(0x9e37_79b9) % 5000;
            NewTrial {
                arch: format!("[gcn,gat,sage,gin]|[0,1,1,2]|{k}"),
                canonical: format!("canon-{k}"),
                log_prob: Some(-3.5 - i as f64 / 10.0),
                prediction: None,
            }
        })
        .collect()
}

/// Returns seconds for `cycles` cycles, and seconds spent in begin, finish, end.
fn run(store: &mut dyn Store, cycles: u64, loop_reads: bool) -> (f64, [f64; 3]) {
    let exp = store.create_experiment(&spec("bench")).unwrap().id;
    let state = vec![7u8; 2048];
    let batches: Vec<Vec<NewTrial>> = (0..cycles).map(proposals).collect();
    let mut phases = [0.0; 3];
    let t0 = Instant::now();
    for (b, props) in batches.iter().enumerate() {
        let b = b as u64;
        let t = Instant::now();
        let ids = store.begin_batch(exp, b, props, &state).unwrap();
        phases[0] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        if loop_reads {
            for t in store.batch_trials(exp, b).unwrap() {
                let r = match store.find_evaluated(exp, &t.canonical).unwrap() {
                    Some(prev) => TrialResult {
                        source: TrialSource::Cached,
                        cost: Cost::default(),
                        ..result(prev.reward.unwrap())
                    },
                    None => result(t.id as f64 / 1e6),
                };
                store.finish_trial(t.id, &r).unwrap();
            }
            let _ = store.batch_trials(exp, b).unwrap();
        } else {
            for id in ids {
                store.finish_trial(id, &result(id as f64 / 1e6)).unwrap();
            }
        }
        phases[1] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        store.end_batch(exp, b, &state).unwrap();
        phases[2] += t.elapsed().as_secs_f64();
    }
    (t0.elapsed().as_secs_f64(), phases)
}

fn show(what: &str, cycles: u64, (secs, phases): (f64, [f64; 3])) {
    let trials = cycles * BATCH as u64;
    let us = |x: f64| x * 1e6 / cycles as f64;
    println!(
        "{what}: {cycles} cycles ({trials} trials) in {secs:.3} s = {:.1} us/cycle, {:.2} us/trial \
         (per cycle: begin_batch {:.1} us, 8 trials {:.1} us, end_batch {:.1} us)",
        us(secs),
        secs * 1e6 / trials as f64,
        us(phases[0]),
        us(phases[1]),
        us(phases[2]),
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cycles: u64 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let file_cycles: u64 = args.next().map_or(200, |a| a.parse().unwrap());

    let t = Instant::now();
    for _ in 0..100 {
        SqliteStore::in_memory().unwrap();
    }
    println!(
        "in_memory(): {:.0} us per store (open + schema)",
        t.elapsed().as_secs_f64() * 1e6 / 100.0
    );

    show(
        "memory, begin/finish/end",
        cycles,
        run(&mut SqliteStore::in_memory().unwrap(), cycles, false),
    );
    show(
        "memory, + search-loop reads",
        cycles,
        run(&mut SqliteStore::in_memory().unwrap(), cycles, true),
    );

    let dir = std::env::temp_dir().join(format!("fnas-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.db");
    show(
        "file (WAL, synchronous=FULL), + reads",
        file_cycles,
        run(&mut SqliteStore::open(&path).unwrap(), file_cycles, true),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
