use std::sync::Arc;

use tokio::time::Instant;

use crate::instance::{Instance, InstanceId};

/// An immutable set of instances of one service, as a registry last reported it.
///
/// Instances are sorted by ID. Snapshots are shared (`Arc<Snapshot>`); a new one is made only
/// when the set actually changes, and its [`version`](Snapshot::version) then grows by one.
#[derive(Debug, Clone)]
pub struct Snapshot {
    service: Arc<str>,
    instances: Vec<Instance>,
    version: u64,
    total_weight: u64,
    changed_at: Instant,
}

impl Snapshot {
    pub(crate) fn new(service: Arc<str>, mut instances: Vec<Instance>, version: u64) -> Self {
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances.dedup_by(|a, b| a.id == b.id);
        let total_weight = instances.iter().map(|i| u64::from(i.weight.max(1))).sum();
        Self {
            service,
            instances,
            version,
            total_weight,
            changed_at: Instant::now(),
        }
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The instances, sorted by ID.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// How many instances there are.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The instance with this ID.
    pub fn get(&self, id: &InstanceId) -> Option<&Instance> {
        self.instances
            .binary_search_by(|i| i.id.cmp(id))
            .ok()
            .map(|at| &self.instances[at])
    }

    /// Counts up by one with every change of the set, starting at 1.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The sum of the instances' weights.
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// When this set was first seen.
    pub fn changed_at(&self) -> Instant {
        self.changed_at
    }

    pub(crate) fn same_instances(&self, sorted: &[Instance]) -> bool {
        self.instances == sorted
    }
}
