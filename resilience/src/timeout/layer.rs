use std::fmt;
use std::time::Duration;

use tower_layer::Layer;

use super::{NoOverride, Timeout, TimeoutConfig};

/// Layer that applies the [`Timeout`] middleware.
///
/// The type parameter `P` chooses per-request timeouts (see
/// [`TimeoutFor`](super::TimeoutFor)); by default every request gets the configured one.
#[derive(Clone, Copy)]
pub struct TimeoutLayer<P = NoOverride> {
    timeout: Duration,
    per_request: P,
}

impl TimeoutLayer {
    /// A layer that gives every call the configured timeout.
    pub const fn new(config: TimeoutConfig) -> Self {
        Self {
            timeout: config.timeout,
            per_request: NoOverride,
        }
    }
}

impl<P> TimeoutLayer<P> {
    /// Lets `per_request` choose the timeout of each request; where it returns `None`, the
    /// configured timeout applies.
    pub fn per_request<P2>(self, per_request: P2) -> TimeoutLayer<P2> {
        TimeoutLayer {
            timeout: self.timeout,
            per_request,
        }
    }

    /// The configured timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, P: Clone> Layer<S> for TimeoutLayer<P> {
    type Service = Timeout<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::from_parts(inner, self.timeout, self.per_request.clone())
    }
}

impl<P> fmt::Debug for TimeoutLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("timeout", &self.timeout)
            .field("per_request", &std::any::type_name::<P>())
            .finish()
    }
}
