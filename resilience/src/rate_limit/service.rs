use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use tower_service::Service;

use super::clock::TokioClock;
use super::future::ResponseFuture;
use super::{KeyedRateLimitLayer, RateLimitConfig, RateLimitLayer};
use crate::error::RateLimited;

pub(crate) type DirectLimiter =
    governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

pub(crate) type KeyedLimiter<K> =
    governor::RateLimiter<K, DefaultKeyedStateStore<K>, TokioClock, NoOpMiddleware<Nanos>>;

pub(crate) fn direct_limiter(config: RateLimitConfig) -> Arc<DirectLimiter> {
    Arc::new(governor::RateLimiter::new(
        config.quota,
        InMemoryState::default(),
        TokioClock::new(),
    ))
}

pub(crate) fn keyed_limiter<K: Hash + Eq + Clone>(config: RateLimitConfig) -> Arc<KeyedLimiter<K>> {
    Arc::new(governor::RateLimiter::new(
        config.quota,
        DefaultKeyedStateStore::default(),
        TokioClock::new(),
    ))
}

fn limited(not_until: &governor::NotUntil<Nanos>, clock: &TokioClock) -> RateLimited {
    let retry_after = not_until.wait_time_from(clock.now());
    tracing::debug!(?retry_after, "rate limit exceeded; call rejected");
    RateLimited::new(retry_after)
}

/// Middleware that admits calls at a steady rate, with bursts, and rejects the calls over it
/// with [`RateLimited`], which says how long to wait.
///
/// See the [module docs](super) for an example.
///
/// # Clone
///
/// Clones share one limiter (it sits behind an `Arc`), so cloning the service, as axum and
/// tower's `Buffer` do, does not multiply the rate.
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<DirectLimiter>,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` in a limiter of its own (shared by the clones of the returned service).
    pub fn new(inner: S, config: RateLimitConfig) -> Self {
        Self::with_limiter(inner, direct_limiter(config))
    }

    /// A layer whose services share one limiter.
    pub fn layer(config: RateLimitConfig) -> RateLimitLayer {
        RateLimitLayer::new(config)
    }

    pub(crate) const fn with_limiter(inner: S, limiter: Arc<DirectLimiter>) -> Self {
        Self { inner, limiter }
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

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req>,
    S::Error: From<RateLimited>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.limiter.check() {
            Ok(()) => ResponseFuture::new(self.inner.call(req)),
            Err(not_until) => ResponseFuture::limited(limited(&not_until, self.limiter.clock())),
        }
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish()
    }
}

/// Middleware that gives every key (a client IP, a tenant, ...) its own rate limit, and rejects
/// the calls over it with [`RateLimited`].
///
/// `F: Fn(&Req) -> K` extracts the key of each request. See the [module docs](super) for an
/// example and for the memory each key keeps.
///
/// The bound `K: Hash + Eq + Clone` sits on the struct because `governor`'s keyed limiter
/// requires it.
///
/// # Clone
///
/// Clones share one keyed limiter (it sits behind an `Arc`).
pub struct KeyedRateLimit<S, K, F>
where
    K: Hash + Eq + Clone,
{
    inner: S,
    key: F,
    limiter: Arc<KeyedLimiter<K>>,
}

impl<S, K, F> KeyedRateLimit<S, K, F>
where
    K: Hash + Eq + Clone,
{
    /// Wraps `inner` in a keyed limiter of its own (shared by the clones of the returned
    /// service); `key` extracts the key of each request.
    pub fn new<Req>(inner: S, config: RateLimitConfig, key: F) -> Self
    where
        F: Fn(&Req) -> K,
    {
        Self::with_limiter(inner, key, keyed_limiter(config))
    }

    /// A layer whose services share one keyed limiter.
    pub fn layer<Req>(config: RateLimitConfig, key: F) -> KeyedRateLimitLayer<K, F>
    where
        F: Fn(&Req) -> K,
    {
        KeyedRateLimitLayer::new(config, key)
    }

    pub(crate) const fn with_limiter(inner: S, key: F, limiter: Arc<KeyedLimiter<K>>) -> Self {
        Self {
            inner,
            key,
            limiter,
        }
    }

    /// Forgets the keys that have been idle long enough that forgetting them changes nothing
    /// (governor keeps a key until one replenish period after its limit has fully recovered).
    /// Call it now and then to bound memory; see the [module docs](super).
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
    }

    /// Gives memory freed by [`retain_recent`](Self::retain_recent) back to the allocator.
    pub fn shrink_to_fit(&self) {
        self.limiter.shrink_to_fit();
    }

    /// The number of keys the limiter remembers.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// `true` when the limiter remembers no key.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
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

impl<S, K, F, Req> Service<Req> for KeyedRateLimit<S, K, F>
where
    S: Service<Req>,
    S::Error: From<RateLimited>,
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key)(&req);
        match self.limiter.check_key(&key) {
            Ok(()) => ResponseFuture::new(self.inner.call(req)),
            Err(not_until) => ResponseFuture::limited(limited(&not_until, self.limiter.clock())),
        }
    }
}

impl<S: Clone, K, F: Clone> Clone for KeyedRateLimit<S, K, F>
where
    K: Hash + Eq + Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            key: self.key.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedRateLimit<S, K, F>
where
    K: Hash + Eq + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimit")
            .field("inner", &self.inner)
            .field("key", &std::any::type_name::<F>())
            .field("keys", &self.limiter.len())
            .finish()
    }
}
