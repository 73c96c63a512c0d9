use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::future::ResponseFuture;
use super::{NoOverride, TimeoutConfig, TimeoutFor, TimeoutLayer};
use crate::error::Elapsed;

/// Middleware that fails a call with [`Elapsed`] when it takes longer than its timeout,
/// dropping (cancelling) the inner future.
///
/// See the [module docs](super) for an example.
#[derive(Clone)]
pub struct Timeout<S, P = NoOverride> {
    inner: S,
    timeout: Duration,
    per_request: P,
}

impl<S> Timeout<S> {
    /// Wraps `inner` so that every call gets the configured timeout.
    pub const fn new(inner: S, config: TimeoutConfig) -> Self {
        Self {
            inner,
            timeout: config.timeout,
            per_request: NoOverride,
        }
    }

    /// A layer that wraps services in `Timeout`.
    pub const fn layer(config: TimeoutConfig) -> TimeoutLayer {
        TimeoutLayer::new(config)
    }
}

impl<S, P> Timeout<S, P> {
    pub(crate) const fn from_parts(inner: S, timeout: Duration, per_request: P) -> Self {
        Self {
            inner,
            timeout,
            per_request,
        }
    }

    /// Lets `per_request` choose the timeout of each request; where it returns `None`, the
    /// configured timeout applies.
    pub fn per_request<P2>(self, per_request: P2) -> Timeout<S, P2> {
        Timeout::from_parts(self.inner, self.timeout, per_request)
    }

    /// The configured timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
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

impl<S, P, Req> Service<Req> for Timeout<S, P>
where
    S: Service<Req>,
    S::Error: From<Elapsed>,
    P: TimeoutFor<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let timeout = self.per_request.timeout_for(&req).unwrap_or(self.timeout);
        tracing::trace!(?timeout, "timeout armed");
        ResponseFuture::new(self.inner.call(req), timeout)
    }
}

impl<S: fmt::Debug, P> fmt::Debug for Timeout<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("per_request", &std::any::type_name::<P>())
            .finish()
    }
}
