//! The NAS-Bench-201 cell: 6 edges of a 4-node DAG, 5 ops each (AnalogNAS-Bench).

use super::{Decision, Kind, SearchSpace};

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
