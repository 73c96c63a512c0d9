use super::Picker;
use super::rng::mix;
use crate::instance::Instance;

/// Weighted rendezvous (highest-random-weight) hashing on the request key.
///
/// The same key picks the same instance for as long as that instance exists; when an instance
/// leaves, only the keys it owned move, spread over the others in proportion to their weights.
/// The hash is fixed (FNV-1a then SplitMix64), so every process agrees on the owner of a key.
/// Without a key every request hashes the empty key and lands on one instance.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rendezvous {
    _priv: (),
}

impl Rendezvous {
    /// A rendezvous picker.
    pub const fn new() -> Self {
        Self { _priv: () }
    }

    /// The score of `instance` for `key`: the highest score wins.
    fn score(key: &[u8], instance: &Instance) -> f64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in key
            .iter()
            .chain([0xff_u8].iter())
            .chain(instance.id.as_str().as_bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        let h = mix(h);
        // A uniform value in (0, 1), never 0 or 1, from the top 53 bits.
        let u = ((h >> 11) as f64 + 0.5) / (1_u64 << 53) as f64;
        f64::from(instance.weight.max(1)) / -u.ln()
    }
}

impl Picker for Rendezvous {
    fn pick(&self, instances: &[Instance], key: Option<&[u8]>) -> Option<usize> {
        let key = key.unwrap_or_default();
        let mut best: Option<(usize, f64)> = None;
        for (at, instance) in instances.iter().enumerate() {
            let score = Self::score(key, instance);
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((at, score));
            }
        }
        best.map(|(at, _)| at)
    }
}
