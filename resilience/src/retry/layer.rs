use tower_layer::Layer;

use super::{Retry, RetryPolicy};

/// Layer that wraps services in [`Retry`].
///
/// # Clone
///
/// Clones share the policy (and its budget).
#[derive(Debug, Clone)]
pub struct RetryLayer<P = RetryPolicy> {
    policy: P,
}

impl<P> RetryLayer<P> {
    /// A layer retrying according to `policy`.
    pub const fn new(policy: P) -> Self {
        Self { policy }
    }
}

impl<S, P: Clone> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.policy.clone())
    }
}
