//! Errors of the tower adapters, for downcasting from [`BoxError`](tower::BoxError).
//!
//! ```
//! use sinew_discovery::balance::error::NoInstances;
//!
//! let err: tower::BoxError = Box::new(NoInstances::new("users"));
//! assert_eq!(err.downcast_ref::<NoInstances>().map(NoInstances::service), Some("users"));
//! ```

use std::sync::Arc;

use thiserror::Error;

/// The service has no healthy instance, so the balancer refused the request rather than wait.
#[derive(Debug, Clone, Error)]
#[error("no healthy instance of `{service}` to send the request to")]
pub struct NoInstances {
    service: Arc<str>,
}

impl NoInstances {
    /// The error for `service`.
    pub fn new(service: &str) -> Self {
        Self {
            service: Arc::from(service),
        }
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }
}
