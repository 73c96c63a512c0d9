//! Middleware that retries failed requests, with exponential backoff and jitter, a total
//! deadline, server hints (`Retry-After`, `grpc-retry-pushback-ms`) and a retry budget.
//!
//! A [`RetryPolicy`] holds every setting and is shared by the [`Retry`] service, its
//! [`RetryLayer`] and the [`retry()`] helper for plain async code. The service's error is the
//! inner service's own error; when the policy gives up, the last result is returned unchanged.
//!
//! ```
//! use std::time::Duration;
//! use sinew_resilience::retry::{Jitter, RetryLayer, RetryPolicy};
//! use sinew_resilience::BoxError;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(3)
//!     .base_delay(Duration::from_millis(100))
//!     .max_delay(Duration::from_secs(5))
//!     .jitter(Jitter::Decorrelated)
//!     .deadline(Duration::from_secs(10))
//!     .build()?;
//!
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let svc = service_fn({
//!     let calls = calls.clone();
//!     move |name: &'static str| {
//!         let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         async move {
//!             if n == 0 { Err::<String, BoxError>("connection reset".into()) } else { Ok(format!("hello {name}")) }
//!         }
//!     }
//! });
//! let svc = RetryLayer::new(policy).layer(svc);
//! assert_eq!(svc.oneshot("world").await?, "hello world");
//! # Ok(()) }
//! ```
//!
//! # What is retried
//!
//! Only results the classifier ([`DefaultClassifier`](crate::classify::DefaultClassifier) by
//! default, [`HttpClassifier`](crate::classify::HttpClassifier) for HTTP) calls
//! [`Outcome::Failure`](crate::classify::Outcome::Failure); see [`RetryPolicy`] for the full
//! list of conditions. Requests are replayed through the [`Replay`] trait: by cloning by
//! default, by a closure such as `|r: &reqwest::Request| r.try_clone()`, or with feature `http`
//! by `HttpReplay`, which also retries only idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT,
//! DELETE) unless the request carries an `Idempotency-Key` header or the policy sets
//! [`retry_non_idempotent`](RetryPolicyBuilder::retry_non_idempotent). Bodies that are not
//! `Clone` can be buffered up to a size cap into a replayable `ReplayBody` by `ReplayBodyLayer`
//! (placed outside the retry layer) or `buffer_request`.
//!
//! # Randomness
//!
//! Each request draws its jitter from its own random stream, seeded from a counter shared by
//! the policy's clones mixed with a base seed (random, or fixed with
//! [`RetryPolicyBuilder::seed`] for tests). tower's `ExponentialBackoffMaker` clones one RNG
//! into every backoff, so concurrent requests retry in lockstep; these do not.
//!
//! # Differs from tower's `Retry`
//!
//! tower's `Retry` leaves attempts, backoff and budget to a hand-written `Policy`; this one is
//! configured, not programmed, honours server hints, keeps the budget lock-free, and counts
//! the first call in `max_attempts`. Put a timeout layer *inside* it to bound each attempt, and
//! the [`deadline`](RetryPolicyBuilder::deadline) to bound them all.

mod backoff;
#[cfg(feature = "http")]
mod body;
mod budget;
mod config;
pub mod future;
mod helper;
mod hint;
#[cfg(feature = "http")]
mod http;
mod layer;
#[cfg(all(test, sinew_loom))]
mod loom_budget;
mod replay;
mod rng;
mod service;

pub use self::backoff::{Backoff, Jitter};
#[cfg(feature = "http")]
pub use self::body::{BufferBody, ReplayBody, ReplayBodyLayer, buffer_request};
pub use self::budget::{RetryBudget, RetryBudgetBuilder};
pub use self::config::{RetryPolicy, RetryPolicyBuilder};
pub use self::helper::retry;
pub use self::hint::{ErrorHint, Hint, NoHint, RetryHint};
#[cfg(feature = "http")]
pub use self::http::{HttpHint, HttpReplay};
pub use self::layer::RetryLayer;
pub use self::replay::{CloneReplay, Replay};
pub use self::service::Retry;
