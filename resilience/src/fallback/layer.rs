use std::sync::Arc;

use tower_layer::Layer;

use super::{Fallback, OnAnyError, OnError, OnFailure, OnRejection, Value};

/// Layer that applies the [`Fallback`] middleware.
///
/// The type parameter is the [`Recover`](super::Recover) policy, built by one of the
/// constructors.
#[derive(Debug, Clone, Copy)]
pub struct FallbackLayer<R> {
    recover: R,
}

impl<P, H> FallbackLayer<OnError<P, H>> {
    /// Replaces each error for which `predicate(&err)` is `true` with `handler(err)`.
    ///
    /// `predicate: Fn(&E) -> bool`, `handler: Fn(E) -> Res`.
    pub const fn new(predicate: P, handler: H) -> Self {
        Self {
            recover: OnError { predicate, handler },
        }
    }
}

impl<H> FallbackLayer<OnRejection<H>> {
    /// Replaces rejections by inner layers (circuit open, bulkhead full, rate limited; see
    /// [`ErrorKind::is_rejection`](crate::error::ErrorKind::is_rejection)) with `handler(err)`.
    /// Other errors, timeouts included, pass through.
    ///
    /// `handler: Fn(E) -> Res`, with `E: ResilienceError`.
    pub const fn on_rejection(handler: H) -> Self {
        Self {
            recover: OnRejection { handler },
        }
    }
}

impl<H> FallbackLayer<OnAnyError<H>> {
    /// Replaces every error with `handler(err)`.
    ///
    /// `handler: Fn(E) -> Res`.
    pub const fn on_any_error(handler: H) -> Self {
        Self {
            recover: OnAnyError { handler },
        }
    }
}

impl<Res> FallbackLayer<Value<Res>> {
    /// Replaces every error with a clone of `value` (`Res: Clone`).
    pub fn value(value: Res) -> Self {
        Self {
            recover: Value {
                value: Arc::new(value),
            },
        }
    }
}

impl<C, H> FallbackLayer<OnFailure<C, H>> {
    /// Replaces every result that `classifier` calls
    /// [`Outcome::Failure`](crate::classify::Outcome::Failure), successful responses included
    /// (an HTTP 503 under the `http` feature's `HttpClassifier`), with `handler(result)`.
    ///
    /// `classifier: Classify<Res, E>`, `handler: Fn(Result<Res, E>) -> Res`.
    pub const fn on_failure(classifier: C, handler: H) -> Self {
        Self {
            recover: OnFailure {
                classifier,
                handler,
            },
        }
    }
}

impl<R> FallbackLayer<R> {
    /// A layer with a [`Recover`](super::Recover) policy of your own.
    pub const fn from_recover(recover: R) -> Self {
        Self { recover }
    }
}

impl<S, R: Clone> Layer<S> for FallbackLayer<R> {
    type Service = Fallback<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::new(inner, self.recover.clone())
    }
}
