use std::fmt;
use std::task::{Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::error::NoInstances;
use super::future::ResponseFuture;
use crate::registry::Watch;

/// Fails `poll_ready` with [`NoInstances`] while the watch's snapshot is empty, instead of
/// waiting as [`Balance`](tower::balance::p2c::Balance) does; otherwise defers to the inner
/// service. Before the first snapshot arrives it waits (through the inner service).
///
/// Readiness is latched: once `poll_ready` returned `Ready(Ok)`, it keeps returning it without
/// polling the inner service until `call`.
pub struct FailFastWhenEmpty<S> {
    inner: S,
    watch: Watch,
    ready: bool,
}

impl<S> FailFastWhenEmpty<S> {
    /// Wraps `inner`, checking `watch` for emptiness.
    pub fn new(inner: S, watch: Watch) -> Self {
        Self {
            inner,
            watch,
            ready: false,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for FailFastWhenEmpty<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        if self.watch.is_known_empty() {
            return Poll::Ready(Err(NoInstances::new(self.watch.service()).into()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.ready = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.ready = false;
        ResponseFuture::new(self.inner.call(req))
    }
}

impl<S: fmt::Debug> fmt::Debug for FailFastWhenEmpty<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailFastWhenEmpty")
            .field("inner", &self.inner)
            .field("watch", &self.watch)
            .finish()
    }
}
