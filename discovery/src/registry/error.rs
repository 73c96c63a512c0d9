//! Errors of discovery reads.
//!
//! The `Display` text of these errors is meant for people and is not part of the API; match on
//! the variants (or use the `is_*` helpers) instead.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

/// Why a registry could not refresh a watch: the backend's own error, shared so that every
/// reader of the watch can see it.
#[derive(Clone)]
pub struct SourceError(Arc<dyn StdError + Send + Sync + 'static>);

impl SourceError {
    /// Wraps a backend error.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self(Arc::from(error.into()))
    }

    /// The backend error, for downcasting (e.g. to `sinew_discovery::consul::ConsulError`).
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl StdError for SourceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// A discovery read that could not be answered from memory.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The first result for this service did not arrive in time. Check that the registry is
    /// reachable; `last_error` says what went wrong, if anything did.
    #[error("no instance list for `{service}` arrived within {waited:?}{}", last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    NotLoaded {
        /// The service.
        service: Arc<str>,
        /// How long the read waited.
        waited: Duration,
        /// The registry's last refresh error.
        last_error: Option<SourceError>,
    },
    /// The registry has been failing for longer than the configured maximum staleness, so the
    /// last-known-good list is no longer served.
    #[error(
        "instance list for `{service}` is {age:?} old, older than the allowed {max:?}, and the registry is failing"
    )]
    Stale {
        /// The service.
        service: Arc<str>,
        /// Time since the last successful refresh.
        age: Duration,
        /// The configured maximum staleness.
        max: Duration,
        /// The registry's last refresh error.
        #[source]
        source: SourceError,
    },
    /// The registry reports no healthy instance of the service.
    #[error("no healthy instance of `{service}`")]
    NoInstances {
        /// The service.
        service: Arc<str>,
    },
    /// The registry behind this watch was dropped; no update will ever arrive.
    #[error("the registry watching `{service}` was shut down")]
    Closed {
        /// The service.
        service: Arc<str>,
    },
}

impl DiscoveryError {
    /// Whether the service simply has no healthy instance right now.
    pub fn is_no_instances(&self) -> bool {
        matches!(self, Self::NoInstances { .. })
    }

    /// Whether the data is missing or too old because the registry is unreachable or slow.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::NotLoaded { .. } | Self::Stale { .. } | Self::Closed { .. }
        )
    }
}
