//! A small, fast, seedable PRNG (splitmix64) and the per-request seed source.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// The golden-ratio increment of splitmix64.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser: a bijective mix of the 64 bits of `z`.
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64 (Steele, Lea and Flood): one `u64` of state, passes BigCrush, ample for jitter.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) const fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A uniform sample in `[0, 1)` with 53 bits of precision.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // 2^-53
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }
}

/// Hands out one independent random stream per request.
///
/// Stream `n` is seeded with `mix64(base + n·γ)`, `n` coming from a shared atomic counter, so
/// concurrent requests get different jitter (unlike tower's backoff maker, which clones one RNG
/// and so repeats one sequence for every request) while a fixed `base` keeps tests
/// deterministic.
#[derive(Debug)]
pub(crate) struct SeedSource {
    base: u64,
    counter: AtomicU64,
}

impl SeedSource {
    pub(crate) const fn new(base: u64) -> Self {
        Self {
            base,
            counter: AtomicU64::new(0),
        }
    }

    /// A base seed taken from the process's random hasher keys.
    pub(crate) fn random() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5EED);
        Self::new(h.finish())
    }

    pub(crate) fn stream(&self) -> SplitMix64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        SplitMix64::new(mix64(self.base.wrapping_add(n.wrapping_mul(GAMMA))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_interval_and_streams_differ() {
        let src = SeedSource::new(7);
        let mut a = src.stream();
        let mut b = src.stream();
        let xa: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_ne!(xa, xb);
        let mut r = SplitMix64::new(1);
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        // Same base, same streams.
        let again = SeedSource::new(7);
        let mut a2 = again.stream();
        assert_eq!(xa, (0..4).map(|_| a2.next_u64()).collect::<Vec<_>>());
    }
}
