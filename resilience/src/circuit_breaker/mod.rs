//! Middleware that stops calling a failing service, and probes it before trusting it again.
//!
//! The state machine is resilience4j's, made lock-free for async Rust:
//!
//! - **Closed**: calls pass. Each outcome enters a sliding window, count-based (the last N
//!   calls) or time-based (the last N seconds), from which old calls really leave. Once the
//!   window holds [`minimum_calls`](ConfigBuilder::minimum_calls), the breaker opens when the
//!   failure rate, or the rate of calls slower than a threshold, reaches its limit (`>=`).
//! - **Open**: calls are rejected at once with [`CircuitOpen`](crate::error::CircuitOpen),
//!   which carries `retry_after`. The wait is fixed or grows with each consecutive opening
//!   ([`OpenWait`]).
//!   Without [`automatic_transition(true)`](ConfigBuilder::automatic_transition) an open
//!   breaker moves to half-open **only when a call tries it** after the wait: nothing else
//!   moves it. A load balancer that skips instances whose breaker is open never makes that
//!   call, so it must turn automatic transition on (a timer then half-opens the breaker when
//!   the wait ends).
//! - **Half-open**: exactly [`half_open_permits`](ConfigBuilder::half_open_permits) probes are
//!   admitted; everyone else is rejected. When they have all finished, their failure rate
//!   decides between closing and re-opening ([`HalfOpenDecision`]). A probe whose future is
//!   dropped gives its permit back and records nothing, and a max wait ends a half-open state
//!   whose probes never finish.
//! - **Disabled**, **forced open** and **metrics only** are set by hand through the
//!   [`Handle`], which also resets the breaker, opens it for a given time, and exposes a
//!   [`Metrics`] snapshot and a `tokio::sync::watch` of the [`State`].
//!
//! A [`Classify`](crate::classify::Classify) implementation decides what counts as a success, a
//! failure or neither, for errors and responses alike: with
//! [`HttpClassifier`](crate::classify::HttpClassifier) an HTTP 503 is a failure and a 404 a
//! success.
//!
//! Closed calls take no lock and allocate nothing: the state is one atomic word, the count
//! window a ring of bytes whose packed counters take one atomic add per recorded outcome. While
//! the window is full of successes (a healthy upstream), a success changes nothing in it and is
//! recorded with two plain loads, so threads sharing one breaker do not contend. A breaker that
//! lives as long as the process can be created with [`Handle::new_static`], which also skips
//! the reference counting per call (see `docs/benchmarks.md` for the figures).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use sinew_resilience::circuit_breaker::{Config, State};
//! use sinew_resilience::error::ResilienceError;
//! use sinew_resilience::{CircuitBreakerLayer, Error};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = CircuitBreakerLayer::new(
//!     Config::builder()
//!         .minimum_calls(4)
//!         .failure_rate_threshold(50.0)
//!         .open_wait(sinew_resilience::circuit_breaker::OpenWait::Fixed(Duration::from_secs(10)))
//!         .build()?,
//! );
//! let breaker = layer.handle().clone();
//!
//! // A service that always fails, with errors this crate's layers can add to.
//! let mut svc = layer.layer(service_fn(|_: ()| async { Err::<(), _>(Error::Inner("down")) }));
//!
//! for _ in 0..4 {
//!     let _ = svc.ready().await?.call(()).await;
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // Now calls are rejected without reaching the service.
//! let err = svc.ready().await?.call(()).await.unwrap_err();
//! assert!(matches!(err, Error::CircuitOpen(_)));
//! assert!(err.retry_after().unwrap() <= Duration::from_secs(10));
//! # Ok(())
//! # }
//! ```
//!
//! # Differs from
//!
//! - resilience4j: the same states, rates and defaults where they are safe, plus drop-safe
//!   half-open permits and a max half-open wait that is on by default.
//! - tower-resilience 0.13: its count window never evicts, so after 1000 successes a 100-call
//!   window needs 1000 failures to open; here it needs 50. No `Mutex` or `Box` per call.
//! - Polly and opossum: more than one half-open probe, decided on their rate.

mod config;
mod event;
pub mod future;
mod layer;
mod permits;
mod registry;
mod service;
mod state;
mod window;

#[cfg(all(test, sinew_loom))]
mod loom_state;

pub use self::config::{
    AfterHalfOpenTimeout, Config, ConfigBuilder, HalfOpenDecision, OpenWait, SlidingWindow,
};
pub use self::event::{Event, Metrics, State, TransitionReason};
pub use self::layer::CircuitBreakerLayer;
pub use self::registry::{KeyedCircuitBreaker, KeyedCircuitBreakerLayer, Registry};
pub use self::service::CircuitBreaker;
pub use self::state::{Handle, IllegalTransition, Permit};
