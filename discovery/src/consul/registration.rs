//! Validated agent service registrations and their health checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::duration;
use crate::error::ConfigError;

/// The minimum `DeregisterCriticalServiceAfter` Consul honours.
pub const MIN_DEREGISTER_CRITICAL_AFTER: Duration = Duration::from_secs(60);
/// The minimum check interval (and TTL) Consul honours; smaller values are raised silently by
/// the agent, so they are rejected here.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The status of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckStatus {
    /// Healthy.
    Passing,
    /// Degraded; still served to queries that include warnings.
    Warning,
    /// Unhealthy; never served.
    Critical,
}

impl CheckStatus {
    /// Consul's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CheckKind {
    Http {
        url: String,
        method: Option<String>,
        headers: BTreeMap<String, Vec<String>>,
        interval: Duration,
    },
    Tcp {
        address: String,
        interval: Duration,
    },
    Grpc {
        target: String,
        use_tls: bool,
        interval: Duration,
    },
    Ttl {
        ttl: Duration,
    },
}

impl CheckKind {
    fn label(&self) -> &'static str {
        match self {
            Self::Http { .. } => "http",
            Self::Tcp { .. } => "tcp",
            Self::Grpc { .. } => "grpc",
            Self::Ttl { .. } => "ttl",
        }
    }
}

/// One health check of a registration: exactly one of HTTP, TCP, gRPC or TTL, chosen by the
/// constructor (so a check with two kinds, or none, cannot be built).
///
/// ```
/// use std::time::Duration;
/// use sinew_discovery::consul::Check;
///
/// let http = Check::http("http://10.0.0.5:8080/health", Duration::from_secs(10))
///     .timeout(Duration::from_secs(2))
///     .deregister_critical_service_after(Duration::from_secs(300));
/// let ttl = Check::ttl(Duration::from_secs(15));
/// # let _ = (http, ttl);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    id: Option<String>,
    name: Option<String>,
    kind: CheckKind,
    timeout: Option<Duration>,
    deregister_after: Option<Duration>,
    status: Option<CheckStatus>,
    notes: Option<String>,
    tls_skip_verify: bool,
}

impl Check {
    fn with_kind(kind: CheckKind) -> Self {
        Self {
            id: None,
            name: None,
            kind,
            timeout: None,
            deregister_after: None,
            status: None,
            notes: None,
            tls_skip_verify: false,
        }
    }

    /// The agent GETs `url` every `interval`: 2xx is passing, 429 warning, anything else
    /// critical.
    pub fn http(url: impl Into<String>, interval: Duration) -> Self {
        Self::with_kind(CheckKind::Http {
            url: url.into(),
            method: None,
            headers: BTreeMap::new(),
            interval,
        })
    }

    /// The agent opens a TCP connection to `address` (`host:port`) every `interval`.
    pub fn tcp(address: impl Into<String>, interval: Duration) -> Self {
        Self::with_kind(CheckKind::Tcp {
            address: address.into(),
            interval,
        })
    }

    /// The agent calls the gRPC health protocol on `target` (`host:port[/service]`) every
    /// `interval`.
    pub fn grpc(target: impl Into<String>, interval: Duration) -> Self {
        Self::with_kind(CheckKind::Grpc {
            target: target.into(),
            use_tls: false,
            interval,
        })
    }

    /// The service itself reports its health at least every `ttl` (the
    /// [`RegistrationHandle`](super::RegistrationHandle) does it for you); silence turns the
    /// check critical.
    pub fn ttl(ttl: Duration) -> Self {
        Self::with_kind(CheckKind::Ttl { ttl })
    }

    /// The check ID (unique per agent). Defaults to `<service id>:<kind>` (`orders-1:http`).
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The check name. Defaults to the kind (`http`, `tcp`, `grpc`, `ttl`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How long one probe may take (Consul's default is 10 s). Not for TTL checks.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The agent deregisters the service after the check has been critical this long (at
    /// least one minute; the agent's reaper runs every 30 s).
    #[must_use]
    pub fn deregister_critical_service_after(mut self, after: Duration) -> Self {
        self.deregister_after = Some(after);
        self
    }

    /// The initial status (Consul's default is critical until the first probe).
    #[must_use]
    pub fn initial_status(mut self, status: CheckStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Free-form notes for humans.
    #[must_use]
    pub fn notes(mut self, notes: impl Into<String>) -> Self {
        self.notes = Some(notes.into());
        self
    }

    /// HTTP checks: the method (default `GET`).
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        if let CheckKind::Http { method: m, .. } = &mut self.kind {
            *m = Some(method.into());
        }
        self
    }

    /// HTTP checks: a request header (repeatable).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let CheckKind::Http { headers, .. } = &mut self.kind {
            headers.entry(name.into()).or_default().push(value.into());
        }
        self
    }

    /// gRPC checks: use TLS.
    #[must_use]
    pub fn grpc_use_tls(mut self, tls: bool) -> Self {
        if let CheckKind::Grpc { use_tls, .. } = &mut self.kind {
            *use_tls = tls;
        }
        self
    }

    /// HTTP and gRPC checks over TLS: skip certificate verification.
    #[must_use]
    pub fn tls_skip_verify(mut self, skip: bool) -> Self {
        self.tls_skip_verify = skip;
        self
    }

    /// The check ID, once the registration is built.
    pub fn check_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The TTL, for TTL checks.
    pub fn ttl_duration(&self) -> Option<Duration> {
        match self.kind {
            CheckKind::Ttl { ttl } => Some(ttl),
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let interval = match &self.kind {
            CheckKind::Http { url, interval, .. } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::Invalid {
                        field: "check.http",
                        reason: format!("`{url}` is not an http:// or https:// URL"),
                    });
                }
                Some(("check.interval", *interval))
            }
            CheckKind::Tcp { address, interval } => {
                if address.is_empty() {
                    return Err(ConfigError::Missing { field: "check.tcp" });
                }
                Some(("check.interval", *interval))
            }
            CheckKind::Grpc {
                target, interval, ..
            } => {
                if target.is_empty() {
                    return Err(ConfigError::Missing {
                        field: "check.grpc",
                    });
                }
                Some(("check.interval", *interval))
            }
            CheckKind::Ttl { ttl } => Some(("check.ttl", *ttl)),
        };
        if let Some((field, d)) = interval
            && d < MIN_CHECK_INTERVAL
        {
            return Err(ConfigError::TooShort {
                field,
                min: MIN_CHECK_INTERVAL,
                actual: d,
            });
        }
        if let Some(d) = self.deregister_after
            && d < MIN_DEREGISTER_CRITICAL_AFTER
        {
            return Err(ConfigError::TooShort {
                field: "check.deregister_critical_service_after",
                min: MIN_DEREGISTER_CRITICAL_AFTER,
                actual: d,
            });
        }
        if let Some(t) = self.timeout {
            if t.is_zero() {
                return Err(ConfigError::Invalid {
                    field: "check.timeout",
                    reason: "must be greater than zero".to_owned(),
                });
            }
            if matches!(self.kind, CheckKind::Ttl { .. }) {
                return Err(ConfigError::Invalid {
                    field: "check.timeout",
                    reason: "a TTL check has no probe to time out".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// A service registration for the local Consul agent (`PUT /v1/agent/service/register`),
/// validated by [`build`](ServiceRegistrationBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use sinew_discovery::consul::{Check, ServiceRegistration};
///
/// let registration = ServiceRegistration::builder("orders")
///     .id("orders-7f3a")
///     .address("10.0.0.5")
///     .port(8080)
///     .tag("v1")
///     .meta("version", "1.4.2")
///     .weights(10, 1)
///     .check(Check::ttl(Duration::from_secs(15)))
///     .check(
///         Check::http("http://10.0.0.5:8080/health", Duration::from_secs(10))
///             .deregister_critical_service_after(Duration::from_secs(300)),
///     )
///     .build()?;
/// assert_eq!(registration.checks()[0].check_id(), Some("orders-7f3a:ttl"));
///
/// // Nonsense is rejected when built, not by the agent later.
/// let too_short = ServiceRegistration::builder("orders")
///     .check(Check::ttl(Duration::from_secs(15)).deregister_critical_service_after(Duration::from_secs(5)))
///     .build();
/// assert!(too_short.is_err());
/// # Ok::<(), sinew_discovery::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRegistration {
    id: String,
    name: String,
    tags: Vec<String>,
    address: Option<String>,
    port: Option<u16>,
    meta: BTreeMap<String, String>,
    weights: Option<(u32, u32)>,
    tagged_addresses: BTreeMap<String, (String, u16)>,
    enable_tag_override: bool,
    checks: Vec<Check>,
}

impl ServiceRegistration {
    /// A builder for a service called `name`.
    pub fn builder(name: impl Into<String>) -> ServiceRegistrationBuilder {
        ServiceRegistrationBuilder {
            inner: ServiceRegistration {
                id: String::new(),
                name: name.into(),
                tags: Vec::new(),
                address: None,
                port: None,
                meta: BTreeMap::new(),
                weights: None,
                tagged_addresses: BTreeMap::new(),
                enable_tag_override: false,
                checks: Vec::new(),
            },
        }
    }

    /// The service ID (unique per agent).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The checks, with their IDs filled in.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// The TTL checks: `(check id, ttl)`.
    pub(crate) fn ttl_checks(&self) -> Vec<(String, Duration)> {
        self.checks
            .iter()
            .filter_map(|c| Some((c.id.clone()?, c.ttl_duration()?)))
            .collect()
    }

    pub(crate) fn to_wire(&self) -> WireRegistration<'_> {
        WireRegistration {
            id: &self.id,
            name: &self.name,
            tags: &self.tags,
            address: self.address.as_deref(),
            port: self.port,
            meta: &self.meta,
            weights: self
                .weights
                .map(|(passing, warning)| WireWeights { passing, warning }),
            tagged_addresses: self
                .tagged_addresses
                .iter()
                .map(|(k, (address, port))| {
                    (
                        k.as_str(),
                        WireAddress {
                            address,
                            port: *port,
                        },
                    )
                })
                .collect(),
            enable_tag_override: self.enable_tag_override,
            checks: self.checks.iter().map(wire_check).collect(),
        }
    }
}

/// Builds a [`ServiceRegistration`].
#[derive(Debug, Clone)]
pub struct ServiceRegistrationBuilder {
    inner: ServiceRegistration,
}

impl ServiceRegistrationBuilder {
    /// The service ID, unique per agent. Defaults to `<name>-<port>` when a port is set,
    /// otherwise to the name. Give every replica on one agent its own ID.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.inner.id = id.into();
        self
    }

    /// The address other services connect to. Without it Consul reports an empty
    /// `Service.Address` and readers fall back to the node's address.
    #[must_use]
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.inner.address = Some(address.into());
        self
    }

    /// The port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.inner.port = Some(port);
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.inner.tags.push(tag.into());
        self
    }

    /// Adds a metadata entry.
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.meta.insert(key.into(), value.into());
        self
    }

    /// Load-balancing weights while passing and while warning (Consul's default is 1 and 1).
    #[must_use]
    pub fn weights(mut self, passing: u32, warning: u32) -> Self {
        self.inner.weights = Some((passing, warning));
        self
    }

    /// A tagged address (`lan`, `wan`, `lan_ipv4`, ...).
    #[must_use]
    pub fn tagged_address(
        mut self,
        tag: impl Into<String>,
        address: impl Into<String>,
        port: u16,
    ) -> Self {
        self.inner
            .tagged_addresses
            .insert(tag.into(), (address.into(), port));
        self
    }

    /// Lets anti-entropy keep tags changed in the catalog (Consul's `EnableTagOverride`).
    #[must_use]
    pub fn enable_tag_override(mut self, enable: bool) -> Self {
        self.inner.enable_tag_override = enable;
        self
    }

    /// Adds a health check.
    #[must_use]
    pub fn check(mut self, check: Check) -> Self {
        self.inner.checks.push(check);
        self
    }

    /// Validates the registration and fills in default IDs.
    ///
    /// # Errors
    ///
    /// An empty or malformed name or ID; a weight of 0 while passing; a check interval or TTL
    /// under one second; `DeregisterCriticalServiceAfter` under one minute; a non-HTTP URL in
    /// an HTTP check; a timeout on a TTL check; two checks with one ID.
    pub fn build(self) -> Result<ServiceRegistration, ConfigError> {
        let mut reg = self.inner;
        validate_name("name", &reg.name)?;
        if reg.id.is_empty() {
            reg.id = match reg.port {
                Some(port) => format!("{}-{port}", reg.name),
                None => reg.name.clone(),
            };
        }
        validate_name("id", &reg.id)?;
        if let Some((passing, _)) = reg.weights
            && passing == 0
        {
            return Err(ConfigError::Invalid {
                field: "weights.passing",
                reason: "must be at least 1".to_owned(),
            });
        }
        if reg.address.as_deref() == Some("") {
            return Err(ConfigError::Missing { field: "address" });
        }
        let mut seen = BTreeSet::new();
        let mut per_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
        for check in &reg.checks {
            *per_kind.entry(check.kind.label()).or_default() += 1;
        }
        let mut numbered: BTreeMap<&'static str, usize> = BTreeMap::new();
        for check in &mut reg.checks {
            check.validate()?;
            let label = check.kind.label();
            if check.id.is_none() {
                let id = if per_kind.get(label).copied().unwrap_or(0) > 1 {
                    let n = numbered.entry(label).or_default();
                    *n += 1;
                    format!("{}:{label}:{n}", reg.id)
                } else {
                    format!("{}:{label}", reg.id)
                };
                check.id = Some(id);
            }
            if check.name.is_none() {
                check.name = Some(label.to_owned());
            }
            let id = check.id.clone().unwrap_or_default();
            validate_name("check.id", &id)?;
            if !seen.insert(id.clone()) {
                return Err(ConfigError::Duplicate {
                    field: "check.id",
                    value: id,
                });
            }
        }
        Ok(reg)
    }
}

fn validate_name(field: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::Missing { field });
    }
    if value.len() > 256
        || value
            .chars()
            .any(|c| c == '/' || c.is_control() || c == ' ')
    {
        return Err(ConfigError::Invalid {
            field,
            reason: format!(
                "`{value}` must be at most 256 characters without `/`, spaces or control characters"
            ),
        });
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WireRegistration<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weights: Option<WireWeights>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<&'a str, WireAddress<'a>>,
    enable_tag_override: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<WireCheck<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireWeights {
    passing: u32,
    warning: u32,
}

#[derive(Serialize)]
struct WireAddress<'a> {
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "Port")]
    port: u16,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WireCheck<'a> {
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    http: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<&'a BTreeMap<String, Vec<String>>>,
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    tcp: Option<&'a str>,
    #[serde(rename = "GRPC", skip_serializing_if = "Option::is_none")]
    grpc: Option<&'a str>,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "Option::is_none")]
    grpc_use_tls: Option<bool>,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "Option::is_none")]
    tls_skip_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deregister_critical_service_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<&'a str>,
}

fn wire_check(check: &Check) -> WireCheck<'_> {
    let mut wire = WireCheck {
        check_id: check.id.as_deref().unwrap_or_default(),
        name: check.name.as_deref().unwrap_or_default(),
        timeout: check.timeout.map(duration::format),
        tls_skip_verify: check.tls_skip_verify.then_some(true),
        deregister_critical_service_after: check.deregister_after.map(duration::format),
        status: check.status.map(CheckStatus::as_str),
        notes: check.notes.as_deref(),
        ..WireCheck::default()
    };
    match &check.kind {
        CheckKind::Http {
            url,
            method,
            headers,
            interval,
        } => {
            wire.http = Some(url);
            wire.method = method.as_deref();
            wire.header = (!headers.is_empty()).then_some(headers);
            wire.interval = Some(duration::format(*interval));
        }
        CheckKind::Tcp { address, interval } => {
            wire.tcp = Some(address);
            wire.interval = Some(duration::format(*interval));
        }
        CheckKind::Grpc {
            target,
            use_tls,
            interval,
        } => {
            wire.grpc = Some(target);
            wire.grpc_use_tls = use_tls.then_some(true);
            wire.interval = Some(duration::format(*interval));
        }
        CheckKind::Ttl { ttl } => wire.ttl = Some(duration::format(*ttl)),
    }
    wire
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids_and_names() {
        let reg = ServiceRegistration::builder("orders")
            .port(8080)
            .check(Check::ttl(Duration::from_secs(15)))
            .check(Check::http("http://h/health", Duration::from_secs(10)))
            .check(Check::http("http://h/ready", Duration::from_secs(10)))
            .build()
            .unwrap();
        assert_eq!(reg.id(), "orders-8080");
        let ids: Vec<_> = reg.checks().iter().filter_map(Check::check_id).collect();
        assert_eq!(
            ids,
            [
                "orders-8080:ttl",
                "orders-8080:http:1",
                "orders-8080:http:2"
            ]
        );
    }

    #[test]
    fn rejects_nonsense() {
        let bad = [
            ServiceRegistration::builder("").build(),
            ServiceRegistration::builder("a/b").build(),
            ServiceRegistration::builder("s").weights(0, 1).build(),
            ServiceRegistration::builder("s")
                .check(Check::tcp("h:1", Duration::from_millis(100)))
                .build(),
            ServiceRegistration::builder("s")
                .check(Check::http("ftp://x", Duration::from_secs(1)))
                .build(),
            ServiceRegistration::builder("s")
                .check(Check::ttl(Duration::from_secs(5)).timeout(Duration::from_secs(1)))
                .build(),
            ServiceRegistration::builder("s")
                .check(Check::ttl(Duration::from_secs(5)).id("x"))
                .check(Check::tcp("h:1", Duration::from_secs(5)).id("x"))
                .build(),
            ServiceRegistration::builder("s")
                .check(
                    Check::grpc("h:1", Duration::from_secs(5))
                        .deregister_critical_service_after(Duration::from_secs(59)),
                )
                .build(),
        ];
        for result in bad {
            assert!(result.is_err(), "{result:?}");
        }
    }
}
