use std::future::Future;
use std::pin::Pin;

use http::{Extensions, HeaderName};
use reqwest_middleware::{Middleware, Next};
use tracing::Instrument;

use super::client::{inject_into, reqwest_span};
use super::future::record_client_result;
use crate::correlation;

/// [`reqwest_middleware::Middleware`] with the behaviour of [`HttpClientLayer`](super::HttpClientLayer):
/// a client span whose context, with the current correlation ID, is injected into the request.
///
/// ```
/// use sinew_tracing_kit::http::HttpClientMiddleware;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(HttpClientMiddleware::new())
///     .build();
/// # drop(client);
/// ```
///
/// # Default
///
/// The correlation ID is sent under `x-correlation-id`.
#[derive(Clone, Debug)]
pub struct HttpClientMiddleware {
    correlation_header: HeaderName,
}

impl Default for HttpClientMiddleware {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClientMiddleware {
    /// The [default](HttpClientMiddleware#default) middleware.
    pub fn new() -> Self {
        Self {
            correlation_header: HeaderName::from_static(correlation::DEFAULT_HEADERS[0]),
        }
    }

    /// The header the correlation ID is sent under.
    #[must_use]
    pub fn correlation_header(mut self, header: HeaderName) -> Self {
        self.correlation_header = header;
        self
    }
}

// Written out as `async_trait` expands it, to avoid depending on `async-trait`.
impl Middleware for HttpClientMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        mut req: reqwest::Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Pin<
        Box<
            dyn Future<Output = reqwest_middleware::Result<reqwest::Response>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let span = reqwest_span(&req);
        inject_into(&span, req.headers_mut(), &self.correlation_header);
        let record = span.clone();
        Box::pin(
            async move {
                let result = next.run(req, extensions).await;
                record_client_result(&record, result.as_ref().map(|r| r.status().as_u16()));
                result
            }
            .instrument(span),
        )
    }
}
