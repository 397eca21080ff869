//! An architecture is one choice per decision of a [`crate::SearchSpace`].

use serde::{Deserialize, Serialize};

/// One choice index per decision, in the space's decision order.
///
/// The type is independent of any space so strategies can treat all spaces alike; the
/// space gives it a text form ([`crate::SearchSpace::format`]) and a canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Architecture(pub Vec<u16>);

impl Architecture {
    /// Choice indices, one per decision.
    pub fn choices(&self) -> &[u16] {
        &self.0
    }

    /// A hash that is the same on every machine and every run (FNV-1a over the choice
    /// indices), so it can be stored and compared across processes.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &c in &self.0 {
            for b in c.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}
