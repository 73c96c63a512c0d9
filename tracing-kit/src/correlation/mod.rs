//! Correlation IDs: one ID per business request, carried across every hop.
//!
//! A [`CorrelationId`] is taken from the incoming request (`x-correlation-id`, then
//! `x-request-id`, configurable) or generated as a UUIDv7; an incoming ID is never overwritten.
//! Within a request it lives in a task-local ([`scope`], [`current`]) and in W3C baggage under
//! [`BAGGAGE_KEY`], so it survives hops that our layers do not touch; it is recorded on spans
//! and printed on every log line.
//!
//! ```
//! use sinew_tracing_kit::correlation::{self, CorrelationId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let id = CorrelationId::parse("order-42").unwrap();
//! correlation::scope(id.clone(), async {
//!     assert_eq!(correlation::current().as_ref(), Some(&id));
//! })
//! .await;
//! assert_eq!(correlation::current(), None);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

/// The baggage key the correlation ID travels under.
pub const BAGGAGE_KEY: &str = "correlation_id";

/// The header names read (in order) and written by default.
pub const DEFAULT_HEADERS: [&str; 2] = ["x-correlation-id", "x-request-id"];

/// Longest accepted correlation ID, in bytes.
pub const MAX_LEN: usize = 128;

/// A validated correlation ID: 1 to 128 bytes of visible ASCII (no spaces, no control
/// characters), so it is safe in headers, baggage and log lines. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(Arc<str>);

/// Why a string is not a valid [`CorrelationId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCorrelationId {
    /// It was empty.
    #[error("correlation id is empty")]
    Empty,
    /// It was longer than [`MAX_LEN`] bytes.
    #[error("correlation id is {0} bytes long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    /// It contained a byte outside visible ASCII (a control character, a space or non-ASCII).
    #[error("correlation id contains a byte outside visible ASCII at position {0}")]
    InvalidByte(usize),
}

impl CorrelationId {
    /// Validates `value`.
    ///
    /// # Errors
    ///
    /// [`InvalidCorrelationId`] when it is empty, longer than [`MAX_LEN`] bytes, or contains a
    /// byte outside `!`..=`~`.
    pub fn parse(value: &str) -> Result<Self, InvalidCorrelationId> {
        Self::validate(value.as_bytes())?;
        Ok(Self(Arc::from(value)))
    }

    /// Validates raw bytes (a header value, say).
    ///
    /// # Errors
    ///
    /// As [`CorrelationId::parse`].
    pub fn from_bytes(value: &[u8]) -> Result<Self, InvalidCorrelationId> {
        Self::validate(value)?;
        // Validated as ASCII above.
        let s = std::str::from_utf8(value)
            .map_err(|e| InvalidCorrelationId::InvalidByte(e.valid_up_to()))?;
        Ok(Self(Arc::from(s)))
    }

    fn validate(value: &[u8]) -> Result<(), InvalidCorrelationId> {
        if value.is_empty() {
            return Err(InvalidCorrelationId::Empty);
        }
        if value.len() > MAX_LEN {
            return Err(InvalidCorrelationId::TooLong(value.len()));
        }
        if let Some(pos) = value.iter().position(|b| !(b'!'..=b'~').contains(b)) {
            return Err(InvalidCorrelationId::InvalidByte(pos));
        }
        Ok(())
    }

    /// A new random, time-ordered ID (UUIDv7).
    pub fn generate() -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        Self(Arc::from(
            &*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf),
        ))
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CorrelationId {
    type Err = InvalidCorrelationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({:?})", &*self.0)
    }
}

impl AsRef<str> for CorrelationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

tokio::task_local! {
    static CURRENT: CorrelationId;
}

/// Runs `future` with `id` as the current correlation ID.
pub async fn scope<F: Future>(id: CorrelationId, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// Runs `f` with `id` as the current correlation ID (for synchronous code).
pub fn sync_scope<R>(id: CorrelationId, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

/// The current task's correlation ID, if one was set with [`scope`] (our HTTP, gRPC and
/// messaging layers do so) .
pub fn current() -> Option<CorrelationId> {
    CURRENT.try_with(CorrelationId::clone).ok()
}

/// The ID to use: the valid incoming one, or a new one when it is missing or invalid (an
/// invalid one is logged at `debug` and replaced, never propagated).
pub fn accept_or_generate(incoming: Option<&[u8]>) -> CorrelationId {
    match incoming.map(CorrelationId::from_bytes) {
        Some(Ok(id)) => id,
        Some(Err(error)) => {
            tracing::debug!(%error, "replacing an invalid incoming correlation id");
            CorrelationId::generate()
        }
        None => CorrelationId::generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(CorrelationId::parse("abc-123_XYZ:~").is_ok());
        assert_eq!(CorrelationId::parse(""), Err(InvalidCorrelationId::Empty));
        assert_eq!(
            CorrelationId::parse("a b"),
            Err(InvalidCorrelationId::InvalidByte(1))
        );
        assert_eq!(
            CorrelationId::parse("a\nb"),
            Err(InvalidCorrelationId::InvalidByte(1))
        );
        assert_eq!(
            CorrelationId::parse("é"),
            Err(InvalidCorrelationId::InvalidByte(0))
        );
        let long = "x".repeat(129);
        assert_eq!(
            CorrelationId::parse(&long),
            Err(InvalidCorrelationId::TooLong(129))
        );
        assert!(CorrelationId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn generated_ids_are_valid_uuids() {
        let id = CorrelationId::generate();
        assert!(uuid::Uuid::parse_str(id.as_str()).is_ok());
        assert!(CorrelationId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn invalid_incoming_is_replaced() {
        let id = accept_or_generate(Some(b"bad\x01id"));
        assert_ne!(id.as_str(), "bad\x01id");
        assert_eq!(accept_or_generate(Some(b"ok")).as_str(), "ok");
    }
}
