use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

use super::future::ResponseFuture;
use super::{BulkheadConfig, BulkheadLayer};
use crate::error::BulkheadFull;

type WaitForPermit = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send + Sync>>;

/// Middleware that limits how many calls are in flight at once and rejects the calls over the
/// limit with [`BulkheadFull`], at once or after a bounded wait.
///
/// See the [module docs](super) for an example.
///
/// # Clone
///
/// Clones share the permits (they sit behind an `Arc`). A clone does not inherit a permit
/// reserved by `poll_ready`.
pub struct Bulkhead<S> {
    inner: S,
    semaphore: Arc<Semaphore>,
    max_concurrent: usize,
    max_wait: Option<Duration>,
    /// Wait mode: the permit reserved by `poll_ready` for the next call.
    reserved: Option<OwnedSemaphorePermit>,
    /// Wait mode: the pending wait for a permit.
    waiting: Option<WaitForPermit>,
    /// Wait mode: `poll_ready` gave up waiting; the next call is rejected.
    gave_up: bool,
}

impl<S> Bulkhead<S> {
    /// Wraps `inner` in a bulkhead of its own (shared by the clones of the returned service).
    pub fn new(inner: S, config: BulkheadConfig) -> Self {
        Self::with_semaphore(
            inner,
            config,
            Arc::new(Semaphore::new(config.max_concurrent)),
        )
    }

    /// A layer whose services share one bulkhead.
    pub fn layer(config: BulkheadConfig) -> BulkheadLayer {
        BulkheadLayer::new(config)
    }

    pub(crate) fn with_semaphore(
        inner: S,
        config: BulkheadConfig,
        semaphore: Arc<Semaphore>,
    ) -> Self {
        Self {
            inner,
            semaphore,
            max_concurrent: config.max_concurrent,
            max_wait: config.max_wait,
            reserved: None,
            waiting: None,
            gave_up: false,
        }
    }

    /// The number of free permits.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// The number of permits taken (calls in flight, plus permits reserved by `poll_ready`
    /// in wait mode).
    pub fn in_flight(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.semaphore.available_permits())
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

    fn reject<F>(&self) -> ResponseFuture<F> {
        tracing::debug!(
            max_concurrent = self.max_concurrent,
            "bulkhead full; call rejected"
        );
        ResponseFuture::rejected(BulkheadFull::new(self.max_concurrent))
    }

    /// Wait mode: reserves a permit for the next call, waiting at most `max_wait`.
    /// Ready once a permit is reserved or the wait gave up.
    fn poll_reserve(&mut self, cx: &mut Context<'_>, max_wait: Duration) -> Poll<()> {
        if self.reserved.is_some() || self.gave_up {
            return Poll::Ready(());
        }
        let waiting = match &mut self.waiting {
            Some(waiting) => waiting,
            None => match self.semaphore.clone().try_acquire_owned() {
                Ok(permit) => {
                    self.reserved = Some(permit);
                    return Poll::Ready(());
                }
                Err(_) => {
                    let semaphore = self.semaphore.clone();
                    self.waiting.insert(Box::pin(async move {
                        tokio::time::timeout(max_wait, semaphore.acquire_owned())
                            .await
                            .ok()
                            .and_then(Result::ok)
                    }))
                }
            },
        };
        let permit = ready!(waiting.as_mut().poll(cx));
        self.waiting = None;
        match permit {
            Some(permit) => self.reserved = Some(permit),
            None => self.gave_up = true,
        }
        Poll::Ready(())
    }
}

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req>,
    S::Error: From<BulkheadFull>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(max_wait) = self.max_wait {
            ready!(self.poll_reserve(cx, max_wait));
            if self.gave_up {
                // The next call will be rejected without reaching the inner service.
                return Poll::Ready(Ok(()));
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let permit = match self.reserved.take() {
            Some(permit) => Some(permit),
            None if self.gave_up => {
                self.gave_up = false;
                None
            }
            None => self.semaphore.clone().try_acquire_owned().ok(),
        };
        match permit {
            Some(permit) => {
                tracing::trace!(
                    available = self.semaphore.available_permits(),
                    "bulkhead permit taken"
                );
                ResponseFuture::new(self.inner.call(req), permit)
            }
            None => self.reject(),
        }
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            semaphore: self.semaphore.clone(),
            max_concurrent: self.max_concurrent,
            max_wait: self.max_wait,
            reserved: None,
            waiting: None,
            gave_up: false,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_wait", &self.max_wait)
            .field("available", &self.semaphore.available_permits())
            .field("reserved", &self.reserved.is_some())
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}
