use std::fmt;

use tower_layer::{Identity, Layer};

use super::Policy;
use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use crate::lift::LiftError;
use crate::retry::{Retry, RetryPolicy};
use crate::timeout::{Timeout, TimeoutLayer};

/// The service a [`PolicyLayer`] builds around `S` (before any fallback).
pub type PolicyService<S, C, H, R> =
    Retry<CircuitBreaker<Bulkhead<Timeout<LiftError<S>>>, C>, RetryPolicy<C, H, R>>;

/// Layer that wraps services in a [`Policy`], and optionally a fallback around it.
pub struct PolicyLayer<C, H, R, F = Identity> {
    policy: Policy<C, H, R>,
    fallback: F,
}

impl<C: Clone, H, R, F: Clone> Clone for PolicyLayer<C, H, R, F> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<C: fmt::Debug, H: fmt::Debug, R: fmt::Debug, F> fmt::Debug for PolicyLayer<C, H, R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyLayer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<C, H, R> PolicyLayer<C, H, R, Identity> {
    pub(crate) const fn new(policy: Policy<C, H, R>) -> Self {
        Self {
            policy,
            fallback: Identity::new(),
        }
    }
}

impl<C, H, R, F> PolicyLayer<C, H, R, F> {
    /// Puts `fallback` (typically a [`FallbackLayer`](crate::FallbackLayer)) outside the whole
    /// policy, so it answers only what is still an error once retries are exhausted.
    pub fn fallback<F2>(self, fallback: F2) -> PolicyLayer<C, H, R, F2> {
        PolicyLayer {
            policy: self.policy,
            fallback,
        }
    }

    /// The policy.
    pub const fn policy(&self) -> &Policy<C, H, R> {
        &self.policy
    }
}

impl<S, C, H, R, F> Layer<S> for PolicyLayer<C, H, R, F>
where
    C: Clone,
    F: Layer<PolicyService<S, C, H, R>>,
{
    type Service = F::Service;

    fn layer(&self, inner: S) -> Self::Service {
        let p = &self.policy;
        let svc = LiftError::new(inner);
        let svc = TimeoutLayer::new(p.timeout).layer(svc);
        let svc = p.bulkhead.layer(svc);
        let svc = CircuitBreakerLayer::from_handle(p.breaker.clone())
            .classifier(p.classifier.clone())
            .layer(svc);
        let svc = Retry::new(svc, p.retry.clone());
        self.fallback.layer(svc)
    }
}
