//! Property tests: topic matching against a reference matcher, timestamps and the event
//! envelope round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sinew_messaging::envelope::{Event, Headers, Timestamp};
use sinew_messaging::topic;

/// The AMQP rules, written as the obvious recursion.
fn reference(pattern: &[&str], key: &[&str]) -> bool {
    match (pattern.split_first(), key.split_first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some((&"#", rest)), _) => {
            reference(rest, key) || (!key.is_empty() && reference(pattern, &key[1..]))
        }
        (Some(_), None) => false,
        (Some((&"*", rest)), Some((_, krest))) => reference(rest, krest),
        (Some((w, rest)), Some((k, krest))) => w == k && reference(rest, krest),
    }
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just("c"),
        Just("user"),
        Just("created")
    ]
    .prop_map(|s: &str| s.to_owned())
}

fn pattern_word() -> impl Strategy<Value = String> {
    prop_oneof![word(), Just("*".to_owned()), Just("#".to_owned())]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payload {
    name: String,
    count: i64,
    tags: Vec<String>,
}

proptest! {
    #[test]
    fn topic_matching_agrees_with_reference(
        pattern in prop::collection::vec(pattern_word(), 1..6),
        key in prop::collection::vec(word(), 1..7),
    ) {
        let (p, k) = (pattern.join("."), key.join("."));
        let pr: Vec<&str> = pattern.iter().map(String::as_str).collect();
        let kr: Vec<&str> = key.iter().map(String::as_str).collect();
        prop_assert!(topic::is_valid_pattern(&p));
        prop_assert_eq!(topic::matches(&p, &k), reference(&pr, &kr), "{} vs {}", p, k);
    }

    #[test]
    fn a_key_matches_itself_and_hash(key in prop::collection::vec(word(), 1..7)) {
        let k = key.join(".");
        prop_assert!(topic::matches(&k, &k));
        prop_assert!(topic::matches("#", &k));
    }

    #[test]
    fn timestamps_round_trip(secs in -62_167_219_200i64..=253_402_300_799, nanos in 0u32..1_000_000_000) {
        let t = Timestamp::from_unix(secs, nanos).unwrap();
        let text = t.to_string();
        prop_assert_eq!(text.len(), if nanos % 1_000_000 == 0 { 24 } else if nanos % 1000 == 0 { 27 } else { 30 });
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn envelope_round_trips(
        event_type in "[a-z]{1,8}\\.[a-z]{1,8}",
        aggregate in "\\PC{0,20}",
        name in "\\PC{0,30}",
        count in any::<i64>(),
        tags in prop::collection::vec("\\PC{0,8}", 0..4),
        secs in 0i64..4_102_444_800,
        millis in 0u32..1000,
        correlation in proptest::option::of("[ -~]{1,20}"),
        extra in proptest::option::of(("[a-z]{1,8}", "[ -~]{0,20}")),
    ) {
        let mut headers = Headers::new();
        if let Some(c) = &correlation {
            headers = headers.with_correlation_id(c.clone());
        }
        if let Some((k, v)) = &extra {
            headers = headers.with(k.clone(), v.clone());
        }
        let event = Event::new(event_type.clone(), aggregate.clone(), Payload { name, count, tags })
            .with_timestamp(Timestamp::from_unix(secs, millis * 1_000_000).unwrap())
            .with_headers(headers);
        let message = event.to_message("props").unwrap();
        prop_assert_eq!(message.routing_key(), event_type.as_str());
        prop_assert_eq!(message.message_id(), event.event_id().to_string());
        prop_assert_eq!(message.header("cloudEvents_subject"), Some(aggregate.as_str()));
        let back: Event<Payload> = Event::from_message(&message).unwrap();
        prop_assert_eq!(&back, &event);

        // The body is the reference wire format, field for field.
        let json: serde_json::Value = serde_json::from_slice(message.body()).unwrap();
        let object = json.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        prop_assert_eq!(keys, ["aggregateId", "data", "eventId", "eventType", "timestamp"]);
        prop_assert_eq!(object["timestamp"].as_str().unwrap(), event.timestamp().to_string());
    }
}

#[test]
fn reads_the_reference_body() {
    let body = br#"{"eventId":"0190b0e4-6c2a-7cc0-8000-000000000001","eventType":"user.created",
        "aggregateId":"user-1","timestamp":"2024-07-01T10:00:00.123Z","data":{"email":"a@b.c"}}"#;
    let message = sinew_messaging::Message::new("user.created", &body[..]);
    let event: Event<serde_json::Value> = Event::from_message(&message).unwrap();
    assert_eq!(event.aggregate_id(), "user-1");
    assert_eq!(event.data()["email"], "a@b.c");
    assert_eq!(event.timestamp().to_string(), "2024-07-01T10:00:00.123Z");
}
