//! Configuration errors.
//!
//! The `Display` text of these errors is meant for people and is not part of the API.

use std::time::Duration;

use thiserror::Error;

/// A configuration that a `build()` rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required field was not set or is empty.
    #[error("`{field}` must be set and non-empty")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A value is malformed.
    #[error("`{field}` is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration is below its minimum.
    #[error("`{field}` must be at least {min:?}, got {actual:?}")]
    TooShort {
        /// The field.
        field: &'static str,
        /// The minimum.
        min: Duration,
        /// The value given.
        actual: Duration,
    },
    /// A duration or count exceeds its maximum.
    #[error("`{field}` must be at most {max:?}, got {actual:?}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The maximum.
        max: Duration,
        /// The value given.
        actual: Duration,
    },
    /// Two entries share an identifier that must be unique.
    #[error("`{field}` `{value}` appears twice")]
    Duplicate {
        /// The field.
        field: &'static str,
        /// The repeated value.
        value: String,
    },
}
