//! Service discovery and client-side load balancing.
//!
//! SEAM: until `sinew-discovery` lands this is a static registry (service name → instance
//! URLs) with a power-of-two-choices picker over in-flight counts. Each instance has its own
//! `sinew-resilience` circuit breaker, and instances whose breaker is open are skipped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sinew_resilience::circuit_breaker::{Config, Handle, OpenWait, SlidingWindow, State};

/// One instance of a service.
#[derive(Debug)]
pub struct Instance {
    /// Its instance ID (`user-1`).
    pub id: String,
    /// Its base URL (`http://127.0.0.1:3001`).
    pub url: String,
    /// Its circuit breaker.
    pub breaker: Handle,
    in_flight: AtomicUsize,
}

impl Instance {
    /// Requests in flight to this instance.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// Counts one request in flight; see [`Instance::start`].
#[derive(Debug)]
pub struct InFlight(Arc<Instance>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The breaker configuration every upstream instance gets: opens at 50 % failures over the
/// last 10 calls once 3 were made, stays open 30 s.
///
/// # Errors
///
/// Never with these constants; the `Result` is the builder's.
pub fn breaker_config(name: &str) -> Result<Config, sinew_resilience::error::ConfigError> {
    Config::builder()
        .name(name.to_owned())
        .sliding_window(SlidingWindow::CountBased { size: 10 })
        .minimum_calls(3)
        .failure_rate_threshold(50.0)
        .open_wait(OpenWait::Fixed(Duration::from_secs(30)))
        .build()
}

/// The registry: every known instance of every service.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    services: Arc<RwLock<BTreeMap<String, Vec<Arc<Instance>>>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry from `name=url,url;name=url` (the `SERVICES` variable).
    pub fn from_spec(spec: &str) -> Self {
        let registry = Self::new();
        for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
            if let Some((name, urls)) = entry.split_once('=') {
                for (i, url) in urls.split(',').filter(|u| !u.trim().is_empty()).enumerate() {
                    registry.register(
                        name.trim(),
                        &format!("{}-{}", name.trim(), i + 1),
                        url.trim(),
                    );
                }
            }
        }
        registry
    }

    /// Registers an instance (idempotent by instance ID).
    pub fn register(&self, service: &str, id: &str, url: &str) {
        let Ok(config) = breaker_config(id) else {
            return;
        };
        let instance = Arc::new(Instance {
            id: id.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            breaker: Handle::new(config),
            in_flight: AtomicUsize::new(0),
        });
        let mut services = self
            .services
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = services.entry(service.to_owned()).or_default();
        list.retain(|i| i.id != id);
        list.push(instance);
        tracing::info!(service, id, url, "registered");
    }

    /// Removes an instance.
    pub fn deregister(&self, service: &str, id: &str) {
        let mut services = self
            .services
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = services.get_mut(service) {
            list.retain(|i| i.id != id);
        }
        tracing::info!(service, id, "deregistered");
    }

    /// Every instance of `service`.
    pub fn instances(&self, service: &str) -> Vec<Arc<Instance>> {
        let services = self
            .services
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services.get(service).cloned().unwrap_or_default()
    }

    /// Every service name.
    pub fn services(&self) -> Vec<String> {
        let services = self
            .services
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services.keys().cloned().collect()
    }

    /// Power of two choices among the instances of `service` whose breaker admits calls,
    /// skipping `exclude`: two at random, the one with fewer requests in flight.
    pub fn pick(&self, service: &str, exclude: &[String]) -> Option<Arc<Instance>> {
        let candidates: Vec<Arc<Instance>> = self
            .instances(service)
            .into_iter()
            .filter(|i| i.breaker.state() != State::Open && !exclude.contains(&i.id))
            .collect();
        match candidates.len() {
            0 => None,
            1 => candidates.into_iter().next(),
            n => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (&candidates[a], &candidates[b]);
                Some(Arc::clone(if b.in_flight() < a.in_flight() {
                    b
                } else {
                    a
                }))
            }
        }
    }
}
