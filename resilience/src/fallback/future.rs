//! Future types of the [`Fallback`](super::Fallback) middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::Recover;

pin_project! {
    /// Response future of [`Fallback`](super::Fallback).
    #[derive(Debug)]
    pub struct ResponseFuture<F, R> {
        #[pin]
        inner: F,
        recover: R,
    }
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) const fn new(inner: F, recover: R) -> Self {
        Self { inner, recover }
    }
}

impl<F, R, T, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<T, E>>,
    R: Recover<T, E>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        Poll::Ready(this.recover.recover(result))
    }
}
