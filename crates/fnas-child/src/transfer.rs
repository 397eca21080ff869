//! Weight transfer between unequal shapes: stored (source) tensors of the knowledge pool
//! are adapted to a new architecture, whose freshly initialised tensors (`init`) give the
//! target shape and the values of everything not copied. Pure data functions on
//! [`PoolTensor`]s; no burn.
//!
//! # Rules
//! - **Rank**: source and target must have the same rank, otherwise the target keeps
//!   `init` (no sensible correspondence exists).
//! - **Channels** (conv weight dims 0 and 1; every dim of a rank-1/2 tensor: BN vectors,
//!   biases, a Linear weight `[in, out]`): the leading `min(source, target)` channels are
//!   copied; extra target channels keep `init` entirely. New channels thus get the normal
//!   initialisation (and a new BN channel gamma 1, beta 0, running mean 0, running var 1)
//!   so they can still learn, rather than zeros that would leave them dead.
//! - **Kernel** (conv weight dims 2 and 3): centre-aligned. A smaller target kernel takes
//!   the source's centre window (centre crop, the taps that carry most of the weight); a
//!   larger target kernel gets the source in its centre and zeros around it (zero pad),
//!   for the copied channel pairs, so the copied filter computes exactly the learned
//!   function: a 3x3 filter padded to 5x5 with zeros is the same filter.
//! - **Layers** ([`layer_source`]): layer `j` takes source layer `j`; a target layer
//!   beyond the source's count takes the source's last layer, which has the block's
//!   in-block shape (cin = cout, stride 1) and is therefore the closest to an extra layer.
//! - **Part aliases**: `pw` (dwsep) and `project` (mbconv) are the same role, the 1x1 conv
//!   to the block's output, so a missing one is taken from the other. `conv`, `dw`,
//!   `expand`, `se.*` and `skip` have no alias; a part the source lacks keeps `init`.
//!
//! Equal shapes give an exact copy. Shape mismatches never panic; a tensor whose data
//! length does not match its shape is treated as absent.

use std::collections::HashMap;

use fnas_core::pool::PoolTensor;

/// What [`adapt_part`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Target tensors that took (at least part of) their values from the source.
    pub copied: usize,
    /// Target tensors that kept their initialisation entirely.
    pub fresh: usize,
    /// Target elements whose value was copied from the source (the zeros of a kernel zero
    /// pad are not counted).
    pub copied_elements: usize,
    /// Elements of all target tensors.
    pub total_elements: usize,
}

impl TransferStats {
    /// Adds the counts of `other` (e.g. to sum over the parts of a network).
    pub fn merge(&mut self, other: TransferStats) {
        self.copied += other.copied;
        self.fresh += other.fresh;
        self.copied_elements += other.copied_elements;
        self.total_elements += other.total_elements;
    }
}

/// `src` adapted to the name and shape of `init` (see the module docs for the rules).
/// Returns `init` unchanged when the ranks differ.
pub fn adapt(src: &PoolTensor, init: &PoolTensor) -> PoolTensor {
    adapt_counted(src, init).0
}

/// The source layer that target layer `target_layer` copies when the source block has
/// `source_layers` layers: the same index, or the source's last layer for a target layer
/// beyond the source's count (it has the in-block shape cin = cout and stride 1, the
/// closest to an extra layer). 0 when the source has no layers.
pub fn layer_source(target_layer: usize, source_layers: usize) -> usize {
    target_layer.min(source_layers.saturating_sub(1))
}

/// Adapts the tensors of one part (a block, with names `layers.{j}.{part}.{rest}`, or a
/// stem or head) to the tensors `init` of the new part. Each init tensor
/// `layers.{j}.{part}.{rest}` takes the source tensor
/// `layers.{layer_source(j, n)}.{part}.{rest}` (or, for `pw`/`project`, the alias part)
/// adapted, where `n` is the number of source layers inferred from the source names;
/// other names match identically. Without a source tensor, init is kept. Returns one
/// tensor per init tensor, in init's order.
pub fn adapt_part(src: &[PoolTensor], init: &[PoolTensor]) -> (Vec<PoolTensor>, TransferStats) {
    let by_name: HashMap<&str, &PoolTensor> = src.iter().map(|t| (t.name.as_str(), t)).collect();
    let source_layers = src
        .iter()
        .filter_map(|t| parse_layer_name(&t.name))
        .map(|n| n.layer + 1)
        .max()
        .unwrap_or(0);
    let mut stats = TransferStats::default();
    let mut out = Vec::with_capacity(init.len());
    for target in init {
        stats.total_elements += target.data.len();
        let source = source_candidates(&target.name, source_layers)
            .iter()
            .find_map(|name| by_name.get(name.as_str()).copied());
        let (tensor, copied) = match source {
            Some(s) => adapt_counted(s, target),
            None => (target.clone(), 0),
        };
        if copied > 0 {
            stats.copied += 1;
            stats.copied_elements += copied;
        } else {
            stats.fresh += 1;
        }
        out.push(tensor);
    }
    (out, stats)
}

/// A parsed `layers.{layer}.{part}.{rest}` name.
struct LayerName<'a> {
    layer: usize,
    part: &'a str,
    rest: &'a str,
}

/// Splits `layers.{j}.{part}.{rest}`; `part` is one segment, or two for `se.reduce` and
/// `se.expand`. `None` for other names.
fn parse_layer_name(name: &str) -> Option<LayerName<'_>> {
    let tail = name.strip_prefix("layers.")?;
    let (index, tail) = tail.split_once('.')?;
    let layer = index.parse().ok()?;
    let part_len = match tail.strip_prefix("se.") {
        Some(se_tail) => 3 + se_tail.find('.')?,
        None => tail.find('.')?,
    };
    let (part, rest) = (&tail[..part_len], &tail[part_len + 1..]);
    Some(LayerName { layer, part, rest })
}

/// The source names a target tensor may take, in order of preference.
fn source_candidates(target: &str, source_layers: usize) -> Vec<String> {
    let Some(n) = parse_layer_name(target) else {
        return vec![target.to_string()];
    };
    let layer = layer_source(n.layer, source_layers);
    let mut names = vec![format!("layers.{layer}.{}.{}", n.part, n.rest)];
    if let Some(alias) = alias(n.part) {
        names.push(format!("layers.{layer}.{alias}.{}", n.rest));
    }
    names
}

/// The part of the same role: `pw` (dwsep) and `project` (mbconv) both map the block's
/// hidden channels to its output.
fn alias(part: &str) -> Option<&'static str> {
    match part {
        "pw" => Some("project"),
        "project" => Some("pw"),
        _ => None,
    }
}

/// [`adapt`] plus the number of elements copied from the source (0: init kept).
fn adapt_counted(src: &PoolTensor, init: &PoolTensor) -> (PoolTensor, usize) {
    let rank = init.shape.len();
    if src.shape.len() != rank
        || src.data.len() != src.shape.iter().product::<usize>()
        || init.data.len() != init.shape.iter().product::<usize>()
    {
        return (init.clone(), 0);
    }
    let is_kernel = |d: usize| rank == 4 && d >= 2;
    // Per dim: source offset, target offset, length of the copied window.
    let mut src_off = vec![0; rank];
    let mut dst_off = vec![0; rank];
    let mut len = vec![0; rank];
    for d in 0..rank {
        let (s, t) = (src.shape[d], init.shape[d]);
        len[d] = s.min(t);
        if is_kernel(d) {
            if s > t {
                src_off[d] = (s - t) / 2;
            } else {
                dst_off[d] = (t - s) / 2;
            }
        }
    }
    let copied: usize = len.iter().product();
    if copied == 0 {
        return (init.clone(), 0);
    }
    let src_strides = strides(&src.shape);
    let dst_strides = strides(&init.shape);
    let mut data = init.data.clone();
    if rank == 4 {
        // Zero pad: the whole kernel window of every copied channel pair starts at zero.
        let window = [len[0], len[1], init.shape[2], init.shape[3]];
        for_each_index(&window, |idx| {
            data[offset(idx, &[0; 4], &dst_strides)] = 0.0;
        });
    }
    for_each_index(&len, |idx| {
        data[offset(idx, &dst_off, &dst_strides)] = src.data[offset(idx, &src_off, &src_strides)];
    });
    let tensor = PoolTensor {
        name: init.name.clone(),
        shape: init.shape.clone(),
        data,
    };
    (tensor, copied)
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// Flat offset of `idx + off` with `strides`.
fn offset(idx: &[usize], off: &[usize], strides: &[usize]) -> usize {
    idx.iter()
        .zip(off)
        .zip(strides)
        .map(|((i, o), s)| (i + o) * s)
        .sum()
}

/// Calls `f` for every index of the box `lens` in row-major order (once for rank 0,
/// never for an empty box).
fn for_each_index(lens: &[usize], mut f: impl FnMut(&[usize])) {
    if lens.contains(&0) {
        return;
    }
    let mut idx = vec![0; lens.len()];
    loop {
        f(&idx);
        let mut d = lens.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < lens[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}
