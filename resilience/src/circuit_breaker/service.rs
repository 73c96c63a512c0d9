use std::task::{Context, Poll};

use tower_service::Service;

use super::future::ResponseFuture;
use super::{CircuitBreakerLayer, Config, Handle};
use crate::classify::{Classify, DefaultClassifier};
use crate::error::CircuitOpen;

/// Middleware that stops calling a failing service, and probes it before trusting it again.
///
/// See the [module docs](super) for the state machine and an example.
///
/// # Clone
///
/// Clones share one breaker (the [`Handle`]); each clone has its own copy of the inner service.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, C = DefaultClassifier> {
    inner: S,
    handle: Handle,
    classifier: C,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in the breaker behind `handle`, with the [`DefaultClassifier`].
    pub const fn new(inner: S, handle: Handle) -> Self {
        Self {
            inner,
            handle,
            classifier: DefaultClassifier::new(),
        }
    }

    /// A layer with a new breaker built from `config`.
    pub fn layer(config: Config) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(config)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Wraps `inner` in the breaker behind `handle`, classifying outcomes with `classifier`.
    pub const fn with_classifier(inner: S, handle: Handle, classifier: C) -> Self {
        Self {
            inner,
            handle,
            classifier,
        }
    }

    /// The breaker.
    pub const fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The wrapped service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: From<CircuitOpen>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Rejections are decided in `call`: an error here would poison wrappers like `Buffer`.
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.handle.try_acquire() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
