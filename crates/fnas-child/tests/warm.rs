//! Knowledge-pool warm starts on real networks and a real SQLite pool: a trained child's
//! parts go in, a new child comes out initialised from the most similar ones.

use std::collections::HashMap;
use std::sync::Arc;

use burn::prelude::*;
use burn::store::ModuleSnapshot;
use fnas_child::net::ChildNet;
use fnas_child::plan::{median_arch, ChildPlan};
use fnas_child::warm::{choose, entries_of, Choice, ChooseRule, EntryMeta};
use fnas_core::pool::{BlockPool, DistanceWeights, PoolEntry};
use fnas_core::SearchSpace;
use fnas_store::SqlitePool;

fn space() -> SearchSpace {
    SearchSpace::by_name_or_path("mnas-28").unwrap()
}

/// The median architecture of mnas-28 with `edit` applied to its text form.
fn plan(edit: &[(&str, &str)]) -> (ChildPlan, String) {
    let s = space();
    let mut text = s.format(&median_arch(s.mnas_spec().unwrap()));
    for (from, to) in edit {
        assert!(text.contains(from), "{from} not in {text}");
        text = text.replace(from, to);
    }
    let arch = s.parse(&text).unwrap();
    (ChildPlan::from_space(&s, &arch, Some(14)).unwrap(), text)
}

fn tensors(net: &ChildNet) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    net.collect(None, None, false)
        .into_iter()
        .map(|t| {
            let shape = t.shape.to_vec();
            let bytes = t.to_bytes().unwrap();
            let v = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (t.name, (shape, v))
        })
        .collect()
}

/// A network with weights no fresh initialisation would give (so copies are visible).
fn source_net(p: &ChildPlan) -> ChildNet {
    let d = Device::flex();
    let mut net = ChildNet::new(p, &d);
    let shifted: Vec<_> = net
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let shape = t.shape.to_vec();
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 1e-3).collect();
            burn::store::burn_pack::Tensor::new(
                t.name,
                burn::tensor::DType::F32,
                shape,
                None,
                burn::tensor::Bytes::from_elems(v),
            )
        })
        .collect();
    let r = net.apply(shifted, None, None, false);
    assert!(r.errors.is_empty(), "{r:?}");
    net
}

fn meta(arch: &str, task: &str, budget: u64) -> EntryMeta {
    EntryMeta {
        task: task.into(),
        classes: 10,
        experiment: "e".into(),
        arch: arch.into(),
        budget_images: budget,
        val_accuracy: 0.8,
    }
}

fn pool() -> (tempfile::TempDir, Arc<SqlitePool>) {
    let tmp = tempfile::tempdir().unwrap();
    let p = SqlitePool::open(&tmp.path().join("s.db"), 0).unwrap();
    (tmp, Arc::new(p))
}

fn all(_: &PoolEntry) -> bool {
    true
}

fn rule(w: &DistanceWeights, min_networks: usize, per_block: bool) -> ChooseRule<'_> {
    ChooseRule {
        weights: w,
        min_networks,
        per_block,
        max_distance: None,
    }
}

#[test]
fn an_identical_architecture_gets_exactly_the_stored_weights() {
    let (_tmp, pool) = pool();
    let (p, text) = plan(&[]);
    let src = source_net(&p);
    pool.insert(entries_of(&src, &p, &meta(&text, "t", 100)).unwrap())
        .unwrap();
    let w = DistanceWeights::default();
    let warm = choose(pool.as_ref(), &p, "t", 10, 100, &all, &rule(&w, 1, true))
        .unwrap()
        .into_warm()
        .expect("a source");
    assert_eq!(warm.init.hit_ratio, 1.0);
    assert_eq!(warm.init.mean_distance, 0.0);
    // 5 blocks + stem + head
    assert_eq!(warm.init.sources.len(), 7);
    let mut fresh = ChildNet::new(&p, &Device::flex());
    let stats = warm.apply(&mut fresh).unwrap();
    assert_eq!(stats.fresh, 0);
    assert_eq!(tensors(&fresh), tensors(&src));
}

#[test]
fn unequal_blocks_are_adapted_by_the_transfer_rules() {
    let (_tmp, pool) = pool();
    let (pa, text) = plan(&[]);
    let src = source_net(&pa);
    pool.insert(entries_of(&src, &pa, &meta(&text, "t", 100)).unwrap())
        .unwrap();
    // block 1: kernel 5 -> 3 (centre crop); block 2: 2 -> 3 layers (last layer repeated)
    let (pb, _) = plan(&[
        ("b1.kernel=5", "b1.kernel=3"),
        ("b2.layers=2", "b2.layers=3"),
    ]);
    let w = DistanceWeights::default();
    let warm = choose(pool.as_ref(), &pb, "t", 10, 100, &all, &rule(&w, 1, true))
        .unwrap()
        .into_warm()
        .unwrap();
    assert_eq!(warm.init.hit_ratio, 1.0);
    assert!(warm.init.max_distance > 0.0);
    let mut net = ChildNet::new(&pb, &Device::flex());
    warm.apply(&mut net).unwrap();
    let (s, t) = (tensors(&src), tensors(&net));
    // 5x5 -> 3x3: the centre of every channel
    let (ss, sv) = &s["blocks.0.layers.0.dw.conv.weight"];
    let (ts, tv) = &t["blocks.0.layers.0.dw.conv.weight"];
    assert_eq!((ss[2], ts[2]), (5, 3));
    for c in 0..ts[0] {
        for y in 0..3 {
            for x in 0..3 {
                assert_eq!(tv[c * 9 + y * 3 + x], sv[c * 25 + (y + 1) * 5 + (x + 1)]);
            }
        }
    }
    // the extra third layer of block 2 comes from the source's last layer
    assert_eq!(
        t["blocks.1.layers.2.pw.conv.weight"],
        s["blocks.1.layers.1.pw.conv.weight"]
    );
    assert_eq!(t["stem.conv.weight"], s["stem.conv.weight"]);
}

#[test]
fn fairness_and_the_seed_rule_decide_when_there_is_no_source() {
    let (_tmp, pool) = pool();
    let (p, text) = plan(&[]);
    let w = DistanceWeights::default();
    // empty pool: train from scratch
    assert!(
        choose(pool.as_ref(), &p, "t", 10, 100, &all, &rule(&w, 1, true))
            .unwrap()
            .into_warm()
            .is_none()
    );
    pool.insert(entries_of(&source_net(&p), &p, &meta(&text, "t", 100)).unwrap())
        .unwrap();
    // another budget class is never used
    assert!(
        choose(pool.as_ref(), &p, "t", 10, 200, &all, &rule(&w, 1, true))
            .unwrap()
            .into_warm()
            .is_none()
    );
    // fewer networks than the seed rule asks for
    assert!(
        choose(pool.as_ref(), &p, "t", 10, 100, &all, &rule(&w, 2, true))
            .unwrap()
            .into_warm()
            .is_none()
    );
    // entries the caller does not allow (another experiment) are not used
    let none = |_: &PoolEntry| false;
    assert!(
        choose(pool.as_ref(), &p, "t", 10, 100, &none, &rule(&w, 1, true))
            .unwrap()
            .into_warm()
            .is_none()
    );
}

#[test]
fn the_classifier_does_not_cross_tasks() {
    let (_tmp, pool) = pool();
    let (p, text) = plan(&[]);
    let src = source_net(&p);
    pool.insert(entries_of(&src, &p, &meta(&text, "other-task", 100)).unwrap())
        .unwrap();
    let w = DistanceWeights::default();
    let warm = choose(pool.as_ref(), &p, "t", 10, 100, &all, &rule(&w, 1, true))
        .unwrap()
        .into_warm()
        .unwrap();
    // another task costs the task weight per block
    assert_eq!(warm.init.mean_distance, w.task);
    let mut net = ChildNet::new(&p, &Device::flex());
    let before = tensors(&net);
    warm.apply(&mut net).unwrap();
    let (s, t) = (tensors(&src), tensors(&net));
    assert_eq!(t["head.conv.weight"], s["head.conv.weight"]);
    assert_eq!(t["classifier.weight"], before["classifier.weight"]);
    assert_ne!(t["classifier.weight"], s["classifier.weight"]);
}

/// Network mode takes every block from the most similar whole network, even where
/// another network holds a closer block.
#[test]
fn network_mode_takes_all_blocks_from_one_network() {
    let (_tmp, pool) = pool();
    let (pa, ta) = plan(&[]);
    let (pb, tb) = plan(&[("b1.kernel=5", "b1.kernel=3")]);
    pool.insert(entries_of(&source_net(&pa), &pa, &meta(&ta, "t", 100)).unwrap())
        .unwrap();
    pool.insert(entries_of(&source_net(&pb), &pb, &meta(&tb, "t", 100)).unwrap())
        .unwrap();
    // the request equals A except block 0, which equals B's block 0
    let w = DistanceWeights::default();
    let per_block = choose(pool.as_ref(), &pa, "t", 10, 100, &all, &rule(&w, 1, true))
        .unwrap()
        .into_warm()
        .unwrap();
    assert_eq!(per_block.init.mean_distance, 0.0);
    let (pc, _) = plan(&[("b2.kernel=5", "b2.kernel=3")]);
    let whole = choose(pool.as_ref(), &pc, "t", 10, 100, &all, &rule(&w, 1, false))
        .unwrap()
        .into_warm()
        .unwrap();
    let blocks = choose(pool.as_ref(), &pc, "t", 10, 100, &all, &rule(&w, 1, true))
        .unwrap()
        .into_warm()
        .unwrap();
    // block mode may mix networks and is never farther than network mode
    assert!(blocks.init.mean_distance <= whole.init.mean_distance);
    let entries = pool.entries("mnas-28").unwrap();
    let arch_of = |id: i64| entries.iter().find(|e| e.id == id).unwrap().arch.clone();
    let archs: std::collections::BTreeSet<String> =
        whole.init.sources.iter().map(|&id| arch_of(id)).collect();
    assert_eq!(archs.len(), 1, "{archs:?}");
}

/// The real pool, counting the reads and the LRU marks that `choose` asks for.
struct Counting {
    inner: Arc<SqlitePool>,
    loads: std::sync::atomic::AtomicUsize,
    touches: std::sync::atomic::AtomicUsize,
}

impl BlockPool for Counting {
    fn insert(
        &self,
        parts: Vec<(PoolEntry, Vec<fnas_core::pool::PoolTensor>)>,
    ) -> Result<Vec<i64>, fnas_core::pool::PoolError> {
        self.inner.insert(parts)
    }
    fn entries(&self, space: &str) -> Result<Vec<PoolEntry>, fnas_core::pool::PoolError> {
        self.inner.entries(space)
    }
    fn load(
        &self,
        entry: &PoolEntry,
    ) -> Result<Vec<fnas_core::pool::PoolTensor>, fnas_core::pool::PoolError> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load(entry)
    }
    fn touch(&self, ids: &[i64]) -> Result<(), fnas_core::pool::PoolError> {
        self.touches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.touch(ids)
    }
}

/// Sources beyond the distance limit are declined before anything is read, and the
/// decision reports how far they were; within the limit they are loaded and marked.
#[test]
fn far_sources_are_declined_without_reading_them() {
    let (_tmp, inner) = pool();
    let (pa, ta) = plan(&[]);
    inner
        .insert(entries_of(&source_net(&pa), &pa, &meta(&ta, "t", 100)).unwrap())
        .unwrap();
    let pool = Counting {
        inner,
        loads: 0.into(),
        touches: 0.into(),
    };
    let (pb, _) = plan(&[
        ("b1.kernel=5", "b1.kernel=3"),
        ("b2.layers=2", "b2.layers=3"),
    ]);
    let w = DistanceWeights::default();
    let limited = |limit| ChooseRule {
        max_distance: Some(limit),
        ..rule(&w, 1, false)
    };
    let count = |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::SeqCst);
    let declined = choose(&pool, &pb, "t", 10, 100, &all, &limited(0.0)).unwrap();
    let d = declined.declined_distance().expect("declined");
    assert!(d > 0.0);
    assert!(matches!(declined, Choice::Declined(_)));
    assert_eq!((count(&pool.loads), count(&pool.touches)), (0, 0));
    // the same request at exactly its distance is accepted, read and marked
    let warm = choose(&pool, &pb, "t", 10, 100, &all, &limited(d)).unwrap();
    let warm = warm.into_warm().expect("within the limit");
    assert_eq!(warm.init.structural_distance, d);
    assert!(count(&pool.loads) > 0);
    assert_eq!(count(&pool.touches), 1);
    // no limit: the same sources
    let free = choose(&pool, &pb, "t", 10, 100, &all, &rule(&w, 1, false)).unwrap();
    assert_eq!(free.into_warm().unwrap().init.sources, warm.init.sources);
}

/// The children of one batch see the pool as it was when the batch began: a sibling that
/// finished first is no source (so the result does not depend on which worker was
/// faster), and a child trained again after a resume does not start from its own weights.
#[test]
fn a_batch_warm_starts_only_from_networks_stored_before_it() {
    use fnas_child::evaluator::PoolSettings;
    use fnas_child::task::ProxyTask;
    use fnas_child::PoolPolicy;
    use fnas_child::{TrainingEvaluator, TrainingSettings};
    use fnas_core::Evaluator;

    let (_tmp, pool) = pool();
    let data = ProxyTask::by_name_or_path("fashion-mnist-tiny")
        .unwrap()
        .materialise()
        .unwrap();
    let epochs = data.task.epochs;
    let settings = TrainingSettings {
        workers: 1,
        latency_runs: 1,
        latency_warmup: 0,
        ..TrainingSettings::default()
    };
    let policy = PoolPolicy {
        min_networks: 1,
        max_distance: None,
        ..PoolPolicy::new(epochs)
    };
    let eval = TrainingEvaluator::new(space(), Arc::new(data), settings)
        .with_pool(PoolSettings::new(pool.clone(), "e", policy));
    let arch = |edit: &[(&str, &str)]| space().parse(&plan(edit).1).unwrap();
    let (a, b, c) = (
        arch(&[]),
        arch(&[("b1.kernel=5", "b1.kernel=3")]),
        arch(&[("b2.layers=2", "b2.layers=3")]),
    );
    let warm = |r: &Result<fnas_core::Evaluation, fnas_core::EvalError>| {
        let m = &r.as_ref().expect("trained").metrics.extra;
        (m["warm_start"], m["pool_distance"])
    };
    // one worker trains `a` before `b`, yet `b` does not start from `a`
    let first = eval.evaluate_many(&[a.clone(), b]);
    assert_eq!(warm(&first[0]).0, 0.0);
    assert_eq!(warm(&first[1]).0, 0.0, "a sibling became a source");
    // the next batch does start from them
    let (w, d) = warm(&eval.evaluate_many(&[c])[0]);
    assert_eq!(w, 1.0);
    assert!(d > 0.0);
    // `a` again (a batch repeated after a resume): its own entry is no source, so it
    // starts from a neighbour at a positive distance, not from itself at 0
    let (w, d) = warm(&eval.evaluate_many(&[a])[0]);
    assert_eq!(w, 1.0);
    assert!(d > 0.0, "started from its own weights");
}
