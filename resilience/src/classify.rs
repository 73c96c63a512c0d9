//! Deciding what counts as a success, a failure, or neither.
//!
//! One [`Classify`] implementation is shared by the circuit breaker (what to record), the retry
//! layer (what to retry) and the composed [`Policy`](crate::Policy). It sees the whole
//! `Result`, so a response can be a failure (an HTTP 503) and an error can be a success (a
//! "not found" that your domain expects).
//!
//! ```
//! use sinew_resilience::classify::{Classify, Outcome};
//!
//! // Any closure over `&Result<Res, E>` is a classifier.
//! let classifier = |r: &Result<u16, std::io::Error>| match r {
//!     Ok(status) if *status >= 500 => Outcome::Failure,
//!     Ok(_) => Outcome::Success,
//!     Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! };
//! assert_eq!(classifier.classify(&Ok(503)), Outcome::Failure);
//! assert_eq!(classifier.classify(&Ok(404)), Outcome::Success);
//! ```

use crate::error::{ErrorKind, ResilienceError};

/// How a completed call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded. The breaker records a success; retry stops.
    Success,
    /// The call failed. The breaker records a failure; retry may try again.
    Failure,
    /// The call neither succeeded nor failed for resilience purposes: the breaker records nothing
    /// (a half-open probe gets its permit back) and retry does not try again.
    Ignored,
}

/// Classifies the result of a call.
pub trait Classify<Res, E> {
    /// Decides how `result` counts.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every `Ok` is a success and every `Err` a failure, except that
/// rejections by this crate's layers (circuit open, bulkhead full, rate limited) are
/// [`Outcome::Ignored`].
///
/// Ignoring rejections keeps a bulkhead that sheds load from tripping the breaker around it, and
/// keeps retry from hammering a breaker that is open. Use
/// [`DefaultClassifier::count_rejections`] to count them as failures instead (opossum's
/// behaviour).
///
/// # Default
///
/// Rejections are ignored; timeouts and inner errors are failures.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier {
    count_rejections: bool,
}

impl DefaultClassifier {
    /// The default classifier.
    pub const fn new() -> Self {
        Self {
            count_rejections: false,
        }
    }

    /// Counts rejections from inner layers as failures too.
    pub const fn count_rejections(mut self, yes: bool) -> Self {
        self.count_rejections = yes;
        self
    }

    /// Classifies an error the way this classifier does.
    pub fn classify_error<E: ResilienceError + ?Sized>(&self, err: &E) -> Outcome {
        classify_kind(err.kind(), self.count_rejections)
    }
}

pub(crate) const fn classify_kind(kind: ErrorKind, count_rejections: bool) -> Outcome {
    if kind.is_rejection() && !count_rejections {
        Outcome::Ignored
    } else {
        Outcome::Failure
    }
}

impl<Res, E: ResilienceError> Classify<Res, E> for DefaultClassifier {
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => self.classify_error(e),
        }
    }
}

#[cfg(feature = "http")]
pub use self::http_classifier::HttpClassifier;

#[cfg(feature = "http")]
mod http_classifier {
    use super::{Classify, DefaultClassifier, Outcome};
    use crate::error::ResilienceError;
    use http::StatusCode;

    /// Classifies `http::Response`s by status: 5xx, 408 (request timeout) and 429 (too many
    /// requests) are failures; every other status, 4xx included, is a success. Errors are
    /// classified as [`DefaultClassifier`] does.
    ///
    /// ```
    /// use http::{Response, StatusCode};
    /// use sinew_resilience::classify::{Classify, HttpClassifier, Outcome};
    /// use sinew_resilience::BoxError;
    ///
    /// let c = HttpClassifier::new();
    /// let r503: Result<_, BoxError> = Ok(Response::builder().status(503).body(()).unwrap());
    /// let r404: Result<_, BoxError> = Ok(Response::builder().status(404).body(()).unwrap());
    /// assert_eq!(c.classify(&r503), Outcome::Failure);
    /// assert_eq!(c.classify(&r404), Outcome::Success);
    ///
    /// // Treat 404 as a failure too:
    /// let strict = HttpClassifier::with_failure_statuses(|s: StatusCode| s.is_server_error() || s == 404);
    /// assert_eq!(strict.classify(&r404), Outcome::Failure);
    /// ```
    ///
    /// # Default
    ///
    /// Failure statuses are 5xx, 408 and 429; rejections by inner layers are ignored.
    #[derive(Debug, Clone, Copy)]
    pub struct HttpClassifier {
        is_failure: fn(StatusCode) -> bool,
        errors: DefaultClassifier,
    }

    impl Default for HttpClassifier {
        fn default() -> Self {
            Self::new()
        }
    }

    fn default_failure(status: StatusCode) -> bool {
        status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
    }

    impl HttpClassifier {
        /// The default HTTP classifier.
        pub const fn new() -> Self {
            Self {
                is_failure: default_failure,
                errors: DefaultClassifier::new(),
            }
        }

        /// A classifier that calls a status a failure when `is_failure` says so.
        pub const fn with_failure_statuses(is_failure: fn(StatusCode) -> bool) -> Self {
            Self {
                is_failure,
                errors: DefaultClassifier::new(),
            }
        }

        /// Counts rejections from inner layers as failures too.
        pub const fn count_rejections(mut self, yes: bool) -> Self {
            self.errors = self.errors.count_rejections(yes);
            self
        }

        /// Classifies a status code alone.
        pub fn classify_status(&self, status: StatusCode) -> Outcome {
            if (self.is_failure)(status) {
                Outcome::Failure
            } else {
                Outcome::Success
            }
        }
    }

    #[cfg(feature = "reqwest")]
    impl<E: ResilienceError> Classify<reqwest::Response, E> for HttpClassifier {
        fn classify(&self, result: &Result<reqwest::Response, E>) -> Outcome {
            match result {
                Ok(res) => self.classify_status(res.status()),
                Err(e) => self.errors.classify_error(e),
            }
        }
    }

    impl<B, E: ResilienceError> Classify<http::Response<B>, E> for HttpClassifier {
        fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
            match result {
                Ok(res) => self.classify_status(res.status()),
                Err(e) => self.errors.classify_error(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BoxError, BulkheadFull, Elapsed, Error};
    use std::time::Duration;

    #[test]
    fn default_ignores_rejections_and_fails_timeouts() {
        let c = DefaultClassifier::new();
        let r: Result<(), Error<()>> = Err(BulkheadFull::new(1).into());
        assert_eq!(c.classify(&r), Outcome::Ignored);
        let r: Result<(), Error<()>> = Err(Elapsed::new(Duration::from_secs(1)).into());
        assert_eq!(c.classify(&r), Outcome::Failure);
        let r: Result<(), BoxError> = Err(Box::new(BulkheadFull::new(1)));
        assert_eq!(c.count_rejections(true).classify(&r), Outcome::Failure);
        let r: Result<(), BoxError> = Ok(());
        assert_eq!(c.classify(&r), Outcome::Success);
    }
}
