//! Choreography helpers over `sinew-messaging` (feature `messaging`): event envelopes that
//! carry the saga ID, correlation ID, causation ID and trace context, and a
//! [`ProcessManager`] keyed by correlation values that drops duplicate deliveries through a
//! messaging [`Inbox`](sinew_messaging::inbox::Inbox) and times out stalled instances.
//!
//! In a choreographed saga the services react to each other's events; nobody holds the whole
//! saga. Two things the reference's choreography lacks are needed to make it safe:
//! deduplication (brokers deliver at least once) and timeouts (an event that never comes must
//! not leave an order pending forever). [`ProcessManager::handle`] records the event in the
//! inbox first and skips a duplicate; [`ProcessManager::expired`] lists instances that
//! waited past their timeout.
//!
//! **Publishing**: [`Transition`] returns the events to publish instead of publishing them,
//! so the caller can hand them to the transactional outbox of `sinew-messaging` in the same
//! database transaction as its local state (the outbox is being added to `sinew-messaging`;
//! until then, publish them after committing the state, and rely on the receivers' inbox).
//!
//! ```
//! use sinew_messaging::Event;
//! use sinew_messaging::inbox::MemoryInbox;
//! use sinew_saga::SagaId;
//! use sinew_saga::choreography::{ProcessManager, SagaEnvelope, Transition};
//!
//! #[derive(Clone, Debug, PartialEq)]
//! enum OrderFlow { AwaitingPayment, Paid }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pm = ProcessManager::<OrderFlow, _>::new("order-flow", MemoryInbox::new(10_000));
//!
//! // The order service starts the saga: its first event carries the saga envelope.
//! let saga_id = SagaId::new();
//! let created = SagaEnvelope::start(saga_id).stamp(Event::new("order.created", "o-1", "o-1"));
//! pm.handle(&created, "o-1", |_state, _event| Transition::next(OrderFlow::AwaitingPayment)).await?;
//!
//! // The payment service's reply is caused by the order event: same saga, same trace.
//! let paid = SagaEnvelope::caused_by(&created).stamp(Event::new("payment.completed", "o-1", ()));
//! let outcome = pm
//!     .handle(&paid, "o-1", |_state, _event| Transition::complete(OrderFlow::Paid))
//!     .await?;
//! assert_eq!(outcome.state(), Some(&OrderFlow::Paid));
//! assert_eq!(SagaEnvelope::from_event(&paid).saga_id(), Some(saga_id));
//!
//! // A redelivery is dropped by the inbox.
//! assert!(pm.handle(&paid, "o-1", |_s, _e| Transition::ignore()).await?.is_duplicate());
//! # Ok(()) }
//! ```

mod envelope;
mod process;

pub use self::envelope::{SAGA_ID, SagaEnvelope};
pub use self::process::{Handled, ProcessError, ProcessManager, Transition};
