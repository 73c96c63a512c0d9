use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::client::ConsulClient;
use super::error::ConsulError;
use super::registration::ServiceRegistration;
use crate::error::ConfigError;

/// Settings of a [`RegistrationHandle`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | `heartbeat_interval` | TTL checks: `min(ttl − 1 s, max(ttl · 2/3, 1 s))` of the shortest TTL (Spring Cloud Consul's formula); no TTL check: 30 s between "is my service still registered?" checks |
/// | `reregister` | on: re-register when the agent forgets the service or cannot be reached |
/// | `reregister_backoff` | 1 s doubling to 30 s |
/// | `drain_delay` | 0: deregister right after maintenance is set |
/// | `deregister_timeout` | 5 s for maintenance and deregistration together |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    heartbeat_interval: Option<Duration>,
    reregister: bool,
    backoff_min: Duration,
    backoff_max: Duration,
    drain_delay: Duration,
    deregister_timeout: Duration,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: None,
            reregister: true,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            deregister_timeout: Duration::from_secs(5),
        }
    }
}

impl RegistrationConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RegistrationConfigBuilder {
        RegistrationConfigBuilder {
            config: Self::default(),
        }
    }
}

/// Builds a [`RegistrationConfig`].
#[derive(Debug, Clone)]
pub struct RegistrationConfigBuilder {
    config: RegistrationConfig,
}

impl RegistrationConfigBuilder {
    /// How often to pass the TTL checks (or, without one, to check the registration exists).
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = Some(interval);
        self
    }

    /// Whether to re-register when the agent forgets the service.
    #[must_use]
    pub fn reregister(mut self, on: bool) -> Self {
        self.config.reregister = on;
        self
    }

    /// The re-registration backoff: starts at `min`, doubles up to `max`.
    #[must_use]
    pub fn reregister_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff_min = min;
        self.config.backoff_max = max;
        self
    }

    /// How long to stay registered in maintenance (so callers' caches drop the instance)
    /// before deregistering on shutdown.
    #[must_use]
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.config.drain_delay = delay;
        self
    }

    /// The bound on maintenance plus deregistration at shutdown.
    #[must_use]
    pub fn deregister_timeout(mut self, timeout: Duration) -> Self {
        self.config.deregister_timeout = timeout;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// A zero heartbeat interval, backoff or deregistration timeout, or a backoff `min`
    /// above `max`.
    pub fn build(self) -> Result<RegistrationConfig, ConfigError> {
        let c = self.config;
        let zero = |field: &'static str| ConfigError::Invalid {
            field,
            reason: "must be greater than zero".to_owned(),
        };
        if c.heartbeat_interval.is_some_and(|d| d.is_zero()) {
            return Err(zero("heartbeat_interval"));
        }
        if c.backoff_min.is_zero() {
            return Err(zero("reregister_backoff.min"));
        }
        if c.backoff_min > c.backoff_max {
            return Err(ConfigError::TooLong {
                field: "reregister_backoff.min",
                max: c.backoff_max,
                actual: c.backoff_min,
            });
        }
        if c.deregister_timeout.is_zero() {
            return Err(zero("deregister_timeout"));
        }
        Ok(c)
    }
}

/// Spring Cloud Consul's heartbeat formula: `min(ttl − 1 s, max(ttl · 2/3, 1 s))`.
pub(crate) fn heartbeat_for_ttl(ttl: Duration) -> Duration {
    let two_thirds = ttl.mul_f64(2.0 / 3.0).max(Duration::from_secs(1));
    two_thirds.min(
        ttl.saturating_sub(Duration::from_secs(1))
            .max(Duration::from_millis(500)),
    )
}

/// A live registration: keeps the service's TTL checks passing, re-registers when the agent
/// forgets it, and deregisters on [`shutdown`](Self::shutdown).
///
/// Created by [`RegistrationHandle::register`], which registers once (returning the error if
/// that fails) and then runs the heartbeat in a background task.
///
/// - **Heartbeat**: passes every TTL check each interval. Without a TTL check, asks the agent
///   whether the service is still registered.
/// - **Re-registration**: when the agent answers that the check or service is unknown (the
///   agent restarted without its state), or cannot be reached, registers again with
///   exponential backoff until it succeeds. [`reregistrations`](Self::reregistrations) counts
///   them.
/// - **Shutdown**: maintenance on (callers stop picking the instance), the drain delay, then
///   deregistration, all within the deregistration timeout.
/// - **Drop** without `shutdown`: stops the heartbeat and, inside a tokio runtime, spawns a
///   best-effort deregistration.
///
/// ```no_run
/// use std::time::Duration;
/// use sinew_discovery::consul::{Check, ConsulClient, RegistrationConfig, RegistrationHandle, ServiceRegistration};
///
/// # #[allow(dead_code)]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let consul = ConsulClient::builder().build()?;
/// let registration = ServiceRegistration::builder("orders")
///     .address("10.0.0.5")
///     .port(8080)
///     .check(Check::ttl(Duration::from_secs(15)))
///     .build()?;
/// let config = RegistrationConfig::builder().drain_delay(Duration::from_secs(5)).build()?;
/// let handle = RegistrationHandle::register(consul, registration, config).await?;
/// // ... serve until SIGTERM or Ctrl-C, then: maintenance, drain, deregister.
/// handle.shutdown_on_signal().await?;
/// # Ok(())
/// # }
/// ```
pub struct RegistrationHandle {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    client: ConsulClient,
    registration: ServiceRegistration,
    config: RegistrationConfig,
    reregistrations: AtomicU64,
    heartbeats: AtomicU64,
}

impl RegistrationHandle {
    /// Registers `registration` and starts the heartbeat.
    ///
    /// # Errors
    ///
    /// The first registration failed.
    pub async fn register(
        client: ConsulClient,
        registration: ServiceRegistration,
        config: RegistrationConfig,
    ) -> Result<Self, ConsulError> {
        client.register(&registration).await?;
        let shared = Arc::new(Shared {
            client,
            registration,
            config,
            reregistrations: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
        });
        // Pass the TTL checks at once rather than leaving them critical for a whole interval.
        shared.beat().await.ok();
        let task = tokio::spawn(heartbeat_loop(shared.clone()));
        Ok(Self {
            shared,
            task: Some(task),
        })
    }

    /// The registered service ID.
    pub fn service_id(&self) -> &str {
        self.shared.registration.id()
    }

    /// How many times the service was registered again after the agent forgot it.
    pub fn reregistrations(&self) -> u64 {
        self.shared.reregistrations.load(Ordering::Relaxed)
    }

    /// How many heartbeats succeeded.
    pub fn heartbeats(&self) -> u64 {
        self.shared.heartbeats.load(Ordering::Relaxed)
    }

    /// Stops the heartbeat, sets maintenance, waits the drain delay, then deregisters, within
    /// the deregistration timeout (the drain delay is not counted).
    ///
    /// # Errors
    ///
    /// Deregistration failed or timed out; the agent will remove the service once its checks
    /// are critical for `DeregisterCriticalServiceAfter`.
    pub async fn shutdown(mut self) -> Result<(), ConsulError> {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let shared = self.shared.clone();
        let id = shared.registration.id();
        let bound = shared.config.deregister_timeout;
        let maintenance = tokio::time::timeout(
            bound,
            shared.client.maintenance(id, true, Some("shutting down")),
        )
        .await;
        if let Ok(Err(e)) | Err(e) = maintenance.map_err(|_| ConsulError::Timeout {
            endpoint: "/v1/agent/service/maintenance",
            after: bound,
        }) {
            tracing::warn!(id, error = %e, "could not set maintenance before deregistering");
        }
        if !shared.config.drain_delay.is_zero() {
            tracing::info!(id, drain = ?shared.config.drain_delay, "draining before deregistration");
            tokio::time::sleep(shared.config.drain_delay).await;
        }
        match tokio::time::timeout(bound, shared.client.deregister(id)).await {
            Ok(result) => result,
            Err(_) => Err(ConsulError::Timeout {
                endpoint: "/v1/agent/service/deregister",
                after: bound,
            }),
        }
    }

    /// Waits for SIGTERM or Ctrl-C (see [`shutdown_signal`](super::shutdown_signal)), then
    /// [`shutdown`](Self::shutdown)s.
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Self::shutdown).
    pub async fn shutdown_on_signal(self) -> Result<(), ConsulError> {
        super::signal::shutdown_signal().await;
        self.shutdown().await
    }
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        task.abort();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                id = self.shared.registration.id(),
                "registration dropped outside a tokio runtime; not deregistered"
            );
            return;
        };
        let shared = self.shared.clone();
        runtime.spawn(async move {
            let id = shared.registration.id();
            let bound = shared.config.deregister_timeout;
            match tokio::time::timeout(bound, shared.client.deregister(id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(id, error = %e, "best-effort deregistration failed"),
                Err(_) => tracing::warn!(id, "best-effort deregistration timed out"),
            }
        });
    }
}

impl fmt::Debug for RegistrationHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationHandle")
            .field("service_id", &self.service_id())
            .field("reregistrations", &self.reregistrations())
            .finish()
    }
}

impl Shared {
    fn interval(&self) -> Duration {
        if let Some(d) = self.config.heartbeat_interval {
            return d;
        }
        self.registration
            .ttl_checks()
            .iter()
            .map(|(_, ttl)| heartbeat_for_ttl(*ttl))
            .min()
            .unwrap_or(Duration::from_secs(30))
    }

    /// One heartbeat: pass every TTL check, or check the registration exists.
    async fn beat(&self) -> Result<(), ConsulError> {
        let ttl_checks = self.registration.ttl_checks();
        if ttl_checks.is_empty() {
            if !self.client.is_registered(self.registration.id()).await? {
                return Err(ConsulError::Status {
                    endpoint: "/v1/agent/service",
                    status: 404,
                    body: format!("unknown service ID {:?}", self.registration.id()),
                });
            }
        } else {
            for (check_id, _) in &ttl_checks {
                self.client.ttl_pass(check_id, None).await?;
            }
        }
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn reregister(&self) {
        let id = self.registration.id();
        let mut delay = self.config.backoff_min;
        loop {
            match self.client.register(&self.registration).await {
                Ok(()) => {
                    self.reregistrations.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(id, "re-registered with consul");
                    if let Err(e) = self.beat().await {
                        tracing::debug!(id, error = %e, "first heartbeat after re-registration failed");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, retry_in = ?delay, "re-registration failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.backoff_max);
                }
            }
        }
    }
}

async fn heartbeat_loop(shared: Arc<Shared>) {
    let interval = shared.interval();
    let id = shared.registration.id().to_owned();
    loop {
        tokio::time::sleep(interval).await;
        match shared.beat().await {
            Ok(()) => tracing::trace!(id, "heartbeat"),
            Err(e) if shared.config.reregister && (e.is_unknown_check() || e.is_unreachable()) => {
                tracing::warn!(id, error = %e, "consul agent lost the registration or is unreachable; re-registering");
                shared.reregister().await;
            }
            Err(e) => tracing::warn!(id, error = %e, "heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spring_heartbeat_formula() {
        assert_eq!(
            heartbeat_for_ttl(Duration::from_secs(30)),
            Duration::from_secs(20)
        );
        assert_eq!(
            heartbeat_for_ttl(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert!(heartbeat_for_ttl(Duration::from_secs(1)) < Duration::from_secs(1));
    }

    #[test]
    fn config_validation() {
        assert!(
            RegistrationConfig::builder()
                .deregister_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            RegistrationConfig::builder()
                .reregister_backoff(Duration::from_secs(5), Duration::from_secs(1))
                .build()
                .is_err()
        );
        assert!(RegistrationConfig::builder().build().is_ok());
    }
}
