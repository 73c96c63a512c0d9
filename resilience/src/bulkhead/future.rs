//! Future types of the [`Bulkhead`](super::Bulkhead) middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::BulkheadFull;

pin_project! {
    /// Response future of [`Bulkhead`](super::Bulkhead).
    ///
    /// It holds the call's permit and gives it back when the inner future completes or when this
    /// future is dropped.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Running { #[pin] inner: F, permit: Option<OwnedSemaphorePermit> },
        Rejected { rejection: BulkheadFull },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, permit: OwnedSemaphorePermit) -> Self {
        Self {
            state: State::Running {
                inner,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected(rejection: BulkheadFull) -> Self {
        Self {
            state: State::Rejected { rejection },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<BulkheadFull>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Running { inner, permit } => {
                let out = std::task::ready!(inner.poll(cx));
                // Free the permit as soon as the call is done.
                drop(permit.take());
                Poll::Ready(out)
            }
            StateProj::Rejected { rejection } => Poll::Ready(Err((*rejection).into())),
        }
    }
}
