//! The event envelope and the transport message it travels in.
//!
//! An [`Event<T>`] is a domain event: a UUIDv7 ID, a type (also the routing key), the ID of the
//! aggregate it concerns, a UTC timestamp and a serde payload. Its JSON body is the reference
//! wire format `{eventId, eventType, aggregateId, timestamp, data}`, so services in other
//! languages read it unchanged. [`Headers`] (correlation, causation, W3C trace context and
//! free-form entries) travel beside the body as message headers, together with the CloudEvents
//! binary-mode attributes ([`cloudevents`]), so CloudEvents consumers read it natively.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sinew_messaging::envelope::{Event, Headers};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct UserCreated { email: String }
//!
//! let event = Event::new("user.created", "user-42", UserCreated { email: "ada@example.com".into() })
//!     .with_headers(Headers::new().with_correlation_id("req-7"));
//! let message = event.to_message("accounts").unwrap();
//! assert_eq!(message.routing_key(), "user.created");
//! assert_eq!(message.header("cloudEvents_subject"), Some("user-42"));
//! assert_eq!(message.header("cloudEvents_specversion"), Some("1.0"));
//!
//! let back: Event<UserCreated> = Event::from_message(&message).unwrap();
//! assert_eq!(back.data(), event.data());
//! assert_eq!(back.headers().correlation_id(), Some("req-7"));
//! ```

pub mod cloudevents;
pub mod error;
mod headers;
mod timestamp;

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use self::cloudevents::CloudEventAttributes;
pub use self::error::{DecodeError, EncodeError, TimestampError};
pub use self::headers::{CAUSATION_ID, CORRELATION_ID, Headers, TRACEPARENT, TRACESTATE};
pub use self::timestamp::Timestamp;

/// The content type of event bodies.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// A domain event.
///
/// Serializes as the reference body `{eventId, eventType, aggregateId, timestamp, data}`; the
/// [`Headers`] are not part of the body (see [`Event::to_message`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<T> {
    event_id: Uuid,
    event_type: String,
    aggregate_id: String,
    timestamp: Timestamp,
    data: T,
    #[serde(skip)]
    headers: Headers,
}

impl<T> Event<T> {
    /// A new event with a fresh UUIDv7 ID, the current time and empty headers.
    pub fn new(event_type: impl Into<String>, aggregate_id: impl Into<String>, data: T) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            aggregate_id: aggregate_id.into(),
            timestamp: Timestamp::now(),
            data,
            headers: Headers::new(),
        }
    }

    /// Replaces the event ID (for example to re-create an event read from storage).
    pub fn with_event_id(mut self, id: Uuid) -> Self {
        self.event_id = id;
        self
    }

    /// Replaces the timestamp.
    pub fn with_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Replaces the headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// The event ID.
    pub const fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// The event type, also the routing key.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The ID of the aggregate the event concerns.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// When the event happened.
    pub const fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The payload.
    pub const fn data(&self) -> &T {
        &self.data
    }

    /// The payload, by value.
    pub fn into_data(self) -> T {
        self.data
    }

    /// The headers.
    pub const fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, mutably.
    pub const fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The CloudEvents attributes of this event, with `source` naming the producer.
    pub fn cloud_event_attributes(&self, source: &str) -> CloudEventAttributes {
        CloudEventAttributes {
            id: self.event_id.to_string(),
            event_type: self.event_type.clone(),
            source: source.to_owned(),
            spec_version: cloudevents::SPEC_VERSION.to_owned(),
            time: Some(self.timestamp),
            subject: Some(self.aggregate_id.clone()),
        }
    }
}

impl<T: Serialize> Event<T> {
    /// Encodes the event as a message: the JSON body, routing key = event type, message ID =
    /// event ID, content type `application/json`, the [`Headers`] and the CloudEvents
    /// binary-mode headers (`source` becomes `cloudEvents_source`).
    ///
    /// # Errors
    ///
    /// [`EncodeError`] when `data` fails to serialize.
    pub fn to_message(&self, source: &str) -> Result<Message, EncodeError> {
        let body = serde_json::to_vec(self).map_err(|source| EncodeError {
            event_id: self.event_id,
            source,
        })?;
        let mut headers = BTreeMap::new();
        self.headers.write_to(&mut headers);
        headers.extend(self.cloud_event_attributes(source).to_headers());
        Ok(Message {
            routing_key: self.event_type.clone(),
            message_id: self.event_id.to_string(),
            content_type: CONTENT_TYPE_JSON.to_owned(),
            headers,
            body: Bytes::from(body),
        })
    }
}

impl<T: for<'de> Deserialize<'de>> Event<T> {
    /// Decodes an event from a message body and its headers.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Body`] when the body is not the envelope or `data` does not fit `T`.
    pub fn from_message(message: &Message) -> Result<Self, DecodeError> {
        let mut event: Self = serde_json::from_slice(&message.body).map_err(DecodeError::Body)?;
        event.headers = Headers::read_from(&message.headers);
        Ok(event)
    }
}

/// What a backend carries: a routing key, an opaque body and string headers.
///
/// Backends move messages, not events, so a subscriber can receive a body that does not
/// decode and still dead-letter it with its headers intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    routing_key: String,
    message_id: String,
    content_type: String,
    headers: BTreeMap<String, String>,
    body: Bytes,
}

impl Message {
    /// A message with a fresh UUIDv7 message ID, content type `application/json` and no
    /// headers.
    pub fn new(routing_key: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            routing_key: routing_key.into(),
            message_id: Uuid::now_v7().to_string(),
            content_type: CONTENT_TYPE_JSON.to_owned(),
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }

    /// A message as a backend received it: its ID (a fresh UUIDv7 if it carries none), its
    /// content type (`application/json` if none) and its headers.
    #[cfg_attr(
        not(feature = "rabbitmq"),
        allow(
            dead_code,
            reason = "only the RabbitMQ backend receives messages in parts"
        )
    )]
    pub(crate) fn from_parts(
        routing_key: String,
        message_id: Option<String>,
        content_type: Option<String>,
        headers: BTreeMap<String, String>,
        body: Bytes,
    ) -> Self {
        Self {
            routing_key,
            message_id: message_id.unwrap_or_else(|| Uuid::now_v7().to_string()),
            content_type: content_type.unwrap_or_else(|| CONTENT_TYPE_JSON.to_owned()),
            headers,
            body,
        }
    }

    /// Sets a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the message ID.
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = id.into();
        self
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// The routing key.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The message ID (the event ID for events).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The content type.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// One header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// All headers.
    pub const fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// All headers, mutably.
    pub const fn headers_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.headers
    }

    /// The body.
    pub const fn body(&self) -> &Bytes {
        &self.body
    }

    /// The aggregate ID (`cloudEvents_subject`), which ordered lanes key on.
    pub fn aggregate_id(&self) -> Option<&str> {
        self.header(cloudevents::SUBJECT)
    }
}
