use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::future::{ResponseFuture, State};
use crate::correlation::{self, CorrelationId};
use crate::http::server::{Found, Remote, baggage_or_new, id_header_value, parent_context};

/// Layer that traces incoming gRPC calls; see the [module docs](super).
///
/// # Default
///
/// Correlation ID read from `x-correlation-id` then `x-request-id` metadata and echoed under
/// `x-correlation-id`; every call is traced except the standard health check
/// (`/grpc.health.v1.Health/*`).
///
/// # Clone
///
/// The configuration is behind an `Arc`; clones share it.
#[derive(Clone)]
pub struct GrpcServerLayer {
    correlation_headers: Arc<[HeaderName]>,
    trace_health: bool,
}

impl fmt::Debug for GrpcServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcServerLayer")
            .field("correlation_headers", &self.correlation_headers)
            .field("trace_health", &self.trace_health)
            .finish()
    }
}

impl Default for GrpcServerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServerLayer {
    /// The [default](GrpcServerLayer#default) layer.
    pub fn new() -> Self {
        Self {
            correlation_headers: correlation::DEFAULT_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            trace_health: false,
        }
    }

    /// Metadata keys the correlation ID is read from, in order; the first is also the one it
    /// is echoed under. An empty list keeps the default.
    #[must_use]
    pub fn correlation_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = HeaderName>,
    {
        let headers: Vec<HeaderName> = headers.into_iter().collect();
        if !headers.is_empty() {
            self.correlation_headers = headers.into();
        }
        self
    }

    /// Whether `grpc.health.v1.Health` calls are traced too.
    #[must_use]
    pub fn health_traced(mut self, traced: bool) -> Self {
        self.trace_health = traced;
        self
    }
}

impl<S> Layer<S> for GrpcServerLayer {
    type Service = GrpcServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServer {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service that traces incoming gRPC calls; built by [`GrpcServerLayer`].
#[derive(Clone, Debug)]
pub struct GrpcServer<S> {
    inner: S,
    layer: GrpcServerLayer,
}

impl<S> GrpcServer<S> {
    /// Wraps `inner` with the configuration of `layer`.
    pub fn new(inner: S, layer: &GrpcServerLayer) -> Self {
        layer.layer(inner)
    }

    /// A [default](GrpcServerLayer#default) layer.
    pub fn layer() -> GrpcServerLayer {
        GrpcServerLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for GrpcServer<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<super::body::GrpcBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let names = &self.layer.correlation_headers;
        let path = req.uri().path();
        let (service, method) = super::split_path(path);
        let traced = self.layer.trace_health || service != "grpc.health.v1.Health";
        // The remote context first (before any span exists), read straight from
        // `traceparent` when that is all there is; a request whose span would be dropped gets
        // no span, but its remote context is still made current around the handler.
        let found = Found::scan(req.headers(), names);
        let (remote, unsampled) = match Remote::of(&found, req.headers()) {
            Remote::Unsampled(remote) => (remote, true),
            Remote::Traced(remote) => (Some(remote), false),
        };
        let (id, from_header) = match found.correlation(req.headers(), names) {
            Some((id, _)) => (id, true),
            None => (
                remote
                    .as_ref()
                    .map_or_else(CorrelationId::generate, baggage_or_new),
                false,
            ),
        };
        let span = if traced && !unsampled {
            tracing::info_span!(
                "gRPC request",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = Empty,
                http.response.status_code = Empty,
                correlation_id = id.as_str(),
            )
        } else {
            tracing::Span::none()
        };
        // With a span, its context is what handlers see; without one, the remote context.
        let remote = if span.is_disabled() {
            remote.filter(|_| unsampled)
        } else {
            let _ = span.set_parent(parent_context(remote.unwrap_or_default()));
            None
        };
        let echo_header = names.first().cloned();
        if !from_header
            && let Some(name) = &echo_header
            && !req.headers().contains_key(name)
            && let Some(value) = id_header_value(&id)
        {
            req.headers_mut().insert(name.clone(), value);
        }
        req.extensions_mut().insert(id.clone());
        let future = {
            let _entered = span.enter();
            let _attached = remote.clone().map(opentelemetry::Context::attach);
            correlation::sync_scope(id.clone(), || self.inner.call(req))
        };
        ResponseFuture::new(
            future,
            State {
                span,
                remote,
                server: true,
                id: Some(id),
                echo_header,
            },
        )
    }
}
