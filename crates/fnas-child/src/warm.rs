//! Knowledge-pool warm starts: a trained child is split into pool entries (stem, each
//! block, head with classifier), and a new child is initialised block by block from the
//! most similar stored blocks (`fnas_core::pool::best_block`), its stem and head from the
//! most similar stored network (`best_network`), every tensor adapted to the new shapes
//! by [`crate::transfer`].
//!
//! The classifier is only transferred between networks of the same task and class count:
//! class `i` of another task is another class, so its row would be a misleading start.

use std::collections::BTreeMap;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::ModuleSnapshot;
use burn::tensor::{Bytes, DType};
use fnas_core::pool::{
    best_block, best_network, block_distance, BlockConfig, BlockPool, BlockRequest,
    DistanceWeights, PoolEntry, PoolError, PoolInit, PoolPart, PoolTensor,
};

use crate::net::ChildNet;
use crate::plan::{BlockPlan, ChildPlan, ConvPlan, LayerOp};
use crate::transfer::{adapt_part, TransferStats};

/// A block's configuration as the similarity function sees it.
pub fn block_config(b: &BlockPlan) -> BlockConfig {
    let first = b.layers.first();
    let (op, expansion) = match b.op {
        LayerOp::Conv => ("conv", 1),
        LayerOp::DwSep => ("dwsep", 1),
        LayerOp::MbConv { expansion } => ("mbconv", expansion as u32),
    };
    BlockConfig {
        op: op.into(),
        expansion,
        kernel: b.kernel as u32,
        se: b.se_ratio > 0.0,
        identity_skip: b.identity_skip,
        width: b.width_multiplier,
        layers: b.layers.len() as u32,
        cin: first.map_or(0, |l| l.cin as u32),
        cout: b.cout as u32,
        stride: b.stride as u32,
        in_res: first.map_or(0, |l| l.in_res as u32),
    }
}

fn conv_config(c: &ConvPlan) -> BlockConfig {
    BlockConfig {
        op: "conv".into(),
        expansion: 1,
        kernel: c.kernel as u32,
        se: false,
        identity_skip: false,
        width: 1.0,
        layers: 1,
        cin: c.cin as u32,
        cout: c.cout as u32,
        stride: c.stride as u32,
        in_res: c.in_res as u32,
    }
}

/// The pool requests of a child's blocks.
pub fn requests(plan: &ChildPlan, task: &str) -> Vec<BlockRequest> {
    plan.blocks
        .iter()
        .enumerate()
        .map(|(i, b)| BlockRequest {
            position: i as u32,
            config: block_config(b),
            task: task.into(),
        })
        .collect()
}

/// Which part a full parameter name belongs to, and the name relative to the part
/// (`blocks.3.layers.1.dw.conv.weight` -> (Block, 3, `layers.1.dw.conv.weight`); the head
/// part keeps `head.` and `classifier.` so both live in one entry).
fn part_of(name: &str) -> Option<(PoolPart, u32, String)> {
    if let Some(rest) = name.strip_prefix("stem.") {
        return Some((PoolPart::Stem, 0, rest.to_string()));
    }
    if name.starts_with("head.") || name.starts_with("classifier.") {
        return Some((PoolPart::Head, 0, name.to_string()));
    }
    let rest = name.strip_prefix("blocks.")?;
    let (pos, rel) = rest.split_once('.')?;
    Some((PoolPart::Block, pos.parse().ok()?, rel.to_string()))
}

fn full_name(part: PoolPart, position: u32, rel: &str) -> String {
    match part {
        PoolPart::Stem => format!("stem.{rel}"),
        PoolPart::Head => rel.to_string(),
        PoolPart::Block => format!("blocks.{position}.{rel}"),
    }
}

/// The network's tensors grouped by part, names relative to the part, in parameter order.
pub fn split_parts(net: &ChildNet) -> Result<Vec<(PoolPart, u32, Vec<PoolTensor>)>, PoolError> {
    let mut parts: Vec<(PoolPart, u32, Vec<PoolTensor>)> = Vec::new();
    for t in net.collect(None, None, false) {
        let Some((part, pos, rel)) = part_of(&t.name) else {
            continue;
        };
        let shape: Vec<usize> = t.shape.to_vec();
        let bytes = t
            .to_bytes()
            .map_err(|e| PoolError::Invalid(format!("reading tensor {}: {e:?}", t.name)))?;
        if t.dtype != DType::F32 || bytes.len() % 4 != 0 {
            return Err(PoolError::Invalid(format!(
                "tensor {} is {:?}, expected f32",
                t.name, t.dtype
            )));
        }
        let data: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let tensor = PoolTensor {
            name: rel,
            shape,
            data,
        };
        match parts.iter_mut().find(|(p, q, _)| *p == part && *q == pos) {
            Some((_, _, v)) => v.push(tensor),
            None => parts.push((part, pos, vec![tensor])),
        }
    }
    Ok(parts)
}

/// What a trained child's entries record besides its tensors.
#[derive(Clone, Debug)]
pub struct EntryMeta {
    pub task: String,
    pub classes: u32,
    pub experiment: String,
    /// Canonical architecture text.
    pub arch: String,
    /// Training images behind the weights, lineage included.
    pub budget_images: u64,
    pub val_accuracy: f64,
}

/// A trained child as pool entries (stem, blocks, head), ready for [`BlockPool::insert`].
pub fn entries_of(
    net: &ChildNet,
    plan: &ChildPlan,
    meta: &EntryMeta,
) -> Result<Vec<(PoolEntry, Vec<PoolTensor>)>, PoolError> {
    let mut out = Vec::new();
    for (part, pos, tensors) in split_parts(net)? {
        let config = match part {
            PoolPart::Stem => conv_config(&plan.stem),
            PoolPart::Head => conv_config(&plan.head),
            PoolPart::Block => match plan.blocks.get(pos as usize) {
                Some(b) => block_config(b),
                None => continue,
            },
        };
        let entry = PoolEntry {
            id: 0,
            space: plan.space.clone(),
            part,
            position: pos,
            config,
            resolution: plan.resolution as u32,
            task: meta.task.clone(),
            classes: meta.classes,
            experiment: meta.experiment.clone(),
            arch: meta.arch.clone(),
            budget_images: meta.budget_images,
            val_accuracy: meta.val_accuracy,
            file: String::new(),
            bytes: 0,
            created_at: 0.0,
            checksum: None,
        };
        out.push((entry, tensors));
    }
    Ok(out)
}

/// The sources chosen for a new child, their tensors loaded: apply with
/// [`WarmStart::apply`] to the freshly initialised network.
#[derive(Clone, Debug)]
pub struct WarmStart {
    sources: Vec<(PoolPart, u32, Vec<PoolTensor>)>,
    /// What was chosen (recorded with the trial).
    pub init: PoolInit,
    /// Budget of the sources (all of one class) plus this child's training gives the
    /// budget of its own entries.
    pub budget_images: u64,
}

/// How [`choose`] picks and accepts sources.
#[derive(Clone, Copy, Debug)]
pub struct ChooseRule<'a> {
    pub weights: &'a DistanceWeights,
    /// Fewer networks than this in the budget class: train from scratch (the first
    /// children of a search seed the pool).
    pub min_networks: usize,
    /// Each block from the most similar stored block of any network (the paper's
    /// block-level choice); otherwise all blocks from the most similar network, adapted
    /// block by block, so a block keeps the input channels it was trained with.
    pub per_block: bool,
    /// Sources farther than this (mean block distance, the other-task term left out) are
    /// declined: far warm starts cost accuracy (docs/results/warm-start-study.txt).
    pub max_distance: Option<f64>,
}

/// What [`choose`] decided for a new child.
#[derive(Clone, Debug)]
pub enum Choice {
    /// Nothing usable in the budget class: train from scratch.
    Scratch,
    /// The nearest sources are farther than the rule allows: train from scratch. Nothing
    /// was loaded or marked as used; `PoolInit` says how far they were.
    Declined(PoolInit),
    /// Sources chosen and loaded.
    Warm(WarmStart),
}

impl Choice {
    pub fn into_warm(self) -> Option<WarmStart> {
        match self {
            Choice::Warm(w) => Some(w),
            _ => None,
        }
    }

    /// The structural distance of declined sources.
    pub fn declined_distance(&self) -> Option<f64> {
        match self {
            Choice::Declined(init) => Some(init.structural_distance),
            _ => None,
        }
    }
}

/// Chooses the pool sources for `plan` among entries of budget class `budget_images`
/// that `allow` accepts and, when the rule accepts them, loads their tensors and marks
/// them as used (the eviction order). The distance test comes first, so a declined child
/// costs no reads.
pub fn choose(
    pool: &dyn BlockPool,
    plan: &ChildPlan,
    task: &str,
    classes: u32,
    budget_images: u64,
    allow: &dyn Fn(&PoolEntry) -> bool,
    rule: &ChooseRule,
) -> Result<Choice, PoolError> {
    let weights = rule.weights;
    let mut entries = pool.entries(&plan.space)?;
    entries.retain(|e| allow(e) && e.budget_images == budget_images);
    let networks: std::collections::BTreeSet<(&str, &str)> = entries
        .iter()
        .map(|e| (e.experiment.as_str(), e.arch.as_str()))
        .collect();
    if networks.len() < rule.min_networks.max(1) {
        return Ok(Choice::Scratch);
    }
    let reqs = requests(plan, task);
    let mut chosen: Vec<(PoolPart, u32, &PoolEntry)> = Vec::new();
    let mut distances = Vec::new();
    let mut structural = Vec::new();
    let network = best_network(weights, &entries, &plan.space, budget_images, &reqs);
    for r in &reqs {
        // network mode: the block at the same position of the most similar network, so
        // consecutive blocks keep the channel meanings they were trained with
        let same_net = network
            .filter(|_| !rule.per_block)
            .and_then(|(_, head, _)| {
                entries.iter().rev().find(|e| {
                    e.part == PoolPart::Block
                        && e.position == r.position
                        && e.experiment == head.experiment
                        && e.arch == head.arch
                })
            });
        let pick = match same_net {
            Some(e) => Some((
                e,
                block_distance(weights, r, e.position, &e.config, &e.task),
            )),
            None => best_block(weights, &entries, &plan.space, budget_images, r),
        };
        match pick {
            Some((e, d)) => {
                chosen.push((PoolPart::Block, r.position, e));
                distances.push(d);
                structural.push(if e.task == r.task {
                    d
                } else {
                    d - weights.task
                });
            }
            None => return Ok(Choice::Scratch),
        }
    }
    if let Some((stem, head, _)) = network {
        chosen.push((PoolPart::Stem, 0, stem));
        chosen.push((PoolPart::Head, 0, head));
    }
    let n = distances.len().max(1) as f64;
    let init = PoolInit {
        hit_ratio: if reqs.is_empty() { 0.0 } else { 1.0 },
        mean_distance: distances.iter().sum::<f64>() / n,
        max_distance: distances.iter().copied().fold(0.0, f64::max),
        structural_distance: structural.iter().sum::<f64>() / n,
        budget_images,
        sources: chosen.iter().map(|(_, _, e)| e.id).collect(),
    };
    if rule
        .max_distance
        .is_some_and(|limit| init.structural_distance > limit)
    {
        return Ok(Choice::Declined(init));
    }
    let mut cache: BTreeMap<i64, Vec<PoolTensor>> = BTreeMap::new();
    let mut sources = Vec::new();
    for (part, pos, e) in &chosen {
        if let std::collections::btree_map::Entry::Vacant(slot) = cache.entry(e.id) {
            slot.insert(pool.load(e)?);
        }
        let mut tensors = cache.get(&e.id).cloned().unwrap_or_default();
        if *part == PoolPart::Head && (e.task != task || e.classes != classes) {
            tensors.retain(|t| !t.name.starts_with("classifier."));
        }
        sources.push((*part, *pos, tensors));
    }
    let ids: Vec<i64> = cache.keys().copied().collect();
    pool.touch(&ids)?;
    Ok(Choice::Warm(WarmStart {
        sources,
        init,
        budget_images,
    }))
}

impl WarmStart {
    /// Overwrites `net`'s fresh weights with the adapted sources (what is not covered
    /// keeps its initialisation). Returns the transfer counts.
    pub fn apply(&self, net: &mut ChildNet) -> Result<TransferStats, PoolError> {
        let fresh = split_parts(net)?;
        let mut total = TransferStats::default();
        let mut out: Vec<PackTensor> = Vec::new();
        for (part, pos, init) in &fresh {
            let Some((_, _, src)) = self.sources.iter().find(|(p, q, _)| p == part && q == pos)
            else {
                continue;
            };
            let (adapted, stats) = adapt_part(src, init);
            total.copied += stats.copied;
            total.fresh += stats.fresh;
            total.copied_elements += stats.copied_elements;
            total.total_elements += stats.total_elements;
            for t in adapted {
                out.push(PackTensor::new(
                    full_name(*part, *pos, &t.name),
                    DType::F32,
                    t.shape.clone(),
                    None,
                    Bytes::from_elems(t.data),
                ));
            }
        }
        let result = net.apply(out, None, None, false);
        if !result.errors.is_empty() {
            return Err(PoolError::Invalid(format!(
                "applying pool weights: {:?}",
                result.errors
            )));
        }
        Ok(total)
    }
}
