use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{Config, Handle, Metrics};
use crate::classify::{Classify, DefaultClassifier};
use crate::error::CircuitOpen;

/// One breaker per key (an upstream host, say), created on first use from one [`Config`].
///
/// Each breaker is named `"<config name>/<key>"` (the key's `Debug` form).
///
/// ```
/// use sinew_resilience::circuit_breaker::{Config, Registry, State};
///
/// let registry = Registry::new(Config::default());
/// let users = registry.get(&"users.internal");
/// users.force_open();
/// assert_eq!(registry.get(&"users.internal").state(), State::ForcedOpen);
/// assert_eq!(registry.get(&"posts.internal").state(), State::Closed);
/// ```
pub struct Registry<K> {
    config: Config,
    breakers: RwLock<HashMap<K, Handle>>,
}

impl<K> fmt::Debug for Registry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone + fmt::Debug> Registry<K> {
    /// An empty registry whose breakers use `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            breakers: RwLock::new(HashMap::new()),
        }
    }

    /// The breaker for `key`, created if it does not exist yet.
    pub fn get(&self, key: &K) -> Handle {
        if let Some(handle) = self.get_if_present(key) {
            return handle;
        }
        let mut map = self
            .breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(key.clone())
            .or_insert_with(|| {
                let mut config = self.config.clone();
                config.name = Arc::from(format!("{}/{key:?}", self.config.name));
                Handle::new(config)
            })
            .clone()
    }

    /// The breaker for `key`, if it exists.
    pub fn get_if_present(&self, key: &K) -> Option<Handle> {
        self.breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Forgets the breaker for `key` (services still holding it keep using it).
    pub fn remove(&self, key: &K) -> Option<Handle> {
        self.breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }

    /// Number of breakers.
    pub fn len(&self) -> usize {
        self.breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// `true` when no breaker has been created yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every breaker's key and metrics, for a health endpoint.
    pub fn metrics(&self) -> Vec<(K, Metrics)> {
        self.breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, h)| (k.clone(), h.metrics()))
            .collect()
    }
}

/// Layer that gates each request with the breaker of its key, taken from a shared [`Registry`].
///
/// ```
/// use std::sync::Arc;
/// use sinew_resilience::circuit_breaker::{Config, KeyedCircuitBreakerLayer, Registry};
/// use sinew_resilience::BoxError;
/// use tower::{service_fn, ServiceBuilder};
///
/// let registry: Arc<Registry<Option<String>>> = Arc::new(Registry::new(Config::default()));
/// let svc = ServiceBuilder::new()
///     .layer(KeyedCircuitBreakerLayer::new(registry.clone(), |req: &http::Request<()>| {
///         req.uri().authority().map(|a| a.to_string())
///     }))
///     .service(service_fn(|_req: http::Request<()>| async { Ok::<_, BoxError>(()) }));
/// # let _ = svc;
/// ```
#[derive(Debug)]
pub struct KeyedCircuitBreakerLayer<K, F, C = DefaultClassifier> {
    registry: Arc<Registry<K>>,
    key: F,
    classifier: C,
}

impl<K, F: Clone, C: Clone> Clone for KeyedCircuitBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, F> KeyedCircuitBreakerLayer<K, F> {
    /// Gates each request with `registry.get(&key(&request))`.
    pub const fn new(registry: Arc<Registry<K>>, key: F) -> Self {
        Self {
            registry,
            key,
            classifier: DefaultClassifier::new(),
        }
    }
}

impl<K, F, C> KeyedCircuitBreakerLayer<K, F, C> {
    /// Decides success and failure with `classifier` instead.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, F, C2> {
        KeyedCircuitBreakerLayer {
            registry: self.registry,
            key: self.key,
            classifier,
        }
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, F, C> {
    type Service = KeyedCircuitBreaker<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker {
            inner,
            registry: self.registry.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// Service built by [`KeyedCircuitBreakerLayer`].
#[derive(Debug)]
pub struct KeyedCircuitBreaker<S, K, F, C = DefaultClassifier> {
    inner: S,
    registry: Arc<Registry<K>>,
    key: F,
    classifier: C,
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedCircuitBreaker<S, K, F, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            registry: self.registry.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, K, F, C> KeyedCircuitBreaker<S, K, F, C> {
    /// The registry.
    pub const fn registry(&self) -> &Arc<Registry<K>> {
        &self.registry
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

impl<S, K, F, C, Req> Service<Req> for KeyedCircuitBreaker<S, K, F, C>
where
    S: Service<Req>,
    S::Error: From<CircuitOpen>,
    K: Eq + Hash + Clone + fmt::Debug,
    F: Fn(&Req) -> K,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let handle = self.registry.get(&(self.key)(&req));
        match handle.try_acquire() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
