use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use tracing::Instrument;

use super::duration;
use super::error::ConsulError;
use super::model::HealthEntry;
use super::registration::{CheckStatus, ServiceRegistration};
use crate::error::ConfigError;
use crate::instance::Instance;
use crate::registry::Query;

const TOKEN_HEADER: &str = "X-Consul-Token";
/// Consul's maximum blocking wait.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// An ACL token. Sent only in the `X-Consul-Token` header (never in a query string, which
/// ends up in access logs) and printed as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AclToken(String);

impl AclToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret, for sending.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AclToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AclToken(<redacted>)")
    }
}

/// Metadata of a health query's response (from the `X-Consul-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueryMeta {
    /// `X-Consul-Index`: pass it back as the next blocking query's index. 0 when absent.
    pub index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: Option<bool>,
    /// `X-Consul-LastContact`, how stale a `?stale` read may be.
    pub last_contact: Option<Duration>,
    /// `X-Consul-Results-Filtered-By-ACLs: true`: the token could not see everything.
    pub filtered_by_acls: bool,
}

/// A blocking query: return when the index moves past `index`, or after about `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    /// The last `X-Consul-Index` seen.
    pub index: u64,
    /// How long Consul may hold the request (at most 10 minutes; Consul adds up to wait/16).
    pub wait: Duration,
}

/// A typed client for the local Consul agent's HTTP API.
///
/// Agent-first: registrations go to `/v1/agent/service/register`, so the agent's
/// anti-entropy keeps them in the catalog (unlike catalog registration).
///
/// ```no_run
/// use std::time::Duration;
/// use sinew_discovery::consul::{AclToken, Check, ConsulClient, ServiceRegistration};
///
/// # #[allow(dead_code)]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let consul = ConsulClient::builder()
///     .address("http://127.0.0.1:8500")
///     .token(AclToken::new(std::env::var("CONSUL_HTTP_TOKEN")?))
///     .build()?;
/// let registration = ServiceRegistration::builder("orders")
///     .address("10.0.0.5")
///     .port(8080)
///     .check(Check::ttl(Duration::from_secs(15)))
///     .build()?;
/// consul.register(&registration).await?;
/// consul.ttl_pass("orders-8080:ttl", Some("ok")).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Clones share the connection pool.
#[derive(Clone)]
pub struct ConsulClient {
    http: reqwest::Client,
    base: Url,
    token: Option<AclToken>,
    datacenter: Option<String>,
    request_timeout: Duration,
}

impl fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulClient")
            .field("address", &self.base.as_str())
            .field("token", &self.token)
            .field("datacenter", &self.datacenter)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Builds a [`ConsulClient`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | `address` | `http://127.0.0.1:8500` |
/// | `token` | none (the agent's default token) |
/// | `datacenter` | the agent's |
/// | `request_timeout` | 10 s (blocking queries get `wait + wait/16 + request_timeout`) |
#[derive(Debug, Clone)]
pub struct ConsulClientBuilder {
    address: String,
    token: Option<AclToken>,
    datacenter: Option<String>,
    request_timeout: Duration,
}

impl ConsulClientBuilder {
    /// The agent's base URL.
    #[must_use]
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// The ACL token.
    #[must_use]
    pub fn token(mut self, token: AclToken) -> Self {
        self.token = Some(token);
        self
    }

    /// The datacenter for health queries that do not name one.
    #[must_use]
    pub fn datacenter(mut self, datacenter: impl Into<String>) -> Self {
        self.datacenter = Some(datacenter.into());
        self
    }

    /// The timeout of non-blocking calls, and the slack added to blocking ones.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// An address that is not an `http://` or `https://` URL, an empty token, or a zero
    /// timeout.
    pub fn build(self) -> Result<ConsulClient, ConfigError> {
        let base = Url::parse(&self.address).map_err(|e| ConfigError::Invalid {
            field: "address",
            reason: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ConfigError::Invalid {
                field: "address",
                reason: format!("`{}` is not an http:// or https:// URL", self.address),
            });
        }
        if self.token.as_ref().is_some_and(|t| t.0.is_empty()) {
            return Err(ConfigError::Missing { field: "token" });
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                field: "request_timeout",
                reason: "must be greater than zero".to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ConfigError::Invalid {
                field: "http client",
                reason: e.to_string(),
            })?;
        Ok(ConsulClient {
            http,
            base,
            token: self.token,
            datacenter: self.datacenter,
            request_timeout: self.request_timeout,
        })
    }
}

impl ConsulClient {
    /// A builder with the defaults.
    pub fn builder() -> ConsulClientBuilder {
        ConsulClientBuilder {
            address: "http://127.0.0.1:8500".to_owned(),
            token: None,
            datacenter: None,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The agent's base URL.
    pub fn address(&self) -> &str {
        self.base.as_str()
    }

    /// The timeout of non-blocking calls.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    async fn send(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<reqwest::Response, ConsulError> {
        let mut request = self.http.request(method.clone(), url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token.expose());
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let span = tracing::debug_span!("consul.request", consul.endpoint = endpoint, http.method = %method);
        let response = request.send().instrument(span).await.map_err(|e| {
            if e.is_timeout() {
                ConsulError::Timeout {
                    endpoint,
                    after: timeout,
                }
            } else {
                ConsulError::Transport {
                    endpoint,
                    source: Box::new(e),
                }
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let mut body = response.text().await.unwrap_or_default();
        if body.len() > 512 {
            let mut cut = 512;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        tracing::debug!(endpoint, status = status.as_u16(), body = %body, "consul error");
        Err(ConsulError::Status {
            endpoint,
            status: status.as_u16(),
            body,
        })
    }

    async fn put(
        &self,
        endpoint: &'static str,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(), ConsulError> {
        self.send(endpoint, Method::PUT, url, body, self.request_timeout)
            .await
            .map(drop)
    }

    /// Registers (or re-registers) a service with the local agent, replacing checks that are
    /// no longer listed (`?replace-existing-checks=true`, so re-registering is idempotent).
    pub async fn register(&self, registration: &ServiceRegistration) -> Result<(), ConsulError> {
        const ENDPOINT: &str = "/v1/agent/service/register";
        let mut url = self.url(&["v1", "agent", "service", "register"]);
        url.query_pairs_mut()
            .append_pair("replace-existing-checks", "true");
        let body =
            serde_json::to_vec(&registration.to_wire()).map_err(|e| ConsulError::Decode {
                endpoint: ENDPOINT,
                source: Box::new(e),
            })?;
        self.put(ENDPOINT, url, Some(body)).await?;
        tracing::info!(
            service = registration.name(),
            id = registration.id(),
            "registered with consul"
        );
        Ok(())
    }

    /// Deregisters a service and its checks (a no-op for an unknown ID).
    pub async fn deregister(&self, service_id: &str) -> Result<(), ConsulError> {
        let url = self.url(&["v1", "agent", "service", "deregister", service_id]);
        self.put("/v1/agent/service/deregister", url, None).await?;
        tracing::info!(id = service_id, "deregistered from consul");
        Ok(())
    }

    /// Puts a service in or out of maintenance: while on, it is critical and never served.
    /// The agent keeps this across restarts.
    pub async fn maintenance(
        &self,
        service_id: &str,
        enable: bool,
        reason: Option<&str>,
    ) -> Result<(), ConsulError> {
        let mut url = self.url(&["v1", "agent", "service", "maintenance", service_id]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("enable", if enable { "true" } else { "false" });
            if let Some(reason) = reason {
                query.append_pair("reason", reason);
            }
        }
        self.put("/v1/agent/service/maintenance", url, None).await
    }

    /// Sets a TTL check's status (`PUT /v1/agent/check/update/:id`), resetting its TTL clock.
    pub async fn ttl_update(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: Option<&str>,
    ) -> Result<(), ConsulError> {
        let url = self.url(&["v1", "agent", "check", "update", check_id]);
        let body =
            serde_json::json!({ "Status": status.as_str(), "Output": output.unwrap_or_default() });
        let body = serde_json::to_vec(&body).map_err(|e| ConsulError::Decode {
            endpoint: "/v1/agent/check/update",
            source: Box::new(e),
        })?;
        self.put("/v1/agent/check/update", url, Some(body)).await
    }

    async fn ttl(
        &self,
        action: &'static str,
        endpoint: &'static str,
        check_id: &str,
        note: Option<&str>,
    ) -> Result<(), ConsulError> {
        let mut url = self.url(&["v1", "agent", "check", action, check_id]);
        if let Some(note) = note {
            url.query_pairs_mut().append_pair("note", note);
        }
        self.put(endpoint, url, None).await
    }

    /// Marks a TTL check passing (`PUT /v1/agent/check/pass/:id`).
    pub async fn ttl_pass(&self, check_id: &str, note: Option<&str>) -> Result<(), ConsulError> {
        self.ttl("pass", "/v1/agent/check/pass", check_id, note)
            .await
    }

    /// Marks a TTL check warning (`PUT /v1/agent/check/warn/:id`).
    pub async fn ttl_warn(&self, check_id: &str, note: Option<&str>) -> Result<(), ConsulError> {
        self.ttl("warn", "/v1/agent/check/warn", check_id, note)
            .await
    }

    /// Marks a TTL check critical (`PUT /v1/agent/check/fail/:id`).
    pub async fn ttl_fail(&self, check_id: &str, note: Option<&str>) -> Result<(), ConsulError> {
        self.ttl("fail", "/v1/agent/check/fail", check_id, note)
            .await
    }

    /// Whether the local agent knows the service (`GET /v1/agent/service/:id`).
    pub async fn is_registered(&self, service_id: &str) -> Result<bool, ConsulError> {
        let url = self.url(&["v1", "agent", "service", service_id]);
        match self
            .send(
                "/v1/agent/service",
                Method::GET,
                url,
                None,
                self.request_timeout,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The healthy instances matching `query` (`GET /v1/health/service/:name`, with
    /// `passing` unless the query includes warnings, and `dc`, `tag` and `filter` from the
    /// query). With `blocking`, Consul holds the request until the index moves or the wait
    /// ends; the HTTP timeout is then `wait + wait/16 + request_timeout`.
    pub async fn health_service(
        &self,
        query: &Query,
        blocking: Option<Blocking>,
    ) -> Result<(Vec<Instance>, QueryMeta), ConsulError> {
        const ENDPOINT: &str = "/v1/health/service";
        let mut url = self.url(&["v1", "health", "service", query.service()]);
        let mut timeout = self.request_timeout;
        {
            let mut q = url.query_pairs_mut();
            if !query.includes_warning() {
                q.append_pair("passing", "true");
            }
            if let Some(dc) = query.datacenter_name().or(self.datacenter.as_deref()) {
                q.append_pair("dc", dc);
            }
            for tag in query.tags() {
                q.append_pair("tag", tag);
            }
            if let Some(filter) = query.filter_expression() {
                q.append_pair("filter", filter);
            }
            if let Some(b) = blocking {
                let wait = b.wait.min(MAX_WAIT);
                q.append_pair("index", &b.index.to_string());
                q.append_pair("wait", &duration::format(wait));
                timeout = wait + wait / 16 + self.request_timeout;
            }
        }
        let response = self.send(ENDPOINT, Method::GET, url, None, timeout).await?;
        let meta = query_meta(response.headers());
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ConsulError::Transport {
            endpoint: ENDPOINT,
            source: Box::new(e),
        })?;
        let entries: Vec<HealthEntry> = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice::<Option<Vec<HealthEntry>>>(&bytes)
                .map_err(|e| ConsulError::Decode {
                    endpoint: ENDPOINT,
                    source: Box::new(e),
                })?
                .unwrap_or_default()
        };
        let include_warning = query.includes_warning();
        let instances = entries
            .into_iter()
            .filter_map(|e| e.into_instance(include_warning))
            .collect();
        Ok((instances, meta))
    }
}

fn query_meta(headers: &reqwest::header::HeaderMap) -> QueryMeta {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    QueryMeta {
        index: get("X-Consul-Index")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        known_leader: get("X-Consul-KnownLeader").map(|v| v == "true"),
        last_contact: get("X-Consul-LastContact")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis),
        filtered_by_acls: get("X-Consul-Results-Filtered-By-ACLs") == Some("true"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        let client = ConsulClient::builder()
            .token(AclToken::new("s3cr3t"))
            .build()
            .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn rejects_bad_addresses() {
        assert!(
            ConsulClient::builder()
                .address("consul:8500")
                .build()
                .is_err()
        );
        assert!(ConsulClient::builder().address("ftp://x").build().is_err());
        assert!(
            ConsulClient::builder()
                .token(AclToken::new(""))
                .build()
                .is_err()
        );
    }
}
