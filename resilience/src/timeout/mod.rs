//! Middleware that fails a call with [`Elapsed`](crate::error::Elapsed) when it takes too long,
//! dropping (and so cancelling) the inner future.
//!
//! The timeout of each call is the configured one unless a [`TimeoutFor`] policy picks another
//! for that request: any `Fn(&Req) -> Option<Duration>` works, and with the `http` feature
//! `FromExtension` reads a `RequestTimeout` extension from an `http::Request`.
//!
//! The service keeps the inner service's error type and only asks that it can hold the
//! rejection: `S::Error: From<Elapsed>`, which both [`Error<E>`](crate::Error) and
//! [`BoxError`](crate::BoxError) satisfy.
//!
//! ```
//! use std::time::Duration;
//! use sinew_resilience::timeout::{TimeoutConfig, TimeoutLayer};
//! use sinew_resilience::error::{BoxError, Elapsed};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
//! let config = TimeoutConfig::builder()
//!     .timeout(Duration::from_millis(100))
//!     .build()?;
//! let svc = ServiceBuilder::new()
//!     // Requests for "slow" may take a second.
//!     .layer(TimeoutLayer::new(config).per_request(|req: &&str| {
//!         (*req == "slow").then_some(Duration::from_secs(1))
//!     }))
//!     .service(service_fn(|_req: &str| async {
//!         tokio::time::sleep(Duration::from_millis(500)).await;
//!         Ok::<_, BoxError>("done")
//!     }));
//!
//! let err = svc.clone().oneshot("fast").await.unwrap_err();
//! assert!(err.is::<Elapsed>());
//! assert_eq!(svc.oneshot("slow").await?, "done");
//! # Ok(()) }
//! ```
//!
//! # Differences from tower's `Timeout`
//!
//! - The error stays the inner service's (`S::Error: From<Elapsed>`) instead of becoming a
//!   `BoxError`, so an [`Error<E>`](crate::Error) stack never allocates.
//! - Requests can carry their own timeout (tower#798).
//! - The inner future is dropped as soon as the timeout fires, not only when the response
//!   future is dropped.
//! - A zero timeout is a configuration error.
//! - Time comes from `tokio::time`, so `tokio::time::pause` controls it in tests.

mod config;
pub mod future;
mod layer;
mod per_request;
mod service;

pub use self::config::{TimeoutConfig, TimeoutConfigBuilder};
pub use self::layer::TimeoutLayer;
#[cfg(feature = "http")]
pub use self::per_request::{FromExtension, RequestTimeout};
pub use self::per_request::{NoOverride, TimeoutFor};
pub use self::service::Timeout;
