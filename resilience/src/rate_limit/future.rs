//! Future types of the [`RateLimit`](super::RateLimit) and
//! [`KeyedRateLimit`](super::KeyedRateLimit) middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::error::RateLimited;

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit) and
    /// [`KeyedRateLimit`](super::KeyedRateLimit).
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
        Admitted { #[pin] inner: F },
        Limited { rejection: RateLimited },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self {
            state: State::Admitted { inner },
        }
    }

    pub(crate) fn limited(rejection: RateLimited) -> Self {
        Self {
            state: State::Limited { rejection },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<RateLimited>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted { inner } => inner.poll(cx),
            StateProj::Limited { rejection } => Poll::Ready(Err((*rejection).into())),
        }
    }
}
