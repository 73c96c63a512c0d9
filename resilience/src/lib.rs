#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod classify;
pub mod error;
mod lift;
#[cfg(any(feature = "circuit-breaker", feature = "retry"))]
mod sync;

#[cfg(feature = "retry")]
pub mod retry;

#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;

#[cfg(feature = "bulkhead")]
pub mod bulkhead;
#[cfg(feature = "fallback")]
pub mod fallback;
#[cfg(feature = "policy")]
pub mod policy;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "timeout")]
pub mod timeout;

pub use crate::error::{BoxError, Error};
pub use crate::lift::{LiftError, LiftErrorFuture, LiftErrorLayer};
#[cfg(feature = "retry")]
pub use crate::retry::{Retry, RetryLayer, retry};

#[cfg(feature = "circuit-breaker")]
pub use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};

#[cfg(feature = "bulkhead")]
pub use crate::bulkhead::{Bulkhead, BulkheadLayer};
#[cfg(feature = "fallback")]
pub use crate::fallback::{Fallback, FallbackLayer};
#[cfg(feature = "policy")]
pub use crate::policy::Policy;
#[cfg(feature = "rate-limit")]
pub use crate::rate_limit::{KeyedRateLimit, KeyedRateLimitLayer, RateLimit, RateLimitLayer};
#[cfg(feature = "timeout")]
pub use crate::timeout::{Timeout, TimeoutLayer};
