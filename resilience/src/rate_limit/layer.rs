use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::{DirectLimiter, KeyedLimiter, direct_limiter, keyed_limiter};
use super::{KeyedRateLimit, RateLimit, RateLimitConfig};

/// Layer that applies the [`RateLimit`] middleware.
///
/// # Clone
///
/// The layer owns the limiter: every service it wraps, and every clone of those services and of
/// the layer, draws on one rate. Make a new layer for a separate limit.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DirectLimiter>,
}

impl RateLimitLayer {
    /// A layer whose services share one limiter configured by `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            limiter: direct_limiter(config),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::with_limiter(inner, self.limiter.clone())
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .finish()
    }
}

/// Layer that applies the [`KeyedRateLimit`] middleware.
///
/// Keep a clone of the layer to run the housekeeping
/// ([`retain_recent`](Self::retain_recent)) from a background task.
///
/// # Clone
///
/// The layer owns the keyed limiter: every service it wraps, and every clone of those services
/// and of the layer, shares the per-key limits.
pub struct KeyedRateLimitLayer<K, F>
where
    K: Hash + Eq + Clone,
{
    key: F,
    limiter: Arc<KeyedLimiter<K>>,
}

impl<K, F> KeyedRateLimitLayer<K, F>
where
    K: Hash + Eq + Clone,
{
    /// A layer whose services share one keyed limiter; `key: Fn(&Req) -> K` extracts the key
    /// of each request, and each key gets the rate of `config`.
    pub fn new<Req>(config: RateLimitConfig, key: F) -> Self
    where
        F: Fn(&Req) -> K,
    {
        Self {
            key,
            limiter: keyed_limiter(config),
        }
    }

    /// Forgets the keys that have been idle long enough that forgetting them changes nothing
    /// (governor keeps a key until one replenish period after its limit has fully recovered).
    /// Call it now and then to bound memory.
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
}

impl<S, K, F> Layer<S> for KeyedRateLimitLayer<K, F>
where
    K: Hash + Eq + Clone,
    F: Clone,
{
    type Service = KeyedRateLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedRateLimit::with_limiter(inner, self.key.clone(), self.limiter.clone())
    }
}

impl<K, F: Clone> Clone for KeyedRateLimitLayer<K, F>
where
    K: Hash + Eq + Clone,
{
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<K, F> fmt::Debug for KeyedRateLimitLayer<K, F>
where
    K: Hash + Eq + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitLayer")
            .field("key", &std::any::type_name::<F>())
            .field("keys", &self.limiter.len())
            .finish()
    }
}
