#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod classify;
pub mod error;
mod lift;
mod sync;

#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;

pub use crate::error::{BoxError, Error};
pub use crate::lift::{LiftError, LiftErrorFuture, LiftErrorLayer};

#[cfg(feature = "circuit-breaker")]
pub use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
