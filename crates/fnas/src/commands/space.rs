//! `fnas space show|sample`.

use anyhow::Result;
use fnas_core::SearchSpace;
use rand::SeedableRng;

pub fn show(name: &str, json: bool) -> Result<()> {
    let s = SearchSpace::by_name_or_path(name)?;
    let canonical = s.canonical_size();
    if json {
        let v = serde_json::json!({
            "name": s.name(),
            "decisions": s.decisions(),
            "raw_architectures": s.raw_size(),
            "canonical_architectures": canonical,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("space {}: {} decisions", s.name(), s.decisions().len());
    let w = s
        .decisions()
        .iter()
        .map(|d| d.name.len())
        .max()
        .unwrap_or(0);
    for d in s.decisions() {
        println!(
            "  {:w$}  {} choices: {}",
            d.name,
            d.choices.len(),
            d.choices.join(" | ")
        );
    }
    println!("architectures: {}", fmt_count(s.raw_size()));
    if let Some(c) = canonical {
        println!("distinct after canonicalisation (isomorphic duplicates merged): {c}");
    }
    Ok(())
}

fn fmt_count(n: f64) -> String {
    if n < 1e15 {
        format!("{}", n as u64)
    } else {
        format!("{n:.3e}")
    }
}

pub fn sample(name: &str, seed: u64, count: usize) -> Result<()> {
    let s = SearchSpace::by_name_or_path(name)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..count {
        println!("{}", s.format(&s.sample(&mut rng)));
    }
    Ok(())
}
