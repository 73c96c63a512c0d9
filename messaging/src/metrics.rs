//! Counters of what a broker connection did: cheap atomics, read as a [`Metrics`] snapshot.
//!
//! Every backend keeps one set of counters per broker (shared by its clones, publishers and
//! subscribers) and returns a snapshot from `metrics()`
//! ([`MemoryBroker::metrics`](crate::memory::MemoryBroker::metrics), and
//! `RabbitBroker::metrics` with the `rabbitmq` feature). No metrics crate is involved: export
//! the numbers with whatever you use (a Prometheus collector, OpenTelemetry observable
//! counters, a health endpoint).
//!
//! ```
//! use sinew_messaging::memory::MemoryBroker;
//! use sinew_messaging::{Event, Publisher};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let broker = MemoryBroker::new();
//! let before = broker.metrics();
//! // Nobody is bound: the publish is returned as unroutable.
//! let message = Event::new("order.placed", "o-1", 1).to_message("shop").unwrap();
//! assert!(broker.publisher().publish(message).await.is_err());
//! let delta = broker.metrics().since(&before);
//! assert_eq!((delta.published, delta.confirmed, delta.returned), (1, 0, 1));
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a broker's counters. Each counts from the broker's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Messages handed to the backend by [`Publisher::publish`](crate::Publisher::publish)
    /// (and `publish_batch`). Retry and dead-letter forwards are not counted here.
    pub published: u64,
    /// Published messages the backend confirmed (RabbitMQ: `basic.ack`).
    pub confirmed: u64,
    /// Published messages that no queue was bound for (RabbitMQ: `basic.return`).
    pub returned: u64,
    /// Deliveries handed to a handler (a delayed retry is a new delivery).
    pub consumed: u64,
    /// Deliveries settled as a delayed retry.
    pub retried: u64,
    /// Deliveries settled into the dead-letter queue.
    pub dead_lettered: u64,
    /// Connections re-established (consumers and the publish side).
    pub reconnects: u64,
}

impl Metrics {
    /// The counts since `earlier`, a snapshot of the same broker.
    #[must_use]
    pub const fn since(&self, earlier: &Self) -> Self {
        Self {
            published: self.published.saturating_sub(earlier.published),
            confirmed: self.confirmed.saturating_sub(earlier.confirmed),
            returned: self.returned.saturating_sub(earlier.returned),
            consumed: self.consumed.saturating_sub(earlier.consumed),
            retried: self.retried.saturating_sub(earlier.retried),
            dead_lettered: self.dead_lettered.saturating_sub(earlier.dead_lettered),
            reconnects: self.reconnects.saturating_sub(earlier.reconnects),
        }
    }
}

/// The live counters behind [`Metrics`].
#[derive(Default)]
#[cfg_attr(
    not(any(feature = "memory", feature = "rabbitmq")),
    allow(
        dead_code,
        reason = "the counters are kept by the backends, all behind features"
    )
)]
// The publishers' counters and the consumers' counters sit on separate cache lines, so
// that a publishing thread and a consuming thread do not take the line from each other on
// every message.
#[repr(C, align(128))]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) confirmed: AtomicU64,
    pub(crate) returned: AtomicU64,
    _consumer_line: [u64; 13],
    pub(crate) consumed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

#[cfg_attr(
    not(any(feature = "memory", feature = "rabbitmq")),
    allow(
        dead_code,
        reason = "the counters are kept by the backends, all behind features"
    )
)]
impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one reconnect.
    pub(crate) fn reconnected(&self) {
        Self::inc(&self.reconnects);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            published: get(&self.published),
            confirmed: get(&self.confirmed),
            returned: get(&self.returned),
            consumed: get(&self.consumed),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            reconnects: get(&self.reconnects),
        }
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}
