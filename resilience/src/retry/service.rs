use std::task::{Context, Poll};

use tower_service::Service;

use super::RetryPolicy;
use super::future::ResponseFuture;
use super::hint::RetryHint;
use super::replay::Replay;
use crate::classify::Classify;

/// Retries failed calls to the inner service according to a [`RetryPolicy`].
///
/// The error is the inner service's own (`S::Error`); when the policy gives up, the last
/// result is returned unchanged. Retries need `S: Clone`: each call clones the service into its
/// future, which polls the clone ready before every retry (tower's `Retry` does the same), so
/// use a cheaply cloned service (`reqwest::Client`, a hyper client, a `Buffer`).
///
/// # Clone
///
/// Clones share the policy, its budget and its seed counter.
#[derive(Debug, Clone)]
pub struct Retry<S, P = RetryPolicy> {
    inner: S,
    policy: P,
}

impl<S, P> Retry<S, P> {
    /// Wraps `inner`, retrying according to `policy`.
    pub const fn new(inner: S, policy: P) -> Self {
        Self { inner, policy }
    }

    /// A layer wrapping services with this policy.
    pub const fn layer(policy: P) -> super::RetryLayer<P> {
        super::RetryLayer::new(policy)
    }

    /// The policy.
    pub const fn policy(&self) -> &P {
        &self.policy
    }

    /// The wrapped service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, C, H, R> Service<Req> for Retry<S, RetryPolicy<C, H, R>>
where
    S: Service<Req> + Clone,
    C: Classify<S::Response, S::Error>,
    H: RetryHint<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future, Req, RetryPolicy<C, H, R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let attempts = self.policy.begin();
        let copy = if self.policy.has_attempts_left(attempts.calls()) {
            self.policy.replay(&req)
        } else {
            None
        };
        // The clone keeps serving retries; the instance polled ready takes this call.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let future = ready.call(req);
        ResponseFuture::new(copy, ready, self.policy.clone(), attempts, future)
    }
}
