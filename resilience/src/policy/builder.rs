use std::sync::Arc;
use std::time::Duration;

use super::Policy;
use crate::bulkhead::{BulkheadConfig, BulkheadLayer};
use crate::circuit_breaker::{self, Handle};
use crate::classify::DefaultClassifier;
use crate::error::ConfigError;
use crate::retry::{CloneReplay, ErrorHint, RetryPolicy, RetryPolicyBuilder};
use crate::timeout::TimeoutConfig;

/// Builds a [`Policy`].
///
/// ```
/// use std::time::Duration;
/// use sinew_resilience::circuit_breaker;
/// use sinew_resilience::Policy;
///
/// let policy = Policy::builder()
///     .name("payments")
///     .timeout(Duration::from_millis(800))
///     .max_concurrent(32)
///     .retry(|r| r.max_attempts(4).deadline(Duration::from_secs(3)))
///     .circuit_breaker(circuit_breaker::Config::builder().failure_rate_threshold(25.0))
///     .build()?;
/// # let _ = policy;
/// # Ok::<(), sinew_resilience::error::ConfigError>(())
/// ```
///
/// # Default
///
/// - breaker: [`circuit_breaker::Config`]'s defaults (100-call window, 20 minimum calls, 50 %
///   failure rate, 30 s open, 5 half-open probes), named after the policy;
/// - retry: [`RetryPolicy`]'s defaults (3 attempts, 100 ms base with full jitter up to 10 s,
///   Finagle budget of 20 % plus 10/s), non-idempotent requests not retried;
/// - bulkhead: 100 concurrent calls, rejecting at once when full;
/// - timeout: 10 s per attempt;
/// - classifier: [`DefaultClassifier`] (use [`PolicyBuilder::http`] for HTTP).
#[derive(Debug)]
pub struct PolicyBuilder<C = DefaultClassifier, H = ErrorHint, R = CloneReplay> {
    name: Arc<str>,
    breaker: circuit_breaker::ConfigBuilder,
    retry: RetryPolicyBuilder<C, H, R>,
    bulkhead: BulkheadConfig,
    max_concurrent: Option<usize>,
    timeout: Duration,
    classifier: C,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONCURRENT: usize = 100;

impl Default for PolicyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self {
            name: Arc::from("default"),
            breaker: circuit_breaker::Config::builder(),
            retry: RetryPolicy::builder(),
            bulkhead: BulkheadConfig::default(),
            max_concurrent: Some(DEFAULT_MAX_CONCURRENT),
            timeout: DEFAULT_TIMEOUT,
            classifier: DefaultClassifier::new(),
        }
    }
}

#[cfg(feature = "http")]
impl<C, H, R> PolicyBuilder<C, H, R> {
    /// Classifies, hints and replays as HTTP: 5xx, 408 and 429 responses are failures,
    /// `Retry-After` and `grpc-retry-pushback-ms` are honoured, and only idempotent requests
    /// (or those with an `Idempotency-Key`) are retried. Works for `http::Request`/`Response`
    /// and, with feature `reqwest`, for `reqwest::Request`/`Response`.
    pub fn http(
        self,
    ) -> PolicyBuilder<
        crate::classify::HttpClassifier,
        crate::retry::HttpHint,
        crate::retry::HttpReplay,
    > {
        self.classifier(crate::classify::HttpClassifier::new())
            .hint(crate::retry::HttpHint::new())
            .replay(crate::retry::HttpReplay::new())
    }
}

impl<C, H, R> PolicyBuilder<C, H, R> {
    /// Names the policy; the breaker takes this name.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Timeout for one attempt.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Concurrent calls the bulkhead admits (rejecting beyond).
    pub const fn max_concurrent(mut self, max: usize) -> Self {
        self.max_concurrent = Some(max);
        self
    }

    /// Replaces the bulkhead settings (for a bounded wait instead of rejecting at once).
    pub const fn bulkhead(mut self, config: BulkheadConfig) -> Self {
        self.bulkhead = config;
        self.max_concurrent = None;
        self
    }

    /// Replaces the circuit-breaker settings (the name is still the policy's).
    pub fn circuit_breaker(mut self, config: circuit_breaker::ConfigBuilder) -> Self {
        self.breaker = config;
        self
    }

    /// Adjusts the retry settings, e.g. `.retry(|r| r.max_attempts(5))`.
    pub fn retry<F>(mut self, adjust: F) -> Self
    where
        F: FnOnce(RetryPolicyBuilder<C, H, R>) -> RetryPolicyBuilder<C, H, R>,
    {
        self.retry = adjust(self.retry);
        self
    }

    /// Decides success, failure and "neither" for both the breaker and retry.
    pub fn classifier<C2: Clone>(self, classifier: C2) -> PolicyBuilder<C2, H, R> {
        PolicyBuilder {
            name: self.name,
            breaker: self.breaker,
            retry: self.retry.classifier(classifier.clone()),
            bulkhead: self.bulkhead,
            max_concurrent: self.max_concurrent,
            timeout: self.timeout,
            classifier,
        }
    }

    /// Reads retry hints (such as `Retry-After`) with `hint`.
    pub fn hint<H2>(self, hint: H2) -> PolicyBuilder<C, H2, R> {
        PolicyBuilder {
            name: self.name,
            breaker: self.breaker,
            retry: self.retry.hint(hint),
            bulkhead: self.bulkhead,
            max_concurrent: self.max_concurrent,
            timeout: self.timeout,
            classifier: self.classifier,
        }
    }

    /// Replays requests for retries with `replay` (for `reqwest::Request`, a closure calling
    /// `try_clone`, or `HttpReplay` with feature `reqwest`).
    pub fn replay<R2>(self, replay: R2) -> PolicyBuilder<C, H, R2> {
        PolicyBuilder {
            name: self.name,
            breaker: self.breaker,
            retry: self.retry.replay(replay),
            bulkhead: self.bulkhead,
            max_concurrent: self.max_concurrent,
            timeout: self.timeout,
            classifier: self.classifier,
        }
    }

    /// Validates every part.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found in the breaker, retry, bulkhead or timeout settings.
    pub fn build(self) -> Result<Policy<C, H, R>, ConfigError> {
        let breaker = self.breaker.name(self.name).build()?;
        let retry = self.retry.build()?;
        let bulkhead = match self.max_concurrent {
            Some(max) => BulkheadConfig::builder().max_concurrent(max).build()?,
            None => self.bulkhead,
        };
        let timeout = TimeoutConfig::builder().timeout(self.timeout).build()?;
        Ok(Policy {
            retry,
            breaker: Handle::new(breaker),
            bulkhead: BulkheadLayer::new(bulkhead),
            timeout,
            classifier: self.classifier,
        })
    }
}
