//! The response body wrapper that reads `grpc-status` from the trailers.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body that records `rpc.grpc.status_code` from its trailers on the span it
    /// holds, and ends that span when the body ends or is dropped.
    pub struct GrpcBody<B> {
        #[pin]
        inner: B,
        span: Option<tracing::Span>,
        server: bool,
    }
}

impl<B> GrpcBody<B> {
    pub(crate) fn new(inner: B, span: Option<tracing::Span>, server: bool) -> Self {
        Self {
            inner,
            span,
            server,
        }
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for GrpcBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBody")
            .field("pending_status", &self.span.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for GrpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(span) = this.span.take()
                    && let Some(code) = super::grpc_status(trailers)
                {
                    super::record_status(&span, code, *this.server);
                }
            }
            Some(Err(_)) => {
                if let Some(span) = this.span.take() {
                    span.record("otel.status_code", "error");
                }
            }
            None => {
                this.span.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
