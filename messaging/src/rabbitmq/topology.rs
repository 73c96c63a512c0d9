//! Declaring a subscription's queues: the quorum queue and its bindings, the dead-letter queue
//! and the TTL retry tiers. Every declaration is idempotent; a queue that exists with other
//! arguments is a [`SubscribeError::TopologyMismatch`].

use std::time::Duration;

use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ErrorKind};

use crate::subscriber::{SubscribeError, SubscriptionConfig};

/// AMQP reply code `PRECONDITION_FAILED`.
const PRECONDITION_FAILED: u16 = 406;
/// AMQP reply code `NOT_FOUND`.
pub(super) const NOT_FOUND: u16 = 404;

/// The AMQP reply code of a channel or connection error, if the broker sent one.
pub(super) fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// Turns a failed queue declaration into the crate's error, naming the queue and, for a
/// 406 `inequivalent arg 'x-…'`, the argument.
pub(super) fn declare_error(queue: &str, error: &lapin::Error) -> SubscribeError {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) if amqp.get_id() == PRECONDITION_FAILED => {
            let text = amqp.get_message().as_str();
            let argument = text
                .split("inequivalent arg '")
                .nth(1)
                .and_then(|rest| rest.split('\'').next())
                .unwrap_or("arguments")
                .to_owned();
            SubscribeError::TopologyMismatch {
                queue: queue.to_owned(),
                argument,
            }
        }
        _ => SubscribeError::Connection,
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn millis(delay: Duration) -> i64 {
    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
}

/// The name of the retry queue for `delay`: `{queue}.retry.{n}` when `delay` is the `n`-th
/// configured tier, `{queue}.retry.{ms}ms` for another delay a handler asked for.
pub(super) fn retry_queue(config: &SubscriptionConfig, delay: Duration) -> String {
    match config.delayed_retries().iter().position(|d| *d == delay) {
        Some(n) => format!("{}.retry.{n}", config.queue()),
        None => format!("{}.retry.{}ms", config.queue(), millis(delay)),
    }
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), SubscribeError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .map(drop)
        .map_err(|e| declare_error(name, &e))
}

/// Declares a retry tier: a classic durable queue whose messages expire after `delay` into
/// the default exchange with the subscription queue as routing key (no plugin needed).
pub(super) async fn declare_retry_queue(
    channel: &Channel,
    config: &SubscriptionConfig,
    delay: Duration,
) -> Result<String, SubscribeError> {
    let name = retry_queue(config, delay);
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(millis(delay)),
    );
    arguments.insert("x-dead-letter-exchange".into(), long_string(""));
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        long_string(&config.queue()),
    );
    declare_queue(channel, &name, arguments).await?;
    Ok(name)
}

/// The arguments of a subscription queue: quorum, with `x-delivery-limit`, dead-lettering
/// (at least once) into `{queue}.dlq` through the default exchange.
fn subscription_arguments(config: &SubscriptionConfig, delivery_limit: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(delivery_limit)),
    );
    arguments.insert("x-dead-letter-exchange".into(), long_string(""));
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        long_string(&config.dead_letter_queue()),
    );
    arguments.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    arguments.insert("x-overflow".into(), long_string("reject-publish"));
    arguments
}

/// Declares the whole topology of a subscription; returns the names of the queues declared.
pub(super) async fn declare(
    channel: &Channel,
    exchange: &str,
    config: &SubscriptionConfig,
    delivery_limit: u32,
) -> Result<Vec<String>, SubscribeError> {
    let queue = config.queue();
    // The dead-letter queue first, so the subscription queue's dead-letter target exists.
    let dlq = config.dead_letter_queue();
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), long_string("quorum"));
    declare_queue(channel, &dlq, quorum).await?;
    declare_queue(
        channel,
        &queue,
        subscription_arguments(config, delivery_limit),
    )
    .await?;
    let mut names = vec![dlq, queue.clone()];
    for delay in config.delayed_retries() {
        names.push(declare_retry_queue(channel, config, *delay).await?);
    }
    for key in config.routing_keys() {
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| declare_error(&queue, &e))?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::retry_queue;
    use crate::subscriber::SubscriptionConfig;

    #[test]
    fn retry_queues_are_named_by_tier_or_delay() {
        let config = SubscriptionConfig::builder("billing", "orders")
            .routing_key("order.*")
            .delayed_retries([Duration::from_secs(1), Duration::from_secs(10)])
            .build()
            .unwrap();
        assert_eq!(
            retry_queue(&config, Duration::from_secs(10)),
            "billing.orders.retry.1"
        );
        assert_eq!(
            retry_queue(&config, Duration::from_millis(250)),
            "billing.orders.retry.250ms"
        );
    }
}
