//! Message headers: correlation, causation, trace context and free-form entries.

use std::collections::BTreeMap;

/// Header carrying the correlation ID (the same name `sinew-tracing-kit` uses).
pub const CORRELATION_ID: &str = "x-correlation-id";
/// Header carrying the causation ID: the ID of the event or command that caused this one.
pub const CAUSATION_ID: &str = "x-causation-id";
/// W3C trace context `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace context `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// Headers that travel beside an event's body, as AMQP message headers.
///
/// The well-known entries have typed accessors; anything else goes in the free-form map.
/// Free-form names that collide with a well-known one, or start with `cloudEvents_` or
/// `messaging-` (reserved for this crate), are ignored when the headers are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    other: BTreeMap<String, String>,
}

impl Headers {
    /// Empty headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation ID.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation ID.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the W3C `traceparent`.
    pub fn with_traceparent(mut self, value: impl Into<String>) -> Self {
        self.traceparent = Some(value.into());
        self
    }

    /// Sets the W3C `tracestate`.
    pub fn with_tracestate(mut self, value: impl Into<String>) -> Self {
        self.tracestate = Some(value.into());
        self
    }

    /// Sets a free-form header.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.other.insert(name.into(), value.into());
        self
    }

    /// The correlation ID.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The causation ID.
    pub fn causation_id(&self) -> Option<&str> {
        self.causation_id.as_deref()
    }

    /// The W3C `traceparent`.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The W3C `tracestate`.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// A free-form header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.other.get(name).map(String::as_str)
    }

    /// The free-form headers.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.other.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn is_reserved(name: &str) -> bool {
        matches!(
            name,
            CORRELATION_ID | CAUSATION_ID | TRACEPARENT | TRACESTATE
        ) || name.starts_with("cloudEvents_")
            || name.starts_with("messaging-")
    }

    /// Writes these headers into a transport header map.
    pub fn write_to(&self, map: &mut BTreeMap<String, String>) {
        for (k, v) in &self.other {
            if !Self::is_reserved(k) {
                map.insert(k.clone(), v.clone());
            }
        }
        let known = [
            (CORRELATION_ID, &self.correlation_id),
            (CAUSATION_ID, &self.causation_id),
            (TRACEPARENT, &self.traceparent),
            (TRACESTATE, &self.tracestate),
        ];
        for (name, value) in known {
            if let Some(v) = value {
                map.insert(name.to_owned(), v.clone());
            }
        }
    }

    /// Reads headers back from a transport header map; reserved names
    /// (`cloudEvents_*`, `messaging-*`) are left out of the free-form map.
    pub fn read_from(map: &BTreeMap<String, String>) -> Self {
        let mut headers = Self::new();
        for (k, v) in map {
            match k.as_str() {
                CORRELATION_ID => headers.correlation_id = Some(v.clone()),
                CAUSATION_ID => headers.causation_id = Some(v.clone()),
                TRACEPARENT => headers.traceparent = Some(v.clone()),
                TRACESTATE => headers.tracestate = Some(v.clone()),
                name if Self::is_reserved(name) => {}
                _ => {
                    headers.other.insert(k.clone(), v.clone());
                }
            }
        }
        headers
    }
}
