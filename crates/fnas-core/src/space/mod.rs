//! Search spaces as data: an ordered list of named categorical decisions, plus the
//! few space-specific rules (validity, canonical form) a benchmark needs.

mod edit;
mod encoding;
pub mod graph;
mod mnas;
mod nb201;

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::Architecture;

pub use encoding::{Encoding, Features, ENCODINGS};
pub use graph::{GRAPH_OPS, GRAPH_OPS_PROTEINS};
pub use mnas::{MnasBlock, MnasSpec};

/// One categorical decision: a name and its choices (as printed in text forms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub name: String,
    pub choices: Vec<String>,
}

/// Errors reading a space or an architecture's text form.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("{file}: field `{field}`: {expected}")]
    InvalidFile {
        file: String,
        field: String,
        expected: String,
    },
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("unknown search space `{0}` (shipped: {1}; or give a path to a .toml file)")]
    UnknownSpace(String, String),
    #[error("architecture `{text}`: {message}")]
    BadArchitecture { text: String, message: String },
}

/// A user's text as shown in a one-line message: control characters (line breaks
/// included) escaped, everything else as given.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// NAS-Bench-Graph; `ops` is the op list of this variant (proteins uses a subset).
    Graph {
        ops: &'static [&'static str],
    },
    Nb201,
    Mnas(Box<MnasSpec>),
}

/// A search space: decisions plus its validity and canonicalisation rules.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpace {
    name: String,
    decisions: Vec<Decision>,
    kind: Kind,
}

/// Names of the spaces that ship with fnas.
pub const SHIPPED_SPACES: &[&str] = &[
    "nas-bench-graph",
    "nas-bench-graph-proteins",
    "nas-bench-201",
    "mnas-28",
];

impl SearchSpace {
    /// The NAS-Bench-Graph space (all 9 ops).
    pub fn nas_bench_graph() -> Self {
        graph::space(GRAPH_OPS, "nas-bench-graph")
    }

    /// The NAS-Bench-Graph space restricted to the ops benchmarked on proteins.
    pub fn nas_bench_graph_proteins() -> Self {
        graph::space(GRAPH_OPS_PROTEINS, "nas-bench-graph-proteins")
    }

    /// The NAS-Bench-201 cell space (6 edges x 5 ops), used by AnalogNAS-Bench.
    pub fn nas_bench_201() -> Self {
        nb201::space()
    }

    /// The MNAS factorized hierarchical space of a TOML file.
    pub fn mnas_from_file(path: &Path) -> Result<Self, SpaceError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpaceError::Read {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::mnas_from_toml(&text, &path.display().to_string())
    }

    /// The MNAS space of TOML text; `file` names the source in error messages.
    pub fn mnas_from_toml(text: &str, file: &str) -> Result<Self, SpaceError> {
        let spec = MnasSpec::from_toml(text, file)?;
        Ok(mnas::space(spec))
    }

    /// The shipped default MNAS space for 28x28 inputs.
    // the shipped file is compiled in and parsed by a test: failing is a build defect
    #[allow(clippy::expect_used)]
    pub fn mnas_default() -> Self {
        Self::mnas_from_toml(mnas::DEFAULT_TOML, "spaces/mnas-28.toml")
            .expect("the shipped MNAS space file is valid (tested)")
    }

    /// A shipped space by name, or a TOML file by path.
    pub fn by_name_or_path(name: &str) -> Result<Self, SpaceError> {
        match name {
            "nas-bench-graph" => Ok(Self::nas_bench_graph()),
            "nas-bench-graph-proteins" => Ok(Self::nas_bench_graph_proteins()),
            "nas-bench-201" => Ok(Self::nas_bench_201()),
            "mnas-28" | "mnas" => Ok(Self::mnas_default()),
            _ if name.ends_with(".toml") || Path::new(name).exists() => {
                Self::mnas_from_file(Path::new(name))
            }
            _ => Err(SpaceError::UnknownSpace(
                name.to_string(),
                SHIPPED_SPACES.join(", "),
            )),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The MNAS block layout, for spaces of that kind (the child builder needs it).
    pub fn mnas_spec(&self) -> Option<&MnasSpec> {
        match &self.kind {
            Kind::Mnas(s) => Some(s),
            _ => None,
        }
    }

    /// Number of raw architectures (every combination of choices that is valid).
    pub fn raw_size(&self) -> f64 {
        let all: f64 = self
            .decisions
            .iter()
            .map(|d| d.choices.len() as f64)
            .product();
        match &self.kind {
            // the all-skip op assignment is excluded for each link pattern
            Kind::Graph { .. } => {
                all - self.decisions[..3]
                    .iter()
                    .map(|d| d.choices.len() as f64)
                    .product::<f64>()
            }
            _ => all,
        }
    }

    /// Number of distinct architectures after canonicalisation, where the space has a
    /// canonical form that merges duplicates (NAS-Bench-Graph); `None` otherwise.
    pub fn canonical_size(&self) -> Option<u64> {
        match &self.kind {
            Kind::Graph { .. } => Some(graph::canonical_count(self)),
            _ => None,
        }
    }

    /// Whether an architecture has one choice per decision, each in range (what the
    /// space's own rules need before they can look at it).
    fn in_range(&self, arch: &Architecture) -> bool {
        arch.0.len() == self.decisions.len()
            && arch
                .0
                .iter()
                .zip(&self.decisions)
                .all(|(&c, d)| (c as usize) < d.choices.len())
    }

    /// Whether an architecture satisfies the space's constraints.
    pub fn is_valid(&self, arch: &Architecture) -> bool {
        if !self.in_range(arch) {
            return false;
        }
        match &self.kind {
            Kind::Graph { ops } => graph::is_valid(ops, arch),
            _ => true,
        }
    }

    /// The canonical representative of an architecture: isomorphic duplicates map to
    /// one architecture (NAS-Bench-Graph); identity for the other spaces and for a choice
    /// vector that does not fit the space (wrong length or a choice out of range).
    pub fn canonical(&self, arch: &Architecture) -> Architecture {
        match &self.kind {
            Kind::Graph { ops } if self.in_range(arch) => graph::canonical(ops, arch),
            _ => arch.clone(),
        }
    }

    /// NAS-Bench-Graph's integer key of an architecture (after canonicalisation), as the
    /// benchmark files index it. `None` for other spaces and for a choice vector that does
    /// not fit the space.
    pub fn graph_key(&self, arch: &Architecture) -> Option<u64> {
        match &self.kind {
            Kind::Graph { ops } if self.in_range(arch) => {
                Some(graph::key(ops, &graph::canonical(ops, arch)))
            }
            _ => None,
        }
    }

    /// Uniform sample over valid raw architectures.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Architecture {
        loop {
            let a = Architecture(
                self.decisions
                    .iter()
                    .map(|d| rng.random_range(0..d.choices.len()) as u16)
                    .collect(),
            );
            if self.is_valid(&a) {
                return a;
            }
        }
    }

    /// The text form: `name=choice` pairs separated by single spaces, in decision order.
    pub fn format(&self, arch: &Architecture) -> String {
        let mut out = String::new();
        for (i, (d, &c)) in self.decisions.iter().zip(arch.choices()).enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&d.name);
            out.push('=');
            out.push_str(d.choices.get(c as usize).map(String::as_str).unwrap_or("?"));
        }
        out
    }

    /// Parses the text form. Every decision must appear exactly once (any order).
    pub fn parse(&self, text: &str) -> Result<Architecture, SpaceError> {
        let bad = |message: String| SpaceError::BadArchitecture {
            text: one_line(text),
            message,
        };
        let mut choices: Vec<Option<u16>> = vec![None; self.decisions.len()];
        for tok in text.split_whitespace() {
            let (name, value) = tok
                .split_once('=')
                .ok_or_else(|| bad(format!("`{}` is not name=choice", one_line(tok))))?;
            let idx = self
                .decisions
                .iter()
                .position(|d| d.name == name)
                .ok_or_else(|| {
                    bad(format!(
                        "unknown decision `{}` in space {}",
                        one_line(name),
                        self.name
                    ))
                })?;
            let d = &self.decisions[idx];
            let c = d.choices.iter().position(|c| c == value).ok_or_else(|| {
                bad(format!(
                    "`{name}` must be one of {}, got `{}`",
                    d.choices.join("|"),
                    one_line(value)
                ))
            })?;
            if choices[idx].replace(c as u16).is_some() {
                return Err(bad(format!("decision `{name}` given twice")));
            }
        }
        let missing: Vec<&str> = self
            .decisions
            .iter()
            .zip(&choices)
            .filter(|(_, c)| c.is_none())
            .map(|(d, _)| d.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!("missing decisions: {}", missing.join(", "))));
        }
        let arch = Architecture(choices.into_iter().flatten().collect());
        if !self.is_valid(&arch) {
            return Err(bad(format!(
                "violates the constraints of space {}",
                self.name
            )));
        }
        Ok(arch)
    }

    /// One-hot encoding (concatenated per decision), the input of learned predictors.
    pub fn one_hot(&self, arch: &Architecture) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.decisions.iter().map(|d| d.choices.len()).sum());
        for (d, &c) in self.decisions.iter().zip(arch.choices()) {
            for j in 0..d.choices.len() {
                v.push(if j == c as usize { 1.0 } else { 0.0 });
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn text_form_round_trips_in_every_shipped_space() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for name in SHIPPED_SPACES {
            let s = SearchSpace::by_name_or_path(name).unwrap();
            for _ in 0..200 {
                let a = s.sample(&mut rng);
                let text = s.format(&a);
                assert_eq!(s.parse(&text).unwrap(), a, "{name}: {text}");
            }
        }
    }

    #[test]
    fn parse_rejects_bad_text_with_a_reason() {
        let s = SearchSpace::nas_bench_201();
        let a = s.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let text = s.format(&a);
        let missing = text.split(' ').skip(1).collect::<Vec<_>>().join(" ");
        assert!(s
            .parse(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing"));
        assert!(s
            .parse(&format!("{text} e1_2=none"))
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(s
            .parse("nonsense")
            .unwrap_err()
            .to_string()
            .contains("name=choice"));
        let wrong = text.replacen(text.split(' ').next().unwrap(), "e1_2=conv9", 1);
        assert!(s
            .parse(&wrong)
            .unwrap_err()
            .to_string()
            .contains("must be one of"));
    }

    #[test]
    fn stable_hash_differs_for_different_architectures() {
        let s = SearchSpace::nas_bench_201();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut seen = std::collections::HashMap::new();
        for _ in 0..2000 {
            let a = s.sample(&mut rng);
            if let Some(prev) = seen.insert(a.stable_hash(), a.clone()) {
                assert_eq!(prev, a);
            }
        }
    }

    #[test]
    fn unknown_space_is_a_clear_error() {
        let e = SearchSpace::by_name_or_path("nope")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown search space `nope`"), "{e}");
    }
}
