//! AnalogNAS-Bench against the real file.

use std::time::Instant;

use fnas_bench::{load, AnalogNasBench, Benchmark, TabularBenchmark, ANALOG_COLUMNS};
use fnas_core::{Architecture, EvalError, Evaluator};

#[test]
fn table_has_every_cell_and_fraction_values_in_every_column() {
    let a = crate::common::analog();
    assert_eq!(a.len(), 15_625);
    for col in ANALOG_COLUMNS {
        let v = a.with_column(col).expect("known column");
        assert_eq!(v.column(), *col);
        assert_eq!(v.task(), format!("analog-nasbench/{col}"));
        let t = v.table();
        assert_eq!(t.len(), 15_625);
        for (val, test) in &t {
            assert_eq!(val, test, "one accuracy serves as both");
            assert!(val.is_finite() && (0.0..=1.0).contains(val), "{col}: {val}");
        }
        let best = t.iter().map(|x| x.0).fold(0.0, f64::max);
        assert!((0.6..=0.95).contains(&best), "{col}: best {best}");
    }
}

#[test]
fn nb201_choice_index_is_the_benchmark_op_index() {
    let a = crate::common::analog();
    let s = a.space();
    let cell = |ops: &str| {
        let names: Vec<String> = ["e1_2", "e1_3", "e1_4", "e2_3", "e2_4", "e3_4"]
            .iter()
            .zip(ops.split(' '))
            .map(|(e, o)| format!("{e}={o}"))
            .collect();
        s.parse(&names.join(" ")).expect("valid cell")
    };
    let skip =
        cell("skip_connect skip_connect skip_connect skip_connect skip_connect skip_connect");
    assert_eq!(skip, Architecture(vec![0; 6]));
    // values read from the pickle with Python
    let acc = |arch: &Architecture| a.val_test(arch).map(|x| x.0).unwrap_or(f64::NAN);
    assert_eq!(
        a.val_test(&skip).map(|x| x.0),
        a.val_test(&skip).map(|x| x.1)
    );
    assert!((acc(&skip) - 0.607_836).abs() < 1e-12);
    let last_none = cell("skip_connect skip_connect skip_connect skip_connect skip_connect none");
    assert!((acc(&last_none) - 0.840_836).abs() < 1e-12);
    // all `none`: the output is disconnected, 10% = chance on CIFAR-10
    let none = cell("none none none none none none");
    assert!((acc(&none) - 0.1).abs() < 1e-12);
    // the best digital cell
    let best =
        cell("nor_conv_3x3 nor_conv_3x3 skip_connect nor_conv_3x3 nor_conv_1x1 nor_conv_3x3");
    let top = a.table().iter().map(|x| x.0).fold(0.0, f64::max);
    assert_eq!(acc(&best), top);
    assert!((top - 0.940664).abs() < 1e-12);
}

#[test]
fn evaluate_reports_the_column_and_every_other_as_extra() {
    let base = crate::common::analog();
    let analog = base.with_column("analog").expect("known");
    let arch = Architecture(vec![2, 2, 0, 2, 3, 2]);
    let e = analog.evaluate(&arch).expect("present");
    assert_eq!(e.cost.evaluations, 1);
    let row = analog.row(&arch).expect("present").to_vec();
    assert_eq!(e.metrics.val_accuracy, row[4]);
    assert_eq!(e.metrics.test_accuracy, Some(row[4]));
    assert_eq!(e.metrics.extra.len(), ANALOG_COLUMNS.len() - 1);
    assert!(!e.metrics.extra.contains_key("analog"));
    assert_eq!(e.metrics.extra.get("baseline"), Some(&row[0]));
    assert_eq!(e.metrics.extra.get("analog_drift_2592000"), Some(&row[12]));
    assert_eq!(e.metrics.latency_ms, None);
    for bad in [vec![], vec![0; 5], vec![5, 0, 0, 0, 0, 0], vec![0; 7]] {
        match analog.evaluate(&Architecture(bad.clone())) {
            Err(EvalError::Fatal(m)) => assert!(m.contains("not valid"), "{m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
        assert_eq!(analog.val_test(&Architecture(bad)), None);
    }
}

#[test]
fn uniform_entry_point_loads_a_column_quickly() {
    let dir = crate::common::data_dir();
    let t = Instant::now();
    let b: Box<dyn TabularBenchmark> =
        load(Benchmark::AnalogNasBench, &dir, "qat").unwrap_or_else(|e| panic!("{e}"));
    let dt = t.elapsed();
    eprintln!("load analog-nasbench/qat: {dt:?}");
    assert_eq!(b.task(), "analog-nasbench/qat");
    assert_eq!(b.table().len(), 15_625);
    assert!(dt.as_secs_f64() < 5.0, "{dt:?}");
    // the same numbers as the shared table's qat view
    let shared = crate::common::analog().with_column("qat").expect("known");
    assert_eq!(b.table(), shared.table());
    assert_eq!(Benchmark::AnalogNasBench.datasets(), ANALOG_COLUMNS);
    let _: &AnalogNasBench = crate::common::analog();
}
