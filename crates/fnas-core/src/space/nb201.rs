//! The NAS-Bench-201 cell: 6 edges of a 4-node DAG, 5 ops each (AnalogNAS-Bench).

use super::{Decision, Kind, SearchSpace};
use crate::Architecture;

/// Op names in AnalogNAS-Bench's index order (0..=4).
pub const NB201_OPS: [&str; 5] = [
    "skip_connect",
    "none",
    "nor_conv_3x3",
    "nor_conv_1x1",
    "avg_pool_3x3",
];

/// Edge names in the benchmark's tuple order.
pub const NB201_EDGES: [&str; 6] = ["e1_2", "e1_3", "e1_4", "e2_3", "e2_4", "e3_4"];

pub(super) fn space() -> SearchSpace {
    SearchSpace {
        name: "nas-bench-201".into(),
        decisions: NB201_EDGES
            .iter()
            .map(|e| Decision {
                name: (*e).into(),
                choices: NB201_OPS.iter().map(|o| (*o).to_string()).collect(),
            })
            .collect(),
        kind: Kind::Nb201,
    }
}

/// Length of the path encoding: op sequences of length 1, 2 and 3.
pub(super) const PATHS_LEN: usize = 5 + 25 + 125;

/// The cell's input-to-output paths, as edge indices into [`NB201_EDGES`].
const PATHS: [&[usize]; 4] = [&[2], &[0, 4], &[1, 5], &[0, 3, 5]];

/// The path encoding (BANANAS): one feature per op sequence along an input-to-output
/// path that carries data (no `none` edge on it), appended to `f` from `off` on.
pub(super) fn paths(arch: &Architecture, off: u32, f: &mut Vec<(u32, f32)>) {
    let none = NB201_OPS.iter().position(|o| *o == "none").unwrap_or(1) as u16;
    for path in PATHS {
        let seq: Vec<u16> = path.iter().map(|&e| arch.0[e]).collect();
        if seq.contains(&none) {
            continue;
        }
        let (base, code) = match seq.as_slice() {
            [a] => (0, *a as usize),
            [a, b] => (5, *a as usize * 5 + *b as usize),
            [a, b, c] => (30, (*a as usize * 5 + *b as usize) * 5 + *c as usize),
            _ => continue,
        };
        f.push((off + (base + code) as u32, 1.0));
    }
}
