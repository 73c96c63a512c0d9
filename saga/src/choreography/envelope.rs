use sinew_messaging::Event;
use sinew_messaging::Headers;

use crate::id::SagaId;

/// The header carrying the saga ID.
pub const SAGA_ID: &str = "x-saga-id";

/// The saga context an event carries: saga ID, correlation ID, causation ID and W3C trace
/// context, written to and read from `sinew-messaging` [`Headers`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SagaEnvelope {
    saga_id: Option<SagaId>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl SagaEnvelope {
    /// The envelope of a saga's first event: the correlation ID is the saga ID.
    pub fn start(saga_id: SagaId) -> Self {
        Self {
            saga_id: Some(saga_id),
            correlation_id: Some(saga_id.to_string()),
            ..Self::default()
        }
    }

    /// The envelope `event` carries.
    pub fn from_event<T>(event: &Event<T>) -> Self {
        let h = event.headers();
        Self {
            saga_id: h.get(SAGA_ID).and_then(|s| s.parse().ok()),
            correlation_id: h.correlation_id().map(str::to_owned),
            causation_id: h.causation_id().map(str::to_owned),
            traceparent: h.traceparent().map(str::to_owned),
            tracestate: h.tracestate().map(str::to_owned),
        }
    }

    /// The envelope of an event caused by `event`: the same saga, correlation and trace
    /// context, with `event`'s ID as the causation ID.
    pub fn caused_by<T>(event: &Event<T>) -> Self {
        Self {
            causation_id: Some(event.event_id().to_string()),
            ..Self::from_event(event)
        }
    }

    /// Sets the W3C trace context (from `sinew-tracing-kit`'s propagator).
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Sets the correlation ID.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The saga ID.
    pub const fn saga_id(&self) -> Option<SagaId> {
        self.saga_id
    }

    /// The correlation ID.
    pub fn correlation(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The causation ID.
    pub fn causation(&self) -> Option<&str> {
        self.causation_id.as_deref()
    }

    /// The W3C `traceparent`.
    pub fn trace(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// Writes the envelope into `headers` (keeping the other entries).
    pub fn write(&self, mut headers: Headers) -> Headers {
        if let Some(id) = self.saga_id {
            headers = headers.with(SAGA_ID, id.to_string());
        }
        if let Some(v) = &self.correlation_id {
            headers = headers.with_correlation_id(v.clone());
        }
        if let Some(v) = &self.causation_id {
            headers = headers.with_causation_id(v.clone());
        }
        if let Some(v) = &self.traceparent {
            headers = headers.with_traceparent(v.clone());
        }
        if let Some(v) = &self.tracestate {
            headers = headers.with_tracestate(v.clone());
        }
        headers
    }

    /// `event` with the envelope written into its headers.
    pub fn stamp<T>(&self, event: Event<T>) -> Event<T> {
        let headers = self.write(event.headers().clone());
        event.with_headers(headers)
    }
}
