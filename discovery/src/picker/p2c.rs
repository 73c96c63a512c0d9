use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::Picker;
use super::rng::AtomicRng;
use crate::instance::{Instance, InstanceId};

/// Power of two choices by requests in flight: picks two distinct instances at random and
/// returns the one with fewer requests in flight (the first on a tie).
///
/// The load is what you report: call [`P2c::begin`] when a request to the chosen instance
/// starts and drop the returned [`InFlight`] guard when it ends.
///
/// ```
/// use sinew_discovery::{Instance, P2c, Picker};
///
/// let instances = [
///     Instance::new("a", "s", "10.0.0.1", 80),
///     Instance::new("b", "s", "10.0.0.2", 80),
/// ];
/// let p2c = P2c::with_seed(1);
/// let busy = p2c.begin(&instances[0]);
/// // With two instances both are always compared, so the idle one wins.
/// assert_eq!(p2c.pick(&instances, None), Some(1));
/// drop(busy);
/// assert_eq!(p2c.in_flight(&instances[0].id), 0);
/// ```
///
/// # Clone
///
/// Clones share the counters and the RNG.
#[derive(Clone)]
pub struct P2c {
    inner: Arc<Inner>,
}

struct Inner {
    rng: AtomicRng,
    loads: RwLock<HashMap<InstanceId, Arc<AtomicUsize>>>,
}

/// A request in flight to one instance, counted by a [`P2c`] until dropped.
#[must_use = "the request counts as in flight until this guard is dropped"]
pub struct InFlight {
    counter: Arc<AtomicUsize>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("in_flight", &self.counter.load(Ordering::Relaxed))
            .finish()
    }
}

impl P2c {
    /// Seeded from the process's random hasher keys.
    pub fn new() -> Self {
        Self::from_rng(AtomicRng::from_entropy())
    }

    /// Deterministic choice of the two candidates.
    pub fn with_seed(seed: u64) -> Self {
        Self::from_rng(AtomicRng::with_seed(seed))
    }

    fn from_rng(rng: AtomicRng) -> Self {
        Self {
            inner: Arc::new(Inner {
                rng,
                loads: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Counts a request to `instance` as in flight until the guard is dropped.
    pub fn begin(&self, instance: &Instance) -> InFlight {
        let existing = self
            .inner
            .loads
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&instance.id)
            .cloned();
        let counter = existing.unwrap_or_else(|| {
            self.inner
                .loads
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(instance.id.clone())
                .or_default()
                .clone()
        });
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight { counter }
    }

    /// Requests in flight to the instance with this ID.
    pub fn in_flight(&self, id: &InstanceId) -> usize {
        self.inner
            .loads
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Forgets the counters of instances not in `present` that have nothing in flight, so the
    /// table does not grow with every instance ever seen. Call it when the set changes.
    pub fn retain(&self, present: &[Instance]) {
        let mut loads = self
            .inner
            .loads
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        loads.retain(|id, counter| {
            counter.load(Ordering::Acquire) > 0 || present.iter().any(|i| &i.id == id)
        });
    }
}

impl Default for P2c {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for P2c {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loads = self
            .inner
            .loads
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("P2c")
            .field("tracked", &loads.len())
            .finish()
    }
}

impl Picker for P2c {
    fn pick(&self, instances: &[Instance], _key: Option<&[u8]>) -> Option<usize> {
        match instances.len() {
            0 => None,
            1 => Some(0),
            n => {
                let n = n as u64;
                let a = self.inner.rng.below(n);
                // A second, distinct index: offset by 1..n.
                let b = (a + 1 + self.inner.rng.below(n - 1)) % n;
                let (a, b) = (a as usize, b as usize);
                let loads = self
                    .inner
                    .loads
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                let load = |i: usize| {
                    loads
                        .get(&instances[i].id)
                        .map_or(0, |c| c.load(Ordering::Acquire))
                };
                Some(if load(b) < load(a) { b } else { a })
            }
        }
    }
}
