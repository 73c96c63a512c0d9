//! One composed policy: fallback, retry with a budget, circuit breaker, bulkhead and timeout,
//! stacked in the order that makes them work together, with defaults that are safe in
//! production.
//!
//! ```
//! use sinew_resilience::{BoxError, Policy};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let policy = Policy::builder().name("users-api").build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(policy.layer())
//!     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
//! assert_eq!(svc.oneshot(21).await?, 42);
//! # Ok(())
//! # }
//! ```
//!
//! # Layer order
//!
//! From the outside in, every request goes through:
//!
//! 1. **fallback** (optional): answers whatever is still an error after everything below gave
//!    up, so it sees the final outcome, never an intermediate one;
//! 2. **retry with budget**: each attempt goes through everything below, so a retry is itself
//!    gated by the breaker and the bulkhead, and timed out on its own. A rejection by the
//!    breaker or bulkhead is not retried (the classifier ignores rejections), so retries never
//!    hammer an open breaker, and the budget caps retry load at 20 % over the base load;
//! 3. **circuit breaker**: sees each attempt's real outcome, timeouts included, but ignores
//!    the bulkhead's rejections, so shedding load does not trip it;
//! 4. **bulkhead**: caps concurrent calls to the dependency and rejects at once when full;
//! 5. **timeout**: bounds one attempt and drops (cancels) it when it runs out.
//!
//! Putting the timeout outside retry would bound all attempts together (that is the retry
//! policy's `deadline`); putting the breaker outside retry would count one failure per
//! request instead of per attempt and let retries run while it is open.
//!
//! # Errors
//!
//! The composed service's error is [`Error<E>`](crate::Error) where `E` is the wrapped
//! service's error: match on it to tell a rejection, a timeout and an inner failure apart.
//!
//! # Clone
//!
//! Every service built from one [`Policy`] (and every clone of those) shares its breaker,
//! bulkhead permits and retry budget. Build one policy per dependency.

mod builder;
mod layer;

pub use self::builder::PolicyBuilder;
pub use self::layer::{PolicyLayer, PolicyService};

use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::Handle;
use crate::classify::DefaultClassifier;
use crate::retry::{CloneReplay, ErrorHint, RetryPolicy};
use crate::timeout::TimeoutConfig;
use tower_layer::Identity;

/// A composed resilience policy for one dependency. Build it with [`Policy::builder`]; wrap
/// services with [`Policy::layer`].
#[derive(Debug)]
pub struct Policy<C = DefaultClassifier, H = ErrorHint, R = CloneReplay> {
    retry: RetryPolicy<C, H, R>,
    breaker: Handle,
    bulkhead: BulkheadLayer,
    timeout: TimeoutConfig,
    classifier: C,
}

impl<C: Clone, H, R> Clone for Policy<C, H, R> {
    fn clone(&self) -> Self {
        Self {
            retry: self.retry.clone(),
            breaker: self.breaker.clone(),
            bulkhead: self.bulkhead.clone(),
            timeout: self.timeout,
            classifier: self.classifier.clone(),
        }
    }
}

impl Policy {
    /// A builder starting from the [defaults](PolicyBuilder#default).
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::new()
    }
}

impl<C: Clone, H, R> Policy<C, H, R> {
    /// A layer that wraps services in this policy.
    pub fn layer(&self) -> PolicyLayer<C, H, R, Identity> {
        PolicyLayer::new(self.clone())
    }

    /// The circuit breaker, for health endpoints and manual control.
    pub const fn breaker(&self) -> &Handle {
        &self.breaker
    }

    /// The retry policy (and its budget).
    pub const fn retry(&self) -> &RetryPolicy<C, H, R> {
        &self.retry
    }

    /// The bulkhead, for its `available()` and `in_flight()` gauges.
    pub const fn bulkhead(&self) -> &BulkheadLayer {
        &self.bulkhead
    }

    /// The per-attempt timeout.
    pub const fn timeout(&self) -> &TimeoutConfig {
        &self.timeout
    }
}
