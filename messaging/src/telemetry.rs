//! Producer and consumer spans (OpenTelemetry messaging conventions) and the counters, shared
//! by every backend. With the `opentelemetry` feature, trace context travels in the headers.

use std::future::Future;
use std::sync::Arc;

use tracing::Instrument;
use tracing::field::Empty;

use crate::envelope::{CORRELATION_ID, Message};
use crate::metrics::Counters;
use crate::publisher::PublishError;
use crate::subscriber::ConsumerTrace;
use crate::subscriber::process::Settlement;

/// What a backend tells the spans about itself, and its counters.
#[derive(Debug)]
pub(crate) struct Telemetry {
    /// `messaging.system`: `rabbitmq` or `memory`.
    pub(crate) system: &'static str,
    /// The exchange published to.
    pub(crate) exchange: String,
    pub(crate) counters: Arc<Counters>,
}

impl Telemetry {
    pub(crate) fn new(system: &'static str, exchange: impl Into<String>) -> Self {
        Self {
            system,
            exchange: exchange.into(),
            counters: Arc::default(),
        }
    }
}

fn error_type(e: &PublishError) -> &'static str {
    match e {
        PublishError::Unroutable { .. } => "unroutable",
        PublishError::Nacked => "nacked",
        PublishError::ConnectionLost => "connection_lost",
        PublishError::QueueFull { .. } => "queue_full",
        PublishError::Closed => "closed",
        PublishError::DeadlineExceeded { .. } => "deadline_exceeded",
        PublishError::BufferFull { .. } => "buffer_full",
    }
}

/// Runs one publish inside a `PRODUCER` span and counts it. With the `opentelemetry` feature
/// the span's context goes into the message's `traceparent`/`tracestate` headers, unless the
/// message already carries a creation context (an outbox row, say): then the span links to it.
pub(crate) async fn publish<F, Fut>(
    telemetry: &Telemetry,
    mut message: Message,
    send: F,
) -> Result<(), PublishError>
where
    F: FnOnce(Message) -> Fut,
    Fut: Future<Output = Result<(), PublishError>>,
{
    let span = producer_span(telemetry, &mut message);
    let result = send(message).instrument(span.clone()).await;
    published(telemetry, &span, &result);
    result
}

/// The `PRODUCER` span of one publish, counted as published; [`publish`] in two halves, for
/// a backend that sends a batch at once. With the `opentelemetry` feature the span's context
/// goes into the headers, or the span links to the creation context already there.
pub(crate) fn producer_span(telemetry: &Telemetry, message: &mut Message) -> tracing::Span {
    // `format_args!` fields are only formatted when a subscriber records them.
    let (exchange, key) = (&telemetry.exchange, message.routing_key());
    let span = tracing::info_span!(
        "publish",
        otel.name = %format_args!("publish {exchange}:{key}"),
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = telemetry.system,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %format_args!("{exchange}:{key}"),
        messaging.rabbitmq.destination.routing_key = message.routing_key(),
        messaging.message.id = message.message_id(),
        messaging.message.conversation_id = message.header(CORRELATION_ID),
        messaging.message.body.size = message.body().len(),
        error.type = Empty,
    );
    #[cfg(feature = "opentelemetry")]
    otel::link_or_inject(&span, message.headers_mut());
    Counters::inc(&telemetry.counters.published);
    span
}

/// Records the result of a publish on its [`producer_span`] and in the counters.
pub(crate) fn published(
    telemetry: &Telemetry,
    span: &tracing::Span,
    result: &Result<(), PublishError>,
) {
    match result {
        Ok(()) => Counters::inc(&telemetry.counters.confirmed),
        Err(e) => {
            if matches!(e, PublishError::Unroutable { .. }) {
                Counters::inc(&telemetry.counters.returned);
            }
            span.record("error.type", error_type(e));
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// A `CONSUMER` span for one delivery. With the `opentelemetry` feature it links to the
/// producer context in the headers and, with [`ConsumerTrace::ChildAndLink`], is also its
/// child.
pub(crate) fn consumer_span(
    telemetry: &Telemetry,
    queue: &str,
    message: &Message,
    redelivery_count: u32,
    #[cfg_attr(
        not(feature = "opentelemetry"),
        allow(unused_variables, reason = "only trace propagation relates spans")
    )]
    trace: ConsumerTrace,
) -> tracing::Span {
    let (exchange, key) = (&telemetry.exchange, message.routing_key());
    let span = tracing::info_span!(
        "process",
        otel.name = %format_args!("process {exchange}:{key}:{queue}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = telemetry.system,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %format_args!("{exchange}:{key}:{queue}"),
        messaging.destination.subscription.name = queue,
        messaging.rabbitmq.destination.routing_key = message.routing_key(),
        messaging.message.id = message.message_id(),
        messaging.message.conversation_id = message.header(CORRELATION_ID),
        messaging.message.body.size = message.body().len(),
        messaging.sinew.redelivery_count = redelivery_count,
        messaging.sinew.outcome = Empty,
        error.type = Empty,
    );
    #[cfg(feature = "opentelemetry")]
    match trace {
        ConsumerTrace::ChildAndLink => otel::child_and_link(&span, message.headers()),
        ConsumerTrace::LinkOnly => {
            otel::link(&span, message.headers());
        }
    }
    Counters::inc(&telemetry.counters.consumed);
    span
}

/// Records how a delivery settled on its span and in the counters.
pub(crate) fn settled(telemetry: &Telemetry, span: &tracing::Span, settlement: &Settlement) {
    let outcome = match settlement {
        Settlement::Ack => "ack",
        Settlement::Retry { .. } => {
            Counters::inc(&telemetry.counters.retried);
            "retry"
        }
        Settlement::DeadLetter { message } => {
            Counters::inc(&telemetry.counters.dead_lettered);
            span.record(
                "error.type",
                message
                    .header(crate::dead_letter::headers::ERROR_TYPE)
                    .unwrap_or("dead_letter"),
            );
            span.record("otel.status_code", "ERROR");
            "dead_letter"
        }
    };
    span.record("messaging.sinew.outcome", outcome);
}

/// W3C trace context in message headers, through `sinew-tracing-kit`.
#[cfg(feature = "opentelemetry")]
pub(crate) mod otel {
    use std::collections::BTreeMap;

    use sinew_tracing_kit::propagation;

    use crate::envelope::TRACEPARENT;

    const KEYS: [&str; 3] = [TRACEPARENT, crate::envelope::TRACESTATE, "baggage"];

    fn carrier(headers: &BTreeMap<String, String>) -> Vec<(String, String)> {
        KEYS.iter()
            .filter_map(|k| headers.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect()
    }

    fn inject(span: &tracing::Span, headers: &mut BTreeMap<String, String>) {
        let mut written = Vec::new();
        propagation::inject_span(span, &mut written);
        headers.extend(written);
    }

    /// Links `span` to the context in `headers`, if there is a valid one.
    pub(crate) fn link(span: &tracing::Span, headers: &BTreeMap<String, String>) -> bool {
        let cx = propagation::extract(&carrier(headers));
        let valid = cx.is_valid();
        if valid {
            cx.link_from(span);
        }
        valid
    }

    /// Makes the context in `headers`, if there is a valid one, the parent of `span` (which
    /// must not have been entered yet) and links to it.
    pub(crate) fn child_and_link(span: &tracing::Span, headers: &BTreeMap<String, String>) {
        let cx = propagation::extract(&carrier(headers));
        if cx.is_valid() {
            cx.set_as_parent_of(span);
            cx.link_from(span);
        }
    }

    /// A producer span links to a creation context already in the headers, or else writes its
    /// own context there.
    pub(crate) fn link_or_inject(span: &tracing::Span, headers: &mut BTreeMap<String, String>) {
        if !link(span, headers) {
            inject(span, headers);
        }
    }

    /// Writes the current span's context into `headers` unless they carry a `traceparent`.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn inject_current(headers: &mut BTreeMap<String, String>) {
        if !headers.contains_key(TRACEPARENT) {
            inject(&tracing::Span::current(), headers);
        }
    }
}
