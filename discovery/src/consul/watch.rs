use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::client::{Blocking, ConsulClient, MAX_WAIT};
use super::error::ConsulError;
use crate::error::ConfigError;
use crate::registry::error::SourceError;
use crate::registry::{Feed, Query, Registry, Watch};

/// Settings of the blocking-query watch engine.
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | `wait` | 5 min (Consul's default; at most 10 min) |
/// | `rate_limit` | a token bucket of 2 requests, refilled one per second |
/// | `error_backoff` | `base · failures²`, base 1 s, at most 60 s (Go's `watch.Plan` uses 5 s and 180 s) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    wait: Duration,
    burst: NonZeroU32,
    refill: Duration,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(300),
            burst: NonZeroU32::MIN.saturating_add(1),
            refill: Duration::from_secs(1),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

impl WatchConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> WatchConfigBuilder {
        WatchConfigBuilder {
            config: Self::default(),
        }
    }

    /// The delay before retry number `failures` (1-based).
    fn backoff(&self, failures: u32) -> Duration {
        let n = failures.min(1_000);
        self.backoff_base
            .saturating_mul(n.saturating_mul(n))
            .min(self.backoff_max)
    }
}

/// Builds a [`WatchConfig`].
#[derive(Debug, Clone)]
pub struct WatchConfigBuilder {
    config: WatchConfig,
}

impl WatchConfigBuilder {
    /// How long Consul may hold each blocking query.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.config.wait = wait;
        self
    }

    /// The token bucket bounding the request rate of one watch: up to `burst` requests back
    /// to back, then one per `refill`. This stops a busy loop when Consul answers at once
    /// (index bugs, constant churn).
    #[must_use]
    pub fn rate_limit(mut self, burst: NonZeroU32, refill: Duration) -> Self {
        self.config.burst = burst;
        self.config.refill = refill;
        self
    }

    /// The delay after the n-th consecutive failure: `base · n²`, at most `max`.
    #[must_use]
    pub fn error_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff_base = base;
        self.config.backoff_max = max;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// A `wait` of zero or above 10 minutes, a zero refill or backoff, or a backoff base above
    /// its maximum.
    pub fn build(self) -> Result<WatchConfig, ConfigError> {
        let c = self.config;
        let zero = |field: &'static str| ConfigError::Invalid {
            field,
            reason: "must be greater than zero".to_owned(),
        };
        if c.wait.is_zero() {
            return Err(zero("wait"));
        }
        if c.wait > MAX_WAIT {
            return Err(ConfigError::TooLong {
                field: "wait",
                max: MAX_WAIT,
                actual: c.wait,
            });
        }
        if c.refill.is_zero() {
            return Err(zero("rate_limit.refill"));
        }
        if c.backoff_base.is_zero() {
            return Err(zero("error_backoff.base"));
        }
        if c.backoff_base > c.backoff_max {
            return Err(ConfigError::TooLong {
                field: "error_backoff.base",
                max: c.backoff_max,
                actual: c.backoff_base,
            });
        }
        Ok(c)
    }
}

/// The Consul [`Registry`]: one background blocking query per distinct [`Query`], shared by
/// every [`Watch`] of it and stopped when the last one is dropped.
///
/// The loop follows Consul's blocking-query rules:
///
/// 1. the index is reset to 0 when it goes backwards (snapshot restore, server change);
/// 2. an index below 1 is clamped to 1, so a buggy 0 cannot turn into a busy loop;
/// 3. requests go through a token bucket (see [`WatchConfig`]);
///
/// plus error backoff (after which the first request does not block, so recovery is seen at
/// once), an HTTP timeout longer than `wait + wait/16`, and de-duplication:
/// a result equal to the current snapshot only refreshes its age. An empty result that
/// Consul marks as filtered by ACLs (a revoked token) is treated as a failure, so the
/// last-known-good list is kept.
///
/// ```no_run
/// use sinew_discovery::consul::{ConsulClient, ConsulRegistry};
/// use sinew_discovery::{Discovery, P2c};
///
/// # #[allow(dead_code)]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = ConsulRegistry::new(ConsulClient::builder().build()?);
/// let discovery = Discovery::new(registry);
/// let picked = discovery.pick("orders", &P2c::new()).await?;
/// println!("calling {}", picked.url("http"));
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Clones share the client and the table of watches.
#[derive(Clone)]
pub struct ConsulRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    client: ConsulClient,
    config: WatchConfig,
    feeds: Mutex<HashMap<Query, Arc<Feed>>>,
}

impl ConsulRegistry {
    /// A registry with the default [`WatchConfig`].
    pub fn new(client: ConsulClient) -> Self {
        Self::with_config(client, WatchConfig::default())
    }

    /// A registry with `config`.
    pub fn with_config(client: ConsulClient, config: WatchConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                config,
                feeds: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The client.
    pub fn client(&self) -> &ConsulClient {
        &self.inner.client
    }

    /// How many background watches are running.
    pub fn active_watches(&self) -> usize {
        self.inner
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Registry for ConsulRegistry {
    fn watch(&self, query: &Query) -> Watch {
        let mut feeds = self
            .inner
            .feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = feeds.get(query) {
            return feed.watch();
        }
        let feed = Arc::new(Feed::new(query.service()));
        let watch = feed.watch();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                feeds.insert(query.clone(), feed.clone());
                runtime.spawn(run(self.inner.clone(), query.clone(), feed));
            }
            Err(_) => {
                feed.fail(SourceError::new(
                    "the consul registry needs a tokio runtime to watch in the background",
                ));
                feed.close();
            }
        }
        watch
    }
}

impl fmt::Debug for ConsulRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulRegistry")
            .field("client", &self.inner.client)
            .field("config", &self.inner.config)
            .field("active_watches", &self.active_watches())
            .finish()
    }
}

/// The index to send next, from the previous one and the one just returned (Consul's
/// blocking-query rules 1 and 2).
pub(crate) fn next_index(previous: u64, returned: u64) -> u64 {
    let returned = returned.max(1);
    if returned < previous { 0 } else { returned }
}

/// A token bucket on tokio time: `burst` tokens, one more every `refill`.
struct TokenBucket {
    burst: f64,
    tokens: f64,
    refill: Duration,
    last: Instant,
}

impl TokenBucket {
    fn new(burst: NonZeroU32, refill: Duration) -> Self {
        Self {
            burst: f64::from(burst.get()),
            tokens: f64::from(burst.get()),
            refill,
            last: Instant::now(),
        }
    }

    async fn acquire(&mut self) {
        loop {
            let now = Instant::now();
            let earned = now.duration_since(self.last).as_secs_f64() / self.refill.as_secs_f64();
            self.tokens = (self.tokens + earned).min(self.burst);
            self.last = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let missing = 1.0 - self.tokens;
            tokio::time::sleep(self.refill.mul_f64(missing)).await;
        }
    }
}

async fn run(inner: Arc<Inner>, query: Query, feed: Arc<Feed>) {
    let service = query.service().to_owned();
    tracing::debug!(service, ?query, "consul watch started");
    tokio::select! {
        () = poll(&inner, &query, &feed) => {}
        () = unwatched(&inner, &query, &feed) => {}
    }
    tracing::debug!(service, "consul watch stopped: nobody watches it any more");
}

/// Resolves when the last watch is gone, removing the feed from the table under its lock so
/// a concurrent `watch()` either joins this feed before or starts a new one after.
async fn unwatched(inner: &Inner, query: &Query, feed: &Arc<Feed>) {
    loop {
        feed.unwatched().await;
        let mut feeds = inner.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if !feed.is_watched() {
            feeds.remove(query);
            return;
        }
    }
}

async fn poll(inner: &Inner, query: &Query, feed: &Feed) {
    let config = &inner.config;
    let mut bucket = TokenBucket::new(config.burst, config.refill);
    let mut index = 0_u64;
    let mut failures = 0_u32;
    loop {
        bucket.acquire().await;
        let blocking = (index > 0).then_some(Blocking {
            index,
            wait: config.wait,
        });
        let result = inner.client.health_service(query, blocking).await;
        let result = match result {
            Ok((instances, meta))
                if instances.is_empty() && meta.filtered_by_acls && feed.current().is_some() =>
            {
                // Keep the index: the next answer with real data must still count as new.
                Err(ConsulError::AclFiltered {
                    service: query.service().to_owned(),
                })
            }
            Ok((instances, meta)) => {
                let next = next_index(index, meta.index);
                if next == 0 {
                    tracing::info!(
                        service = query.service(),
                        previous = index,
                        returned = meta.index,
                        "consul index went backwards; resetting"
                    );
                } else if meta.index == 0 {
                    tracing::warn!(
                        service = query.service(),
                        "consul returned index 0; clamping to 1"
                    );
                }
                index = next;
                Ok(instances)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(instances) => {
                if failures > 0 {
                    tracing::info!(
                        service = query.service(),
                        failures,
                        "consul watch recovered"
                    );
                }
                failures = 0;
                let count = instances.len();
                if feed.publish(instances) {
                    tracing::debug!(
                        service = query.service(),
                        instances = count,
                        index,
                        "instance list changed"
                    );
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = config.backoff(failures);
                tracing::warn!(service = query.service(), %error, failures, retry_in = ?delay, "consul watch failed; serving the last-known-good list");
                feed.fail(SourceError::new(error));
                tokio::time::sleep(delay).await;
                // The next request must not block: it re-validates the list at once, so the
                // watch stops reporting stale as soon as Consul answers again.
                index = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rules() {
        assert_eq!(next_index(0, 5), 5);
        assert_eq!(next_index(5, 5), 5);
        assert_eq!(next_index(5, 7), 7);
        assert_eq!(next_index(7, 3), 0, "backwards resets");
        assert_eq!(next_index(0, 0), 1, "zero clamps to one");
        assert_eq!(next_index(1, 0), 1);
    }

    #[test]
    fn backoff_is_quadratic_and_capped() {
        let c = WatchConfig::default();
        assert_eq!(c.backoff(1), Duration::from_secs(1));
        assert_eq!(c.backoff(3), Duration::from_secs(9));
        assert_eq!(c.backoff(100), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_burst_then_refill_rate() {
        let mut bucket =
            TokenBucket::new(NonZeroU32::MIN.saturating_add(1), Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..12 {
            bucket.acquire().await;
        }
        // 2 at once, then 10 more at one per second.
        assert_eq!(start.elapsed().as_secs(), 10);
    }

    #[test]
    fn config_validation() {
        assert!(
            WatchConfig::builder()
                .wait(Duration::from_secs(601))
                .build()
                .is_err()
        );
        assert!(WatchConfig::builder().wait(Duration::ZERO).build().is_err());
        assert!(
            WatchConfig::builder()
                .error_backoff(Duration::from_secs(5), Duration::from_secs(1))
                .build()
                .is_err()
        );
    }
}
