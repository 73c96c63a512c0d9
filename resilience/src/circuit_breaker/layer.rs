use tower_layer::Layer;

use super::{CircuitBreaker, Config, Handle};
use crate::classify::DefaultClassifier;

/// Layer that wraps services in a [`CircuitBreaker`].
///
/// # Clone
///
/// The layer holds one breaker ([`Handle`]). Every service it builds, and every clone of those,
/// shares it.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    handle: Handle,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer with a new breaker built from `config`, using the [`DefaultClassifier`].
    pub fn new(config: Config) -> Self {
        Self::from_handle(Handle::new(config))
    }

    /// A layer over an existing breaker.
    pub const fn from_handle(handle: Handle) -> Self {
        Self {
            handle,
            classifier: DefaultClassifier::new(),
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Decides success and failure with `classifier` instead.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            handle: self.handle,
            classifier,
        }
    }

    /// The breaker this layer gates calls with.
    pub const fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::with_classifier(inner, self.handle.clone(), self.classifier.clone())
    }
}
