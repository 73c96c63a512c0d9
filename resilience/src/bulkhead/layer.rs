use std::sync::Arc;

use tokio::sync::Semaphore;
use tower_layer::Layer;

use super::{Bulkhead, BulkheadConfig};

/// Layer that applies the [`Bulkhead`] middleware.
///
/// # Clone
///
/// The layer owns the bulkhead's permits: every service it wraps, and every clone of those
/// services and of the layer, draws on the same `max_concurrent` permits. Make a new layer for
/// a separate compartment.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    config: BulkheadConfig,
    semaphore: Arc<Semaphore>,
}

impl BulkheadLayer {
    /// A layer whose services share one bulkhead configured by `config`.
    pub fn new(config: BulkheadConfig) -> Self {
        Self {
            config,
            semaphore: Arc::new(Semaphore::new(config.max_concurrent)),
        }
    }

    /// The number of free permits.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// The number of permits taken (calls in flight, plus permits reserved by `poll_ready`
    /// in wait mode).
    pub fn in_flight(&self) -> usize {
        self.config
            .max_concurrent
            .saturating_sub(self.semaphore.available_permits())
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::with_semaphore(inner, self.config, self.semaphore.clone())
    }
}
