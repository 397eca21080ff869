//! Feature encodings of architectures for learned predictors: the plain one-hot, and a
//! per-space *structure* encoding that states what the one-hot leaves the predictor to
//! discover (which op feeds which, which ops reach the output, paths, sizes).
//!
//! Both are sparse: `(feature index, value)` pairs sorted by index, most values 1.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{graph, mnas, nb201, Kind, SearchSpace};
use crate::Architecture;

/// A sparse feature vector: `(index, value)` pairs, sorted by index, each index once.
pub type Features = Vec<(u32, f32)>;

/// Which encoding a predictor sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// One indicator per (decision, choice).
    OneHot,
    /// The one-hot plus the space's structural features (NAS-Bench-Graph: (node, input,
    /// op) triples, (parent op, op) pairs, output ops and op depths of the canonical
    /// graph; NAS-Bench-201: the path encoding; MNAS: per-block numbers and estimated
    /// size).
    #[default]
    Structure,
}

/// Encoding names, as the command line spells them.
pub const ENCODINGS: &[&str] = &["one-hot", "structure"];

impl FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "one-hot" | "onehot" => Ok(Encoding::OneHot),
            "structure" => Ok(Encoding::Structure),
            _ => Err(format!(
                "unknown encoding `{s}` (known: {})",
                ENCODINGS.join(", ")
            )),
        }
    }
}

impl Encoding {
    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::OneHot => "one-hot",
            Encoding::Structure => "structure",
        }
    }
}

impl SearchSpace {
    /// Number of one-hot features.
    fn one_hot_len(&self) -> usize {
        self.decisions.iter().map(|d| d.choices.len()).sum()
    }

    /// Length of the feature vectors of `enc` (every index is below it).
    pub fn encoding_len(&self, enc: Encoding) -> usize {
        let base = self.one_hot_len();
        match (enc, &self.kind) {
            (Encoding::OneHot, _) => base,
            (Encoding::Structure, Kind::Graph { .. }) => base + graph::STRUCTURE_LEN,
            (Encoding::Structure, Kind::Nb201) => base + nb201::PATHS_LEN,
            (Encoding::Structure, Kind::Mnas(spec)) => base + mnas::structure_len(spec),
        }
    }

    /// The features of `arch` under `enc`. Spaces with a canonical form encode the
    /// canonical architecture, so isomorphic duplicates get the same features.
    pub fn encode(&self, enc: Encoding, arch: &Architecture) -> Features {
        let canon = self.canonical(arch);
        let mut f: Features = Vec::with_capacity(self.decisions.len() * 4);
        let mut off = 0u32;
        for (d, &c) in self.decisions.iter().zip(canon.choices()) {
            f.push((off + u32::from(c), 1.0));
            off += d.choices.len() as u32;
        }
        if enc == Encoding::Structure {
            match &self.kind {
                Kind::Graph { ops } => graph::structure(ops, &canon, off, &mut f),
                Kind::Nb201 => nb201::paths(&canon, off, &mut f),
                Kind::Mnas(spec) => mnas::structure(spec, &canon, off, &mut f),
            }
        }
        // sorted by index, repeated indices summed: predictors merge two vectors in one pass
        f.sort_by_key(|p| p.0);
        let mut merged: Features = Vec::with_capacity(f.len());
        for (i, v) in f {
            match merged.last_mut() {
                Some(last) if last.0 == i => last.1 += v,
                _ => merged.push((i, v)),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn features_stay_inside_the_encoding_in_every_shipped_space() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for name in super::super::SHIPPED_SPACES {
            let s = SearchSpace::by_name_or_path(name).unwrap();
            for enc in [Encoding::OneHot, Encoding::Structure] {
                let n = s.encoding_len(enc) as u32;
                for _ in 0..300 {
                    let a = s.sample(&mut rng);
                    let f = s.encode(enc, &a);
                    assert!(f.iter().all(|&(i, v)| i < n && v.is_finite()), "{name}");
                    assert!(f.windows(2).all(|w| w[0].0 < w[1].0), "{name}: unsorted");
                    assert_eq!(f, s.encode(enc, &s.canonical(&a)));
                }
            }
            assert!(s.encoding_len(Encoding::Structure) > s.encoding_len(Encoding::OneHot));
        }
    }

    #[test]
    fn structure_separates_graphs_the_one_hot_of_positions_confuses() {
        let s = SearchSpace::nas_bench_graph();
        // same ops, different wiring: a chain and a star
        let chain = s
            .parse("in2=1 in3=2 in4=3 op1=gcn op2=gat op3=fc op4=sage")
            .unwrap();
        let star = s
            .parse("in2=0 in3=0 in4=0 op1=gcn op2=gat op3=fc op4=sage")
            .unwrap();
        assert_ne!(
            s.encode(Encoding::Structure, &chain),
            s.encode(Encoding::Structure, &star)
        );
    }

    #[test]
    fn names_parse_and_unknown_ones_are_refused() {
        assert_eq!("one-hot".parse::<Encoding>().unwrap(), Encoding::OneHot);
        assert_eq!(
            "structure".parse::<Encoding>().unwrap(),
            Encoding::Structure
        );
        let e = "paths".parse::<Encoding>().unwrap_err();
        assert!(e.contains("unknown encoding `paths`") && e.contains("one-hot"));
    }
}
