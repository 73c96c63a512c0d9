//! Configuration of a subscription.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::error::ConfigError;
use crate::topic;

const DEFAULT_PREFETCH: u16 = 64;
const DEFAULT_CONCURRENCY: usize = 16;
const DEFAULT_IN_PROCESS_RETRIES: u32 = 2;
const DEFAULT_IN_PROCESS_BACKOFF: Duration = Duration::from_millis(100);
const DEFAULT_DELAYS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(600),
];

/// Validated configuration of one subscription: a durable queue `{service}.{subscription}`
/// bound by routing keys, plus how its handler runs and retries.
///
/// Build one with [`SubscriptionConfig::builder`].
///
/// # Default
///
/// - prefetch 64, at most 16 handlers at once, no ordered lanes;
/// - 2 in-process retries after a transient error, waiting 100 ms then 200 ms, each scaled by
///   a random factor in `[0.5, 1.0)` (jitter);
/// - then delayed retries after 1 s, 10 s, 1 min and 10 min;
/// - at most 7 handler attempts in all (1 + 2 + 4), after which the message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionConfig {
    pub(crate) service: String,
    pub(crate) subscription: String,
    pub(crate) routing_keys: Vec<String>,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
    pub(crate) in_process_retries: u32,
    pub(crate) in_process_backoff: Duration,
    pub(crate) delayed_retries: Vec<Duration>,
    pub(crate) max_attempts: u32,
    pub(crate) ordered_lanes: Option<NonZeroUsize>,
    pub(crate) jitter_seed: Option<u64>,
    pub(crate) consumer_trace: ConsumerTrace,
}

/// How a delivery's `CONSUMER` span relates to the producer's trace context carried in the
/// message headers (feature `opentelemetry`; without it the setting has no effect).
///
/// The OpenTelemetry messaging conventions allow the creation context as the parent when one
/// message is processed on its own, which is what every handler here does: the default keeps
/// one trace from the request that published the event down to each consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConsumerTrace {
    /// The consumer span is a child of the producer context and also links to it: producer and
    /// consumers share one trace id. The default.
    #[default]
    ChildAndLink,
    /// The consumer span only links to the producer context and stays in the consumer's own
    /// trace (a new one when nothing is in scope).
    LinkOnly,
}

impl SubscriptionConfig {
    /// A builder for the subscription `subscription` of service `service`.
    pub fn builder(
        service: impl Into<String>,
        subscription: impl Into<String>,
    ) -> SubscriptionConfigBuilder {
        SubscriptionConfigBuilder {
            service: service.into(),
            subscription: subscription.into(),
            routing_keys: Vec::new(),
            prefetch: DEFAULT_PREFETCH,
            concurrency: DEFAULT_CONCURRENCY,
            in_process_retries: DEFAULT_IN_PROCESS_RETRIES,
            in_process_backoff: DEFAULT_IN_PROCESS_BACKOFF,
            delayed_retries: DEFAULT_DELAYS.to_vec(),
            max_attempts: None,
            ordered_lanes: None,
            jitter_seed: None,
            consumer_trace: ConsumerTrace::default(),
        }
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The subscription name.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The queue name, `{service}.{subscription}`.
    pub fn queue(&self) -> String {
        format!("{}.{}", self.service, self.subscription)
    }

    /// The dead-letter queue name, `{service}.{subscription}.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.{}.dlq", self.service, self.subscription)
    }

    /// The binding keys (topic patterns).
    pub fn routing_keys(&self) -> &[String] {
        &self.routing_keys
    }

    /// How many unacknowledged messages the consumer may hold.
    pub const fn prefetch(&self) -> u16 {
        self.prefetch
    }

    /// How many handlers may run at once.
    pub const fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// In-process retries after a transient error, before delayed retries.
    pub const fn in_process_retries(&self) -> u32 {
        self.in_process_retries
    }

    /// The base wait of in-process retries (doubled each time, then jittered).
    pub const fn in_process_backoff(&self) -> Duration {
        self.in_process_backoff
    }

    /// The delays of the delayed retries, in order.
    pub fn delayed_retries(&self) -> &[Duration] {
        &self.delayed_retries
    }

    /// The most handler attempts before a message is dead-lettered.
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The number of ordered lanes, if per-aggregate ordering is on.
    pub const fn ordered_lanes(&self) -> Option<NonZeroUsize> {
        self.ordered_lanes
    }

    /// How the consumer span relates to the producer's trace context.
    pub const fn consumer_trace(&self) -> ConsumerTrace {
        self.consumer_trace
    }

    #[cfg_attr(
        not(any(feature = "memory", feature = "rabbitmq")),
        allow(
            dead_code,
            reason = "read by the failure policy, which the backends use"
        )
    )]
    pub(crate) const fn jitter_seed(&self) -> Option<u64> {
        self.jitter_seed
    }
}

/// Builder of [`SubscriptionConfig`].
#[derive(Debug, Clone)]
pub struct SubscriptionConfigBuilder {
    service: String,
    subscription: String,
    routing_keys: Vec<String>,
    prefetch: u16,
    concurrency: usize,
    in_process_retries: u32,
    in_process_backoff: Duration,
    delayed_retries: Vec<Duration>,
    max_attempts: Option<u32>,
    ordered_lanes: Option<usize>,
    jitter_seed: Option<u64>,
    consumer_trace: ConsumerTrace,
}

fn valid_name(name: &str) -> bool {
    name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl SubscriptionConfigBuilder {
    /// Adds a binding key; `*` matches one word, `#` zero or more. At least one is required.
    pub fn routing_key(mut self, pattern: impl Into<String>) -> Self {
        self.routing_keys.push(pattern.into());
        self
    }

    /// How many unacknowledged messages the consumer may hold (AMQP `basic.qos`).
    pub const fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// How many handlers may run at once; at most the prefetch.
    pub const fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// In-process retries after a transient error (0 turns them off).
    pub const fn in_process_retries(mut self, retries: u32) -> Self {
        self.in_process_retries = retries;
        self
    }

    /// The base wait of in-process retries.
    pub const fn in_process_backoff(mut self, backoff: Duration) -> Self {
        self.in_process_backoff = backoff;
        self
    }

    /// The delays of the delayed retries that follow the in-process ones (empty turns them
    /// off). On RabbitMQ each delay is a TTL tier queue `{queue}.retry.{n}`.
    pub fn delayed_retries(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.delayed_retries = delays.into_iter().collect();
        self
    }

    /// The most handler attempts before a message is dead-lettered. Defaults to one plus all
    /// configured retries.
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Keeps per-aggregate order: messages are hashed by aggregate ID
    /// (`cloudEvents_subject`) onto `lanes` sequential workers. Delayed retries leave the lane.
    pub const fn ordered_lanes(mut self, lanes: usize) -> Self {
        self.ordered_lanes = Some(lanes);
        self
    }

    /// Seeds the retry jitter, for reproducible tests.
    pub const fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// How each delivery's `CONSUMER` span relates to the producer context in its headers
    /// (feature `opentelemetry`): [`ConsumerTrace::ChildAndLink`] by default,
    /// [`ConsumerTrace::LinkOnly`] to keep consumers in traces of their own.
    pub const fn consumer_trace(mut self, trace: ConsumerTrace) -> Self {
        self.consumer_trace = trace;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::Missing`]: empty service or subscription name, or no routing key;
    /// - [`ConfigError::InvalidName`]: a name with characters outside `[A-Za-z0-9_.-]`;
    /// - [`ConfigError::InvalidPattern`]: a malformed routing key pattern;
    /// - [`ConfigError::Zero`]: zero prefetch, concurrency, lanes or max attempts;
    /// - [`ConfigError::Exceeds`]: concurrency above the prefetch.
    pub fn build(self) -> Result<SubscriptionConfig, ConfigError> {
        for (field, name) in [
            ("service", &self.service),
            ("subscription", &self.subscription),
        ] {
            if name.is_empty() {
                return Err(ConfigError::Missing { field });
            }
            if !valid_name(name) {
                return Err(ConfigError::InvalidName { field });
            }
        }
        if self.routing_keys.is_empty() {
            return Err(ConfigError::Missing {
                field: "routing_key",
            });
        }
        if let Some(bad) = self
            .routing_keys
            .iter()
            .find(|p| !topic::is_valid_pattern(p))
        {
            return Err(ConfigError::InvalidPattern {
                pattern: bad.clone(),
            });
        }
        if self.prefetch == 0 {
            return Err(ConfigError::Zero { field: "prefetch" });
        }
        if self.concurrency == 0 {
            return Err(ConfigError::Zero {
                field: "concurrency",
            });
        }
        if self.concurrency > usize::from(self.prefetch) {
            return Err(ConfigError::Exceeds {
                field: "concurrency",
                limit: "prefetch",
            });
        }
        let ordered_lanes = match self.ordered_lanes {
            Some(n) => Some(NonZeroUsize::new(n).ok_or(ConfigError::Zero {
                field: "ordered_lanes",
            })?),
            None => None,
        };
        let retries = u32::try_from(self.delayed_retries.len()).unwrap_or(u32::MAX);
        let max_attempts = self.max_attempts.unwrap_or_else(|| {
            1u32.saturating_add(self.in_process_retries)
                .saturating_add(retries)
        });
        if max_attempts == 0 {
            return Err(ConfigError::Zero {
                field: "max_attempts",
            });
        }
        Ok(SubscriptionConfig {
            service: self.service,
            subscription: self.subscription,
            routing_keys: self.routing_keys,
            prefetch: self.prefetch,
            concurrency: self.concurrency,
            in_process_retries: self.in_process_retries,
            in_process_backoff: self.in_process_backoff,
            delayed_retries: self.delayed_retries,
            max_attempts,
            ordered_lanes,
            jitter_seed: self.jitter_seed,
            consumer_trace: self.consumer_trace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SubscriptionConfigBuilder {
        SubscriptionConfig::builder("email", "welcome").routing_key("user.created")
    }

    #[test]
    fn defaults() {
        let c = base().build().unwrap();
        assert_eq!(c.queue(), "email.welcome");
        assert_eq!(c.dead_letter_queue(), "email.welcome.dlq");
        assert_eq!(c.prefetch(), 64);
        assert_eq!(c.concurrency(), 16);
        assert_eq!(c.max_attempts(), 7);
        assert_eq!(c.delayed_retries().len(), 4);
        assert_eq!(c.ordered_lanes(), None);
        assert_eq!(c.consumer_trace(), ConsumerTrace::ChildAndLink);
    }

    #[test]
    fn rejects_nonsense() {
        let err = |b: SubscriptionConfigBuilder| b.build().unwrap_err();
        assert_eq!(
            err(SubscriptionConfig::builder("email", "welcome")),
            ConfigError::Missing {
                field: "routing_key"
            }
        );
        assert_eq!(
            err(SubscriptionConfig::builder("", "w").routing_key("a")),
            ConfigError::Missing { field: "service" }
        );
        assert_eq!(
            err(SubscriptionConfig::builder("e mail", "w").routing_key("a")),
            ConfigError::InvalidName { field: "service" }
        );
        assert!(matches!(
            err(base().routing_key("user..x")),
            ConfigError::InvalidPattern { .. }
        ));
        assert_eq!(
            err(base().prefetch(0)),
            ConfigError::Zero { field: "prefetch" }
        );
        assert_eq!(
            err(base().prefetch(4).concurrency(5)),
            ConfigError::Exceeds {
                field: "concurrency",
                limit: "prefetch"
            }
        );
        assert_eq!(
            err(base().ordered_lanes(0)),
            ConfigError::Zero {
                field: "ordered_lanes"
            }
        );
        assert_eq!(
            err(base().max_attempts(0)),
            ConfigError::Zero {
                field: "max_attempts"
            }
        );
    }
}
