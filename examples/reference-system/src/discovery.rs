//! Service discovery and client-side load balancing, on `sinew-discovery`.
//!
//! [`Directory`] reads instances from a [`Discovery`] over a [`StaticRegistry`] (the embedded
//! default) or Consul (`CONSUL_HTTP_ADDR`), picks one with power of two choices ([`P2c`]),
//! and gives every instance its own `sinew-resilience` circuit breaker; instances whose
//! breaker is open are skipped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use sinew_discovery::consul::{
    Check, ConsulClient, ConsulRegistry, RegistrationConfig, RegistrationHandle,
    ServiceRegistration,
};
use sinew_discovery::memory::StaticRegistry;
use sinew_discovery::{Discovery, InFlight, Instance, P2c, Picker as _};
use sinew_resilience::circuit_breaker::{Config, Handle, OpenWait, SlidingWindow};

/// One instance of a service, as the callers see it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its instance ID (`user-1`).
    pub id: String,
    /// Its base URL (`http://127.0.0.1:3001`).
    pub url: String,
    /// Its circuit breaker.
    pub breaker: Handle,
}

/// The breaker configuration every upstream instance gets: opens at 50 % failures over the
/// last 10 calls once 3 were made, stays open 30 s, then half-opens on a timer.
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
        // Instances with an open breaker are skipped by `pick`, so no call would ever move
        // the breaker to half-open: the timer does.
        .automatic_transition(true)
        .build()
}

#[derive(Debug, Clone)]
enum Backend {
    Static(StaticRegistry),
    Consul(ConsulClient),
}

/// Where services are found: discovery, a picker, and one breaker per instance.
///
/// # Clone
///
/// Clones share everything.
#[derive(Debug, Clone)]
pub struct Directory {
    backend: Backend,
    discovery: Discovery,
    p2c: Arc<P2c>,
    breakers: Arc<Mutex<HashMap<String, Handle>>>,
    services: Arc<RwLock<BTreeSet<String>>>,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

/// An entry of the static discovery table (`SERVICES`) that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("SERVICES entry `{entry}` is not valid: {reason}")]
pub struct SpecError {
    /// The entry, as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// `http://host:port[/]` → (host, port).
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

impl Directory {
    /// A static directory, filled by [`register`](Self::register).
    pub fn new() -> Self {
        let registry = StaticRegistry::new();
        Self::with(Backend::Static(registry.clone()), Discovery::new(registry))
    }

    /// Consul at `address` (`CONSUL_HTTP_ADDR`, e.g. `http://127.0.0.1:8500`).
    ///
    /// # Errors
    ///
    /// When the address is invalid.
    pub fn consul(address: &str) -> Result<Self, sinew_discovery::ConfigError> {
        let client = ConsulClient::builder().address(address).build()?;
        let discovery = Discovery::new(ConsulRegistry::new(client.clone()));
        Ok(Self::with(Backend::Consul(client), discovery))
    }

    fn with(backend: Backend, discovery: Discovery) -> Self {
        Self {
            backend,
            discovery,
            p2c: Arc::new(P2c::new()),
            breakers: Arc::default(),
            services: Arc::default(),
        }
    }

    /// A static directory from `name=url,url;name=url` (the `SERVICES` variable); instance
    /// IDs are `{name}-{n}`. Empty entries are skipped.
    ///
    /// # Errors
    ///
    /// [`SpecError`] for an entry that is not `name=url,…` or a URL that is not
    /// `http://host:port`: a typo in the table fails at startup instead of leaving a service
    /// without instances.
    pub fn from_spec(spec: &str) -> Result<Self, SpecError> {
        let directory = Self::new();
        for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
            let invalid = |reason| SpecError {
                entry: entry.trim().to_owned(),
                reason,
            };
            let (name, urls) = entry
                .split_once('=')
                .ok_or_else(|| invalid("expected `service=http://host:port,…`"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(invalid("the service name is empty"));
            }
            let urls: Vec<&str> = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect();
            if urls.is_empty() {
                return Err(invalid("no instance URL"));
            }
            if urls.iter().any(|url| host_port(url).is_none()) {
                return Err(invalid("an instance URL is not `http://host:port`"));
            }
            for (i, url) in urls.into_iter().enumerate() {
                directory.register(name, &format!("{name}-{}", i + 1), url);
            }
        }
        Ok(directory)
    }

    /// Makes `service` known to [`services`](Self::services) (for the gateway's `/health`)
    /// without registering an instance.
    pub fn expect(&self, service: &str) {
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(service.to_owned());
    }

    /// Registers an instance in the static registry (idempotent by instance ID). With Consul,
    /// services register themselves ([`register_in_consul`](Self::register_in_consul)).
    pub fn register(&self, service: &str, id: &str, url: &str) {
        self.expect(service);
        let Backend::Static(registry) = &self.backend else {
            return;
        };
        let Some((host, port)) = host_port(url) else {
            tracing::warn!(
                service,
                id,
                url,
                "not an http://host:port URL; not registered"
            );
            return;
        };
        registry.insert(Instance::new(id, service, host, port));
        tracing::info!(service, id, url, "registered");
    }

    /// Removes an instance from the static registry.
    pub fn deregister(&self, service: &str, id: &str) {
        if let Backend::Static(registry) = &self.backend {
            registry.remove(service, id);
            tracing::info!(service, id, "deregistered");
        }
    }

    /// With Consul: registers this process's instance with an HTTP health check on `/health`
    /// and TTL-free heartbeats; the handle deregisters it on shutdown. `None` for a static
    /// directory.
    ///
    /// # Errors
    ///
    /// When the registration is invalid or Consul refuses it.
    pub async fn register_in_consul(
        &self,
        service: &str,
        id: &str,
        host: &str,
        port: u16,
    ) -> Result<Option<RegistrationHandle>, Box<dyn std::error::Error + Send + Sync>> {
        let Backend::Consul(client) = &self.backend else {
            return Ok(None);
        };
        let registration = ServiceRegistration::builder(service)
            .id(id)
            .address(host)
            .port(port)
            .tag("sinew-reference")
            .check(
                Check::http(
                    format!("http://{host}:{port}/health"),
                    Duration::from_secs(10),
                )
                .timeout(Duration::from_secs(5)),
            )
            .build()?;
        let handle = RegistrationHandle::register(
            client.clone(),
            registration,
            RegistrationConfig::builder().build()?,
        )
        .await?;
        Ok(Some(handle))
    }

    fn breaker(&self, id: &str) -> Option<Handle> {
        let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = breakers.get(id) {
            return Some(handle.clone());
        }
        let handle = Handle::new(breaker_config(id).ok()?);
        breakers.insert(id.to_owned(), handle.clone());
        Some(handle)
    }

    fn endpoint(&self, instance: &Instance) -> Option<Endpoint> {
        Some(Endpoint {
            id: instance.id.as_str().to_owned(),
            url: instance.url("http"),
            breaker: self.breaker(instance.id.as_str())?,
        })
    }

    /// Every healthy instance of `service`, from memory (the first call waits for the first
    /// result from the registry).
    pub async fn instances(&self, service: &str) -> Vec<Endpoint> {
        match self.discovery.discover(service).await {
            Ok(snapshot) => snapshot
                .instances()
                .iter()
                .filter_map(|i| self.endpoint(i))
                .collect(),
            Err(error) => {
                tracing::debug!(service, %error, "no instances");
                Vec::new()
            }
        }
    }

    /// Every service name registered or expected.
    pub fn services(&self) -> Vec<String> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Power of two choices among the instances of `service` whose breaker admits calls,
    /// skipping `exclude`; the guard counts the request in flight.
    pub async fn pick(&self, service: &str, exclude: &[String]) -> Option<(Endpoint, InFlight)> {
        let snapshot = self.discovery.discover(service).await.ok()?;
        let candidates: Vec<Instance> = snapshot
            .instances()
            .iter()
            .filter(|i| !exclude.iter().any(|e| e == i.id.as_str()))
            .filter(|i| {
                self.breaker(i.id.as_str())
                    .is_some_and(|b| b.state().admits_calls())
            })
            .cloned()
            .collect();
        let chosen = candidates.get(self.p2c.pick(&candidates, None)?)?;
        let in_flight = self.p2c.begin(chosen);
        Some((self.endpoint(chosen)?, in_flight))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn p2c_skips_open_breakers_and_exclusions() {
        let d =
            Directory::from_spec("user=http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3")
                .unwrap();
        assert_eq!(d.instances("user").await.len(), 3);
        let all = d.instances("user").await;
        all.iter()
            .find(|e| e.id == "user-1")
            .unwrap()
            .breaker
            .force_open();
        for _ in 0..50 {
            let (e, _) = d.pick("user", &["user-2".to_owned()]).await.unwrap();
            assert_eq!(e.id, "user-3");
        }
        d.deregister("user", "user-3");
        assert!(d.pick("user", &["user-2".to_owned()]).await.is_none());
        assert_eq!(
            host_port("http://[::1]:80/"),
            Some(("[::1]".to_owned(), 80))
        );
    }

    #[tokio::test]
    async fn a_static_table_with_a_typo_is_an_error_naming_the_entry() {
        let d = Directory::from_spec(" ; user=http://127.0.0.1:1 ,http://h:2/; post=http://p:3;")
            .unwrap();
        assert_eq!(d.instances("user").await.len(), 2);
        assert_eq!(d.instances("post").await.len(), 1);
        for (spec, entry, reason) in [
            (
                "user http://127.0.0.1:1",
                "user http://127.0.0.1:1",
                "expected",
            ),
            ("=http://h:1", "=http://h:1", "name is empty"),
            ("post=", "post=", "no instance URL"),
            (
                "user=http://h:1;post=http://p",
                "post=http://p",
                "not `http://host:port`",
            ),
            (
                "post=http://p:port",
                "post=http://p:port",
                "not `http://host:port`",
            ),
        ] {
            let error = Directory::from_spec(spec).unwrap_err();
            assert_eq!(error.entry, entry, "{spec}");
            assert!(error.to_string().contains(reason), "{spec}: {error}");
        }
    }
}
