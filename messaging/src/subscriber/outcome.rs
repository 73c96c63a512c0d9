//! What a handler decides, and how its errors are classified.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::envelope::DecodeError;

/// The explicit result of handling one message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Done: acknowledge the message.
    Ack,
    /// Try again later. `after: None` uses the next delay of the subscription's schedule.
    /// Counts as an attempt; once the attempts are used up the message is dead-lettered.
    Retry {
        /// How long to wait before the next attempt.
        after: Option<Duration>,
    },
    /// Give up now: move the message to the dead-letter queue.
    DeadLetter {
        /// Why, recorded in the `messaging-error-message` header.
        reason: String,
    },
}

/// How a handler error is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// May succeed later: retried in process with jitter, then with delays.
    Transient,
    /// Will never succeed: dead-lettered at once.
    Permanent,
    /// The message does not decode: dead-lettered at once.
    Decode,
}

impl ErrorKind {
    /// The value written to the `messaging-error-type` header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Decode => "decode",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A classified handler failure.
///
/// The `Display` text is meant for people and is not part of the API.
#[derive(Debug)]
pub struct HandlerError {
    kind: ErrorKind,
    source: BoxError,
}

impl HandlerError {
    /// A failure that may go away (a timeout, a dependency that is down).
    pub fn transient(source: impl Into<BoxError>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            source: source.into(),
        }
    }

    /// A failure that retrying cannot fix (a business rule violation).
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            source: source.into(),
        }
    }

    /// A message that does not decode.
    pub fn decode(source: impl Into<BoxError>) -> Self {
        Self {
            kind: ErrorKind::Decode,
            source: source.into(),
        }
    }

    /// The classification.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the error is transient.
    pub const fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} handler error: {}", self.kind, self.source)
    }
}

impl StdError for HandlerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

impl From<DecodeError> for HandlerError {
    fn from(e: DecodeError) -> Self {
        Self::decode(e)
    }
}
