//! The context a handler receives.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::envelope::{DecodeError, Event, Message};

/// One delivery of a message to a handler.
///
/// Cloning it is cheap: the message and the queue name are shared, not copied.
#[derive(Debug, Clone)]
pub struct Delivery {
    // Shared with the backend's unsettled copy and with the next attempt's delivery: a
    // delivery costs no copy of the message. The failure policy copies it only when it must
    // write failure headers while a handler still holds a delivery.
    pub(crate) message: Arc<Message>,
    pub(crate) queue: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) redelivery_count: u32,
}

impl Delivery {
    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        self.message.routing_key()
    }

    /// Its headers.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        self.message.headers()
    }

    /// The queue it came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Which handler attempt this is, from 1: in-process and delayed retries both count.
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How often the broker redelivered it because a consumer went away without settling it
    /// (AMQP `redelivered`, quorum `x-delivery-count`).
    pub const fn redelivery_count(&self) -> u32 {
        self.redelivery_count
    }

    /// Whether the broker redelivered it.
    pub const fn redelivered(&self) -> bool {
        self.redelivery_count > 0
    }

    /// Decodes the event; `?` turns a failure into a [`HandlerError`](super::HandlerError) of
    /// kind [`Decode`](super::ErrorKind::Decode), which dead-letters the message at once.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the body is not an event with a `T` payload.
    pub fn decode<T: for<'de> Deserialize<'de>>(&self) -> Result<Event<T>, DecodeError> {
        Event::from_message(&self.message)
    }
}
