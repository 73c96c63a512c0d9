//! Errors produced by the layers of this crate.
//!
//! Every layer keeps the inner service's error type and only requires that it can be built from
//! the layer's own rejection: a [`CircuitBreaker`](crate::CircuitBreaker) needs
//! `S::Error: From<CircuitOpen>`, a [`Timeout`](crate::Timeout) needs `S::Error: From<Elapsed>`,
//! and so on. Two error types satisfy all of them:
//!
//! - [`Error<E>`], this crate's enum, which holds a rejection without allocating;
//! - [`BoxError`], tower's usual boxed error, from which each rejection is recovered with
//!   `downcast_ref`.
//!
//! Wrap a service whose error is neither (a `reqwest::Client`, say) in
//! [`LiftErrorLayer`](crate::LiftErrorLayer) first, or use the composed
//! [`Policy`](crate::Policy), which does it for you.
//!
//! Either way, [`ResilienceError`] tells callers which layer rejected a call, and for how long
//! to back off, without matching on strings. The `Display` text of these errors is meant for
//! people and is not part of the API.
//!
//! ```
//! use std::time::Duration;
//! use sinew_resilience::error::{BoxError, CircuitOpen, ErrorKind, ResilienceError};
//!
//! # fn rejected() -> BoxError {
//! #     Box::new(sinew_resilience::error::RateLimited::new(Duration::from_secs(1)))
//! # }
//! let err: BoxError = rejected();
//! if let Some(open) = err.downcast_ref::<CircuitOpen>() {
//!     println!("breaker open, retry in {:?}", open.retry_after());
//! }
//! assert_eq!(err.kind(), ErrorKind::RateLimited);
//! assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// A type-erased error, as used throughout tower.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A call was rejected because the circuit breaker is open (or half-open with every probe taken).
///
/// Creating and returning one never allocates when the service error is [`Error<E>`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open; retry after {retry_after:?}")]
pub struct CircuitOpen {
    retry_after: Duration,
}

impl CircuitOpen {
    /// A rejection that suggests waiting `retry_after` before calling again.
    pub const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// How long until the breaker will admit a call again (zero if a probe may be admitted now).
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// A call was rejected because the bulkhead had no free permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead is full ({max_concurrent} calls in flight)")]
pub struct BulkheadFull {
    max_concurrent: usize,
}

impl BulkheadFull {
    /// A rejection from a bulkhead that admits `max_concurrent` calls at once.
    pub const fn new(max_concurrent: usize) -> Self {
        Self { max_concurrent }
    }

    /// The bulkhead's concurrency limit.
    pub const fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }
}

/// A call was rejected by a rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry after {retry_after:?}")]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    /// A rejection that suggests waiting `retry_after` before calling again.
    pub const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// How long until the limiter will admit a call again.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// A call did not complete within its timeout; the inner future was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request timed out after {after:?}")]
pub struct Elapsed {
    after: Duration,
}

impl Elapsed {
    /// A timeout that fired after `after`.
    pub const fn new(after: Duration) -> Self {
        Self { after }
    }

    /// The timeout that elapsed.
    pub const fn after(&self) -> Duration {
        self.after
    }
}

/// The error of a service wrapped in this crate's layers.
///
/// `Inner` holds the wrapped service's own error; every other variant is a decision taken by one
/// of the layers. Matching on the variant (or calling [`ResilienceError::kind`]) is how callers
/// tell them apart.
///
/// It implements [`std::error::Error`] whenever `E` is `Debug + Display`, so it also works with
/// an `E` that is itself a [`BoxError`]. `Display` is that of the wrapped error or rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    /// The circuit breaker rejected the call.
    CircuitOpen(CircuitOpen),
    /// The bulkhead rejected the call.
    BulkheadFull(BulkheadFull),
    /// The rate limiter rejected the call.
    RateLimited(RateLimited),
    /// The call timed out.
    Timeout(Elapsed),
    /// The inner service failed.
    Inner(E),
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CircuitOpen(e) => e.fmt(f),
            Self::BulkheadFull(e) => e.fmt(f),
            Self::RateLimited(e) => e.fmt(f),
            Self::Timeout(e) => e.fmt(f),
            Self::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> StdError for Error<E> {}

impl<E> Error<E> {
    /// Returns the inner service's error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// Returns a reference to the inner service's error, if that is what this is.
    pub const fn inner(&self) -> Option<&E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// `true` when a layer refused the call without calling the inner service
    /// (circuit open, bulkhead full or rate limited).
    pub const fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::CircuitOpen(_) | Self::BulkheadFull(_) | Self::RateLimited(_)
        )
    }

    /// `true` when the call timed out.
    pub const fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// Converts into a [`BoxError`], unwrapping `Inner` so the inner error stays downcastable.
    pub fn into_box(self) -> BoxError
    where
        E: Into<BoxError>,
    {
        match self {
            Self::CircuitOpen(e) => Box::new(e),
            Self::BulkheadFull(e) => Box::new(e),
            Self::RateLimited(e) => Box::new(e),
            Self::Timeout(e) => Box::new(e),
            Self::Inner(e) => e.into(),
        }
    }
}

impl<E> From<CircuitOpen> for Error<E> {
    fn from(e: CircuitOpen) -> Self {
        Self::CircuitOpen(e)
    }
}

impl<E> From<BulkheadFull> for Error<E> {
    fn from(e: BulkheadFull) -> Self {
        Self::BulkheadFull(e)
    }
}

impl<E> From<RateLimited> for Error<E> {
    fn from(e: RateLimited) -> Self {
        Self::RateLimited(e)
    }
}

impl<E> From<Elapsed> for Error<E> {
    fn from(e: Elapsed) -> Self {
        Self::Timeout(e)
    }
}

/// What kind of failure an error is, as far as the layers of this crate can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Rejected by a circuit breaker.
    CircuitOpen,
    /// Rejected by a bulkhead.
    BulkheadFull,
    /// Rejected by a rate limiter.
    RateLimited,
    /// A timeout fired.
    Timeout,
    /// Any other error: the inner service failed.
    Inner,
}

impl ErrorKind {
    /// `true` for the kinds where a layer refused the call without calling the inner service.
    pub const fn is_rejection(self) -> bool {
        matches!(
            self,
            Self::CircuitOpen | Self::BulkheadFull | Self::RateLimited
        )
    }
}

/// Inspects errors produced by this crate's layers, whatever error type carries them.
///
/// Implemented for [`Error<E>`] and [`BoxError`] (by downcasting). Classifiers use it to tell
/// rejections and timeouts from the inner service's own failures.
pub trait ResilienceError {
    /// Which layer, if any, produced this error.
    fn kind(&self) -> ErrorKind;

    /// How long the rejecting layer suggests waiting before trying again, if it said.
    fn retry_after(&self) -> Option<Duration>;
}

impl<E> ResilienceError for Error<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::CircuitOpen(_) => ErrorKind::CircuitOpen,
            Self::BulkheadFull(_) => ErrorKind::BulkheadFull,
            Self::RateLimited(_) => ErrorKind::RateLimited,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Inner(_) => ErrorKind::Inner,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::CircuitOpen(e) => Some(e.retry_after()),
            Self::RateLimited(e) => Some(e.retry_after()),
            _ => None,
        }
    }
}

fn dyn_kind(err: &(dyn StdError + 'static)) -> ErrorKind {
    if err.is::<CircuitOpen>() {
        ErrorKind::CircuitOpen
    } else if err.is::<BulkheadFull>() {
        ErrorKind::BulkheadFull
    } else if err.is::<RateLimited>() {
        ErrorKind::RateLimited
    } else if err.is::<Elapsed>() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Inner
    }
}

fn dyn_retry_after(err: &(dyn StdError + 'static)) -> Option<Duration> {
    if let Some(e) = err.downcast_ref::<CircuitOpen>() {
        Some(e.retry_after())
    } else {
        err.downcast_ref::<RateLimited>()
            .map(RateLimited::retry_after)
    }
}

impl ResilienceError for BoxError {
    fn kind(&self) -> ErrorKind {
        dyn_kind(&**self)
    }

    fn retry_after(&self) -> Option<Duration> {
        dyn_retry_after(&**self)
    }
}

impl ResilienceError for Box<dyn StdError + Send + 'static> {
    fn kind(&self) -> ErrorKind {
        dyn_kind(&**self)
    }

    fn retry_after(&self) -> Option<Duration> {
        dyn_retry_after(&**self)
    }
}

/// A configuration value was out of range. Returned by every `build()` in this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A ratio or percentage was outside its allowed range (or not a number).
    #[error("`{field}` must be within {min}..={max}, got {value}")]
    OutOfRange {
        /// The offending setting.
        field: &'static str,
        /// The value given.
        value: f64,
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// A count or duration that must be positive was zero.
    #[error("`{field}` must be greater than zero")]
    Zero {
        /// The offending setting.
        field: &'static str,
    },
    /// Two settings contradict each other.
    #[error("`{field}` ({value}) must not be less than `{other}` ({other_value})")]
    LessThan {
        /// The setting that is too small.
        field: &'static str,
        /// Its value, formatted.
        value: String,
        /// The setting it must not be less than.
        other: &'static str,
        /// That setting's value, formatted.
        other_value: String,
    },
    /// A value was larger than this crate supports.
    #[error("`{field}` must be at most {max}, got {value}")]
    TooLarge {
        /// The offending setting.
        field: &'static str,
        /// The value given.
        value: u64,
        /// Largest allowed value.
        max: u64,
    },
}

impl ConfigError {
    /// Checks that `value` lies in `min..=max` (and is not NaN).
    #[cfg_attr(
        not(any(feature = "circuit-breaker", feature = "retry")),
        allow(dead_code, reason = "used by some features only")
    )]
    pub(crate) fn check_range(
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, Self> {
        if value.is_nan() || value < min || value > max {
            Err(Self::OutOfRange {
                field,
                value,
                min,
                max,
            })
        } else {
            Ok(value)
        }
    }

    /// Checks that a duration is non-zero.
    #[cfg_attr(
        not(any(feature = "circuit-breaker", feature = "retry", feature = "timeout")),
        allow(dead_code, reason = "used by some features only")
    )]
    pub(crate) fn check_nonzero(field: &'static str, value: Duration) -> Result<Duration, Self> {
        if value.is_zero() {
            Err(Self::Zero { field })
        } else {
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_recovered_from_boxed_errors() {
        let e: BoxError = Box::new(CircuitOpen::new(Duration::from_secs(3)));
        assert_eq!(e.kind(), ErrorKind::CircuitOpen);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let e: BoxError = Box::new(Elapsed::new(Duration::from_secs(1)));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e: BoxError = "boom".into();
        assert_eq!(e.kind(), ErrorKind::Inner);
        assert_eq!(e.retry_after(), None);
    }

    #[test]
    fn enum_into_box_keeps_inner_downcastable() {
        let e: Error<std::io::Error> = Error::Inner(std::io::Error::other("x"));
        assert!(e.into_box().is::<std::io::Error>());
        let e: Error<std::io::Error> = BulkheadFull::new(2).into();
        assert!(e.is_rejection());
        assert!(e.into_box().is::<BulkheadFull>());
    }

    #[test]
    fn range_checks_reject_nan() {
        assert!(ConfigError::check_range("x", f64::NAN, 0.0, 1.0).is_err());
        assert!(ConfigError::check_range("x", 1.5, 0.0, 1.0).is_err());
        assert!(ConfigError::check_range("x", 0.5, 0.0, 1.0).is_ok());
    }
}
