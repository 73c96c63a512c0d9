//! Circuit breaker acceptance cases 1–30 of `shared/reference/resilience.md` (c), plus the
//! tower service, the model-based property test and the contention test.
#![cfg(feature = "circuit-breaker")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod cases;
mod model;
mod service;
