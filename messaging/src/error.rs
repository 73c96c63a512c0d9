//! Configuration errors.
//!
//! The `Display` text of these errors is meant for people and is not part of the API.

use thiserror::Error;

/// A configuration that [`build`](crate::subscriber::SubscriptionConfigBuilder::build) rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required field was not set or is empty.
    #[error("`{field}` must be set and non-empty")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A name contains characters outside `[A-Za-z0-9_.-]` or is too long.
    #[error("`{field}` may only contain ASCII letters, digits, `_`, `-` and `.` (at most 200)")]
    InvalidName {
        /// The field.
        field: &'static str,
    },
    /// An SQL name is not a plain identifier: ASCII letters, digits and `_`, not starting with
    /// a digit, optionally schema-qualified (`schema.table`), each part at most 63 bytes.
    #[error("`{field}` must be a plain SQL identifier such as `sinew_outbox` or `app.outbox`")]
    InvalidIdentifier {
        /// The field.
        field: &'static str,
    },
    /// A routing key pattern is malformed.
    #[error("routing key pattern `{pattern}` is invalid")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
    },
    /// A count that must be positive is zero.
    #[error("`{field}` must be greater than zero")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// Two settings contradict each other.
    #[error("`{field}` must not exceed `{limit}`")]
    Exceeds {
        /// The offending field.
        field: &'static str,
        /// The field it must not exceed.
        limit: &'static str,
    },
}
