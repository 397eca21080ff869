//! The architecture knowledge pool's data model and its block similarity function.
//!
//! After a child network is trained, each of its parts (the stem, every block, the head
//! with the classifier) is stored as one [`PoolEntry`]: an index row describing the part
//! plus a safetensors file of its tensors (the storage is a [`BlockPool`] backend, e.g.
//! `fnas_store::SqlitePool`). A new child asks, per block, for the most similar stored
//! block ([`best_block`]) and for the stem and head of the most similar stored network
//! ([`best_network`]); the weights are then adapted to the new shapes (`fnas_child::transfer`).
//!
//! # Fairness
//! Every entry records `budget_images`: the training images behind its weights, summed
//! over its lineage (a child initialised from the pool adds its own training to the
//! budget of its sources). A search uses entries of exactly one budget class (one value of
//! `budget_images`, by default that of one from-scratch proxy training), so no candidate
//! starts from better-trained weights than another.
//!
//! # The distance
//! [`block_distance`] is a weighted sum, smaller = more similar (weights in
//! [`DistanceWeights`], defaults in brackets):
//! op family differs [4]; per doubling of the expansion ratio [1]; per kernel step of 2
//! (3 -> 5) [0.5]; SE differs [0.5]; relative output width `|c - c'| / max(c, c')` [2];
//! per layer of difference [0.5]; per block position of difference [1]; per halving of
//! the input resolution [1]; identity skip differs [0.25]; another task [3].
//! Op family dominates because weights of another op transfer only in part; a same-op
//! block at another position beats another op at the same position.
//! Ties break towards the higher source validation accuracy, then the newer entry.

use serde::{Deserialize, Serialize};

/// Which part of a network an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolPart {
    /// `stem.*`
    Stem,
    /// `blocks.{position}.*`
    Block,
    /// `head.*` and `classifier.*`
    Head,
}

impl PoolPart {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolPart::Stem => "stem",
            PoolPart::Block => "block",
            PoolPart::Head => "head",
        }
    }

    pub fn parse(s: &str) -> Option<PoolPart> {
        match s {
            "stem" => Some(PoolPart::Stem),
            "block" => Some(PoolPart::Block),
            "head" => Some(PoolPart::Head),
            _ => None,
        }
    }
}

/// The configuration of one block (or, for stem and head, the shapes that matter).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockConfig {
    /// `conv`, `dwsep` or `mbconv` (stem and head: `conv`).
    pub op: String,
    /// MBConv expansion ratio; 1 for the other ops.
    pub expansion: u32,
    pub kernel: u32,
    pub se: bool,
    pub identity_skip: bool,
    /// Width multiplier chosen for the block (1.0 for stem and head).
    pub width: f64,
    pub layers: u32,
    pub cin: u32,
    pub cout: u32,
    pub stride: u32,
    /// Spatial size of the block's input.
    pub in_res: u32,
}

/// One stored part of a trained network: the index row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolEntry {
    /// Store-wide id (0 before insertion).
    pub id: i64,
    pub space: String,
    pub part: PoolPart,
    /// Block index for [`PoolPart::Block`]; 0 for stem and head.
    pub position: u32,
    pub config: BlockConfig,
    /// Input resolution of the whole network.
    pub resolution: u32,
    /// Task the weights were trained on (`fashion-mnist`, ...).
    pub task: String,
    /// Classes of that task's classifier.
    pub classes: u32,
    /// Experiment whose search trained the child (`""` for a standalone `fnas train`).
    pub experiment: String,
    /// The child's architecture (canonical text): entries with equal `experiment` and
    /// `arch` come from one network.
    pub arch: String,
    /// Training images behind these weights, lineage included (see the module docs).
    pub budget_images: u64,
    /// The child's validation accuracy.
    pub val_accuracy: f64,
    /// File name of the tensors inside the pool folder (set by the backend).
    pub file: String,
    /// Size of that file in bytes (set by the backend).
    pub bytes: u64,
    /// Seconds since the Unix epoch (set by the backend).
    pub created_at: f64,
    /// SHA-256 of that file, hex (set by the backend; `None` for entries indexed before
    /// checksums were recorded): a file changed on disk is detected on load, even when
    /// it still parses.
    #[serde(default)]
    pub checksum: Option<String>,
}

/// A tensor as plain data: what the pool stores and the transfer rules work on.
/// Layouts are burn's: conv weights `[cout, cin/groups, k, k]`, linear `[in, out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolTensor {
    /// Name relative to the part (`layers.0.dw.conv.weight`, `conv.weight`, ...).
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Why a pool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("knowledge pool I/O on {path}: {message}")]
    Io { path: String, message: String },
    #[error("knowledge pool index: {0}")]
    Index(String),
    #[error("knowledge pool entry {id}: {message}")]
    Corrupt { id: i64, message: String },
    #[error("knowledge pool: {0}")]
    Invalid(String),
}

/// Storage of the pool: index rows plus tensor files. Implementations make an insert
/// atomic (an index row is only ever visible with its complete file) and are shared by
/// the training workers, hence `&self` and `Send + Sync`.
pub trait BlockPool: Send + Sync {
    /// Stores the parts of one trained network (each entry with its tensors) and returns
    /// their ids; applies the size limit afterwards.
    fn insert(&self, parts: Vec<(PoolEntry, Vec<PoolTensor>)>) -> Result<Vec<i64>, PoolError>;
    /// Every entry of `space`, in id order.
    fn entries(&self, space: &str) -> Result<Vec<PoolEntry>, PoolError>;
    /// The tensors of one entry.
    fn load(&self, entry: &PoolEntry) -> Result<Vec<PoolTensor>, PoolError>;
    /// Marks entries as just used (the eviction rule keeps recently used networks).
    fn touch(&self, ids: &[i64]) -> Result<(), PoolError>;
}

/// Weights of [`block_distance`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistanceWeights {
    pub op: f64,
    pub expansion: f64,
    pub kernel: f64,
    pub se: f64,
    pub width: f64,
    pub layers: f64,
    pub position: f64,
    pub resolution: f64,
    pub skip: f64,
    pub task: f64,
}

impl Default for DistanceWeights {
    fn default() -> Self {
        Self {
            op: 4.0,
            expansion: 1.0,
            kernel: 0.5,
            se: 0.5,
            width: 2.0,
            layers: 0.5,
            position: 1.0,
            resolution: 1.0,
            skip: 0.25,
            task: 3.0,
        }
    }
}

/// What a new child asks the pool for: one of its blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockRequest {
    pub position: u32,
    pub config: BlockConfig,
    pub task: String,
}

fn log2_ratio(a: f64, b: f64) -> f64 {
    if a <= 0.0 || b <= 0.0 {
        return 0.0;
    }
    (a / b).log2().abs()
}

/// The distance between a requested block and a stored block's configuration (see the
/// module docs for the terms). Zero for an identical block at the same position of the
/// same task.
pub fn block_distance(
    w: &DistanceWeights,
    req: &BlockRequest,
    position: u32,
    config: &BlockConfig,
    task: &str,
) -> f64 {
    let a = &req.config;
    let b = config;
    let mut d = 0.0;
    if a.op != b.op {
        d += w.op;
    }
    d += w.expansion * log2_ratio(a.expansion.max(1) as f64, b.expansion.max(1) as f64);
    d += w.kernel * (a.kernel as f64 - b.kernel as f64).abs() / 2.0;
    if a.se != b.se {
        d += w.se;
    }
    let (ca, cb) = (a.cout as f64, b.cout as f64);
    if ca.max(cb) > 0.0 {
        d += w.width * (ca - cb).abs() / ca.max(cb);
    }
    d += w.layers * (a.layers as f64 - b.layers as f64).abs();
    d += w.position * (req.position as f64 - position as f64).abs();
    d += w.resolution * log2_ratio(a.in_res as f64, b.in_res as f64);
    if a.identity_skip != b.identity_skip {
        d += w.skip;
    }
    if req.task != task {
        d += w.task;
    }
    d
}

/// The filter every choice goes through: same space, same budget class.
fn usable<'a, 'b>(
    entries: &'a [PoolEntry],
    space: &'b str,
    budget_images: u64,
) -> impl Iterator<Item = &'a PoolEntry> + use<'a, 'b> {
    entries
        .iter()
        .filter(move |e| e.space == space && e.budget_images == budget_images)
}

/// `true` when `a` should win over `b` at equal distance.
fn better_tie(a: &PoolEntry, b: &PoolEntry) -> bool {
    (a.val_accuracy, a.id) > (b.val_accuracy, b.id)
}

/// The most similar stored block for `req` among `entries` of `space` and budget class
/// `budget_images`, with its distance. Any stored block is usable for any position (the
/// transfer rules adapt shapes), so this returns `None` only when there is no block entry
/// of that class at all: the "100% hit ratio" rule.
pub fn best_block<'a>(
    w: &DistanceWeights,
    entries: &'a [PoolEntry],
    space: &str,
    budget_images: u64,
    req: &BlockRequest,
) -> Option<(&'a PoolEntry, f64)> {
    let mut best: Option<(&PoolEntry, f64)> = None;
    for e in usable(entries, space, budget_images).filter(|e| e.part == PoolPart::Block) {
        let d = block_distance(w, req, e.position, &e.config, &e.task);
        let wins = match best {
            None => true,
            Some((b, bd)) => d < bd - 1e-12 || ((d - bd).abs() <= 1e-12 && better_tie(e, b)),
        };
        if wins {
            best = Some((e, d));
        }
    }
    best
}

/// The stored network most similar to the requested blocks, for its stem and head: the
/// mean of [`block_distance`] over the requested positions against that network's block
/// at the same position (a missing block counts as the op weight plus the width weight).
/// Returns `(stem, head, distance)`; `None` when no network of the class has both.
pub fn best_network<'a>(
    w: &DistanceWeights,
    entries: &'a [PoolEntry],
    space: &str,
    budget_images: u64,
    blocks: &[BlockRequest],
) -> Option<(&'a PoolEntry, &'a PoolEntry, f64)> {
    use std::collections::BTreeMap;
    type Net<'a> = (
        Option<&'a PoolEntry>,
        Option<&'a PoolEntry>,
        Vec<&'a PoolEntry>,
    );
    let mut nets: BTreeMap<(&str, &str), Net<'a>> = BTreeMap::new();
    for e in usable(entries, space, budget_images) {
        let n = nets
            .entry((e.experiment.as_str(), e.arch.as_str()))
            .or_insert((None, None, Vec::new()));
        match e.part {
            PoolPart::Stem => n.0 = Some(e),
            PoolPart::Head => n.1 = Some(e),
            PoolPart::Block => n.2.push(e),
        }
    }
    let mut best: Option<(&PoolEntry, &PoolEntry, f64)> = None;
    for (stem, head, bl) in nets.values() {
        let (Some(stem), Some(head)) = (stem, head) else {
            continue;
        };
        let mut total = 0.0;
        for r in blocks {
            total += bl
                .iter()
                .find(|b| b.position == r.position)
                .map(|b| block_distance(w, r, b.position, &b.config, &b.task))
                .unwrap_or(w.op + w.width);
        }
        let d = if blocks.is_empty() {
            0.0
        } else {
            total / blocks.len() as f64
        };
        let wins = match best {
            None => true,
            Some((_, bh, bd)) => {
                d < bd - 1e-12 || ((d - bd).abs() <= 1e-12 && better_tie(head, bh))
            }
        };
        if wins {
            best = Some((stem, head, d));
        }
    }
    best
}

/// How a child was initialised from the pool: recorded per trial.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolInit {
    /// Blocks that found a source / blocks requested (0 when the pool had nothing).
    pub hit_ratio: f64,
    /// Mean block distance of the matches (0 when none).
    pub mean_distance: f64,
    /// Largest block distance.
    pub max_distance: f64,
    /// Mean block distance without the other-task term: how far the shapes are, which
    /// decides whether a warm start is worth it (`--warm-max-distance`).
    #[serde(default)]
    pub structural_distance: f64,
    /// The budget class used.
    pub budget_images: u64,
    /// Entry ids used, stem and head included.
    pub sources: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(op: &str, k: u32, cout: u32, layers: u32) -> BlockConfig {
        BlockConfig {
            op: op.into(),
            expansion: if op == "mbconv" { 3 } else { 1 },
            kernel: k,
            se: false,
            identity_skip: false,
            width: 1.0,
            layers,
            cin: 16,
            cout,
            stride: 1,
            in_res: 14,
        }
    }

    fn entry(id: i64, part: PoolPart, position: u32, config: BlockConfig, arch: &str) -> PoolEntry {
        PoolEntry {
            id,
            space: "s".into(),
            part,
            position,
            config,
            resolution: 14,
            task: "t".into(),
            classes: 10,
            experiment: "e".into(),
            arch: arch.into(),
            budget_images: 100,
            val_accuracy: 0.5,
            file: String::new(),
            bytes: 0,
            created_at: 0.0,
            checksum: None,
        }
    }

    fn req(position: u32, config: BlockConfig) -> BlockRequest {
        BlockRequest {
            position,
            config,
            task: "t".into(),
        }
    }

    #[test]
    fn identical_block_is_at_distance_zero() {
        let w = DistanceWeights::default();
        let c = cfg("dwsep", 5, 32, 2);
        assert_eq!(block_distance(&w, &req(1, c.clone()), 1, &c, "t"), 0.0);
    }

    #[test]
    fn ordering_follows_the_documented_weights() {
        let w = DistanceWeights::default();
        let r = req(2, cfg("dwsep", 3, 32, 2));
        let d = |pos: u32, c: BlockConfig, task: &str| block_distance(&w, &r, pos, &c, task);
        let kernel = d(2, cfg("dwsep", 5, 32, 2), "t");
        let layer = d(2, cfg("dwsep", 3, 32, 3), "t");
        let position = d(3, cfg("dwsep", 3, 32, 2), "t");
        let task = d(2, cfg("dwsep", 3, 32, 2), "other");
        let op = d(2, cfg("conv", 3, 32, 2), "t");
        assert_eq!(
            (kernel, layer, position, task, op),
            (0.5, 0.5, 1.0, 3.0, 4.0)
        );
        // same op elsewhere beats another op here
        assert!(position < op);
        // width: 24 vs 32 channels = 2 * 8/32
        assert!((d(2, cfg("dwsep", 3, 24, 2), "t") - 0.5).abs() < 1e-12);
    }

    #[test]
    fn best_block_always_hits_when_the_class_has_any_block() {
        let w = DistanceWeights::default();
        let entries = vec![
            entry(1, PoolPart::Block, 0, cfg("conv", 7, 64, 1), "a"),
            entry(2, PoolPart::Block, 4, cfg("mbconv", 3, 16, 3), "a"),
        ];
        // nothing alike, still a source
        let (e, d) = best_block(&w, &entries, "s", 100, &req(2, cfg("dwsep", 5, 32, 2))).unwrap();
        assert!(d > 0.0);
        assert!(e.id == 1 || e.id == 2);
        // another budget class or space: nothing usable
        assert!(best_block(&w, &entries, "s", 99, &req(0, cfg("conv", 7, 64, 1))).is_none());
        assert!(best_block(&w, &entries, "x", 100, &req(0, cfg("conv", 7, 64, 1))).is_none());
        // exact match wins
        let (e, d) = best_block(&w, &entries, "s", 100, &req(4, cfg("mbconv", 3, 16, 3))).unwrap();
        assert_eq!((e.id, d), (2, 0.0));
    }

    #[test]
    fn ties_break_towards_higher_accuracy() {
        let w = DistanceWeights::default();
        let mut a = entry(1, PoolPart::Block, 0, cfg("conv", 3, 32, 1), "a");
        let mut b = entry(2, PoolPart::Block, 0, cfg("conv", 3, 32, 1), "b");
        a.val_accuracy = 0.9;
        b.val_accuracy = 0.8;
        let entries = vec![a, b];
        let (e, _) = best_block(&w, &entries, "s", 100, &req(0, cfg("conv", 3, 32, 1))).unwrap();
        assert_eq!(e.id, 1);
    }

    #[test]
    fn best_network_picks_the_closest_whole_network() {
        let w = DistanceWeights::default();
        let mut entries = Vec::new();
        for (base, arch, op) in [(0, "a", "conv"), (10, "b", "dwsep")] {
            entries.push(entry(
                base + 1,
                PoolPart::Stem,
                0,
                cfg("conv", 3, 16, 1),
                arch,
            ));
            entries.push(entry(
                base + 2,
                PoolPart::Head,
                0,
                cfg("conv", 1, 64, 1),
                arch,
            ));
            entries.push(entry(base + 3, PoolPart::Block, 0, cfg(op, 3, 32, 1), arch));
            entries.push(entry(base + 4, PoolPart::Block, 1, cfg(op, 3, 32, 1), arch));
        }
        let reqs = [
            req(0, cfg("dwsep", 3, 32, 1)),
            req(1, cfg("dwsep", 5, 32, 1)),
        ];
        let (stem, head, d) = best_network(&w, &entries, "s", 100, &reqs).unwrap();
        assert_eq!((stem.arch.as_str(), head.id), ("b", 12));
        assert!((d - 0.25).abs() < 1e-12);
    }
}
