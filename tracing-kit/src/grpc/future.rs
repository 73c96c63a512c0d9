//! Response future of the gRPC layers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;

use super::body::GrpcBody;
use crate::correlation::{self, CorrelationId};

pub(crate) struct State {
    pub(crate) span: tracing::Span,
    /// Server, when the request's span would not be sampled (so `span` is disabled): the
    /// remote context, made current while the handler runs.
    pub(crate) remote: Option<opentelemetry::Context>,
    pub(crate) server: bool,
    /// Server: the correlation ID to scope the handler in and echo.
    pub(crate) id: Option<CorrelationId>,
    pub(crate) echo_header: Option<HeaderName>,
}

pin_project! {
    /// Response future of [`GrpcServer`](super::GrpcServer) and
    /// [`GrpcClient`](super::GrpcClient).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<State>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, state: State) -> Self {
        Self {
            inner,
            state: Some(state),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GrpcBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut inner = this.inner;
        let result = match this.state.as_ref() {
            Some(state) => {
                let _entered = state.span.enter();
                let _attached = state.remote.clone().map(opentelemetry::Context::attach);
                match &state.id {
                    Some(id) => {
                        ready!(correlation::sync_scope(id.clone(), || inner
                            .as_mut()
                            .poll(cx)))
                    }
                    None => ready!(inner.as_mut().poll(cx)),
                }
            }
            None => ready!(inner.as_mut().poll(cx)),
        };
        let Some(state) = this.state.take() else {
            return Poll::Ready(result.map(|r| r.map(|b| GrpcBody::new(b, None, false))));
        };
        match result {
            Ok(mut response) => {
                let span = state.span;
                span.record(
                    "http.response.status_code",
                    i64::from(response.status().as_u16()),
                );
                if let (Some(name), Some(id)) = (state.echo_header, &state.id)
                    && !response.headers().contains_key(&name)
                    && let Ok(value) = HeaderValue::from_str(id.as_str())
                {
                    response.headers_mut().insert(name, value);
                }
                let body_span = if let Some(code) = super::grpc_status(response.headers()) {
                    // Trailers-only response: the status is known now.
                    super::record_status(&span, code, state.server);
                    None
                } else if !response.status().is_success() {
                    // Not a gRPC response at all (a proxy error, say).
                    span.record("otel.status_code", "error");
                    None
                } else {
                    Some(span)
                };
                Poll::Ready(Ok(
                    response.map(|b| GrpcBody::new(b, body_span, state.server))
                ))
            }
            Err(error) => {
                state.span.record("otel.status_code", "error");
                Poll::Ready(Err(error))
            }
        }
    }
}
