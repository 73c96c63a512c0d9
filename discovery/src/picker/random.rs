use super::Picker;
use super::rng::AtomicRng;
use crate::instance::Instance;

/// Uniformly at random.
///
/// # Default
///
/// Seeded from the process's random hasher keys.
#[derive(Debug)]
pub struct Random {
    rng: AtomicRng,
}

impl Random {
    /// Seeded from the process's random hasher keys.
    pub fn new() -> Self {
        Self {
            rng: AtomicRng::from_entropy(),
        }
    }

    /// Deterministic: the same seed gives the same sequence of picks.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rng: AtomicRng::with_seed(seed),
        }
    }
}

impl Default for Random {
    fn default() -> Self {
        Self::new()
    }
}

impl Picker for Random {
    fn pick(&self, instances: &[Instance], _key: Option<&[u8]>) -> Option<usize> {
        if instances.is_empty() {
            return None;
        }
        Some(self.rng.below(instances.len() as u64) as usize)
    }
}

/// At random, in proportion to each instance's [`weight`](Instance::weight) (Consul's
/// `Weights.Passing`, or `Weights.Warning` for a warning instance).
///
/// # Default
///
/// Seeded from the process's random hasher keys.
#[derive(Debug)]
pub struct Weighted {
    rng: AtomicRng,
}

impl Weighted {
    /// Seeded from the process's random hasher keys.
    pub fn new() -> Self {
        Self {
            rng: AtomicRng::from_entropy(),
        }
    }

    /// Deterministic: the same seed gives the same sequence of picks.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rng: AtomicRng::with_seed(seed),
        }
    }
}

impl Default for Weighted {
    fn default() -> Self {
        Self::new()
    }
}

impl Picker for Weighted {
    fn pick(&self, instances: &[Instance], _key: Option<&[u8]>) -> Option<usize> {
        if instances.is_empty() {
            return None;
        }
        let total: u64 = instances.iter().map(|i| u64::from(i.weight.max(1))).sum();
        let mut target = self.rng.below(total);
        for (at, instance) in instances.iter().enumerate() {
            let w = u64::from(instance.weight.max(1));
            if target < w {
                return Some(at);
            }
            target -= w;
        }
        Some(instances.len() - 1)
    }
}
