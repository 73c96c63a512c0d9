//! Response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::state::Permit;
use crate::classify::Classify;
use crate::error::CircuitOpen;

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            // Recorded in place (see `Permit::record_in_place`); a second record is a no-op.
            permit: Permit,
            classifier: C,
        },
        Rejected {
            error: CircuitOpen,
        },
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker): either the inner call,
    /// whose outcome it records when it completes, or an immediate rejection.
    ///
    /// Dropping it before it completes records nothing, and a half-open probe gets its permit
    /// back.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) const fn called(future: F, permit: Permit, classifier: C) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit,
                classifier,
            },
        }
    }

    pub(crate) const fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: From<CircuitOpen>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                classifier,
            } => {
                let result = ready!(future.poll(cx));
                permit.record_in_place(classifier.classify(&result));
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => Poll::Ready(Err(E::from(*error))),
        }
    }
}
