//! Future types of the [`Timeout`](super::Timeout) middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::Elapsed;

pin_project! {
    /// Response future of [`Timeout`](super::Timeout).
    ///
    /// When the timeout fires, the inner future is dropped at once (before the error is
    /// returned), which cancels the work it was doing.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        #[pin]
        sleep: Sleep,
        after: Duration,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Running { #[pin] inner: F },
        Done,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, after: Duration) -> Self {
        Self {
            state: State::Running { inner },
            sleep: tokio::time::sleep(after),
            after,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<Elapsed>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Running { inner } = this.state.as_mut().project() {
            if let Poll::Ready(out) = inner.poll(cx) {
                this.state.set(State::Done);
                return Poll::Ready(out);
            }
        } else {
            // Polled after completion (a contract violation): answer with the timeout again
            // rather than panicking.
            return Poll::Ready(Err(Elapsed::new(*this.after).into()));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => {
                // Drop (cancel) the inner future now, not when this future is dropped.
                this.state.set(State::Done);
                tracing::debug!(timeout = ?this.after, "request timed out");
                Poll::Ready(Err(Elapsed::new(*this.after).into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
