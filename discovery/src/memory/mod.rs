//! [`StaticRegistry`], an in-memory registry: the embedded default and the test double.
//!
//! Instances are added and removed by code (configuration, a test, an admin endpoint), and
//! every [`Watch`] sees each change at once. It implements the same [`Registry`] trait as the
//! Consul backend, so the code that reads it does not change when you switch.
//!
//! ```
//! use sinew_discovery::memory::StaticRegistry;
//! use sinew_discovery::{Discovery, Instance, RoundRobin};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = StaticRegistry::new();
//! registry.insert(Instance::new("users-1", "users", "127.0.0.1", 3001));
//! registry.insert(Instance::new("users-2", "users", "127.0.0.1", 3002));
//!
//! let discovery = Discovery::new(registry.clone());
//! let picker = RoundRobin::new();
//! let first = discovery.pick("users", &picker).await?;
//! let second = discovery.pick("users", &picker).await?;
//! assert_ne!(first.id, second.id);
//!
//! registry.remove("users", "users-1");
//! assert_eq!(discovery.discover("users").await?.len(), 1);
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::instance::{Health, Instance, InstanceId};
use crate::registry::error::SourceError;
use crate::registry::{Feed, Query, Registry, Watch};

#[derive(Default)]
struct Inner {
    services: HashMap<Arc<str>, BTreeMap<InstanceId, Instance>>,
    feeds: HashMap<Query, Feed>,
}

/// An in-memory [`Registry`] whose instances are set by code.
///
/// Unknown services are loaded and empty (reads return
/// [`DiscoveryError::NoInstances`](crate::DiscoveryError::NoInstances) at once rather than
/// waiting). Queries with a [`filter`](Query::filter) expression are reported as failing:
/// there is no expression language here.
///
/// # Clone
///
/// Clones share the same instances and watches.
#[derive(Clone, Default)]
pub struct StaticRegistry {
    inner: Arc<Mutex<Inner>>,
}

impl StaticRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding `instances`.
    pub fn from_instances(instances: impl IntoIterator<Item = Instance>) -> Self {
        let registry = Self::new();
        for instance in instances {
            registry.insert(instance);
        }
        registry
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can panic half-way through an update; a poisoned lock holds valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an instance, replacing one with the same ID in the same service.
    pub fn insert(&self, instance: Instance) {
        let mut inner = self.lock();
        let service = instance.service.clone();
        inner
            .services
            .entry(service.clone())
            .or_default()
            .insert(instance.id.clone(), instance);
        inner.republish(&service);
    }

    /// Removes an instance. Returns whether it was there.
    pub fn remove(&self, service: &str, id: impl Into<InstanceId>) -> bool {
        let id = id.into();
        let mut inner = self.lock();
        let Some(key) = inner
            .services
            .get_key_value(service)
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        let removed = inner
            .services
            .get_mut(&key)
            .and_then(|m| m.remove(&id))
            .is_some();
        if removed {
            inner.republish(&key);
        }
        removed
    }

    /// Replaces every instance of `service`. Instances naming another service are ignored.
    pub fn set(&self, service: &str, instances: impl IntoIterator<Item = Instance>) {
        let mut inner = self.lock();
        let key: Arc<str> = inner
            .services
            .get_key_value(service)
            .map_or_else(|| Arc::from(service), |(k, _)| k.clone());
        let map = instances
            .into_iter()
            .filter(|i| &*i.service == service)
            .map(|i| (i.id.clone(), i))
            .collect();
        inner.services.insert(key.clone(), map);
        inner.republish(&key);
    }

    /// Changes an instance's health. Warning instances are only served to queries with
    /// [`include_warning`](Query::include_warning). Returns whether the instance exists.
    pub fn set_health(&self, service: &str, id: impl Into<InstanceId>, health: Health) -> bool {
        let id = id.into();
        let mut inner = self.lock();
        let Some(key) = inner
            .services
            .get_key_value(service)
            .map(|(k, _)| k.clone())
        else {
            return false;
        };
        let found = match inner.services.get_mut(&key).and_then(|m| m.get_mut(&id)) {
            Some(instance) => {
                instance.health = health;
                true
            }
            None => false,
        };
        if found {
            inner.republish(&key);
        }
        found
    }

    /// The current instances of `service`, sorted by ID.
    pub fn instances(&self, service: &str) -> Vec<Instance> {
        self.lock()
            .services
            .get(service)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl Inner {
    fn republish(&mut self, service: &Arc<str>) {
        self.feeds.retain(|_, feed| feed.is_watched());
        let empty = BTreeMap::new();
        let instances = self.services.get(service).unwrap_or(&empty);
        for (query, feed) in &self.feeds {
            if query.service() == &**service {
                publish(query, feed, instances);
            }
        }
    }
}

fn publish(query: &Query, feed: &Feed, instances: &BTreeMap<InstanceId, Instance>) {
    if query.filter_expression().is_some() {
        feed.fail(SourceError::new(
            "the static registry cannot evaluate filter expressions; use tags or datacenter",
        ));
        return;
    }
    let selected = instances
        .values()
        .filter(|i| query.includes_warning() || i.health == Health::Passing)
        .filter(|i| query.tags().iter().all(|t| i.has_tag(t)))
        .filter(|i| match query.datacenter_name() {
            Some(dc) => i.datacenter.as_deref() == Some(dc),
            None => true,
        })
        .cloned()
        .collect();
    feed.publish(selected);
}

impl Registry for StaticRegistry {
    fn watch(&self, query: &Query) -> Watch {
        let mut inner = self.lock();
        if let Some(feed) = inner.feeds.get(query) {
            return feed.watch();
        }
        let feed = Feed::new(query.service());
        let watch = feed.watch();
        let empty = BTreeMap::new();
        publish(
            query,
            &feed,
            inner.services.get(query.service()).unwrap_or(&empty),
        );
        inner.feeds.insert(query.clone(), feed);
        watch
    }
}

impl fmt::Debug for StaticRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        let mut services: Vec<_> = inner
            .services
            .iter()
            .map(|(name, m)| (name.to_string(), m.len()))
            .collect();
        services.sort();
        f.debug_struct("StaticRegistry")
            .field("services", &services)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_see_changes_and_filters_apply() {
        let registry = StaticRegistry::new();
        let all = registry.watch(&Query::new("s"));
        let v2 = registry.watch(&Query::new("s").tag("v2"));
        assert_eq!(all.current().map(|s| s.len()), Some(0));
        registry.insert(Instance::new("a", "s", "h", 1).tag("v2"));
        registry.insert(Instance::new("b", "s", "h", 2));
        assert_eq!(all.current().map(|s| s.len()), Some(2));
        assert_eq!(v2.current().map(|s| s.len()), Some(1));
        registry.set_health("s", "a", Health::Warning);
        assert_eq!(all.current().map(|s| s.len()), Some(1));
        let warn = registry.watch(&Query::new("s").include_warning(true));
        assert_eq!(warn.current().map(|s| s.len()), Some(2));
        assert!(registry.remove("s", "b"));
        assert!(!registry.remove("s", "b"));
        assert_eq!(all.current().map(|s| s.len()), Some(0));
    }

    #[test]
    fn filter_expressions_are_reported() {
        let registry = StaticRegistry::new();
        let watch = registry.watch(&Query::new("s").filter("Service.Port == 1"));
        assert!(watch.current().is_none());
        assert!(watch.status().error.is_some());
    }
}
