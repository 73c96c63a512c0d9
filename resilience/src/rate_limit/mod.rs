//! Middleware that admits calls at a steady rate, with bursts, and rejects the rest with
//! [`RateLimited`](crate::error::RateLimited), which carries how long to wait.
//!
//! The limit is a GCRA (generic cell rate algorithm) from the `governor` crate: one atomic
//! compare-and-swap per call, no lock, no allocation. [`RateLimit`] applies one limit to every
//! call; [`KeyedRateLimit`] gives each key (a client IP, a tenant, ...) its own, with the key
//! taken from the request by a closure `Fn(&Req) -> K`.
//!
//! The service keeps the inner service's error type and only asks that it can hold the
//! rejection: `S::Error: From<RateLimited>`. A rejection is returned by the response future of
//! `call`, never by `poll_ready`, and its
//! [`retry_after`](crate::error::RateLimited::retry_after) is the time until the limiter would
//! admit the call (governor's `NotUntil::wait_time_from`); an HTTP server can send it as a
//! `Retry-After` header.
//!
//! ```
//! use std::time::Duration;
//! use sinew_resilience::rate_limit::{RateLimitConfig, RateLimitLayer};
//! use sinew_resilience::error::{BoxError, RateLimited};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
//! // Two calls per second, both at once if they like.
//! let config = RateLimitConfig::builder().per_second(2).build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(config))
//!     .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
//!
//! svc.ready().await?.call(1).await?;
//! svc.ready().await?.call(2).await?;
//! let err = svc.ready().await?.call(3).await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().unwrap();
//! assert_eq!(limited.retry_after(), Duration::from_millis(500));
//!
//! tokio::time::sleep(limited.retry_after()).await;
//! svc.ready().await?.call(3).await?;
//! # Ok(()) }
//! ```
//!
//! # Time
//!
//! The limiters read `tokio::time::Instant`, so `tokio::time::pause` and `advance` drive them
//! in tests, like every other layer of this crate. (`governor`'s own clocks ignore tokio's
//! paused time.)
//!
//! # Memory of the keyed limiter
//!
//! A [`KeyedRateLimit`] remembers every key it has seen: one entry (the key and 8 bytes of
//! state) per key, in a mutex-guarded `HashMap` (`governor`'s default keyed store), until you
//! call [`retain_recent`](KeyedRateLimitLayer::retain_recent), which forgets the keys idle long enough
//! that forgetting them changes nothing, and [`shrink_to_fit`](KeyedRateLimitLayer::shrink_to_fit). With keys an
//! attacker chooses (client IPs), run them periodically from a background task, holding a clone
//! of the [`KeyedRateLimitLayer`]:
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::Duration;
//! use sinew_resilience::rate_limit::{KeyedRateLimitLayer, RateLimitConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let config = RateLimitConfig::builder().per_minute(60).build().unwrap();
//! let layer = KeyedRateLimitLayer::new(config, |req: &(IpAddr, String)| req.0);
//! let housekeeping = layer.clone();
//! tokio::spawn(async move {
//!     let mut every = tokio::time::interval(Duration::from_secs(60));
//!     loop {
//!         every.tick().await;
//!         housekeeping.retain_recent();
//!         housekeeping.shrink_to_fit();
//!     }
//! });
//! # }
//! ```
//!
//! # Differences from tower's `RateLimit`
//!
//! - tower's `RateLimit` keeps its state in the service, so every clone gets a fresh limit
//!   (tower#794, axum#2634); here clones, and every service of one layer, share one limiter.
//! - tower's waits in `poll_ready` until the next window; this one rejects at once with a
//!   `retry_after`, so callers and load balancers can go elsewhere.
//! - GCRA instead of fixed windows: no burst of twice the rate at a window boundary.
//! - There is a keyed variant.

mod clock;
mod config;
pub mod future;
mod layer;
mod service;

pub use self::config::{RateLimitConfig, RateLimitConfigBuilder};
pub use self::layer::{KeyedRateLimitLayer, RateLimitLayer};
pub use self::service::{KeyedRateLimit, RateLimit};
