//! Middleware that answers with a fallback response when a call fails in a way you choose.
//!
//! The [`Recover`] policy sees each finished call and either passes it through or replaces it
//! with a response of your own. [`FallbackLayer`] builds the common ones:
//!
//! | constructor | replaces |
//! |---|---|
//! | [`FallbackLayer::new(predicate, handler)`](FallbackLayer::new) | errors for which `predicate(&err)` is true |
//! | [`FallbackLayer::on_rejection(handler)`](FallbackLayer::on_rejection) | rejections by inner layers (circuit open, bulkhead full, rate limited) |
//! | [`FallbackLayer::on_any_error(handler)`](FallbackLayer::on_any_error) | every error |
//! | [`FallbackLayer::value(res)`](FallbackLayer::value) | every error, with a clone of `res` |
//! | [`FallbackLayer::on_failure(classifier, handler)`](FallbackLayer::on_failure) | every result the [`Classify`](crate::classify::Classify) calls a failure, `Ok` responses (a 503) included |
//!
//! The service's error stays the inner service's; errors that are not replaced pass through
//! unchanged. Put the fallback outermost, so it sees the rejections of every other layer.
//!
//! ```
//! use std::time::Duration;
//! use sinew_resilience::bulkhead::{BulkheadConfig, BulkheadLayer};
//! use sinew_resilience::fallback::FallbackLayer;
//! use sinew_resilience::BoxError;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
//! let mut svc = ServiceBuilder::new()
//!     // When the bulkhead is full, answer from a (pretend) cache instead of failing.
//!     .layer(FallbackLayer::on_rejection(|_err: BoxError| "cached"))
//!     .layer(BulkheadLayer::new(BulkheadConfig::builder().max_concurrent(1).build()?))
//!     .service(service_fn(|_: ()| async {
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!         Ok::<_, BoxError>("fresh")
//!     }));
//!
//! let first = svc.ready().await?.call(());
//! assert_eq!(svc.ready().await?.call(()).await?, "cached");
//! assert_eq!(first.await?, "fresh");
//! # Ok(()) }
//! ```
//!
//! # Differences from other fallbacks
//!
//! tower has no fallback layer. Unlike tower-resilience's, this one boxes nothing, clones no
//! response unless it is used, and can replace successful responses that a classifier calls
//! failures.

pub mod future;
mod layer;
mod recover;
mod service;

pub use self::layer::FallbackLayer;
pub use self::recover::{OnAnyError, OnError, OnFailure, OnRejection, Recover, Value};
pub use self::service::Fallback;
