//! Server and layer hints about when (and whether) to retry.

use std::time::Duration;

use crate::error::ResilienceError;

/// What a result says about retrying, beyond the classifier's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hint {
    /// No hint: wait the backoff delay.
    None,
    /// Wait this long instead of the backoff delay (`Retry-After`, `grpc-retry-pushback-ms`,
    /// [`ResilienceError::retry_after`]).
    After(Duration),
    /// Do not retry this result (a negative or malformed `grpc-retry-pushback-ms`).
    Stop,
}

/// Reads a [`Hint`] from a failed result.
///
/// The policy asks only about results its classifier called
/// [`Outcome::Failure`](crate::classify::Outcome::Failure). Implemented by [`ErrorHint`] (the
/// default), [`NoHint`], `HttpHint` (feature `http`) and any `Fn(&Result<Res, E>) -> Hint`, so a
/// tonic user can read `grpc-retry-pushback-ms` from `tonic::Status::metadata()` with a closure.
pub trait RetryHint<Res, E> {
    /// The hint carried by `result`.
    fn hint(&self, result: &Result<Res, E>) -> Hint;
}

impl<F, Res, E> RetryHint<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Hint,
{
    fn hint(&self, result: &Result<Res, E>) -> Hint {
        self(result)
    }
}

/// Takes the hint from [`ResilienceError::retry_after`] on errors (a rate limiter's or open
/// breaker's wait); responses carry none. The default [`RetryHint`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorHint {
    _priv: (),
}

impl ErrorHint {
    /// The error hint reader.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<Res, E: ResilienceError> RetryHint<Res, E> for ErrorHint {
    fn hint(&self, result: &Result<Res, E>) -> Hint {
        match result {
            Err(e) => e.retry_after().map_or(Hint::None, Hint::After),
            Ok(_) => Hint::None,
        }
    }
}

/// Never hints: always wait the backoff delay. Works with any error type.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHint {
    _priv: (),
}

impl NoHint {
    /// The hint reader that never hints.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<Res, E> RetryHint<Res, E> for NoHint {
    fn hint(&self, _: &Result<Res, E>) -> Hint {
        Hint::None
    }
}
