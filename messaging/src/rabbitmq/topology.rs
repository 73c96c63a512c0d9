//! Declaring a subscription's queues: the subscription queue (quorum or classic) and its
//! bindings, the dead-letter queue and the TTL retry tiers. Every declaration is idempotent; a queue that exists with other
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

/// The type of a subscription queue and of its dead-letter queue (RabbitMQ's `x-queue-type`).
///
/// Both types are durable, and both get the same failure policy: retries through the TTL
/// tiers, dead letters published (confirmed) to `{queue}.dlq`, acks only after that. They
/// differ in what the broker does by itself:
///
/// | | [`Quorum`](QueueType::Quorum) | [`Classic`](QueueType::Classic) |
/// |---|---|---|
/// | replicated (Raft) on a cluster | yes | no |
/// | broker-side delivery limit | `x-delivery-limit`: a message that keeps coming back unsettled goes to `{queue}.dlq` | none: such a message is delivered again and again |
/// | redelivery count seen by a handler | exact (`x-delivery-count`) | 0, or 1 once redelivered (the AMQP `redelivered` flag) |
/// | broker dead-lettering | at least once | at most once |
///
/// Quorum queues are the default and the safe choice. Classic queues suit a single-node
/// broker where their lower cost per message matters more than the delivery limit: the
/// crate's retry policy never requeues a failed message, so only a handler that crashes the
/// process (or a connection that keeps dropping mid-handler) can make a classic queue
/// redeliver a message without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueType {
    /// A quorum queue, with a delivery limit. The default.
    #[default]
    Quorum,
    /// A classic (durable) queue, without a delivery limit.
    Classic,
}

impl QueueType {
    /// The value of `x-queue-type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `quorum` or `classic` (ASCII case ignored), the values of `x-queue-type`, as from a
/// configuration file or an environment variable.
///
/// ```
/// use sinew_messaging::rabbitmq::QueueType;
///
/// assert_eq!("classic".parse::<QueueType>(), Ok(QueueType::Classic));
/// let error = "stream".parse::<QueueType>().unwrap_err();
/// assert_eq!(error.to_string(), "unknown queue type `stream`: expected `quorum` or `classic`");
/// ```
impl std::str::FromStr for QueueType {
    type Err = UnknownQueueType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Quorum, Self::Classic]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownQueueType(s.to_owned()))
    }
}

/// A queue type other than `quorum` or `classic` (streams are not subscription queues).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown queue type `{0}`: expected `quorum` or `classic`")]
pub struct UnknownQueueType(pub String);

/// How a broker declares subscription queues.
#[derive(Debug, Clone, Copy)]
pub(super) struct Queues {
    pub(super) queue_type: QueueType,
    /// `x-delivery-limit` of a quorum queue.
    pub(super) delivery_limit: u32,
}

/// The arguments of a subscription queue: its type, dead-lettering into `{queue}.dlq`
/// through the default exchange, and publishes rejected (not old messages dropped) when a
/// length limit is set by policy. Quorum: with `x-delivery-limit` and at-least-once
/// dead-lettering.
fn subscription_arguments(config: &SubscriptionConfig, queues: Queues) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        long_string(queues.queue_type.as_str()),
    );
    arguments.insert("x-dead-letter-exchange".into(), long_string(""));
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        long_string(&config.dead_letter_queue()),
    );
    arguments.insert("x-overflow".into(), long_string("reject-publish"));
    if queues.queue_type == QueueType::Quorum {
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(queues.delivery_limit)),
        );
        arguments.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
    }
    arguments
}

/// Declares the whole topology of a subscription; returns the names of the queues declared.
pub(super) async fn declare(
    channel: &Channel,
    exchange: &str,
    config: &SubscriptionConfig,
    queues: Queues,
) -> Result<Vec<String>, SubscribeError> {
    let queue = config.queue();
    // The dead-letter queue first, so the subscription queue's dead-letter target exists.
    let dlq = config.dead_letter_queue();
    let mut dlq_arguments = FieldTable::default();
    dlq_arguments.insert(
        "x-queue-type".into(),
        long_string(queues.queue_type.as_str()),
    );
    declare_queue(channel, &dlq, dlq_arguments).await?;
    declare_queue(channel, &queue, subscription_arguments(config, queues)).await?;
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

    use super::{QueueType, Queues, retry_queue, subscription_arguments};
    use crate::subscriber::SubscriptionConfig;

    #[test]
    fn queue_types_parse_from_their_names_only() {
        for t in [QueueType::Quorum, QueueType::Classic] {
            assert_eq!(t.as_str().parse::<QueueType>(), Ok(t));
            assert_eq!(t.to_string().to_uppercase().parse::<QueueType>(), Ok(t));
        }
        for bad in ["", "stream", "quorums", "x-queue-type=classic"] {
            let error = bad.parse::<QueueType>().unwrap_err();
            assert_eq!(error, super::UnknownQueueType(bad.to_owned()));
            assert!(error.to_string().contains("expected `quorum` or `classic`"));
        }
    }

    #[test]
    fn queue_arguments_follow_the_queue_type() {
        let config = SubscriptionConfig::builder("billing", "orders")
            .routing_key("order.*")
            .build()
            .unwrap();
        let names = |queue_type| {
            let queues = Queues {
                queue_type,
                delivery_limit: 5,
            };
            let arguments = subscription_arguments(&config, queues);
            let kind = arguments.inner().get("x-queue-type").cloned();
            let names: Vec<String> = arguments
                .inner()
                .keys()
                .map(|k| k.as_str().to_owned())
                .collect();
            (kind, names)
        };
        let (kind, quorum) = names(QueueType::Quorum);
        assert_eq!(kind, Some(super::long_string("quorum")));
        assert!(quorum.contains(&"x-delivery-limit".to_owned()));
        assert!(quorum.contains(&"x-dead-letter-strategy".to_owned()));
        let (kind, classic) = names(QueueType::Classic);
        assert_eq!(kind, Some(super::long_string("classic")));
        assert_eq!(
            classic,
            [
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-overflow",
                "x-queue-type"
            ],
            "no quorum-only argument on a classic queue"
        );
    }

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
