use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::future::{ResponseFuture, State};
use crate::correlation;
use crate::http::server::{accept_correlation, parent_context};
use crate::propagation;

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
        let path = req.uri().path();
        let (service, method) = super::split_path(path);
        let traced = self.layer.trace_health || service != "grpc.health.v1.Health";
        let span = if traced {
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
                correlation_id = Empty,
            )
        } else {
            tracing::Span::none()
        };
        let remote = propagation::extract_otel(req.headers());
        let (id, from_header) =
            accept_correlation(req.headers(), &self.layer.correlation_headers, &remote);
        if !span.is_disabled() {
            span.record("correlation_id", id.as_str());
            let _ = span.set_parent(parent_context(remote));
        }
        let echo_header = self.layer.correlation_headers.first().cloned();
        if !from_header
            && let Some(name) = &echo_header
            && !req.headers().contains_key(name)
            && let Ok(value) = HeaderValue::from_str(id.as_str())
        {
            req.headers_mut().insert(name.clone(), value);
        }
        req.extensions_mut().insert(id.clone());
        let future = {
            let _entered = span.enter();
            correlation::sync_scope(id.clone(), || self.inner.call(req))
        };
        ResponseFuture::new(
            future,
            State {
                span,
                server: true,
                id: Some(id),
                echo_header,
            },
        )
    }
}
