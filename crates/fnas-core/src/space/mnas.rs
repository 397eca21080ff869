//! The MNAS factorized hierarchical space, read from a TOML file.

use serde::{Deserialize, Serialize};

use super::{Decision, Kind, SearchSpace, SpaceError};
use crate::Architecture;

/// The shipped default space file (`spaces/mnas-28.toml`).
pub(super) const DEFAULT_TOML: &str = include_str!("../../../../spaces/mnas-28.toml");

/// Conv ops the child builder implements.
pub const MNAS_OPS: &[&str] = &["conv", "dwsep", "mbconv3", "mbconv6"];

/// The network's fixed input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnasInput {
    pub channels: usize,
    pub resolution: usize,
    pub classes: usize,
}

/// A stem or head convolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnasConv {
    pub channels: usize,
    #[serde(default = "one")]
    pub stride: usize,
}

fn one() -> usize {
    1
}

/// What an identity skip does where shapes differ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnasSkip {
    pub on_mismatch: String,
}

/// Choice lists shared by all blocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnasChoices {
    pub op: Vec<String>,
    pub kernel: Vec<i64>,
    pub se: Vec<f64>,
    pub skip: Vec<String>,
    pub width: Vec<f64>,
    pub layers_delta: Vec<i64>,
}

/// One block's fixed layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnasBlock {
    pub width: usize,
    pub layers: usize,
    pub stride: usize,
}

/// The whole space file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnasSpec {
    pub name: String,
    pub input: MnasInput,
    pub stem: MnasConv,
    pub head: MnasConv,
    pub skip: MnasSkip,
    pub choices: MnasChoices,
    pub blocks: Vec<MnasBlock>,
}

/// Largest layer count of a block, and largest |delta| of `choices.layers_delta`.
pub const MAX_LAYERS: i64 = 64;
/// Largest channel count (input, stem, head, block width).
pub const MAX_CHANNELS: usize = 4096;
/// Largest input resolution.
pub const MAX_RESOLUTION: usize = 4096;
/// Largest number of classes.
pub const MAX_CLASSES: usize = 100_000;
/// Largest number of blocks.
pub const MAX_BLOCKS: usize = 64;

/// The per-block decisions, in order; decision `b{i}.{suffix}`.
pub const BLOCK_DECISIONS: [&str; 6] = ["op", "kernel", "se", "skip", "width", "layers"];

fn fmt_f(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// A squeeze-excitation ratio as the text form prints it (`0` for none).
fn fmt_se(s: f64) -> String {
    if s == 0.0 {
        "0".into()
    } else {
        s.to_string()
    }
}

impl MnasSpec {
    pub(super) fn from_toml(text: &str, file: &str) -> Result<Self, SpaceError> {
        let spec: MnasSpec = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                // bytes, not a str slice: a span need not fall on a char boundary
                .map(|s| {
                    text.as_bytes()[..s.start.min(text.len())]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                        + 1
                });
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            // toml's messages may span lines ("invalid string\nexpected ...")
            let message = e
                .message()
                .split(['\n', '\r'])
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            SpaceError::Read {
                file: file.into(),
                message: format!("{}{at}", super::one_line(&message)),
            }
        })?;
        spec.validate(file)?;
        Ok(spec)
    }

    fn validate(&self, file: &str) -> Result<(), SpaceError> {
        let bad = |field: &str, expected: String| {
            Err(SpaceError::InvalidFile {
                file: file.into(),
                field: field.into(),
                expected,
            })
        };
        let c = &self.choices;
        let lists: [(&str, usize); 6] = [
            ("choices.op", c.op.len()),
            ("choices.kernel", c.kernel.len()),
            ("choices.se", c.se.len()),
            ("choices.skip", c.skip.len()),
            ("choices.width", c.width.len()),
            ("choices.layers_delta", c.layers_delta.len()),
        ];
        for (field, n) in lists {
            if n == 0 {
                return bad(field, "a non-empty list of choices".into());
            }
        }
        for op in &c.op {
            if !MNAS_OPS.contains(&op.as_str()) {
                return bad(
                    "choices.op",
                    format!("ops from {}, got `{op}`", MNAS_OPS.join("|")),
                );
            }
        }
        for &k in &c.kernel {
            if !(1..=11).contains(&k) || k % 2 == 0 {
                return bad(
                    "choices.kernel",
                    format!("odd kernel sizes from 1 to 11, got {k}"),
                );
            }
        }
        for &s in &c.se {
            if !(0.0..1.0).contains(&s) {
                return bad(
                    "choices.se",
                    format!("squeeze-excitation ratios in [0, 1), got {s}"),
                );
            }
        }
        for s in &c.skip {
            if s != "none" && s != "identity" {
                return bad("choices.skip", format!("none|identity, got `{s}`"));
            }
        }
        for &w in &c.width {
            if !(w > 0.0 && w <= 8.0) {
                return bad(
                    "choices.width",
                    format!("width multipliers in (0, 8], got {w}"),
                );
            }
        }
        // the text form names a choice by its printed value: two equal ones could not be
        // told apart (an architecture would not read back as written)
        let printed: [(&str, Vec<String>); 5] = [
            ("choices.op", c.op.clone()),
            (
                "choices.kernel",
                c.kernel.iter().map(i64::to_string).collect(),
            ),
            ("choices.se", c.se.iter().map(|&s| fmt_se(s)).collect()),
            ("choices.skip", c.skip.clone()),
            ("choices.width", c.width.iter().map(|&w| fmt_f(w)).collect()),
        ];
        for (field, list) in printed {
            if let Some((i, v)) = list
                .iter()
                .enumerate()
                .find(|(i, v)| list[..*i].contains(v))
            {
                return bad(
                    field,
                    format!("distinct choices, got `{v}` twice (entry {})", i + 1),
                );
            }
        }
        if !["none", "project"].contains(&self.skip.on_mismatch.as_str()) {
            return bad(
                "skip.on_mismatch",
                format!("none|project, got `{}`", self.skip.on_mismatch),
            );
        }
        for &d in &c.layers_delta {
            if !(-MAX_LAYERS..=MAX_LAYERS).contains(&d) {
                return bad(
                    "choices.layers_delta",
                    format!("deltas from -{MAX_LAYERS} to {MAX_LAYERS}, got {d}"),
                );
            }
        }
        if !(1..=MAX_CHANNELS).contains(&self.input.channels)
            || !(1..=MAX_RESOLUTION).contains(&self.input.resolution)
        {
            return bad(
                "input",
                format!(
                    "channels from 1 to {MAX_CHANNELS} and resolution from 1 to {MAX_RESOLUTION}"
                ),
            );
        }
        if !(2..=MAX_CLASSES).contains(&self.input.classes) {
            return bad(
                "input.classes",
                format!(
                    "from 2 to {MAX_CLASSES} classes, got {}",
                    self.input.classes
                ),
            );
        }
        for (f, conv) in [("stem", &self.stem), ("head", &self.head)] {
            if !(1..=MAX_CHANNELS).contains(&conv.channels) || !(1..=2).contains(&conv.stride) {
                return bad(
                    f,
                    format!("channels from 1 to {MAX_CHANNELS} and stride 1 or 2"),
                );
            }
        }
        if self.blocks.is_empty() || self.blocks.len() > MAX_BLOCKS {
            return bad(
                "blocks",
                format!(
                    "from 1 to {MAX_BLOCKS} [[blocks]] entries, got {}",
                    self.blocks.len()
                ),
            );
        }
        let mut res = self.input.resolution.div_ceil(self.stem.stride);
        for (i, b) in self.blocks.iter().enumerate() {
            let field = format!("blocks[{i}]");
            if !(1..=MAX_CHANNELS).contains(&b.width)
                || !(1..=MAX_LAYERS as usize).contains(&b.layers)
            {
                return bad(
                    &field,
                    format!("width from 1 to {MAX_CHANNELS} and layers from 1 to {MAX_LAYERS}"),
                );
            }
            if !(1..=2).contains(&b.stride) {
                return bad(
                    &format!("{field}.stride"),
                    format!("1 or 2, got {}", b.stride),
                );
            }
            res = res.div_ceil(b.stride);
            if res == 0 {
                return bad(&field, "a resolution that stays >= 1".into());
            }
        }
        Ok(())
    }

    /// The layer counts a block may choose: base + delta, at least 1, without repeats.
    pub fn layer_choices(&self, block: usize) -> Vec<usize> {
        let base = self.blocks.get(block).map_or(1, |b| b.layers) as i64;
        let mut v: Vec<usize> = Vec::new();
        for d in &self.choices.layers_delta {
            // validated ranges keep this small; saturating all the same
            let n = base.saturating_add(*d).max(1) as usize;
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v
    }
}

pub(super) fn space(spec: MnasSpec) -> SearchSpace {
    let c = &spec.choices;
    let mut decisions = Vec::new();
    for (i, _) in spec.blocks.iter().enumerate() {
        let b = i + 1;
        let lists: [Vec<String>; 6] = [
            c.op.clone(),
            c.kernel.iter().map(|k| k.to_string()).collect(),
            c.se.iter().map(|&s| fmt_se(s)).collect(),
            c.skip.clone(),
            c.width.iter().map(|&w| fmt_f(w)).collect(),
            spec.layer_choices(i)
                .iter()
                .map(|n| n.to_string())
                .collect(),
        ];
        for (suffix, choices) in BLOCK_DECISIONS.iter().zip(lists) {
            decisions.push(Decision {
                name: format!("b{b}.{suffix}"),
                choices,
            });
        }
    }
    SearchSpace {
        name: spec.name.clone(),
        decisions,
        kind: Kind::Mnas(Box::new(spec)),
    }
}

/// Length of [`structure`]'s features: six numbers per block and two size estimates.
pub(super) fn structure_len(spec: &MnasSpec) -> usize {
    6 * spec.blocks.len() + 2
}

/// Per-block numbers (kernel, SE ratio, width multiplier, layers, identity skip,
/// expansion) and the log of the estimated parameters and multiply-adds, appended to `f`
/// from `off` on. The estimates count the convolutions only: enough to rank sizes.
pub(super) fn structure(spec: &MnasSpec, arch: &Architecture, off: u32, f: &mut Vec<(u32, f32)>) {
    let c = &spec.choices;
    let pick = |b: usize, k: usize| arch.0.get(b * 6 + k).copied().unwrap_or(0) as usize;
    let (mut params, mut macs) = (0f64, 0f64);
    let mut cin = spec.stem.channels as f64;
    let mut res = spec.input.resolution.div_ceil(spec.stem.stride) as f64;
    for (b, block) in spec.blocks.iter().enumerate() {
        let op = c.op.get(pick(b, 0)).map_or("conv", String::as_str);
        let k = c.kernel.get(pick(b, 1)).copied().unwrap_or(3) as f64;
        let se = c.se.get(pick(b, 2)).copied().unwrap_or(0.0);
        let skip = c.skip.get(pick(b, 3)).is_some_and(|s| s == "identity");
        let width = c.width.get(pick(b, 4)).copied().unwrap_or(1.0);
        let layers = spec
            .layer_choices(b)
            .get(pick(b, 5))
            .copied()
            .unwrap_or(block.layers) as f64;
        let expansion = match op {
            "mbconv3" => 3.0,
            "mbconv6" => 6.0,
            _ => 1.0,
        };
        let cout = (block.width as f64 * width).round().max(1.0);
        for l in 0..layers as usize {
            let stride = if l == 0 { block.stride } else { 1 };
            let ci = if l == 0 { cin } else { cout };
            let mid = expansion * ci;
            let p = match op {
                "conv" => k * k * ci * cout,
                "dwsep" => k * k * ci + ci * cout,
                _ => ci * mid + k * k * mid + mid * cout,
            } + 2.0 * mid * (mid * se).ceil();
            res = if stride == 2 { (res / 2.0).ceil() } else { res };
            params += p;
            macs += p * res * res;
        }
        cin = cout;
        let base = off + 6 * b as u32;
        let values = [
            k as f32 / 7.0,
            se as f32 * 4.0,
            width as f32,
            layers as f32 / 3.0,
            if skip { 1.0 } else { 0.0 },
            expansion as f32 / 6.0,
        ];
        for (j, v) in values.into_iter().enumerate() {
            f.push((base + j as u32, v));
        }
    }
    params +=
        cin * spec.head.channels as f64 + spec.head.channels as f64 * spec.input.classes as f64;
    let tail = off + 6 * spec.blocks.len() as u32;
    f.push((tail, (params.max(1.0).log10() / 7.0) as f32));
    f.push((tail + 1, (macs.max(1.0).log10() / 9.0) as f32));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        SearchSpace::mnas_from_toml(text, "bad.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn default_space_has_six_decisions_per_block() {
        let s = SearchSpace::mnas_default();
        let spec = s.mnas_spec().unwrap();
        assert_eq!(s.decisions().len(), 6 * spec.blocks.len());
        assert_eq!(s.decisions()[0].name, "b1.op");
        // block 1 has base 1 layer: choices {1, 2}; block 2 base 2: {1, 2, 3}
        assert_eq!(s.decisions()[5].choices, vec!["1", "2"]);
        assert_eq!(s.decisions()[11].choices, vec!["1", "2", "3"]);
        // 4 ops x 3 kernels x 2 se x 2 skip x 3 widths x 3 layers = 432 per block (paper)
        let per: f64 = s.decisions()[6..12]
            .iter()
            .map(|d| d.choices.len() as f64)
            .product();
        assert_eq!(per, 432.0);
    }

    #[test]
    fn invalid_files_name_file_field_and_expectation() {
        let good = DEFAULT_TOML;
        let e = err(&good.replace("[stem]", "[stem]\nfoo = 1"));
        assert!(
            e.contains("bad.toml") && e.contains("unknown field `foo`"),
            "{e}"
        );
        let e = err(&good.replace("kernel = [3, 5, 7]", "kernel = []"));
        assert!(
            e.contains("bad.toml") && e.contains("choices.kernel") && e.contains("non-empty"),
            "{e}"
        );
        let e = err(&good.replace("kernel = [3, 5, 7]", "kernel = [3, 4]"));
        assert!(e.contains("choices.kernel") && e.contains("odd"), "{e}");
        let e = err(&good.replace("width = [0.75, 1.0, 1.25]", "width = [\"wide\"]"));
        assert!(e.contains("bad.toml") && e.contains("line"), "{e}");
        let e = err(&good.replacen("stride = 2", "stride = 3", 1));
        assert!(
            e.contains("blocks[1].stride") && e.contains("1 or 2"),
            "{e}"
        );
        let e = err(&good.replace("on_mismatch = \"none\"", "on_mismatch = \"pad\""));
        assert!(e.contains("skip.on_mismatch"), "{e}");
        assert!(!e.contains('\n'));
    }
}
