//! Converting between [`Message`] and AMQP properties and deliveries.

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::dead_letter::headers as dl;
use crate::envelope::Message;

/// Carries the routing key a message was published with while it travels through the
/// default exchange (retry tiers, dead-letter queue, replay); removed before a handler sees
/// the message.
pub(super) const ROUTING_KEY_HEADER: &str = "messaging-routing-key";

/// The quorum-queue redelivery counter.
const DELIVERY_COUNT: &str = "x-delivery-count";

/// Persistent delivery.
const PERSISTENT: u8 = 2;

/// The properties of `message`: persistent, its message ID, content type, `app_id`, and its
/// headers as AMQP long strings.
pub(super) fn properties(message: &Message, app_id: &str, via_default: bool) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in message.headers() {
        headers.insert(
            name.as_str().into(),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    if via_default {
        headers.insert(
            ROUTING_KEY_HEADER.into(),
            AMQPValue::LongString(LongString::from(message.routing_key())),
        );
    }
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(message.message_id().into())
        .with_content_type(message.content_type().into())
        .with_app_id(app_id.into())
        .with_headers(headers)
}

/// A header value as text; arrays and tables (such as `x-death`) have none.
fn text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        _ => return None,
    })
}

/// Headers the broker adds (dead-lettering and quorum counters); not part of the message.
fn is_broker_header(name: &str) -> bool {
    name == DELIVERY_COUNT
        || name == "x-acquired-count"
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// The message a delivery carries, with the routing key it was first published with.
pub(super) fn message(delivery: &Delivery) -> Message {
    message_with_body(delivery, Bytes::from(delivery.data.clone()))
}

/// [`message`], taking the body out of the delivery instead of copying it (the consumer
/// keeps the delivery only to settle it).
pub(super) fn take_message(delivery: &mut Delivery) -> Message {
    let body = Bytes::from(std::mem::take(&mut delivery.data));
    message_with_body(delivery, body)
}

fn message_with_body(delivery: &Delivery, body: Bytes) -> Message {
    let props = &delivery.properties;
    let mut routing_key = delivery.routing_key.as_str().to_owned();
    let mut message_headers = std::collections::BTreeMap::new();
    if let Some(headers) = props.headers() {
        for (name, value) in headers.inner() {
            if name.as_str() == ROUTING_KEY_HEADER {
                if let Some(key) = text(value) {
                    routing_key = key;
                }
            } else if !is_broker_header(name.as_str())
                && let Some(value) = text(value)
            {
                message_headers.insert(name.as_str().to_owned(), value);
            }
        }
    }
    Message::from_parts(
        routing_key,
        props.message_id().as_ref().map(|id| id.as_str().to_owned()),
        props
            .content_type()
            .as_ref()
            .map(|content_type| content_type.as_str().to_owned()),
        message_headers,
        body,
    )
}

/// The reason and first routing key of the broker's first dead-lettering (`x-death[0]`).
fn first_death(delivery: &Delivery) -> Option<(String, Option<String>)> {
    let headers = delivery.properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(death) = deaths.as_slice().first()? else {
        return None;
    };
    let reason = text(death.inner().get("reason")?)?;
    let routing_key = match death.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().and_then(text),
        _ => None,
    };
    Some((reason, routing_key))
}

/// A message of a dead-letter queue. One the broker dead-lettered by itself (past the quorum
/// queue's `x-delivery-limit`) carries none of the failure headers: they are filled in from
/// `x-death` (error type `delivery-limit`), and its first routing key is restored.
pub(super) fn dead_letter(delivery: &Delivery) -> Message {
    let message = message(delivery);
    if message.header(dl::ERROR_TYPE).is_some() {
        return message;
    }
    let Some((reason, routing_key)) = first_death(delivery) else {
        return message;
    };
    let routing_key = routing_key.unwrap_or_else(|| message.routing_key().to_owned());
    let error_type = if reason == "delivery_limit" {
        "delivery-limit".to_owned()
    } else {
        reason.clone()
    };
    let mut restored = Message::new(routing_key.clone(), message.body().clone())
        .with_message_id(message.message_id())
        .with_content_type(message.content_type());
    *restored.headers_mut() = message.headers().clone();
    let headers = restored.headers_mut();
    headers.insert(dl::ERROR_TYPE.to_owned(), error_type);
    headers.insert(
        dl::ERROR_MESSAGE.to_owned(),
        format!("dead-lettered by the broker: {reason}"),
    );
    headers.insert(dl::ORIGINAL_ROUTING_KEY.to_owned(), routing_key);
    restored
}

/// How often the broker redelivered it: quorum `x-delivery-count`, at least 1 when the
/// `redelivered` flag is set.
pub(super) fn redelivery_count(delivery: &Delivery) -> u32 {
    let count = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(DELIVERY_COUNT))
        .and_then(text)
        .and_then(|t| t.parse::<u32>().ok())
        .unwrap_or(0);
    count.max(u32::from(delivery.redelivered))
}

#[cfg(test)]
mod tests {
    use lapin::message::Delivery;
    use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};

    use super::{ROUTING_KEY_HEADER, dead_letter, message, properties, redelivery_count};
    use crate::envelope::{Event, Message};

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    #[test]
    fn properties_are_persistent_with_id_type_app_and_long_string_headers() {
        let m = Event::new("order.placed", "o-1", 1u32)
            .to_message("shop")
            .unwrap()
            .with_header("tenant", "acme");
        let p = properties(&m, "billing", false);
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(
            p.message_id().as_ref().map(|s| s.as_str()),
            Some(m.message_id())
        );
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("billing"));
        let headers = p.headers().as_ref().unwrap().inner();
        assert_eq!(headers.get("tenant"), Some(&long("acme")));
        assert_eq!(headers.get("cloudEvents_subject"), Some(&long("o-1")));
        assert!(!headers.contains_key(ROUTING_KEY_HEADER));

        let via_default = properties(&m, "billing", true);
        let headers = via_default.headers().as_ref().unwrap().inner();
        assert_eq!(headers.get(ROUTING_KEY_HEADER), Some(&long("order.placed")));
    }

    #[test]
    fn a_delivery_becomes_the_message_with_its_first_routing_key() {
        let sent = Message::new("order.placed", &b"{}"[..]).with_header("x-correlation-id", "c-1");
        let mut props = properties(&sent, "billing", true);
        let mut headers = props.headers().clone().unwrap();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::default()),
        );
        headers.insert("x-first-death-queue".into(), long("svc.sub.retry.0"));
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        props = props.with_headers(headers);
        let mut delivery = Delivery::mock(1, "".into(), "svc.sub".into(), true, b"{}".to_vec());
        delivery.properties = props;

        let got = message(&delivery);
        assert_eq!(got.routing_key(), "order.placed");
        assert_eq!(got.message_id(), sent.message_id());
        assert_eq!(got.headers(), sent.headers(), "broker headers are dropped");
        assert_eq!(redelivery_count(&delivery), 3);
    }

    #[test]
    fn a_message_the_broker_dead_lettered_gets_failure_headers_from_x_death() {
        let sent = Message::new("order.placed", &b"{}"[..]);
        let mut props = properties(&sent, "billing", false);
        let mut headers = props.headers().clone().unwrap();
        let mut death = FieldTable::default();
        death.insert("reason".into(), long("delivery_limit"));
        let mut keys = FieldArray::default();
        keys.push(long("order.placed"));
        death.insert("routing-keys".into(), AMQPValue::FieldArray(keys));
        let mut deaths = FieldArray::default();
        deaths.push(AMQPValue::FieldTable(death));
        headers.insert("x-death".into(), AMQPValue::FieldArray(deaths));
        props = props.with_headers(headers);
        let mut delivery =
            Delivery::mock(1, "".into(), "svc.sub.dlq".into(), false, b"{}".to_vec());
        delivery.properties = props;

        let got = dead_letter(&delivery);
        assert_eq!(got.routing_key(), "order.placed");
        assert_eq!(got.message_id(), sent.message_id());
        assert_eq!(got.header("messaging-error-type"), Some("delivery-limit"));
        assert_eq!(
            got.header("messaging-original-routing-key"),
            Some("order.placed")
        );
        // Our own dead letters keep their headers.
        let ours = message(&delivery).with_header("messaging-error-type", "permanent");
        delivery.properties = properties(&ours, "billing", true);
        assert_eq!(
            dead_letter(&delivery).header("messaging-error-type"),
            Some("permanent")
        );
    }

    #[test]
    fn the_redelivered_flag_counts_once_without_a_delivery_count() {
        let mut delivery = Delivery::mock(1, "x".into(), "k".into(), true, Vec::new());
        delivery.properties = lapin::BasicProperties::default().with_headers(FieldTable::default());
        assert_eq!(redelivery_count(&delivery), 1);
        delivery.redelivered = false;
        assert_eq!(redelivery_count(&delivery), 0);
    }
}
