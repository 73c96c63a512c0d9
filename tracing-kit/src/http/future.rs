//! Response futures of the HTTP layers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;

use crate::correlation::{self, CorrelationId};

pub(crate) struct ServerState {
    pub(crate) scope: Scope,
    pub(crate) id: CorrelationId,
    /// The response header to echo the ID under.
    pub(crate) echo: Option<Echo>,
}

/// Where and how the correlation ID is echoed in the response.
pub(crate) struct Echo {
    pub(crate) name: HeaderName,
    /// The incoming header's value, or the value already written into the request; `None`:
    /// built from the ID when the response comes.
    pub(crate) value: Option<HeaderValue>,
}

/// What the inner future is polled inside.
pub(crate) enum Scope {
    /// The request's span.
    Span(tracing::Span),
    /// No span (the request is not sampled): the remote context, if any, is made current so
    /// that logs and outgoing calls still carry its trace ID.
    Remote(Option<opentelemetry::Context>),
}

pin_project! {
    /// Response future of [`HttpServer`](super::HttpServer): polls the inner future inside the
    /// request span and the correlation-ID scope, then records the status and echoes the ID.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<ServerState>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, state: Option<ServerState>) -> Self {
        Self { inner, state }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("traced", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(state) = this.state.as_ref() else {
            return this.inner.poll(cx);
        };
        let mut inner = this.inner;
        let result = match &state.scope {
            Scope::Span(span) => {
                let _entered = span.enter();
                ready!(correlation::sync_scope(state.id.clone(), || inner
                    .as_mut()
                    .poll(cx)))
            }
            Scope::Remote(remote) => {
                let _attached = remote.clone().map(opentelemetry::Context::attach);
                ready!(correlation::sync_scope(state.id.clone(), || inner
                    .as_mut()
                    .poll(cx)))
            }
        };
        let Some(state) = this.state.take() else {
            return Poll::Ready(result);
        };
        match result {
            Ok(mut response) => {
                if let Scope::Span(span) = &state.scope {
                    let status = response.status();
                    span.record("http.response.status_code", i64::from(status.as_u16()));
                    if status.is_server_error() {
                        span.record("otel.status_code", "error");
                    }
                }
                if let Some(Echo { name, value }) = state.echo
                    && let http::header::Entry::Vacant(slot) = response.headers_mut().entry(name)
                    && let Some(value) = value.or_else(|| super::server::id_header_value(&state.id))
                {
                    slot.insert(value);
                }
                Poll::Ready(Ok(response))
            }
            Err(error) => {
                if let Scope::Span(span) = &state.scope {
                    span.record("otel.status_code", "error");
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

/// A response that has an HTTP status code: `http::Response` and, with feature `reqwest`,
/// `reqwest::Response`. Used by the client layer to record `http.response.status_code`.
pub trait ResponseStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl<B> ResponseStatus for Response<B> {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(feature = "reqwest")]
impl ResponseStatus for reqwest::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

pin_project! {
    /// Response future of [`HttpClient`](super::HttpClient): polls the inner future inside the
    /// client span, then records the status (4xx and 5xx are errors for a client).
    pub struct ClientResponseFuture<F> {
        #[pin]
        inner: F,
        span: Option<tracing::Span>,
    }
}

impl<F> ClientResponseFuture<F> {
    pub(crate) fn new(inner: F, span: tracing::Span) -> Self {
        Self {
            inner,
            span: Some(span),
        }
    }
}

impl<F> fmt::Debug for ClientResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientResponseFuture")
            .finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ClientResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    R: ResponseStatus,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.span.as_ref() {
            Some(span) => {
                let _entered = span.enter();
                ready!(this.inner.poll(cx))
            }
            None => ready!(this.inner.poll(cx)),
        };
        if let Some(span) = this.span.take() {
            record_client_result(&span, result.as_ref().map(ResponseStatus::status_code));
        }
        Poll::Ready(result)
    }
}

pub(crate) fn record_client_result<E>(span: &tracing::Span, result: Result<u16, E>) {
    match result {
        Ok(status) => {
            span.record("http.response.status_code", i64::from(status));
            if status >= 400 {
                span.record("otel.status_code", "error");
            }
        }
        Err(_) => {
            span.record("otel.status_code", "error");
        }
    }
}
