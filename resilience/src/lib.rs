#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod classify;
pub mod error;
mod lift;
#[cfg(feature = "retry")]
pub mod retry;

// BREAKER #[cfg(feature = "circuit-breaker")]
// BREAKER pub mod circuit_breaker;

pub use crate::error::{BoxError, Error};
pub use crate::lift::{LiftError, LiftErrorFuture, LiftErrorLayer};
#[cfg(feature = "retry")]
pub use crate::retry::{Retry, RetryLayer, retry};

// BREAKER #[cfg(feature = "circuit-breaker")]
// BREAKER pub use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
