//! NAS-Bench-Graph: 4 compute nodes, each with an input link and a GNN op, and the
//! benchmark's canonicalisation (a port of `valid_hash` in the package's
//! `architecture.py`), which merges isomorphic duplicates onto one key.

use std::collections::HashSet;

use super::{Decision, Kind, SearchSpace};
use crate::Architecture;

/// All ops, in the benchmark's index order (the order keys are computed in).
pub const GRAPH_OPS: &[&str] = &[
    "gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip",
];

/// The ops benchmarked on the proteins dataset.
pub const GRAPH_OPS_PROTEINS: &[&str] = &["gcn", "sage", "arma", "fc", "skip"];

const SKIP: u8 = 8;

/// The 9 canonical link patterns; a key's leading digit indexes this list.
const LINKS: [[u8; 4]; 9] = [
    [0, 0, 0, 0],
    [0, 0, 0, 1],
    [0, 0, 1, 1],
    [0, 0, 1, 2],
    [0, 0, 1, 3],
    [0, 1, 1, 1],
    [0, 1, 1, 2],
    [0, 1, 2, 2],
    [0, 1, 2, 3],
];

pub(super) fn space(ops: &'static [&'static str], name: &str) -> SearchSpace {
    let mut decisions = Vec::new();
    for node in 2..=4u8 {
        decisions.push(Decision {
            name: format!("in{node}"),
            choices: (0..node).map(|j| j.to_string()).collect(),
        });
    }
    for node in 1..=4 {
        decisions.push(Decision {
            name: format!("op{node}"),
            choices: ops.iter().map(|o| (*o).to_string()).collect(),
        });
    }
    SearchSpace {
        name: name.into(),
        decisions,
        kind: Kind::Graph { ops },
    }
}

/// Splits an architecture into (link list, op indices into [`GRAPH_OPS`]).
fn unpack(ops: &[&str], arch: &Architecture) -> ([u8; 4], [u8; 4]) {
    let c = arch.choices();
    let link = [0, c[0] as u8, c[1] as u8, c[2] as u8];
    let mut op = [0u8; 4];
    for i in 0..4 {
        let name = ops[c[3 + i] as usize];
        op[i] = GRAPH_OPS.iter().position(|o| *o == name).unwrap_or(0) as u8;
    }
    (link, op)
}

fn pack(ops: &[&str], link: [u8; 4], op: [u8; 4]) -> Architecture {
    let mut c = vec![link[1] as u16, link[2] as u16, link[3] as u16];
    for o in op {
        let name = GRAPH_OPS[o as usize];
        c.push(ops.iter().position(|x| *x == name).unwrap_or(0) as u16);
    }
    Architecture(c)
}

pub(super) fn is_valid(ops: &[&str], arch: &Architecture) -> bool {
    let (_, op) = unpack(ops, arch);
    op.iter().any(|&o| o != SKIP)
}

/// `Arch.regularize`: maps the 15 non-canonical link patterns onto canonical ones.
fn regularize(link: [u8; 4], o: [u8; 4]) -> ([u8; 4], [u8; 4]) {
    let p = |a: usize, b: usize, c: usize, d: usize| [o[a], o[b], o[c], o[d]];
    match link {
        [0, 0, 0, 2] => ([0, 0, 0, 1], p(1, 0, 2, 3)),
        [0, 0, 0, 3] => ([0, 0, 0, 1], p(2, 0, 1, 3)),
        [0, 0, 1, 0] => ([0, 0, 0, 1], p(0, 1, 3, 2)),
        [0, 0, 2, 0] => ([0, 0, 0, 1], p(1, 0, 3, 2)),
        [0, 0, 2, 1] => ([0, 0, 1, 2], p(1, 0, 2, 3)),
        [0, 0, 2, 2] => ([0, 0, 1, 1], p(1, 0, 2, 3)),
        [0, 0, 2, 3] => ([0, 0, 1, 3], p(1, 0, 2, 3)),
        [0, 1, 0, 0] => ([0, 0, 0, 1], p(0, 2, 3, 1)),
        [0, 1, 0, 1] => ([0, 0, 1, 1], p(0, 2, 1, 3)),
        [0, 1, 0, 2] => ([0, 0, 1, 3], p(0, 2, 1, 3)),
        [0, 1, 0, 3] => ([0, 0, 1, 2], p(0, 2, 1, 3)),
        [0, 1, 1, 0] => ([0, 0, 1, 1], p(0, 3, 1, 2)),
        [0, 1, 1, 3] => ([0, 1, 1, 2], p(0, 2, 1, 3)),
        [0, 1, 2, 0] => ([0, 0, 1, 3], p(0, 3, 1, 2)),
        [0, 1, 2, 1] => ([0, 1, 1, 2], p(0, 1, 3, 2)),
        _ => (link, o),
    }
}

/// `Arch.move_skip_op`: moves skip nodes that do not change the graph to the front.
fn move_skip_op(link0: [u8; 4], ops0: [u8; 4]) -> ([u8; 4], [u8; 4]) {
    let mut link = link0.to_vec();
    let mut ops = ops0.to_vec();
    let move_one = |k: usize, link: &mut Vec<u8>, ops: &mut Vec<u8>| {
        let mut new_ops = vec![ops[k]];
        new_ops.extend_from_slice(&ops[..k]);
        new_ops.extend_from_slice(&ops[k + 1..]);
        *ops = new_ops;
        for i in 0..link.len() {
            let father = link[i];
            if father as usize == k + 1 {
                link[i] = link[k];
            }
            if father as usize <= k {
                link[i] += 1;
            }
        }
        let mut new_link = vec![0];
        new_link.extend_from_slice(&link[..k]);
        new_link.extend_from_slice(&link[k + 1..]);
        *link = new_link;
    };
    // Is node k's output the graph input, passed through skips only?
    let check_dim = |mut k: i64, link: &[u8], ops: &[u8]| {
        while k > -1 {
            if ops[k as usize] != SKIP {
                return false;
            }
            k = link[k as usize] as i64 - 1;
        }
        true
    };
    for i in 0..link.len() {
        if ops[i] != SKIP {
            continue;
        }
        let mut son = false;
        let mut brother = false;
        for (j, &fa) in link.iter().enumerate() {
            if fa as usize == i + 1 {
                son = true;
            } else if j != i && fa == link[i] {
                brother = true;
            }
        }
        if son || !brother || check_dim(i as i64, &link, &ops) {
            move_one(i, &mut link, &mut ops);
        }
    }
    let (mut l, mut o) = ([0u8; 4], [0u8; 4]);
    l.copy_from_slice(&link);
    o.copy_from_slice(&ops);
    match l {
        [0, 1, 2, 1] => ([0, 1, 1, 2], [o[0], o[1], o[3], o[2]]),
        [0, 1, 1, 3] => ([0, 1, 1, 2], [o[0], o[2], o[1], o[3]]),
        _ => (l, o),
    }
}

/// `Arch.equalpart_sort`: orders ops of interchangeable nodes.
fn equalpart_sort(link: [u8; 4], op: [u8; 4]) -> [u8; 4] {
    let mut ops = op;
    let ids: &[usize] = match link {
        [0, 0, 0, 0] => &[0, 1, 2, 3],
        [0, 0, 0, 1] => &[1, 2],
        [0, 0, 1, 1] => &[2, 3],
        [0, 1, 1, 1] => &[1, 2, 3],
        [0, 1, 2, 2] => &[2, 3],
        [0, 0, 1, 2] => {
            if op[0] > op[1] || (op[0] == op[1] && op[2] > op[3]) {
                ops = [ops[1], ops[0], ops[3], ops[2]];
            }
            &[]
        }
        _ => &[],
    };
    let mut sorted: Vec<u8> = ids.iter().map(|&i| ops[i]).collect();
    sorted.sort_unstable();
    for (&pos, v) in ids.iter().zip(sorted) {
        ops[pos] = v;
    }
    ops
}

pub(super) fn canonical(ops: &[&str], arch: &Architecture) -> Architecture {
    let (link, op) = unpack(ops, arch);
    let (link, op) = regularize(link, op);
    let (link, op) = move_skip_op(link, op);
    let op = equalpart_sort(link, op);
    pack(ops, link, op)
}

/// `Arch.hash_arch` of a canonical architecture (base 10, full op list, as the files use).
pub(super) fn key(ops: &[&str], canonical: &Architecture) -> u64 {
    let (link, op) = unpack(ops, canonical);
    // canonicalisation always ends on one of the 9 patterns (tested over all specs)
    let mut h = LINKS.iter().position(|l| *l == link).unwrap_or(LINKS.len()) as u64;
    for o in op {
        h = h * 10 + u64::from(o);
    }
    h
}

/// Length of the structure features [`structure`] adds: (node, input, op) triples (10
/// node-input slots x 9 ops), (parent op or graph input, op) pairs (10 x 9), the ops
/// that feed the output (9) and op x depth (4 x 9).
pub(super) const STRUCTURE_LEN: usize = 90 + 90 + 9 + 36;

/// The structure features of a canonical architecture, appended to `f` from `off` on.
pub(super) fn structure(ops: &[&str], canon: &Architecture, off: u32, f: &mut Vec<(u32, f32)>) {
    let (link, op) = unpack(ops, canon);
    let n_ops = GRAPH_OPS.len();
    let mut depth = [0usize; 4];
    for i in 0..4 {
        let parent = link[i] as usize;
        depth[i] = if parent == 0 {
            1
        } else {
            depth[parent - 1] + 1
        };
        let o = op[i] as usize;
        // (node, input) slot: node i has i + 1 possible inputs
        let slot = i * (i + 1) / 2 + parent;
        f.push((off + (slot * n_ops + o) as u32, 1.0));
        let p = if parent == 0 {
            n_ops
        } else {
            op[parent - 1] as usize
        };
        f.push((off + (90 + p * n_ops + o) as u32, 1.0));
        let leaf = !link.iter().any(|&l| l as usize == i + 1);
        if leaf {
            f.push((off + (180 + o) as u32, 1.0));
        }
        let d = depth[i].clamp(1, 4) - 1;
        f.push((off + (189 + d * n_ops + o) as u32, 1.0));
    }
}

/// Every valid raw architecture of a graph space, in a fixed order.
pub fn all_raw(space: &SearchSpace) -> Vec<Architecture> {
    let sizes: Vec<usize> = space.decisions().iter().map(|d| d.choices.len()).collect();
    let mut out = Vec::new();
    let mut idx = vec![0usize; sizes.len()];
    loop {
        let a = Architecture(idx.iter().map(|&i| i as u16).collect());
        if space.is_valid(&a) {
            out.push(a);
        }
        let mut d = sizes.len();
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < sizes[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

pub(super) fn canonical_count(space: &SearchSpace) -> u64 {
    let set: HashSet<u64> = all_raw(space)
        .iter()
        .filter_map(|a| space.graph_key(a))
        .collect();
    set.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_canonical_counts_match_the_benchmark() {
        let s = SearchSpace::nas_bench_graph();
        assert_eq!(s.raw_size(), 157_440.0);
        assert_eq!(all_raw(&s).len(), 157_440);
        assert_eq!(s.canonical_size(), Some(26_206));
    }

    #[test]
    fn canonical_is_idempotent_and_ends_on_a_canonical_link() {
        let s = SearchSpace::nas_bench_graph();
        for a in all_raw(&s).iter().step_by(7) {
            let c = s.canonical(a);
            assert_eq!(s.canonical(&c), c);
            assert!(key(GRAPH_OPS, &c) < 90_000);
        }
    }

    #[test]
    fn isomorphic_specs_share_a_key() {
        let s = SearchSpace::nas_bench_graph();
        // two parallel branches from the input: swapping them is the same graph
        let a = s
            .parse("in2=0 in3=0 in4=0 op1=gcn op2=gat op3=fc op4=sage")
            .unwrap();
        let b = s
            .parse("in2=0 in3=0 in4=0 op1=sage op2=fc op3=gat op4=gcn")
            .unwrap();
        assert_eq!(s.graph_key(&a), s.graph_key(&b));
        let c = s
            .parse("in2=1 in3=2 in4=3 op1=gcn op2=gat op3=fc op4=sage")
            .unwrap();
        assert_ne!(s.graph_key(&a), s.graph_key(&c));
    }
}
