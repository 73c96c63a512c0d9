use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::future::{Echo, ResponseFuture, Scope, ServerState};
use crate::correlation::{self, CorrelationId};
use crate::propagation;

/// Paths that [`HttpServerLayer`] does not trace by default.
pub const DEFAULT_SKIPPED_PATHS: [&str; 7] = [
    "/health", "/healthz", "/ready", "/readyz", "/live", "/livez", "/metrics",
];

type RouteFn = dyn Fn(&http::Method, &http::Uri) -> Option<String> + Send + Sync;
type FilterFn = dyn Fn(&http::Method, &http::Uri) -> bool + Send + Sync;

#[derive(Clone)]
struct Config {
    correlation_headers: Vec<HeaderName>,
    skipped_paths: Vec<Cow<'static, str>>,
    /// Bit `min(len, 63)` set for the length of each skipped path: most requests are told
    /// apart from every skipped path by their length alone.
    skipped_lengths: u64,
    filter: Option<Arc<FilterFn>>,
    route: Option<Arc<RouteFn>>,
    request_header: bool,
}

fn length_bit(path: &str) -> u64 {
    1 << path.len().min(63)
}

impl Config {
    fn traced(&self, method: &http::Method, uri: &http::Uri) -> bool {
        let path = uri.path();
        if self.skipped_lengths & length_bit(path) != 0
            && self.skipped_paths.iter().any(|p| p == path)
        {
            return false;
        }
        self.filter.as_ref().is_none_or(|f| f(method, uri))
    }
}

/// Layer that traces incoming HTTP requests; see the [module docs](super).
///
/// # Default
///
/// Correlation ID read from `x-correlation-id` then `x-request-id` and echoed under
/// `x-correlation-id` in the response (not written into the request: handlers read it with
/// [`correlation::current`](crate::correlation::current) or the `CorrelationId` axum
/// extractor; see [`request_header`](Self::request_header)); [`DEFAULT_SKIPPED_PATHS`] not
/// traced; span names from axum's `MatchedPath` (feature `axum`), else the method alone.
///
/// # Clone
///
/// The configuration is behind an `Arc`; clones share it.
#[derive(Clone)]
pub struct HttpServerLayer {
    config: Arc<Config>,
}

impl Default for HttpServerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServerLayer")
            .field("correlation_headers", &self.config.correlation_headers)
            .field("skipped_paths", &self.config.skipped_paths)
            .field("filter", &self.config.filter.is_some())
            .field("route", &self.config.route.is_some())
            .field("request_header", &self.config.request_header)
            .finish()
    }
}

impl HttpServerLayer {
    /// The [default](HttpServerLayer#default) layer.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                correlation_headers: correlation::DEFAULT_HEADERS
                    .iter()
                    .map(|h| HeaderName::from_static(h))
                    .collect(),
                skipped_paths: DEFAULT_SKIPPED_PATHS
                    .iter()
                    .map(|p| Cow::Borrowed(*p))
                    .collect(),
                skipped_lengths: DEFAULT_SKIPPED_PATHS
                    .iter()
                    .fold(0, |mask, p| mask | length_bit(p)),
                filter: None,
                route: None,
                request_header: false,
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Header names the correlation ID is read from, in order; the first is also the one it is
    /// echoed under. An empty list keeps the default.
    #[must_use]
    pub fn correlation_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = HeaderName>,
    {
        let headers: Vec<HeaderName> = headers.into_iter().collect();
        if !headers.is_empty() {
            self.config_mut().correlation_headers = headers;
        }
        self
    }

    /// Also write a generated correlation ID into the request, under the first
    /// [correlation header](Self::correlation_headers), for handlers or proxies that read it
    /// from the headers (as after tower-http's `SetRequestIdLayer`). An incoming ID is never
    /// overwritten. Off by default: it costs a header insertion per request, and handlers get
    /// the ID from [`correlation::current`](crate::correlation::current) or, with axum, the
    /// [`CorrelationId`] extractor; our client layers propagate it either way.
    #[must_use]
    pub fn request_header(mut self, enabled: bool) -> Self {
        self.config_mut().request_header = enabled;
        self
    }

    /// Exact request paths that are not traced (replaces [`DEFAULT_SKIPPED_PATHS`]).
    #[must_use]
    pub fn skipped_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Cow<'static, str>>,
    {
        let config = self.config_mut();
        config.skipped_paths = paths.into_iter().map(Into::into).collect();
        config.skipped_lengths = config
            .skipped_paths
            .iter()
            .fold(0, |mask, p| mask | length_bit(p));
        self
    }

    /// A predicate deciding which requests are traced (`true` = traced), applied after the
    /// skipped paths. Untraced requests pass through untouched.
    #[must_use]
    pub fn filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri) -> bool + Send + Sync + 'static,
    {
        self.config_mut().filter = Some(Arc::new(filter));
        self
    }

    /// A function giving the route template (`/users/{id}`) of a request, used when axum's
    /// `MatchedPath` is not available.
    #[must_use]
    pub fn route<F>(mut self, route: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri) -> Option<String> + Send + Sync + 'static,
    {
        self.config_mut().route = Some(Arc::new(route));
        self
    }
}

impl<S> Layer<S> for HttpServerLayer {
    type Service = HttpServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpServer {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Service that traces incoming HTTP requests; built by [`HttpServerLayer`].
#[derive(Clone)]
pub struct HttpServer<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for HttpServer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> HttpServer<S> {
    /// Wraps `inner` with the configuration of `layer`.
    pub fn new(inner: S, layer: &HttpServerLayer) -> Self {
        layer.layer(inner)
    }

    /// A [default](HttpServerLayer#default) layer.
    pub fn layer() -> HttpServerLayer {
        HttpServerLayer::new()
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

#[cfg(feature = "axum")]
fn matched_route<B>(req: &Request<B>) -> Option<&str> {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str)
}

#[cfg(not(feature = "axum"))]
fn matched_route<B>(_req: &Request<B>) -> Option<&str> {
    None
}

/// `client.address`: the first `X-Forwarded-For` entry. (axum's `ConnectInfo` needs axum's
/// `tokio` feature, which this crate does not enable.)
fn client_address<'a>(found: &Found<'a>) -> Option<&'a str> {
    let value = found.forwarded_for?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// `server.address` and `server.port` from the URI authority or the `Host` header.
fn server_address<'a, B>(req: &'a Request<B>, found: &Found<'a>) -> (Option<&'a str>, Option<u16>) {
    if let Some(auth) = req.uri().authority() {
        return (Some(auth.host()), auth.port_u16());
    }
    let Some(host) = found.host.and_then(|h| h.to_str().ok()) else {
        return (None, None);
    };
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (Some(h), p.parse().ok()),
        _ => (Some(host), None),
    }
}

impl<S, B, ResBody> Service<Request<B>> for HttpServer<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let config = &*self.config;
        if !config.traced(req.method(), req.uri()) {
            return ResponseFuture::new(self.inner.call(req), None);
        }

        // 0. The headers we read, found in one pass. Then the remote context, before any
        //    span exists: read directly from `traceparent` and `tracestate` when that is all
        //    there is, else through the propagator. A request that will not be sampled then
        //    takes the fast path, with no span at all.
        let found = Found::scan(req.headers(), &config.correlation_headers);
        let remote = match Remote::of(&found, req.headers()) {
            Remote::Unsampled(remote) => {
                let incoming = found.correlation(req.headers(), &config.correlation_headers);
                return self.call_unsampled(req, remote, incoming);
            }
            Remote::Traced(remote) => remote,
        };

        // 2. The correlation ID: a valid header, else baggage, else a new one.
        let (id, incoming) = match found.correlation(req.headers(), &config.correlation_headers) {
            Some((id, value)) => (id, Some(value)),
            None => (baggage_or_new(&remote), None),
        };
        let from_header = incoming.is_some();
        let mut echo = echo_header(config, incoming);

        // 3. The span, parented on the remote context.
        let method = req.method().as_str();
        let route: Option<Cow<'_, str>> = match matched_route(&req) {
            Some(r) => Some(Cow::Borrowed(r)),
            None => config
                .route
                .as_ref()
                .and_then(|f| f(req.method(), req.uri()).map(Cow::Owned)),
        };
        let name: Cow<'_, str> = match &route {
            Some(r) => {
                let mut name = String::with_capacity(method.len() + 1 + r.len());
                name.push_str(method);
                name.push(' ');
                name.push_str(r);
                Cow::Owned(name)
            }
            None => Cow::Borrowed(method),
        };
        let (server_address, server_port) = server_address(&req, &found);
        let scheme = req.uri().scheme_str().unwrap_or("http");
        // Every attribute is given when the span is created (the macro evaluates them only
        // when the span is enabled): a `Span::record` afterwards costs a registry lookup each.
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = &*name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method,
            http.route = route.as_deref(),
            http.response.status_code = Empty,
            url.path = req.uri().path(),
            url.query = req.uri().query(),
            url.scheme = scheme,
            server.address = server_address,
            server.port = server_port
                .or_else(|| super::default_port(Some(scheme)))
                .map(i64::from),
            client.address = client_address(&found),
            user_agent.original = found.user_agent.and_then(|v| v.to_str().ok()),
            network.protocol.version = protocol_version(req.version()),
            correlation_id = id.as_str(),
        );
        if !span.is_disabled() {
            let _ = span.set_parent(parent_context(remote));
        }

        // 4. The ID is visible to the handler through the task-local (and the request header,
        //    when asked for, never overwriting one).
        if !from_header {
            set_request_header(config, &mut req, &id, echo.as_mut());
        }

        let future = {
            let _entered = span.enter();
            correlation::sync_scope(id.clone(), || self.inner.call(req))
        };
        ResponseFuture::new(
            future,
            Some(ServerState {
                scope: Scope::Span(span),
                id,
                echo,
            }),
        )
    }
}

impl<S> HttpServer<S> {
    /// The path of a request whose span would not be sampled: the correlation ID is handled
    /// exactly as on the full path, and the remote context is made current while the inner
    /// future runs, but no span is built.
    fn call_unsampled<B, ResBody>(
        &mut self,
        mut req: Request<B>,
        remote: Option<opentelemetry::Context>,
        incoming: Option<(CorrelationId, HeaderValue)>,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<B>, Response = Response<ResBody>>,
    {
        let config = &*self.config;
        let (id, incoming) = match incoming {
            Some((id, value)) => (id, Some(value)),
            None => (CorrelationId::generate(), None),
        };
        let from_header = incoming.is_some();
        let mut echo = echo_header(config, incoming);
        if !from_header {
            set_request_header(config, &mut req, &id, echo.as_mut());
        }
        let future = {
            let _attached = remote.clone().map(opentelemetry::Context::attach);
            correlation::sync_scope(id.clone(), || self.inner.call(req))
        };
        ResponseFuture::new(
            future,
            Some(ServerState {
                scope: Scope::Remote(remote),
                id,
                echo,
            }),
        )
    }
}

pub(crate) fn protocol_version(v: http::Version) -> Option<&'static str> {
    Some(match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// The correlation ID in the remote baggage, else a new one.
pub(crate) fn baggage_or_new(remote: &opentelemetry::Context) -> CorrelationId {
    use opentelemetry::baggage::BaggageExt;
    remote
        .baggage()
        .get(correlation::BAGGAGE_KEY)
        .and_then(|v| CorrelationId::parse(v.as_str()).ok())
        .unwrap_or_else(CorrelationId::generate)
}

/// Writes a generated ID into the request when [`HttpServerLayer::request_header`] asks for
/// it and the request has none under that name; the echo then shares the value.
fn set_request_header<B>(
    config: &Config,
    req: &mut Request<B>,
    id: &CorrelationId,
    echo: Option<&mut Echo>,
) {
    if let Some(echo) = echo
        && config.request_header
        && !req.headers().contains_key(&echo.name)
        && let Some(value) = id_header_value(id)
    {
        req.headers_mut().insert(echo.name.clone(), value.clone());
        echo.value = Some(value);
    }
}

/// The remote context of a request, and whether its span would be sampled, known before any
/// span exists.
pub(crate) enum Remote {
    /// The span would be dropped: the remote context (if there is a valid one) is only made
    /// current, with no span built.
    Unsampled(Option<opentelemetry::Context>),
    /// The span may be sampled: its parent (the empty context when there is none).
    Traced(opentelemetry::Context),
}

impl Remote {
    /// Reads `traceparent` and `tracestate` directly when that is all there is, else runs the
    /// propagator (which then always takes the traced path).
    pub(crate) fn of(found: &Found<'_>, headers: &http::HeaderMap) -> Self {
        use crate::sampling::{Decision, decide};
        use opentelemetry::trace::TraceContextExt;
        match propagation::fast_remote(found.traceparent, found.tracestate, found.baggage) {
            Some(Err(())) => Self::Traced(propagation::extract_otel(headers)),
            fast => {
                let remote = fast.and_then(Result::ok);
                let remote_sampled = remote
                    .as_ref()
                    .map(|cx| cx.span().span_context().is_sampled());
                let unsampled = match decide(remote_sampled) {
                    Decision::Maybe => false,
                    Decision::Drop => true,
                    Decision::DropUnlessLocalParent => tracing::Span::current().is_none(),
                };
                if unsampled {
                    Self::Unsampled(remote)
                } else {
                    Self::Traced(remote.unwrap_or_default())
                }
            }
        }
    }
}

/// How many correlation header names [`Found::scan`] looks for; further names are looked up.
const SCANNED: usize = 4;

/// The request headers the server layer reads, found in one pass over the header map: with a
/// handful of headers that is cheaper than five hashed lookups (`traceparent`, `tracestate`,
/// `baggage` and two correlation headers), and it stays linear in the header count.
pub(crate) struct Found<'a> {
    traceparent: Option<&'a HeaderValue>,
    tracestate: Option<&'a HeaderValue>,
    baggage: bool,
    /// The first value under each of the first [`SCANNED`] correlation header names.
    correlation: [Option<&'a HeaderValue>; SCANNED],
    /// `host`, `user-agent` and `x-forwarded-for`, for the server span's attributes.
    host: Option<&'a HeaderValue>,
    user_agent: Option<&'a HeaderValue>,
    forwarded_for: Option<&'a HeaderValue>,
}

impl<'a> Found<'a> {
    pub(crate) fn scan(headers: &'a http::HeaderMap, names: &[HeaderName]) -> Self {
        let mut found = Found {
            traceparent: None,
            tracestate: None,
            baggage: false,
            correlation: [None; SCANNED],
            host: None,
            user_agent: None,
            forwarded_for: None,
        };
        const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        for (name, value) in headers {
            if name == propagation::TRACEPARENT {
                found.traceparent.get_or_insert(value);
            } else if name == propagation::TRACESTATE {
                found.tracestate.get_or_insert(value);
            } else if name == propagation::BAGGAGE {
                found.baggage = true;
            } else if name == http::header::HOST {
                found.host.get_or_insert(value);
            } else if name == http::header::USER_AGENT {
                found.user_agent.get_or_insert(value);
            } else if name == X_FORWARDED_FOR {
                found.forwarded_for.get_or_insert(value);
            } else if let Some(i) = names.iter().take(SCANNED).position(|n| n == name)
                && let Some(slot) = found.correlation.get_mut(i)
            {
                slot.get_or_insert(value);
            }
        }
        found
    }

    /// The first valid correlation ID under `names`, with its header value; invalid ones are
    /// logged and skipped.
    pub(crate) fn correlation(
        &self,
        headers: &http::HeaderMap,
        names: &[HeaderName],
    ) -> Option<(CorrelationId, HeaderValue)> {
        names.iter().enumerate().find_map(|(i, name)| {
            let value = match self.correlation.get(i) {
                Some(scanned) => (*scanned)?,
                None => headers.get(name)?,
            };
            valid_correlation(name, value)
        })
    }
}

fn valid_correlation(
    name: &HeaderName,
    value: &HeaderValue,
) -> Option<(CorrelationId, HeaderValue)> {
    match CorrelationId::from_bytes(value.as_bytes()) {
        Ok(valid) => Some((valid, value.clone())),
        Err(error) => {
            tracing::debug!(%error, header = %name, "replacing an invalid incoming correlation id");
            None
        }
    }
}

/// The header the correlation ID is echoed under, with the incoming header's value when there
/// was one (sharing its bytes); a generated ID's value is built when the response comes.
fn echo_header(config: &Config, incoming: Option<HeaderValue>) -> Option<Echo> {
    Some(Echo {
        name: config.correlation_headers.first()?.clone(),
        value: incoming,
    })
}

/// The ID as a header value: one copy into a new buffer (it is used once, in the response,
/// unless [`HttpServerLayer::request_header`] also puts it in the request).
pub(crate) fn id_header_value(id: &CorrelationId) -> Option<HeaderValue> {
    // A `CorrelationId` is visible ASCII, always a valid header value.
    HeaderValue::from_bytes(id.as_bytes()).ok()
}

/// The parent of a server span: the remote context when valid, else the enclosing local span
/// with the remote baggage. (The correlation ID is added to the baggage where it leaves the
/// process: the client layers and `messaging::inject` take it from the task-local.)
pub(crate) fn parent_context(remote: opentelemetry::Context) -> opentelemetry::Context {
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::TraceContextExt;
    if remote.span().span_context().is_valid() {
        remote
    } else {
        let local = propagation::otel_context_of(&tracing::Span::current());
        if remote.baggage().is_empty() {
            local
        } else {
            local.with_baggage(propagation::baggage_members(remote.baggage()))
        }
    }
}
