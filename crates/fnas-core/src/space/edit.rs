//! Edits of architectures: the one-edit neighbourhood and random k-edit mutants, the
//! candidate sources of local search and of critic-chosen proposals.

use rand::seq::index::sample;
use rand::Rng;

use super::SearchSpace;
use crate::Architecture;

/// Attempts per mutant before a k-edit draw gives up (a space whose constraint rejects
/// most edits).
const MAX_TRIES: usize = 64;

impl SearchSpace {
    /// Every valid architecture that differs from `arch` in exactly one decision, in
    /// decision and choice order.
    pub fn neighbours(&self, arch: &Architecture) -> Vec<Architecture> {
        let mut out = Vec::new();
        for (i, d) in self.decisions.iter().enumerate() {
            for c in 0..d.choices.len() as u16 {
                if c == arch.0[i] {
                    continue;
                }
                let mut a = arch.clone();
                a.0[i] = c;
                if self.is_valid(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// A valid architecture that differs from `arch` in `edits` distinct decisions (each
    /// set to another of its choices), or `None` if no valid one was drawn in a bounded
    /// number of tries (or the space has fewer mutable decisions than `edits`).
    pub fn mutate<R: Rng + ?Sized>(
        &self,
        arch: &Architecture,
        edits: usize,
        rng: &mut R,
    ) -> Option<Architecture> {
        let mutable: Vec<usize> = (0..self.decisions.len())
            .filter(|&i| self.decisions[i].choices.len() > 1)
            .collect();
        if edits == 0 || edits > mutable.len() {
            return None;
        }
        for _ in 0..MAX_TRIES {
            let mut a = arch.clone();
            for k in sample(rng, mutable.len(), edits).iter() {
                let i = mutable[k];
                let n = self.decisions[i].choices.len() as u16;
                a.0[i] = (arch.0[i] + rng.random_range(1..n)) % n;
            }
            if self.is_valid(&a) {
                return Some(a);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::SHIPPED_SPACES;
    use super::*;
    use rand::SeedableRng;

    fn distance(a: &Architecture, b: &Architecture) -> usize {
        a.0.iter().zip(&b.0).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn edits_stay_inside_the_space_at_the_asked_distance() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for name in SHIPPED_SPACES {
            let s = SearchSpace::by_name_or_path(name).unwrap();
            for _ in 0..50 {
                let a = s.sample(&mut rng);
                let n = s.neighbours(&a);
                assert!(!n.is_empty());
                for b in &n {
                    assert!(s.is_valid(b) && distance(&a, b) == 1, "{name}");
                }
                let mut sorted = n.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), n.len(), "{name}: repeated neighbour");
                for k in 1..=2 {
                    let m = s.mutate(&a, k, &mut rng).unwrap();
                    assert!(s.is_valid(&m) && distance(&a, &m) == k, "{name}");
                }
            }
        }
    }

    #[test]
    fn graph_neighbourhood_skips_the_all_skip_graph() {
        let s = SearchSpace::nas_bench_graph();
        let a = s
            .parse("in2=0 in3=0 in4=0 op1=skip op2=skip op3=skip op4=gcn")
            .unwrap();
        // changing op4 to skip would make every op skip: invalid, left out
        let n = s.neighbours(&a);
        assert!(n.iter().all(|b| s.is_valid(b)));
        assert_eq!(n.len(), 1 + 2 + 3 + 3 * 8 + 7);
    }
}
