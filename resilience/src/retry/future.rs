//! Future types for [`Retry`](super::Retry).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower_service::Service;

use super::config::{Attempts, RetryPolicy};
use super::hint::RetryHint;
use super::replay::Replay;
use crate::classify::Classify;

pin_project! {
    /// Response future of [`Retry`](super::Retry).
    ///
    /// A concrete state machine: no allocation of its own. It keeps a clone of the service for
    /// the retries and a copy of the request made before each call that may be retried.
    pub struct ResponseFuture<S, F, Req, P> {
        // The copy to send on the next attempt; `None` when there is none.
        request: Option<Req>,
        service: S,
        policy: P,
        attempts: Attempts,
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // Backing off before the next attempt.
        // Boxed: a `Sleep` is large, and is needed only once a retry is scheduled, so the
        // success path moves a smaller future.
        Waiting { sleep: Pin<Box<Sleep>> },
        // Waiting for the service to be ready for the next attempt.
        Retrying,
    }
}

impl<S, F, Req, P> std::fmt::Debug for ResponseFuture<S, F, Req, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Called { .. } => "Called",
            State::Waiting { .. } => "Waiting",
            State::Retrying => "Retrying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("calls", &self.attempts.calls())
            .field("replayable", &self.request.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, F, Req, P> ResponseFuture<S, F, Req, P> {
    pub(crate) const fn new(
        request: Option<Req>,
        service: S,
        policy: P,
        attempts: Attempts,
        future: F,
    ) -> Self {
        Self {
            request,
            service,
            policy,
            attempts,
            state: State::Called { future },
        }
    }
}

impl<S, Req, C, H, R> Future for ResponseFuture<S, S::Future, Req, RetryPolicy<C, H, R>>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error>,
    H: RetryHint<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    let replayable = this.request.is_some();
                    match this.policy.decide(&result, this.attempts, replayable) {
                        None => return Poll::Ready(result),
                        Some(delay) if delay.is_zero() => this.state.set(State::Retrying),
                        Some(delay) => this.state.set(State::Waiting {
                            sleep: Box::pin(sleep(delay)),
                        }),
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(Err(e));
                    }
                    let Some(request) = this.request.take() else {
                        // `decide` schedules a retry only when `replayable` was true, and nothing
                        // takes the copy between that decision and this point.
                        unreachable!("retry scheduled without a request copy")
                    };
                    if this.policy.has_attempts_left(this.attempts.calls()) {
                        *this.request = this.policy.replay(&request);
                    }
                    let future = this.service.call(request);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

#[cfg(feature = "http")]
pub use self::buffer::BufferBodyFuture;

#[cfg(feature = "http")]
mod buffer {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use ::http::Request;
    use ::http::request::Parts;
    use http_body::Body;
    use pin_project_lite::pin_project;
    use tower_service::Service;

    use super::super::body::{Collector, ReplayBody};

    pin_project! {
        /// Response future of [`BufferBody`](crate::retry::BufferBody): reads the body, then
        /// calls the inner service.
        ///
        /// # Panics
        ///
        /// If polled again after it completed with a body error.
        pub struct BufferBodyFuture<S, B, F> {
            #[pin]
            state: State<S, B, F>,
        }
    }

    struct Pending<S, B> {
        service: S,
        parts: Parts,
        body: B,
        collector: Collector,
    }

    pin_project! {
        #[project = StateProj]
        enum State<S, B, F> {
            // `None` once the future has completed with a body error.
            Buffering { pending: Option<Pending<S, B>> },
            Called { #[pin] future: F },
        }
    }

    impl<S, B, F> std::fmt::Debug for BufferBodyFuture<S, B, F> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let state = match self.state {
                State::Buffering { .. } => "Buffering",
                State::Called { .. } => "Called",
            };
            f.debug_struct("BufferBodyFuture")
                .field("state", &state)
                .finish_non_exhaustive()
        }
    }

    impl<S, B, F> BufferBodyFuture<S, B, F> {
        pub(crate) fn new(service: S, req: Request<B>, collector: Collector) -> Self {
            let (parts, body) = req.into_parts();
            Self {
                state: State::Buffering {
                    pending: Some(Pending {
                        service,
                        parts,
                        body,
                        collector,
                    }),
                },
            }
        }
    }

    impl<S, B> Future for BufferBodyFuture<S, B, S::Future>
    where
        S: Service<Request<ReplayBody<B>>>,
        B: Body + Unpin,
        B::Error: Into<S::Error>,
    {
        type Output = Result<S::Response, S::Error>;

        #[allow(
            clippy::panic,
            reason = "polling a future after it completed is a contract violation"
        )]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut this = self.project();
            loop {
                match this.state.as_mut().project() {
                    StateProj::Buffering { pending } => {
                        let Some(p) = pending.as_mut() else {
                            panic!("BufferBodyFuture polled after completion");
                        };
                        let complete = match ready!(p.collector.poll_collect(&mut p.body, cx)) {
                            Ok(complete) => complete,
                            Err(e) => {
                                *pending = None;
                                return Poll::Ready(Err(e.into()));
                            }
                        };
                        if let Some(Pending {
                            mut service,
                            parts,
                            body,
                            collector,
                        }) = pending.take()
                        {
                            let req = Request::from_parts(parts, collector.finish(complete, body));
                            let future = service.call(req);
                            this.state.set(State::Called { future });
                        }
                    }
                    StateProj::Called { future } => return future.poll(cx),
                }
            }
        }
    }
}
