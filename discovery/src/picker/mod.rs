//! Pickers: choose one instance of a [`Snapshot`] per request.
//!
//! | picker | chooses | state |
//! |---|---|---|
//! | [`RoundRobin`] | each instance in turn | one atomic counter |
//! | [`Random`] | uniformly at random | seedable RNG |
//! | [`Weighted`] | at random, in proportion to each instance's weight (Consul `Weights`) | seedable RNG |
//! | [`P2c`] | the less loaded of two random instances, by requests in flight | per-instance counters |
//! | [`Rendezvous`] | the same instance for the same key while it exists (weighted rendezvous hashing) | none |
//!
//! All are `Send + Sync` and lock-free on the hot path, so one picker can serve every task.
//! Randomness is seedable (`with_seed`) so tests are deterministic.
//!
//! ```
//! use sinew_discovery::{Instance, Picker, Rendezvous, Weighted};
//!
//! let instances = [
//!     Instance::new("a", "s", "10.0.0.1", 80).weight(9),
//!     Instance::new("b", "s", "10.0.0.2", 80).weight(1),
//! ];
//! let weighted = Weighted::with_seed(7);
//! let picks_a = (0..1000).filter(|_| weighted.pick(&instances, None) == Some(0)).count();
//! assert!(picks_a > 800);
//!
//! // The same key lands on the same instance.
//! let sticky = Rendezvous::new();
//! let key = Some(&b"user-42"[..]);
//! assert_eq!(sticky.pick(&instances, key), sticky.pick(&instances, key));
//! ```

mod p2c;
mod random;
mod rendezvous;
mod rng;
mod round_robin;

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

pub use self::p2c::{InFlight, P2c};
pub use self::random::{Random, Weighted};
pub use self::rendezvous::Rendezvous;
pub use self::round_robin::RoundRobin;

use crate::instance::Instance;
use crate::registry::Snapshot;

/// Chooses one instance out of a set.
pub trait Picker: Send + Sync {
    /// The index into `instances` of the chosen one, or `None` when `instances` is empty.
    ///
    /// `key` is the request's affinity key (a user ID, a session); pickers that do not use
    /// affinity ignore it.
    fn pick(&self, instances: &[Instance], key: Option<&[u8]>) -> Option<usize>;
}

impl<P: Picker + ?Sized> Picker for &P {
    fn pick(&self, instances: &[Instance], key: Option<&[u8]>) -> Option<usize> {
        (**self).pick(instances, key)
    }
}

impl<P: Picker + ?Sized> Picker for Arc<P> {
    fn pick(&self, instances: &[Instance], key: Option<&[u8]>) -> Option<usize> {
        (**self).pick(instances, key)
    }
}

impl<P: Picker + ?Sized> Picker for Box<P> {
    fn pick(&self, instances: &[Instance], key: Option<&[u8]>) -> Option<usize> {
        (**self).pick(instances, key)
    }
}

/// A chosen instance, borrowed from the snapshot it came from (no copy of the instance).
///
/// Dereferences to [`Instance`].
#[derive(Clone)]
pub struct Picked {
    snapshot: Arc<Snapshot>,
    index: usize,
}

impl Picked {
    /// Gives the snapshot back when `index` is out of range (a faulty picker).
    pub(crate) fn new(snapshot: Arc<Snapshot>, index: usize) -> Result<Self, Arc<Snapshot>> {
        if index < snapshot.len() {
            Ok(Self { snapshot, index })
        } else {
            Err(snapshot)
        }
    }

    /// The chosen instance.
    pub fn instance(&self) -> &Instance {
        // `new` checked the index; the snapshot is immutable.
        &self.snapshot.instances()[self.index]
    }

    /// The snapshot it was chosen from.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }
}

impl Deref for Picked {
    type Target = Instance;

    fn deref(&self) -> &Instance {
        self.instance()
    }
}

impl fmt::Debug for Picked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picked")
            .field("instance", self.instance())
            .field("version", &self.snapshot.version())
            .finish()
    }
}
