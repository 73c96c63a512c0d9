//! Middleware that lifts a service's error into [`Error<E>`](crate::Error), so that the layers of
//! this crate can be stacked on services whose own error type (such as `reqwest::Error`) cannot
//! hold their rejections.
//!
//! ```
//! use sinew_resilience::{Error, LiftErrorLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = service_fn(|_: u32| async move { Err::<u32, std::io::Error>(std::io::Error::other("down")) });
//! let svc = LiftErrorLayer::new().layer(svc);
//! let err = svc.oneshot(1).await.unwrap_err();
//! assert!(matches!(err, Error::Inner(_)));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::Error;

/// Layer that wraps services in [`LiftError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LiftErrorLayer {
    _priv: (),
}

impl LiftErrorLayer {
    /// A new lifting layer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for LiftErrorLayer {
    type Service = LiftError<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LiftError { inner }
    }
}

/// Service whose error is [`Error::Inner`] of the wrapped service's error.
#[derive(Debug, Clone)]
pub struct LiftError<S> {
    inner: S,
}

impl<S> LiftError<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        Self { inner }
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

impl<S, Req> Service<Req> for LiftError<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = LiftErrorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        LiftErrorFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// Response future of [`LiftError`].
    #[derive(Debug)]
    pub struct LiftErrorFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for LiftErrorFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(Error::Inner))
    }
}
