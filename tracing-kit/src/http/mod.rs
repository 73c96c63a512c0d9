//! Middleware that traces HTTP servers and clients with W3C trace context and correlation IDs.
//!
//! - [`HttpServerLayer`] wraps any tower HTTP service (an axum `Router` included). It extracts
//!   the remote context from the request headers *before* creating the span (a started span
//!   cannot change parent since tracing-opentelemetry 0.32), names the span `{METHOD} {route}`,
//!   records the stable semantic-convention attributes, marks 5xx (not 4xx) as errors, skips
//!   health and metrics routes, and accepts, scopes, records and echoes the
//!   [correlation ID](crate::correlation).
//! - [`HttpClientLayer`] wraps any `Service<http::Request<B>>` or, with feature `reqwest`, a
//!   `reqwest::Client`; `HttpClientMiddleware` (feature `reqwest`) is the same as `reqwest-middleware`
//!   middleware. Each opens a client span and injects *its* context (`traceparent`,
//!   `tracestate`, `baggage`) and the current correlation ID into the request.
//!
//! # Layer order
//!
//! With axum, add the server layer with `Router::layer` so that routing has run and the
//! `MatchedPath` is known (span names then use the route template, `GET /users/{id}`).
//! Applied outside the router, names fall back to the [route function](HttpServerLayer::route)
//! or to the method alone. This layer sets the correlation ID itself, so it replaces
//! tower-http's `SetRequestIdLayer`/`PropagateRequestIdLayer` for `x-request-id`; if you keep
//! those, put `SetRequestId` outside (before) this layer so the ID it sets is accepted.
//!
//! ```
//! use axum::{Router, routing::get};
//! use sinew_tracing_kit::http::HttpServerLayer;
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "ok" }))
//!     .layer(HttpServerLayer::new());
//! # drop(app);
//! ```
//!
//! Differs from tower-http's `TraceLayer`: that one creates `tracing` spans but knows nothing
//! of OpenTelemetry context, so it neither continues a remote trace nor names spans per the
//! semantic conventions.
//!
//! # Cost
//!
//! When the installed sampler will drop a request (always-off, or parent-based with a caller
//! that did not sample), the layer builds no span at all: it reads the trace context, accepts
//! or generates the correlation ID, makes both current around the handler, and echoes the ID.
//! That costs about a quarter of a sampled request, and less than a third of what tower-http's
//! `TraceLayer` costs per request with the same subscriber (`docs/benchmarks.md` in the
//! repository has the figures). Sampled requests cost what `tracing-opentelemetry` and the
//! SDK charge for a span. With axum, part of the figure is `Router::layer` itself, which boxes
//! each route's service and future again for any layer.

pub(crate) mod client;
pub mod future;
#[cfg(feature = "reqwest")]
mod middleware;
pub(crate) mod server;

pub use client::{HttpClient, HttpClientLayer};
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use middleware::HttpClientMiddleware;
pub use server::{DEFAULT_SKIPPED_PATHS, HttpServer, HttpServerLayer};

/// `url.full` without user info (credentials are never recorded).
pub(crate) fn redacted_url(uri: &http::Uri) -> String {
    match uri.authority() {
        Some(auth) if auth.as_str().contains('@') => {
            let host = auth.as_str().rsplit('@').next().unwrap_or_default();
            let scheme = uri.scheme_str().unwrap_or("http");
            let pq = uri
                .path_and_query()
                .map_or("", http::uri::PathAndQuery::as_str);
            format!("{scheme}://{host}{pq}")
        }
        _ => uri.to_string(),
    }
}

/// The default port of a scheme.
pub(crate) fn default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed() {
        let uri: http::Uri = "https://user:secret@example.com:8443/a?b=c"
            .parse()
            .unwrap();
        assert_eq!(redacted_url(&uri), "https://example.com:8443/a?b=c");
        let uri: http::Uri = "http://example.com/a".parse().unwrap();
        assert_eq!(redacted_url(&uri), "http://example.com/a");
    }
}
