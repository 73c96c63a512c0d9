use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A lock-free SplitMix64 generator: every call advances one shared atomic state, so a picker
/// shared by many tasks needs no lock. Seedable for deterministic tests.
#[derive(Debug)]
pub(crate) struct AtomicRng {
    state: AtomicU64,
}

impl AtomicRng {
    pub(crate) fn with_seed(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn from_entropy() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x5173_1e57);
        Self::with_seed(hasher.finish())
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let x = self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN);
        mix(x)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for any `n` here).
    pub(crate) fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range() {
        let rng = AtomicRng::with_seed(1);
        for n in 1..200 {
            assert!(rng.below(n) < n);
        }
    }
}
