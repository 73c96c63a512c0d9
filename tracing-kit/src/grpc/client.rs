use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;

use super::future::{ResponseFuture, State};
use crate::correlation;
use crate::http::client::inject_into;

/// Layer that traces outgoing gRPC calls and propagates context in the request metadata;
/// see the [module docs](super).
///
/// # Default
///
/// The correlation ID is sent under `x-correlation-id`.
#[derive(Clone, Debug)]
pub struct GrpcClientLayer {
    correlation_header: Arc<HeaderName>,
}

impl Default for GrpcClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcClientLayer {
    /// The [default](GrpcClientLayer#default) layer.
    pub fn new() -> Self {
        Self {
            correlation_header: Arc::new(HeaderName::from_static(correlation::DEFAULT_HEADERS[0])),
        }
    }

    /// The metadata key the correlation ID is sent under.
    #[must_use]
    pub fn correlation_header(mut self, header: HeaderName) -> Self {
        self.correlation_header = Arc::new(header);
        self
    }
}

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClient {
            inner,
            correlation_header: self.correlation_header.clone(),
        }
    }
}

/// Service that traces outgoing gRPC calls; built by [`GrpcClientLayer`].
#[derive(Clone, Debug)]
pub struct GrpcClient<S> {
    inner: S,
    correlation_header: Arc<HeaderName>,
}

impl<S> GrpcClient<S> {
    /// Wraps `inner` with the default configuration.
    pub fn new(inner: S) -> Self {
        GrpcClientLayer::new().layer(inner)
    }

    /// A [default](GrpcClientLayer#default) layer.
    pub fn layer() -> GrpcClientLayer {
        GrpcClientLayer::new()
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

impl<S, B, ResBody> Service<Request<B>> for GrpcClient<S>
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
        let uri = req.uri();
        let (service, method) = super::split_path(uri.path());
        let span = tracing::info_span!(
            "gRPC client request",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            http.response.status_code = Empty,
            server.address = uri.host(),
            server.port = uri.port_u16().map(i64::from),
            correlation_id = Empty,
        );
        inject_into(&span, req.headers_mut(), &self.correlation_header);
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture::new(
            future,
            State {
                span,
                remote: None,
                server: false,
                id: None,
                echo_header: None,
            },
        )
    }
}
