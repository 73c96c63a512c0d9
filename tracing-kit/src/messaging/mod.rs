//! Trace context and correlation IDs across message brokers.
//!
//! A producer opens [`producer_span`], enters it, and [`inject`]s into the message headers
//! (any [`Carrier`], typically the `HashMap<String, String>` that `sinew-messaging` uses): the
//! headers then carry `traceparent`, `tracestate`, `baggage` and `x-correlation-id`. A
//! consumer opens [`consumer_span`] from the received headers: by default the consumer span
//! *links* to the producer span (the OpenTelemetry messaging convention for asynchronous
//! hops, as opentelemetry-rust-contrib#567 proposes), or, with [`Relation::Parent`], becomes
//! its child so that the whole flow is one trace. [`correlation_id`] restores the ID to put
//! in [`correlation::scope`].
//!
//! ```
//! use std::collections::HashMap;
//! use sinew_tracing_kit::{correlation, messaging};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut headers = HashMap::new();
//! let id = correlation::CorrelationId::parse("order-42").unwrap();
//! correlation::scope(id.clone(), async {
//!     let span = messaging::producer_span("rabbitmq", "orders");
//!     let _entered = span.enter();
//!     messaging::inject(&mut headers);
//! })
//! .await;
//! assert_eq!(headers["x-correlation-id"], "order-42");
//!
//! let span = messaging::consumer_span("rabbitmq", "orders", &headers);
//! let restored = messaging::correlation_id(&headers).unwrap();
//! correlation::scope(restored, async {
//!     let _entered = span.enter();
//!     assert_eq!(correlation::current(), Some(id));
//! })
//! .await;
//! # }
//! ```
//!
//! The kit does not depend on `sinew-messaging`; that crate depends on this one.

use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::correlation::{self, CorrelationId};
use crate::propagation::{self, Carrier, TraceContext};

/// The header the correlation ID travels under in messages.
pub const CORRELATION_HEADER: &str = correlation::DEFAULT_HEADERS[0];

/// How a consumer span relates to the producer span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Relation {
    /// A span link to the producer; the consumer span stays in the local trace (or starts a
    /// new one). The messaging semantic conventions' default.
    #[default]
    Link,
    /// The producer span is the parent: producer and consumer share one trace.
    Parent,
}

/// Writes the current span's context and the current correlation ID (header
/// [`CORRELATION_HEADER`] and baggage) into `headers`. Call it inside the entered
/// [`producer_span`].
pub fn inject<C: Carrier + ?Sized>(headers: &mut C) {
    if let Some(id) = correlation::current() {
        headers.set(CORRELATION_HEADER, id.as_str().to_owned());
    }
    propagation::inject(headers);
}

/// Writes the context of `span` (plus the current correlation ID) into `headers`.
pub fn inject_span<C: Carrier + ?Sized>(span: &tracing::Span, headers: &mut C) {
    if let Some(id) = correlation::current() {
        headers.set(CORRELATION_HEADER, id.as_str().to_owned());
    }
    propagation::inject_span(span, headers);
}

/// Reads the producer's context from `headers`.
pub fn extract<C: Carrier + ?Sized>(headers: &C) -> TraceContext {
    propagation::extract(headers)
}

/// The correlation ID in `headers` ([`CORRELATION_HEADER`], `x-request-id`, then baggage),
/// if a valid one is there.
pub fn correlation_id<C: Carrier + ?Sized>(headers: &C) -> Option<CorrelationId> {
    propagation::correlation_id_from(headers, &correlation::DEFAULT_HEADERS)
}

/// A `PRODUCER` span named `send {destination}`, child of the current span, with
/// `messaging.system`, `messaging.destination.name` and `messaging.operation.type = send`.
/// Enter it, then [`inject`].
pub fn producer_span(system: &str, destination: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "message send",
        otel.name = %format_args!("send {destination}"),
        otel.kind = "producer",
        messaging.system = system,
        messaging.destination.name = destination,
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        correlation_id = Empty,
    );
    if let Some(id) = correlation::current() {
        span.record("correlation_id", id.as_str());
    }
    span
}

/// A `CONSUMER` span named `process {destination}` that links to the producer context in
/// `headers` ([`Relation::Link`]); see [`consumer_span_with`].
pub fn consumer_span<C: Carrier + ?Sized>(
    system: &str,
    destination: &str,
    headers: &C,
) -> tracing::Span {
    consumer_span_with(system, destination, headers, Relation::Link)
}

/// A `CONSUMER` span named `process {destination}` with `messaging.system`,
/// `messaging.destination.name`, `messaging.operation.type = process` and the correlation ID
/// from `headers`, related to the producer context in `headers` as `relation` says. The
/// producer's baggage is kept in either case.
pub fn consumer_span_with<C: Carrier + ?Sized>(
    system: &str,
    destination: &str,
    headers: &C,
    relation: Relation,
) -> tracing::Span {
    let remote = propagation::extract_otel(headers);
    let id = correlation_id(headers);
    let span = tracing::info_span!(
        "message process",
        otel.name = %format_args!("process {destination}"),
        otel.kind = "consumer",
        messaging.system = system,
        messaging.destination.name = destination,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        correlation_id = id.as_ref().map(CorrelationId::as_str),
    );
    if span.is_disabled() {
        return span;
    }
    let parent = match relation {
        Relation::Parent => remote,
        Relation::Link => {
            use opentelemetry::baggage::BaggageExt;
            use opentelemetry::trace::TraceContextExt;
            span.add_link(remote.span().span_context().clone());
            let local = propagation::otel_context_of(&tracing::Span::current());
            if remote.baggage().is_empty() {
                local
            } else {
                local.with_baggage(propagation::baggage_members(remote.baggage()))
            }
        }
    };
    let parent = match &id {
        Some(id) => propagation::with_correlation_baggage(&parent, id),
        None => parent,
    };
    let _ = span.set_parent(parent);
    span
}
