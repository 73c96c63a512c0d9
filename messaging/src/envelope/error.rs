//! Errors of encoding and decoding events.
//!
//! The `Display` text of these errors is meant for people and is not part of the API.

use thiserror::Error;

/// A timestamp that is not RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The text does not have the shape `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
    #[error("timestamp is not RFC 3339")]
    Syntax,
    /// A field is out of range (month 13, February 30, hour 24, a year past 9999).
    #[error("timestamp field out of range")]
    OutOfRange,
}

/// An event that could not be encoded into a message body.
#[derive(Debug, Error)]
#[error("cannot encode event {event_id} as JSON")]
pub struct EncodeError {
    pub(crate) event_id: uuid::Uuid,
    #[source]
    pub(crate) source: serde_json::Error,
}

/// A message that could not be decoded into an event.
///
/// A handler that returns this (it converts into
/// [`HandlerError`](crate::subscriber::HandlerError)) sends the message straight to the dead
/// letter queue: retrying cannot fix a body that does not parse.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not the JSON envelope, or `data` does not fit the target type.
    #[error("message body is not a valid event envelope")]
    Body(#[source] serde_json::Error),
    /// A header that must be present is missing.
    #[error("header `{name}` is missing")]
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A header has a value of the wrong shape.
    #[error("header `{name}` has an invalid value")]
    InvalidHeader {
        /// The header's name.
        name: &'static str,
    },
}
