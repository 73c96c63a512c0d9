//! Middleware that limits how many calls run at once and rejects the rest with
//! [`BulkheadFull`](crate::error::BulkheadFull).
//!
//! A bulkhead keeps one slow dependency from tying up every task of a server. Calls over the
//! limit are rejected at once (the default), or after waiting up to
//! [`max_wait`](BulkheadConfigBuilder::max_wait) for a permit. A call's permit is held
//! by its response future and given back when the future completes or is dropped.
//!
//! The service keeps the inner service's error type and only asks that it can hold the
//! rejection: `S::Error: From<BulkheadFull>`. The rejection is returned by the response future
//! of `call`, never by `poll_ready`, so the bulkhead is safe to put under tower's `Buffer`.
//! With [`DefaultClassifier`](crate::classify::DefaultClassifier) a rejection is
//! [`Outcome::Ignored`](crate::classify::Outcome::Ignored): shedding load does not trip a
//! circuit breaker around the bulkhead unless you ask for it with
//! [`count_rejections`](crate::classify::DefaultClassifier::count_rejections).
//!
//! ```
//! use sinew_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
//! use sinew_resilience::error::{BoxError, BulkheadFull};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let config = BulkheadConfig::builder().max_concurrent(1).build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(BulkheadLayer::new(config))
//!     .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) }));
//!
//! let first = svc.ready().await?.call(1); // holds the only permit until it completes
//! let err = svc.ready().await?.call(2).await.unwrap_err();
//! assert!(err.is::<BulkheadFull>());
//! assert_eq!(first.await?, 2);
//! assert_eq!(svc.ready().await?.call(3).await?, 6); // the permit is free again
//! # Ok(()) }
//! ```
//!
//! # Differences from tower's `ConcurrencyLimit`
//!
//! - tower's `ConcurrencyLimit` only queues callers in `poll_ready` (tower#793); this one
//!   rejects, at once or after a bounded wait, so overload turns into fast errors instead of
//!   growing latency.
//! - The permits are shared by every clone and by every service made by one
//!   [`BulkheadLayer`], which also reports [`available`](BulkheadLayer::available) and
//!   [`in_flight`](BulkheadLayer::in_flight).
//! - In reject mode `poll_ready` only delegates to the inner service; in wait mode it waits for
//!   a permit (at most `max_wait`) and reserves it for the next call.

mod config;
pub mod future;
mod layer;
mod service;

pub use self::config::{BulkheadConfig, BulkheadConfigBuilder};
pub use self::layer::BulkheadLayer;
pub use self::service::Bulkhead;
