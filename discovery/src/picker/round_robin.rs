use std::sync::atomic::{AtomicUsize, Ordering};

use super::Picker;
use crate::instance::Instance;

/// Each instance in turn (one shared atomic counter; the order is the snapshot's, by ID).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Starts at the first instance.
    pub const fn new() -> Self {
        Self {
            next: AtomicUsize::new(0),
        }
    }
}

impl Picker for RoundRobin {
    fn pick(&self, instances: &[Instance], _key: Option<&[u8]>) -> Option<usize> {
        if instances.is_empty() {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % instances.len())
    }
}
