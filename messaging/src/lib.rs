#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod dead_letter;
pub mod envelope;
pub mod error;
pub mod inbox;
pub mod metrics;
pub mod publisher;
pub mod subscriber;
#[cfg_attr(
    not(any(feature = "memory", feature = "rabbitmq")),
    allow(
        dead_code,
        reason = "the spans are used by the backends, all behind features"
    )
)]
mod telemetry;
pub mod topic;

#[cfg(feature = "memory")]
pub mod memory;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub mod outbox;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::envelope::{Event, Headers, Message};
pub use crate::error::ConfigError;
pub use crate::metrics::Metrics;
pub use crate::publisher::{PublishError, Publisher};
pub use crate::subscriber::{
    ConsumerTrace, Delivery, Handler, HandlerError, Outcome, Subscriber, Subscription,
    SubscriptionConfig, handler_fn,
};
