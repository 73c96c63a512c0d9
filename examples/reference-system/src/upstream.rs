//! Resilient calls to other services: discovery picks an instance (power of two choices),
//! its own circuit breaker guards the call, a timeout bounds it, and a call that could not
//! reach an instance (or a GET/HEAD cut off by a dying one) is tried once more on another.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use sinew_resilience::classify::Outcome;
use sinew_tracing_kit::{correlation, propagation};
use tracing::Instrument as _;

use crate::discovery::Directory;

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No instance is registered or every breaker is open.
    #[error("no available instance of {0}")]
    NoInstance(String),
    /// The instance could not be reached or did not answer in time.
    #[error("{service} instance {instance} failed")]
    Failed {
        /// The service.
        service: String,
        /// The instance ID.
        instance: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
}

/// A buffered upstream response.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// The instance that answered.
    pub instance: String,
}

impl UpstreamResponse {
    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A client for calls between services.
#[derive(Debug, Clone)]
pub struct Upstreams {
    registry: Directory,
    client: reqwest::Client,
    timeout: Duration,
}

impl Upstreams {
    /// A client over `registry`, with a per-call `timeout`.
    pub fn new(registry: Directory, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            registry,
            client,
            timeout,
        }
    }

    /// The registry.
    pub const fn registry(&self) -> &Directory {
        &self.registry
    }

    /// `GET {path}` on `service`.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when no instance answered.
    pub async fn get(&self, service: &str, path: &str) -> Result<UpstreamResponse, UpstreamError> {
        self.send(service, Method::GET, path, HeaderMap::new(), Bytes::new())
            .await
    }

    /// `{method} {path}` with a JSON body on `service`.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when no instance answered.
    pub async fn json(
        &self,
        service: &str,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.send(service, method, path, headers, body).await
    }

    /// Sends a request to an instance of `service`, with the trace context and correlation ID
    /// injected. A connection failure is tried once more on another instance.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when no instance answered.
    pub async fn send(
        &self,
        service: &str,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let span = tracing::info_span!(
            "upstream call",
            otel.name = %format_args!("{method} {service}"),
            otel.kind = "client",
            peer.service = service,
            instance = tracing::field::Empty,
        );
        async {
            propagation::inject(&mut headers);
            if let Some(id) = correlation::current()
                && let Ok(value) = HeaderValue::from_str(id.as_str())
            {
                headers.insert(HeaderName::from_static("x-correlation-id"), value);
            }
            let mut tried: Vec<String> = Vec::new();
            let mut last_error = None;
            for _ in 0..2 {
                let Some((instance, _in_flight)) = self.registry.pick(service, &tried).await else {
                    break;
                };
                tried.push(instance.id.clone());
                let Ok(permit) = instance.breaker.try_acquire() else {
                    continue;
                };
                tracing::Span::current().record("instance", instance.id.as_str());
                let url = format!("{}{}", instance.url, path_and_query);
                let result = self
                    .client
                    .request(method.clone(), &url)
                    .headers(headers.clone())
                    .body(body.clone())
                    .timeout(self.timeout)
                    .send()
                    .await;
                match result {
                    Ok(response) => {
                        let status = response.status();
                        let response_headers = response.headers().clone();
                        match response.bytes().await {
                            Ok(bytes) => {
                                permit.record(if status.is_server_error() {
                                    Outcome::Failure
                                } else {
                                    Outcome::Success
                                });
                                return Ok(UpstreamResponse {
                                    status,
                                    headers: response_headers,
                                    body: bytes,
                                    instance: instance.id.clone(),
                                });
                            }
                            Err(source) => {
                                permit.record(Outcome::Failure);
                                return Err(UpstreamError::Failed {
                                    service: service.to_owned(),
                                    instance: instance.id.clone(),
                                    source,
                                });
                            }
                        }
                    }
                    Err(source) => {
                        permit.record(Outcome::Failure);
                        tracing::warn!(service, instance = %instance.id, error = %source, "upstream call failed");
                        // A refused connection never reached the instance: safe to send
                        // elsewhere. A GET or HEAD cut off mid-way is safe to repeat; a
                        // timeout is not retried (the budget is spent).
                        let retry = source.is_connect()
                            || (matches!(method, Method::GET | Method::HEAD) && !source.is_timeout());
                        let err = UpstreamError::Failed {
                            service: service.to_owned(),
                            instance: instance.id.clone(),
                            source,
                        };
                        if !retry {
                            return Err(err);
                        }
                        last_error = Some(err);
                    }
                }
            }
            Err(last_error.unwrap_or_else(|| UpstreamError::NoInstance(service.to_owned())))
        }
        .instrument(span)
        .await
    }
}
