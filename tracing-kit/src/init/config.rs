//! [`Config`], its builder, and the `OTEL_*` environment variables.

use std::fmt;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// `OTEL_SERVICE_NAME`.
const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
const ENV_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds).
const ENV_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_TRACES_SAMPLER`.
const ENV_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`.
const ENV_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// `OTEL_RESOURCE_ATTRIBUTES`.
const ENV_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `RUST_LOG`.
const ENV_RUST_LOG: &str = "RUST_LOG";

const SERVICE_NAME: &str = "service.name";
const SERVICE_VERSION: &str = "service.version";
const DEPLOYMENT_ENVIRONMENT: &str = "deployment.environment.name";

/// The service name used when none is configured, as the OpenTelemetry specification says.
pub const DEFAULT_SERVICE_NAME: &str = "unknown_service";
/// The log filter used when none is configured (and `RUST_LOG` is unset).
pub const DEFAULT_FILTER: &str = "info";
/// Default timeout of one export call.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of [`Guard::shutdown`](super::Guard::shutdown).
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// The OTLP transport.
///
/// # Default
///
/// [`Protocol::HttpProtobuf`], as in the OpenTelemetry specification. It runs on the batch
/// processor's own thread with a blocking client, so it needs no async runtime at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC (usually port 4317), `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (usually port 4318), `http/protobuf`.
    #[default]
    HttpProtobuf,
}

/// Which traces are recorded and exported.
///
/// The `ParentBased*` samplers follow the caller's decision when a request arrives with a
/// sampled (or unsampled) `traceparent`, and use their root rule otherwise.
///
/// # Default
///
/// [`Sampler::ParentBasedAlwaysOn`], as in the OpenTelemetry specification.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Sampler {
    /// Record every trace (`always_on`).
    AlwaysOn,
    /// Record nothing (`always_off`); logs still print, without trace IDs.
    AlwaysOff,
    /// Record this fraction of traces, chosen by trace ID (`traceidratio`); must be in
    /// `0.0..=1.0`.
    TraceIdRatio(f64),
    /// Follow the parent; record every root trace (`parentbased_always_on`).
    #[default]
    ParentBasedAlwaysOn,
    /// Follow the parent; record no root trace (`parentbased_always_off`).
    ParentBasedAlwaysOff,
    /// Follow the parent; record this fraction of root traces (`parentbased_traceidratio`).
    ParentBasedTraceIdRatio(f64),
}

impl Sampler {
    fn ratio(self) -> Option<f64> {
        match self {
            Self::TraceIdRatio(r) | Self::ParentBasedTraceIdRatio(r) => Some(r),
            _ => None,
        }
    }
}

/// How log lines are printed.
///
/// # Default
///
/// [`LogFormat::Human`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One readable line per event, with `trace_id=.. span_id=.. correlation_id=..` at the end.
    #[default]
    Human,
    /// One JSON object per line, with `trace_id`, `span_id` and `correlation_id` keys.
    Json,
}

/// Why a [`Config`] could not be built. The `Display` text is not part of the API: match on
/// the variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The service name was empty.
    #[error("the service name is empty")]
    EmptyServiceName,
    /// A sampling ratio outside `0.0..=1.0` (or NaN).
    #[error("sampling ratio {0} is outside 0.0..=1.0")]
    InvalidRatio(f64),
    /// `OTEL_TRACES_SAMPLER` named a sampler this crate does not know.
    #[error("unknown sampler {0:?}")]
    UnknownSampler(String),
    /// `OTEL_TRACES_SAMPLER_ARG` was not a number.
    #[error("sampler argument {0:?} is not a number")]
    InvalidSamplerArg(String),
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` named a protocol this crate does not support
    /// (`http/json` is not supported).
    #[error("unsupported OTLP protocol {0:?}; use grpc or http/protobuf")]
    UnsupportedProtocol(String),
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("OTLP endpoint {0:?} is not an http:// or https:// URL")]
    InvalidEndpoint(String),
    /// An `OTEL_RESOURCE_ATTRIBUTES` entry was not `key=value` or had bad percent-encoding.
    #[error("resource attribute entry {0:?} is not key=value with valid percent-encoding")]
    InvalidResourceAttribute(String),
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` was not a number of milliseconds.
    #[error("timeout {0:?} is not a whole number of milliseconds")]
    InvalidTimeout(String),
    /// A timeout or deadline of zero.
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    /// The log filter directive did not parse.
    #[error("invalid log filter {directive:?}")]
    InvalidFilter {
        /// The directive as given.
        directive: String,
        /// The parser's error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Everything [`init`](super::init) needs, validated. Build one with [`Config::builder`] or
/// [`Config::from_env`].
///
/// # Default
///
/// See [`ConfigBuilder`]: service `unknown_service`, no endpoint (log only), HTTP/protobuf,
/// parent-based always-on sampling, human logs, filter `info`, 10 s export timeout, 5 s
/// shutdown deadline.
#[derive(Debug)]
pub struct Config {
    pub(crate) service_name: String,
    pub(crate) service_version: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Protocol,
    pub(crate) sampler: Sampler,
    pub(crate) log_format: LogFormat,
    pub(crate) filter: String,
    pub(crate) export_timeout: Duration,
    pub(crate) shutdown_deadline: Duration,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) writer: Option<BoxMakeWriter>,
}

impl Config {
    /// A builder with every default (see [`ConfigBuilder`]); the environment is not read.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// A builder filled from the `OTEL_*` variables and `RUST_LOG`, for you to adjust.
    ///
    /// See [`ConfigBuilder::from_env_with`] for the variables read.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a variable is set to a value that does not parse.
    pub fn from_env() -> Result<ConfigBuilder, ConfigError> {
        ConfigBuilder::from_env_with(|key| std::env::var(key).ok())
    }

    /// The service name (`service.name`).
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// The OTLP endpoint, if spans are exported.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The OTLP transport.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The sampler.
    pub fn sampler(&self) -> Sampler {
        self.sampler
    }

    /// The log format.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// The log filter directive (`EnvFilter` syntax).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Extra resource attributes, in order, beyond service name, version and environment.
    pub fn resource_attributes(&self) -> &[(String, String)] {
        &self.resource_attributes
    }

    /// The timeout of one export call.
    pub fn export_timeout(&self) -> Duration {
        self.export_timeout
    }

    /// The deadline [`Guard::shutdown`](super::Guard::shutdown) uses.
    pub fn shutdown_deadline(&self) -> Duration {
        self.shutdown_deadline
    }
}

/// Builds a [`Config`]; every setter consumes and returns the builder, and [`build`]
/// validates everything once.
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | service name | [`DEFAULT_SERVICE_NAME`] |
/// | service version, environment | none |
/// | endpoint | none: no exporter, logs only (spans are still created, so logs carry trace IDs) |
/// | protocol | [`Protocol::HttpProtobuf`] |
/// | sampler | [`Sampler::ParentBasedAlwaysOn`] |
/// | log format | [`LogFormat::Human`] |
/// | filter | [`DEFAULT_FILTER`] |
/// | export timeout | [`DEFAULT_EXPORT_TIMEOUT`] |
/// | shutdown deadline | [`DEFAULT_SHUTDOWN_DEADLINE`] |
/// | log writer | standard output |
///
/// [`build`]: ConfigBuilder::build
#[derive(Debug)]
#[must_use]
pub struct ConfigBuilder {
    service_name: Option<String>,
    service_version: Option<String>,
    environment: Option<String>,
    endpoint: Option<String>,
    protocol: Protocol,
    sampler: Sampler,
    log_format: LogFormat,
    filter: Option<String>,
    export_timeout: Duration,
    shutdown_deadline: Duration,
    resource_attributes: Vec<(String, String)>,
    writer: Option<BoxMakeWriter>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self {
            service_name: None,
            service_version: None,
            environment: None,
            endpoint: None,
            protocol: Protocol::default(),
            sampler: Sampler::default(),
            log_format: LogFormat::default(),
            filter: None,
            export_timeout: DEFAULT_EXPORT_TIMEOUT,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
            resource_attributes: Vec::new(),
            writer: None,
        }
    }
}

impl ConfigBuilder {
    /// A builder filled from variables looked up through `lookup`, so that tests (and
    /// programs with their own configuration source) need not touch the process environment.
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `OTEL_SERVICE_NAME` | service name (wins over `service.name` in the attributes) |
    /// | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; unset or empty means no exporter |
    /// | `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` or `http/protobuf` |
    /// | `OTEL_EXPORTER_OTLP_TIMEOUT` | export timeout in milliseconds |
    /// | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` (the ratio defaults to 1.0) |
    /// | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,key=value`, percent-decoded; `service.name`, `service.version` and `deployment.environment.name` fill those settings |
    /// | `RUST_LOG` | the log filter |
    ///
    /// ```
    /// use sinew_tracing_kit::init::{ConfigBuilder, Protocol, Sampler};
    ///
    /// let config = ConfigBuilder::from_env_with(|key| match key {
    ///     "OTEL_SERVICE_NAME" => Some("orders".to_owned()),
    ///     "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".to_owned()),
    ///     "OTEL_TRACES_SAMPLER" => Some("parentbased_traceidratio".to_owned()),
    ///     "OTEL_TRACES_SAMPLER_ARG" => Some("0.25".to_owned()),
    ///     _ => None,
    /// })?
    /// .build()?;
    /// assert_eq!(config.service_name(), "orders");
    /// assert_eq!(config.protocol(), Protocol::Grpc);
    /// assert_eq!(config.sampler(), Sampler::ParentBasedTraceIdRatio(0.25));
    /// # Ok::<(), sinew_tracing_kit::init::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a variable is set to a value that does not parse.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let mut builder = Self::default();

        if let Some(raw) = get(ENV_RESOURCE_ATTRIBUTES) {
            for (key, value) in parse_resource_attributes(&raw)? {
                match key.as_str() {
                    SERVICE_NAME => builder.service_name = Some(value),
                    SERVICE_VERSION => builder.service_version = Some(value),
                    DEPLOYMENT_ENVIRONMENT => builder.environment = Some(value),
                    _ => builder.resource_attributes.push((key, value)),
                }
            }
        }
        if let Some(name) = get(ENV_SERVICE_NAME) {
            builder.service_name = Some(name.trim().to_owned());
        }
        builder.endpoint = get(ENV_ENDPOINT).map(|e| e.trim().to_owned());
        if let Some(protocol) = get(ENV_PROTOCOL) {
            builder.protocol = parse_protocol(&protocol)?;
        }
        if let Some(timeout) = get(ENV_TIMEOUT) {
            let ms: u64 = timeout
                .trim()
                .parse()
                .map_err(|_| ConfigError::InvalidTimeout(timeout.clone()))?;
            builder.export_timeout = Duration::from_millis(ms);
        }
        if let Some(sampler) = get(ENV_SAMPLER) {
            builder.sampler = parse_sampler(&sampler, get(ENV_SAMPLER_ARG).as_deref())?;
        }
        builder.filter = get(ENV_RUST_LOG);
        Ok(builder)
    }

    /// The service name (`service.name`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The service version (`service.version`), typically `env!("CARGO_PKG_VERSION")`.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// The deployment environment (`deployment.environment.name`), e.g. `production`.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// The OTLP base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://host:4317` for gRPC,
    /// `http://host:4318` for HTTP (where `/v1/traces` is appended).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Exports nothing (undoes [`endpoint`](Self::endpoint) or `OTEL_EXPORTER_OTLP_ENDPOINT`):
    /// spans are still created, so log lines carry trace IDs.
    pub fn no_endpoint(mut self) -> Self {
        self.endpoint = None;
        self
    }

    /// The OTLP transport.
    pub const fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The sampler.
    pub const fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// The log format.
    pub const fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// The log filter, in `EnvFilter` (`RUST_LOG`) syntax, e.g. `info,my_crate=debug`.
    ///
    /// Spans the filter rejects are not created at all, so they are neither logged nor
    /// exported.
    pub fn filter(mut self, directive: impl Into<String>) -> Self {
        self.filter = Some(directive.into());
        self
    }

    /// The timeout of one export call.
    pub const fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }

    /// How long [`Guard::shutdown`](super::Guard::shutdown) (and the guard's `Drop`) waits for
    /// the last spans to be flushed.
    pub const fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Adds a resource attribute (after the ones from the environment).
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }

    /// Where log lines go instead of standard output (a file, a buffer in a test, ...).
    pub fn log_writer<W>(mut self, writer: W) -> Self
    where
        W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        self.writer = Some(BoxMakeWriter::new(writer));
        self
    }

    /// Validates and builds the [`Config`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an empty service name, a ratio outside `0.0..=1.0`, an endpoint
    /// that is not `http(s)://`, a zero timeout or deadline, or a filter that does not parse.
    pub fn build(self) -> Result<Config, ConfigError> {
        let service_name = self
            .service_name
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        if service_name.trim().is_empty() {
            return Err(ConfigError::EmptyServiceName);
        }
        if let Some(ratio) = self.sampler.ratio()
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(ConfigError::InvalidRatio(ratio));
        }
        let endpoint = self.endpoint.filter(|e| !e.trim().is_empty());
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::InvalidEndpoint(endpoint.clone()));
        }
        if self.export_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("export timeout"));
        }
        if self.shutdown_deadline.is_zero() {
            return Err(ConfigError::ZeroDuration("shutdown deadline"));
        }
        let filter = self.filter.unwrap_or_else(|| DEFAULT_FILTER.to_owned());
        if let Err(source) = tracing_subscriber::EnvFilter::builder().parse(&filter) {
            return Err(ConfigError::InvalidFilter {
                directive: filter,
                source,
            });
        }
        Ok(Config {
            service_name,
            service_version: self.service_version,
            environment: self.environment,
            endpoint,
            protocol: self.protocol,
            sampler: self.sampler,
            log_format: self.log_format,
            filter,
            export_timeout: self.export_timeout,
            shutdown_deadline: self.shutdown_deadline,
            resource_attributes: self.resource_attributes,
            writer: self.writer,
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        })
    }
}

fn parse_protocol(raw: &str) -> Result<Protocol, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        _ => Err(ConfigError::UnsupportedProtocol(raw.to_owned())),
    }
}

fn parse_sampler(raw: &str, arg: Option<&str>) -> Result<Sampler, ConfigError> {
    let ratio = || -> Result<f64, ConfigError> {
        let Some(arg) = arg else { return Ok(1.0) };
        let ratio: f64 = arg
            .trim()
            .parse()
            .map_err(|_| ConfigError::InvalidSamplerArg(arg.to_owned()))?;
        if (0.0..=1.0).contains(&ratio) {
            Ok(ratio)
        } else {
            Err(ConfigError::InvalidRatio(ratio))
        }
    };
    Ok(match raw.trim().to_ascii_lowercase().as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatio(ratio()?),
        "parentbased_always_on" => Sampler::ParentBasedAlwaysOn,
        "parentbased_always_off" => Sampler::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => Sampler::ParentBasedTraceIdRatio(ratio()?),
        _ => return Err(ConfigError::UnknownSampler(raw.to_owned())),
    })
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k=v`, both sides percent-decoded, blanks trimmed,
/// empty entries skipped).
fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for entry in raw.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let bad = || ConfigError::InvalidResourceAttribute(entry.to_owned());
        let (key, value) = entry.split_once('=').ok_or_else(bad)?;
        let key = percent_decode(key.trim()).ok_or_else(bad)?;
        let value = percent_decode(value.trim()).ok_or_else(bad)?;
        if key.is_empty() {
            return Err(bad());
        }
        out.push((key, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc").as_deref(), Some("a b,c"));
        assert_eq!(percent_decode("%e2%9c%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn sampler_names() {
        assert_eq!(
            parse_sampler("always_on", None).ok(),
            Some(Sampler::AlwaysOn)
        );
        assert_eq!(
            parse_sampler("TraceIdRatio", Some("0.5")).ok(),
            Some(Sampler::TraceIdRatio(0.5))
        );
        assert_eq!(
            parse_sampler("parentbased_traceidratio", None).ok(),
            Some(Sampler::ParentBasedTraceIdRatio(1.0))
        );
        assert!(matches!(
            parse_sampler("traceidratio", Some("1.5")),
            Err(ConfigError::InvalidRatio(_))
        ));
        assert!(matches!(
            parse_sampler("traceidratio", Some("half")),
            Err(ConfigError::InvalidSamplerArg(_))
        ));
        assert!(matches!(
            parse_sampler("jaeger_remote", None),
            Err(ConfigError::UnknownSampler(_))
        ));
    }
}
