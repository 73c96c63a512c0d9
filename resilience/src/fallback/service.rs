use std::task::{Context, Poll};

use tower_service::Service;

use super::Recover;
use super::future::ResponseFuture;

/// Middleware that answers with a fallback response when a call fails in a way its
/// [`Recover`] policy selects.
///
/// See the [module docs](super) for an example.
#[derive(Debug, Clone)]
pub struct Fallback<S, R> {
    inner: S,
    recover: R,
}

impl<S, R> Fallback<S, R> {
    /// Wraps `inner`; `recover` decides which results are replaced, and by what. The
    /// constructors of [`FallbackLayer`](super::FallbackLayer) build the common policies.
    pub const fn new(inner: S, recover: R) -> Self {
        Self { inner, recover }
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

impl<S, R, Req> Service<Req> for Fallback<S, R>
where
    S: Service<Req>,
    R: Recover<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.recover.clone())
    }
}
