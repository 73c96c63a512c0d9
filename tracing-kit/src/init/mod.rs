//! OpenTelemetry in one call: [`init`] (or [`init_from_env`]) installs logging, tracing,
//! propagation and export, and returns a [`Guard`] that flushes on shutdown.
//!
//! It installs, globally:
//! - a `tracing` subscriber with an `EnvFilter` and a human or JSON formatter that prints
//!   `trace_id`, `span_id` and `correlation_id` on every line logged inside a span;
//! - the `tracing-opentelemetry` layer, so `tracing` spans become OpenTelemetry spans;
//! - the W3C TraceContext + Baggage propagator;
//! - a tracer provider whose resource carries `service.name`, `service.version`,
//!   `service.instance.id` (a UUIDv7 per process) and `deployment.environment.name`.
//!
//! Without an endpoint nothing is exported (the embedded default): spans are still created, so
//! log lines still carry trace IDs. With one, spans go out over OTLP/HTTP or OTLP/gRPC in
//! batches.
//!
//! ```
//! use sinew_tracing_kit::init::{self, Config, LogFormat};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let guard = init::init(
//!     Config::builder()
//!         .service_name("orders")
//!         .service_version(env!("CARGO_PKG_VERSION"))
//!         .log_format(LogFormat::Json)
//!         .build()?,
//! )?;
//! tracing::info_span!("checkout").in_scope(|| {
//!     tracing::info!("this line carries trace_id and span_id");
//! });
//! assert!(guard.shutdown().is_flushed());
//! # Ok(())
//! # }
//! ```
//!
//! Exporting, with the configuration taken from the standard variables
//! (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
//! `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_RESOURCE_ATTRIBUTES`, `RUST_LOG`) and adjusted in code:
//!
//! ```no_run
//! use sinew_tracing_kit::init::{self, Config};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let _guard = init::init(
//!     Config::from_env()?
//!         .service_version(env!("CARGO_PKG_VERSION"))
//!         .endpoint("http://127.0.0.1:4318")
//!         .build()?,
//! )?;
//! // ... run the service; dropping the guard flushes (within the shutdown deadline).
//! # Ok(())
//! # }
//! ```
//!
//! # Foot-guns this avoids
//!
//! - **No `traceparent` goes out**: the default global propagator does nothing. `init` sets
//!   TraceContext + Baggage.
//! - **"there is no reactor running"**: the batch processor exports from its own thread. HTTP
//!   uses the blocking client, which needs no runtime; the gRPC exporter is built on, and kept
//!   running by, a small runtime of its own, so `init` works inside or outside tokio.
//! - **Shutdown deadlocks on a current-thread runtime** (opentelemetry-rust#2583): the
//!   [`Guard`] shuts down on a plain thread and waits at most its deadline.
//! - **Lost spans at exit**: the global subscriber keeps the provider alive forever, so its
//!   `Drop` never flushes; the guard's does.
//! - **No trace ID in logs** (opentelemetry-rust#625): the formatter prints them.
//! - **Feedback loops**: spans from the exporter's own stack (`h2`, `hyper`, `tonic`,
//!   `reqwest`, `opentelemetry*`) are never exported, even at `RUST_LOG=trace`.
//! - **Version skew between 0.x OpenTelemetry crates**: no SDK type is part of this API.
//!
//! Spans the filter rejects are not created at all: with the default `info` filter a
//! `debug_span!` is neither logged nor exported.

mod config;
#[cfg(feature = "otlp")]
mod exporter;
pub(crate) mod format;
mod guard;

pub use config::{
    Config, ConfigBuilder, ConfigError, DEFAULT_EXPORT_TIMEOUT, DEFAULT_FILTER,
    DEFAULT_SERVICE_NAME, DEFAULT_SHUTDOWN_DEADLINE, LogFormat, Protocol, Sampler,
};
pub use guard::{Guard, ScopedGuard, ShutdownFailure, ShutdownOutcome};

use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

use self::format::WithIds;
use self::guard::Pipeline;

/// The instrumentation scope of the spans this crate creates.
const TRACER_NAME: &str = env!("CARGO_PKG_NAME");

/// Why [`init`] failed. The `Display` text is not part of the API: match on the variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The configuration read from the environment was invalid.
    #[error("invalid tracing configuration")]
    Config(#[from] ConfigError),
    /// A global `tracing` subscriber was already installed ([`init`] was called twice, or
    /// another crate installed one). Nothing was changed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
    /// An endpoint is configured but the crate was built without the `otlp` feature.
    #[error("an OTLP endpoint is configured but the `otlp` feature is disabled")]
    OtlpDisabled,
    /// The OTLP exporter could not be built (a malformed endpoint URL, say).
    #[error("could not build the OTLP exporter")]
    Exporter(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The gRPC exporter's runtime or thread could not be started.
    #[error("could not start the OTLP exporter's runtime")]
    Runtime(#[source] std::io::Error),
}

/// Installs logging, tracing, propagation and (with an endpoint) export globally. See the
/// [module docs](self).
///
/// May be called inside or outside a tokio runtime, with either protocol.
///
/// # Errors
///
/// [`InitError::AlreadyInitialized`] if a global subscriber is already set;
/// [`InitError::Exporter`], [`InitError::Runtime`] or [`InitError::OtlpDisabled`] when the
/// exporter cannot be set up.
pub fn init(config: Config) -> Result<Guard, InitError> {
    let (dispatch, guard) = build(config)?;
    if tracing::dispatcher::set_global_default(dispatch).is_err() {
        // The guard shuts the unused provider down as it drops.
        drop(guard);
        return Err(InitError::AlreadyInitialized);
    }
    if let Some(provider) = guard.provider() {
        opentelemetry::global::set_tracer_provider(provider);
    }
    set_global_propagator();
    Ok(guard)
}

/// [`init`] with [`Config::from_env`] as is.
///
/// # Errors
///
/// As [`init`], plus [`InitError::Config`] when a variable does not parse.
pub fn init_from_env() -> Result<Guard, InitError> {
    init(Config::from_env()?.build()?)
}

/// As [`init`], but the subscriber is the current thread's default only (until the returned
/// guard drops) and the global tracer provider is left alone; the global propagator is still
/// set (it is stateless). For tests and tools that must not touch global state.
///
/// Spans and events from other threads (tokio worker threads included) do not reach this
/// subscriber.
///
/// # Errors
///
/// As [`init`], except that it never returns [`InitError::AlreadyInitialized`].
pub fn init_scoped(config: Config) -> Result<ScopedGuard, InitError> {
    let (dispatch, guard) = build(config)?;
    let default = tracing::dispatcher::set_default(&dispatch);
    set_global_propagator();
    Ok(ScopedGuard::new(guard, default))
}

/// Sets the global W3C TraceContext + Baggage propagator (the default one does nothing).
pub(crate) fn set_global_propagator() {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
}

/// Targets whose spans are never exported: the exporter's own stack (exporting them would
/// feed back into the exporter) and the SDK's internal logs.
pub(crate) fn export_noise_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(
            [
                "h2",
                "hyper",
                "hyper_util",
                "tonic",
                "tower",
                "reqwest",
                "opentelemetry",
                "opentelemetry_sdk",
                "opentelemetry_otlp",
                "opentelemetry-otlp",
            ]
            .map(|t| (t, LevelFilter::OFF)),
        )
}

/// Tells the kit which sampler the installed tracer provider uses, for applications that build
/// their own provider instead of calling [`init`] (which does this itself).
///
/// The server layers use it to skip building spans that the sampler would drop: with
/// [`Sampler::AlwaysOff`], or a parent-based sampler and an unsampled incoming `traceparent`,
/// a request then costs a few hundred nanoseconds instead of a few microseconds, while its
/// correlation ID and trace context are still propagated. Without a declaration every request
/// takes the full path.
pub fn declare_sampler(sampler: Sampler) {
    crate::sampling::record(sampler);
}

/// Builds the subscriber and the guard without installing anything.
fn build(config: Config) -> Result<(Dispatch, Guard), InitError> {
    crate::sampling::record(config.sampler);
    let provider_builder = SdkTracerProvider::builder()
        .with_resource(resource(&config))
        .with_sampler(sdk_sampler(config.sampler));
    let (provider, after) = match config.endpoint.as_deref() {
        None => (provider_builder.build(), None),
        #[cfg(feature = "otlp")]
        Some(endpoint) => {
            let built = exporter::build(&config, endpoint)?;
            (
                provider_builder.with_batch_exporter(built.exporter).build(),
                built.after_shutdown,
            )
        }
        #[cfg(not(feature = "otlp"))]
        Some(_) => return Err(InitError::OtlpDisabled),
    };

    // Validated in `ConfigBuilder::build`; fall back to the default rather than panic.
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&config.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let writer = config
        .writer
        .unwrap_or_else(|| BoxMakeWriter::new(std::io::stdout));
    let (human, json) = match config.log_format {
        LogFormat::Human => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .event_format(WithIds::human(tracing_subscriber::fmt::format())),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .event_format(WithIds::json(tracing_subscriber::fmt::format().json())),
            ),
        ),
    };
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(TRACER_NAME))
        // Busy/idle times cost two clock reads per poll of every instrumented future, and the
        // thread attributes two more per span; neither is worth it on a request path.
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(export_noise_filter());
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(human)
        .with(json);

    let guard = Guard::new(Pipeline { provider, after }, config.shutdown_deadline);
    Ok((Dispatch::new(subscriber), guard))
}

fn resource(config: &Config) -> Resource {
    let mut attributes = vec![KeyValue::new(
        "service.instance.id",
        crate::correlation::CorrelationId::generate().to_string(),
    )];
    if let Some(version) = &config.service_version {
        attributes.push(KeyValue::new("service.version", version.clone()));
    }
    if let Some(environment) = &config.environment {
        attributes.push(KeyValue::new(
            "deployment.environment.name",
            environment.clone(),
        ));
    }
    attributes.extend(
        config
            .resource_attributes
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    // `builder_empty`: `Resource::builder()` would read OTEL_* from the process environment
    // behind our back (we read it ourselves, testably, in `Config::from_env`).
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build()
}

fn sdk_sampler(sampler: Sampler) -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler as S;
    match sampler {
        Sampler::AlwaysOn => S::AlwaysOn,
        Sampler::AlwaysOff => S::AlwaysOff,
        Sampler::TraceIdRatio(r) => S::TraceIdRatioBased(r),
        Sampler::ParentBasedAlwaysOn => S::ParentBased(Box::new(S::AlwaysOn)),
        Sampler::ParentBasedAlwaysOff => S::ParentBased(Box::new(S::AlwaysOff)),
        Sampler::ParentBasedTraceIdRatio(r) => S::ParentBased(Box::new(S::TraceIdRatioBased(r))),
    }
}
