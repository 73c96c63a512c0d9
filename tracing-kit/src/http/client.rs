use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;

use super::future::ClientResponseFuture;
use crate::correlation;
use crate::propagation;

/// Layer that traces outgoing HTTP requests and propagates context; see the
/// [module docs](super).
///
/// # Default
///
/// The correlation ID is sent under `x-correlation-id`.
#[derive(Clone, Debug)]
pub struct HttpClientLayer {
    correlation_header: Arc<HeaderName>,
}

impl Default for HttpClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClientLayer {
    /// The [default](HttpClientLayer#default) layer.
    pub fn new() -> Self {
        Self {
            correlation_header: Arc::new(HeaderName::from_static(correlation::DEFAULT_HEADERS[0])),
        }
    }

    /// The header the correlation ID is sent under.
    #[must_use]
    pub fn correlation_header(mut self, header: HeaderName) -> Self {
        self.correlation_header = Arc::new(header);
        self
    }
}

impl<S> Layer<S> for HttpClientLayer {
    type Service = HttpClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpClient {
            inner,
            correlation_header: self.correlation_header.clone(),
        }
    }
}

/// Service that traces outgoing HTTP requests; built by [`HttpClientLayer`].
#[derive(Clone, Debug)]
pub struct HttpClient<S> {
    inner: S,
    correlation_header: Arc<HeaderName>,
}

impl<S> HttpClient<S> {
    /// Wraps `inner` with the default configuration.
    pub fn new(inner: S) -> Self {
        HttpClientLayer::new().layer(inner)
    }

    /// A [default](HttpClientLayer#default) layer.
    pub fn layer() -> HttpClientLayer {
        HttpClientLayer::new()
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

/// Opens the client span (a child of the current span).
pub(crate) fn client_span(
    method: &str,
    url_full: &str,
    host: Option<&str>,
    port: Option<u16>,
) -> tracing::Span {
    tracing::info_span!(
        "HTTP client request",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method,
        http.response.status_code = Empty,
        url.full = url_full,
        server.address = host,
        server.port = port.map(i64::from),
        correlation_id = Empty,
    )
}

/// Injects the span's context, with the current correlation ID in baggage and under
/// `header` (an existing header is kept).
pub(crate) fn inject_into(span: &tracing::Span, headers: &mut HeaderMap, header: &HeaderName) {
    let current = correlation::current();
    if let Some(id) = &current {
        span.record("correlation_id", id.as_str());
        if !headers.contains_key(header)
            && let Ok(value) = HeaderValue::from_str(id.as_str())
        {
            headers.insert(header.clone(), value);
        }
    }
    propagation::inject_span(span, headers);
}

impl<S, B> Service<Request<B>> for HttpClient<S>
where
    S: Service<Request<B>>,
    S::Response: super::future::ResponseStatus,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ClientResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let uri = req.uri();
        let span = client_span(
            req.method().as_str(),
            &super::redacted_url(uri),
            uri.host(),
            uri.port_u16()
                .or_else(|| super::default_port(uri.scheme_str())),
        );
        inject_into(&span, req.headers_mut(), &self.correlation_header);
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ClientResponseFuture::new(future, span)
    }
}

#[cfg(feature = "reqwest")]
pub(crate) fn reqwest_span(req: &reqwest::Request) -> tracing::Span {
    let url = req.url();
    let full = if url.username().is_empty() && url.password().is_none() {
        std::borrow::Cow::Borrowed(url.as_str())
    } else {
        let mut clean = url.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        std::borrow::Cow::Owned(clean.to_string())
    };
    client_span(
        req.method().as_str(),
        &full,
        url.host_str(),
        url.port_or_known_default(),
    )
}

#[cfg(feature = "reqwest")]
impl<S> Service<reqwest::Request> for HttpClient<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ClientResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: reqwest::Request) -> Self::Future {
        let span = reqwest_span(&req);
        inject_into(&span, req.headers_mut(), &self.correlation_header);
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ClientResponseFuture::new(future, span)
    }
}
