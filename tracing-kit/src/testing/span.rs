//! [`RecordedSpan`]: a plain view of a finished span, free of SDK and protobuf types.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The kind of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanKind {
    /// Internal work (the default for `tracing` spans).
    Internal,
    /// The server side of a request.
    Server,
    /// The client side of a request.
    Client,
    /// A message sent.
    Producer,
    /// A message received.
    Consumer,
    /// Not set (only seen on the wire).
    Unspecified,
}

/// The status of a span.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanStatus {
    /// Not set.
    Unset,
    /// Explicitly OK.
    Ok,
    /// An error, with its description.
    Error(String),
}

/// A link to another span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanLink {
    /// The linked span's trace ID, 32 lowercase hex digits.
    pub trace_id: String,
    /// The linked span's ID, 16 lowercase hex digits.
    pub span_id: String,
}

/// A finished span, as recorded by [`capture`](super::capture) or received by
/// [`FakeCollector`](super::FakeCollector).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecordedSpan {
    /// The span name.
    pub name: String,
    /// The trace ID, 32 lowercase hex digits.
    pub trace_id: String,
    /// The span ID, 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's span ID, or `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The kind.
    pub kind: SpanKind,
    /// The status.
    pub status: SpanStatus,
    /// The attributes, every value rendered as a string (`true`, `42`, `a`; arrays as
    /// `[a, b]`).
    pub attributes: BTreeMap<String, String>,
    /// The names of the span's events (`tracing` events inside the span).
    pub events: Vec<String>,
    /// The links.
    pub links: Vec<SpanLink>,
}

impl RecordedSpan {
    /// One attribute's value, as a string.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

mod from_sdk {
    use opentelemetry::trace::{SpanId, Status};
    use opentelemetry_sdk::trace::SpanData;

    use super::*;

    pub(crate) fn convert(span: &SpanData) -> RecordedSpan {
        RecordedSpan {
            name: span.name.to_string(),
            trace_id: span.span_context.trace_id().to_string(),
            span_id: span.span_context.span_id().to_string(),
            parent_span_id: (span.parent_span_id != SpanId::INVALID)
                .then(|| span.parent_span_id.to_string()),
            kind: match span.span_kind {
                opentelemetry::trace::SpanKind::Client => SpanKind::Client,
                opentelemetry::trace::SpanKind::Server => SpanKind::Server,
                opentelemetry::trace::SpanKind::Producer => SpanKind::Producer,
                opentelemetry::trace::SpanKind::Consumer => SpanKind::Consumer,
                opentelemetry::trace::SpanKind::Internal => SpanKind::Internal,
            },
            status: match &span.status {
                Status::Unset => SpanStatus::Unset,
                Status::Ok => SpanStatus::Ok,
                Status::Error { description } => SpanStatus::Error(description.to_string()),
            },
            attributes: span
                .attributes
                .iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .collect(),
            events: span.events.iter().map(|e| e.name.to_string()).collect(),
            links: span
                .links
                .iter()
                .map(|l| SpanLink {
                    trace_id: l.span_context.trace_id().to_string(),
                    span_id: l.span_context.span_id().to_string(),
                })
                .collect(),
        }
    }
}

mod from_proto {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{Span, span, status};

    use super::*;

    pub(crate) fn any_value(value: Option<&AnyValue>) -> String {
        match value.and_then(|v| v.value.as_ref()) {
            None => String::new(),
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::BoolValue(b)) => b.to_string(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            Some(any_value::Value::DoubleValue(d)) => d.to_string(),
            Some(any_value::Value::ArrayValue(a)) => {
                let items: Vec<String> = a.values.iter().map(|v| any_value(Some(v))).collect();
                format!("[{}]", items.join(", "))
            }
            Some(any_value::Value::BytesValue(b)) => hex(b),
            Some(other) => format!("{other:?}"),
        }
    }

    pub(crate) fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
        kvs.iter()
            .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
            .collect()
    }

    pub(crate) fn convert(span: &Span) -> RecordedSpan {
        RecordedSpan {
            name: span.name.clone(),
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: (!span.parent_span_id.is_empty()
                && span.parent_span_id.iter().any(|b| *b != 0))
            .then(|| hex(&span.parent_span_id)),
            kind: match span::SpanKind::try_from(span.kind) {
                Ok(span::SpanKind::Internal) => SpanKind::Internal,
                Ok(span::SpanKind::Server) => SpanKind::Server,
                Ok(span::SpanKind::Client) => SpanKind::Client,
                Ok(span::SpanKind::Producer) => SpanKind::Producer,
                Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
                _ => SpanKind::Unspecified,
            },
            status: match span.status.as_ref().map(|s| (s.code(), &s.message)) {
                Some((status::StatusCode::Error, message)) => SpanStatus::Error(message.clone()),
                Some((status::StatusCode::Ok, _)) => SpanStatus::Ok,
                _ => SpanStatus::Unset,
            },
            attributes: attributes(&span.attributes),
            events: span.events.iter().map(|e| e.name.clone()).collect(),
            links: span
                .links
                .iter()
                .map(|l| SpanLink {
                    trace_id: hex(&l.trace_id),
                    span_id: hex(&l.span_id),
                })
                .collect(),
        }
    }
}

pub(crate) use from_proto::{attributes as proto_attributes, convert as from_proto};
pub(crate) use from_sdk::convert as from_sdk;
