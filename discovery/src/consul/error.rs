//! Errors of the Consul client.
//!
//! The `Display` text is meant for people and is not part of the API; branch on the variants
//! or the `is_*` helpers.

use std::time::Duration;

use thiserror::Error;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A Consul call that failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsulError {
    /// The agent could not be reached or the connection broke. Check the agent address and
    /// that the agent runs.
    #[error("cannot reach the consul agent for {endpoint}")]
    Transport {
        /// The API endpoint, e.g. `/v1/agent/service/register`.
        endpoint: &'static str,
        /// The HTTP client's error.
        #[source]
        source: BoxError,
    },
    /// No response within the time limit.
    #[error("consul did not answer {endpoint} within {after:?}")]
    Timeout {
        /// The API endpoint.
        endpoint: &'static str,
        /// The limit.
        after: Duration,
    },
    /// Consul answered with an error status.
    #[error("consul answered {endpoint} with status {status}: {body}")]
    Status {
        /// The API endpoint.
        endpoint: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The response body (Consul's error message), truncated to 512 bytes.
        body: String,
    },
    /// Consul's response could not be decoded.
    #[error("cannot decode consul's answer to {endpoint}")]
    Decode {
        /// The API endpoint.
        endpoint: &'static str,
        /// The decoding error.
        #[source]
        source: BoxError,
    },
    /// Consul returned an empty list and said it filtered results by ACL: the token cannot
    /// read this service (possibly revoked; hashicorp/consul#20790). The last-known-good list
    /// is kept rather than replaced by an empty one. Check the token's `service:read` and
    /// `node:read` rights.
    #[error("consul filtered every instance of `{service}` by ACL; check the token")]
    AclFiltered {
        /// The service.
        service: String,
    },
}

impl ConsulError {
    /// Whether Consul answered 404: the service or check is unknown to the agent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }

    /// Whether the agent does not know a check we own: 404, or 500 "does not have associated
    /// TTL" (the agent lost the registration, e.g. after a restart).
    pub fn is_unknown_check(&self) -> bool {
        match self {
            Self::Status { status: 404, .. } => true,
            Self::Status {
                status: 500, body, ..
            } => {
                let body = body.to_ascii_lowercase();
                body.contains("does not have associated ttl") || body.contains("unknown check")
            }
            _ => false,
        }
    }

    /// Whether the agent could not be reached (connection refused or broken, or timeout).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Transport { .. } | Self::Timeout { .. })
    }

    /// Whether Consul refused the token (403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Status { status: 403, .. })
    }
}
