//! NAS-Bench-Graph against the real files.

use std::collections::HashSet;
use std::time::Instant;

use fnas_bench::{load, Benchmark, NasBenchGraph, TabularBenchmark, GRAPH_DATASETS};
use fnas_core::space::graph::all_raw;
use fnas_core::{Architecture, EvalError, Evaluator, SearchSpace};

fn raw_keys(space: &SearchSpace) -> (usize, HashSet<u64>) {
    let raw = all_raw(space);
    let keys = raw.iter().filter_map(|a| space.graph_key(a)).collect();
    (raw.len(), keys)
}

#[test]
fn every_raw_spec_maps_to_a_key_of_every_full_dataset() {
    let (n_raw, keys) = raw_keys(&SearchSpace::nas_bench_graph());
    assert_eq!(n_raw, 157_440);
    assert_eq!(keys.len(), 26_206);
    for g in crate::common::graphs()
        .iter()
        .filter(|g| g.dataset() != "proteins")
    {
        let file: HashSet<u64> = g.keys().iter().copied().collect();
        let absent: Vec<_> = keys.difference(&file).take(5).collect();
        assert!(
            absent.is_empty(),
            "{}: keys not in the file: {absent:?}",
            g.dataset()
        );
        assert_eq!(file.len(), 26_206, "{}", g.dataset());
        assert_eq!(
            file,
            keys,
            "{}: the file has keys no spec maps to",
            g.dataset()
        );
    }
}

#[test]
fn every_raw_proteins_spec_maps_to_a_key_of_the_proteins_file() {
    let space = SearchSpace::nas_bench_graph_proteins();
    let (n_raw, keys) = raw_keys(&space);
    // 3! link lists x (5^4 - 1 all-skip) op lists
    assert_eq!(n_raw, 14_976);
    assert_eq!(keys.len(), 2_021);
    let g = crate::common::graphs()
        .iter()
        .find(|g| g.dataset() == "proteins")
        .expect("proteins is a dataset");
    let file: HashSet<u64> = g.keys().iter().copied().collect();
    assert_eq!(file, keys);
    assert_eq!(space.canonical_size(), Some(2_021));
}

#[test]
fn every_dataset_loads_with_fraction_accuracies_and_positive_costs() {
    let graphs = crate::common::graphs();
    assert_eq!(graphs.len(), GRAPH_DATASETS.len());
    for g in graphs {
        let n = if g.dataset() == "proteins" {
            2_021
        } else {
            26_206
        };
        assert_eq!(g.len(), n, "{}", g.dataset());
        assert_eq!(g.table().len(), n);
        for &k in g.keys() {
            let r = g.record(k).expect("key listed");
            for acc in [r.val, r.test] {
                assert!(
                    acc.is_finite() && (0.0..=1.0).contains(&acc),
                    "{} {k}: {r:?}",
                    g.dataset()
                );
            }
            assert!(
                r.latency_s.is_finite() && r.latency_s > 0.0,
                "{} {k}: {r:?}",
                g.dataset()
            );
            assert!(
                r.params_m.is_finite() && r.params_m > 0.0,
                "{} {k}: {r:?}",
                g.dataset()
            );
        }
        // a real accuracy range, not a constant or a percentage
        let best = g.table().iter().map(|t| t.1).fold(0.0, f64::max);
        assert!(
            (0.5..=1.0).contains(&best),
            "{}: best test {best}",
            g.dataset()
        );
    }
}

#[test]
fn evaluate_reports_the_row_of_the_canonical_key() {
    let cora = &crate::common::graphs()[0];
    assert_eq!(cora.task(), "nas-bench-graph/cora");
    let s = cora.space();
    let a = s
        .parse("in2=0 in3=0 in4=0 op1=gcn op2=gat op3=fc op4=sage")
        .expect("valid");
    let b = s
        .parse("in2=0 in3=0 in4=0 op1=sage op2=fc op3=gat op4=gcn")
        .expect("valid");
    let ea = cora.evaluate(&a).expect("present");
    let eb = cora.evaluate(&b).expect("present");
    assert_eq!(ea, eb, "isomorphic specs share a row");
    assert_eq!(ea.cost.evaluations, 1);
    let r = cora.lookup(&a).expect("present");
    let m = &ea.metrics;
    assert_eq!(m.val_accuracy, r.val);
    assert_eq!(m.test_accuracy, Some(r.test));
    assert_eq!(m.latency_ms, Some(r.latency_s * 1000.0));
    assert_eq!(m.params, Some((r.params_m * 1e6).round()));
    assert_eq!(cora.val_test(&a), Some((r.val, r.test)));

    // the all-gcn chain is key 81111 (link pattern 8 = [0,1,2,3], gcn = op 1)
    let chain = s
        .parse("in2=1 in3=2 in4=3 op1=gcn op2=gcn op3=gcn op4=gcn")
        .expect("valid");
    assert_eq!(s.graph_key(&chain), Some(81_111));
    assert_eq!(cora.lookup(&chain), cora.record(81_111));
}

#[test]
fn invalid_architectures_are_fatal_not_panics() {
    let cora = &crate::common::graphs()[0];
    for bad in [
        vec![],
        vec![0; 6],
        vec![0; 8],
        vec![9, 9, 9, 9, 9, 9, 9],
        vec![0, 3, 0, 0, 0, 0, 0],
        vec![0, 0, 0, 8, 8, 8, 8],
    ] {
        let a = Architecture(bad);
        match cora.evaluate(&a) {
            Err(EvalError::Fatal(msg)) => assert!(msg.contains("not valid"), "{msg}"),
            other => panic!("{a:?}: {other:?}"),
        }
        assert_eq!(cora.val_test(&a), None);
    }
    // all-gat from the input is fine
    assert!(cora.evaluate(&Architecture(vec![0; 7])).is_ok());
    // proteins: full-space op indices beyond its 5 ops are invalid there
    let proteins = NasBenchGraph::load(&crate::common::data_dir(), "proteins").expect("loads");
    assert!(proteins
        .evaluate(&Architecture(vec![0, 0, 0, 5, 5, 5, 5]))
        .is_err());
    assert!(proteins
        .evaluate(&Architecture(vec![0, 0, 0, 0, 1, 2, 3]))
        .is_ok());
}

#[test]
fn uniform_entry_point_loads_each_dataset_quickly() {
    let dir = crate::common::data_dir();
    for d in Benchmark::NasBenchGraph.datasets() {
        let t = Instant::now();
        let b = load(Benchmark::NasBenchGraph, &dir, d).unwrap_or_else(|e| panic!("{e}"));
        let dt = t.elapsed();
        eprintln!("load nas-bench-graph/{d}: {dt:?}");
        assert_eq!(b.task(), format!("nas-bench-graph/{d}"));
        assert_eq!(b.as_evaluator().task(), b.task());
        assert!(dt.as_secs_f64() < 5.0, "{d}: {dt:?}");
    }
}

#[test]
fn every_raw_spec_evaluates_through_the_trait() {
    let dir = crate::common::data_dir();
    for d in ["cora", "proteins"] {
        let b: Box<dyn TabularBenchmark> = load(Benchmark::NasBenchGraph, &dir, d).expect("loads");
        let raw = all_raw(b.space());
        for a in &raw {
            let e = b.evaluate(a).unwrap_or_else(|e| panic!("{d}: {e}"));
            let vt = b.val_test(a).expect("present");
            assert_eq!(
                (e.metrics.val_accuracy, e.metrics.test_accuracy),
                (vt.0, Some(vt.1))
            );
        }
    }
}
