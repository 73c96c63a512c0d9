#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Carriers, malformed input, baggage limits and messaging hops. This binary never sets a
//! global propagator, so it also proves the built-in W3C fallback.

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;

use opentelemetry::trace::SpanKind;
use sinew_tracing_kit::correlation::{self, CorrelationId};
use sinew_tracing_kit::messaging::{self, Relation};
use sinew_tracing_kit::propagation::{self, MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS};
use support::{assert_parent, attr_str, capture, is_root};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn extract_and_inject_round_trip_on_every_carrier() {
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let cx = propagation::extract(&map(&[("traceparent", &tp), ("baggage", "a=1")]));
    assert_eq!(cx.trace_id().as_deref(), Some(TRACE));
    assert_eq!(cx.span_id().as_deref(), Some(PARENT));
    assert!(cx.is_remote() && cx.is_sampled());
    assert_eq!(cx.baggage("a"), Some("1"));

    let mut hm = HashMap::new();
    propagation::inject_context(&cx, &mut hm);
    assert_eq!(hm["traceparent"], tp);
    assert_eq!(hm["baggage"], "a=1");

    let mut v: Vec<(String, String)> = Vec::new();
    propagation::inject_context(&cx, &mut v);
    assert_eq!(propagation::extract(&v).trace_id().as_deref(), Some(TRACE));

    #[cfg(feature = "http")]
    {
        let mut headers = http::HeaderMap::new();
        propagation::inject_context(&cx, &mut headers);
        assert_eq!(headers["traceparent"], tp.as_str());
        assert_eq!(
            propagation::extract(&headers).span_id().as_deref(),
            Some(PARENT)
        );
    }

    // Case-insensitive look-up in string maps.
    let upper = map(&[("TraceParent", &tp)]);
    assert_eq!(
        propagation::extract(&upper).trace_id().as_deref(),
        Some(TRACE)
    );
}

#[test]
fn inject_uses_the_current_span_and_correlation_id() {
    let cap = capture();
    let span = tracing::info_span!("work");
    let mut headers = HashMap::new();
    let id = CorrelationId::parse("corr-1").unwrap();
    correlation::sync_scope(id, || {
        let _e = span.enter();
        propagation::inject(&mut headers);
    });
    drop(span);
    let work = cap.find("work");
    assert!(headers["traceparent"].contains(&work.span_context.trace_id().to_string()));
    assert!(headers["traceparent"].contains(&work.span_context.span_id().to_string()));
    assert_eq!(headers["baggage"], "correlation_id=corr-1");
    let back = propagation::extract(&headers);
    assert_eq!(back.correlation_id().unwrap().as_str(), "corr-1");
}

#[test]
fn malformed_traceparent_starts_a_new_trace() {
    let cases = [
        ("wrong version", format!("ff-{TRACE}-{PARENT}-01")),
        (
            "all-zero trace id",
            format!("00-{}-{PARENT}-01", "0".repeat(32)),
        ),
        (
            "all-zero span id",
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
        ),
        ("short trace id", format!("00-{}-{PARENT}-01", &TRACE[..31])),
        ("long span id", format!("00-{TRACE}-{PARENT}0-01")),
        (
            "upper-case hex",
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
        ),
        ("bad flags", format!("00-{TRACE}-{PARENT}-zz")),
        ("missing parts", format!("00-{TRACE}")),
        ("garbage", "not a traceparent".to_owned()),
        ("empty", String::new()),
        ("unicode", "00-é-é-01".to_owned()),
    ];
    let cap = capture();
    for (what, value) in &cases {
        let cx = propagation::extract(&map(&[("traceparent", value)]));
        assert!(!cx.is_valid(), "{what}: {value:?} was accepted");
        let span = tracing::info_span!("server");
        assert!(cx.set_as_parent_of(&span), "{what}");
        drop(span);
    }
    let spans = cap.spans();
    assert_eq!(spans.len(), cases.len());
    for s in &spans {
        assert!(is_root(s));
        assert_ne!(s.span_context.trace_id().to_string(), TRACE);
    }

    // Non-UTF-8 header bytes.
    #[cfg(feature = "http")]
    {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_bytes(b"00-\xff\xfe-01").unwrap(),
        );
        assert!(!propagation::extract(&headers).is_valid());
    }
}

#[test]
fn oversized_baggage_is_trimmed_not_dropped() {
    let many: Vec<String> = (0..200).map(|i| format!("k{i}=v{i}")).collect();
    let cx = propagation::extract(&map(&[("baggage", &many.join(","))]));
    assert_eq!(cx.baggage_len(), MAX_BAGGAGE_MEMBERS);
    assert_eq!(cx.baggage("k0"), Some("v0"));

    let big: Vec<String> = (0..12)
        .map(|i| format!("b{i}={}", "x".repeat(1000)))
        .collect();
    let header = big.join(",");
    assert!(header.len() > MAX_BAGGAGE_BYTES);
    let cx = propagation::extract(&map(&[("baggage", &header), ("correlation_id", "x")]));
    assert!(cx.baggage_len() >= 7, "kept {}", cx.baggage_len());
    assert!(cx.baggage("b0").is_some());

    let mut out = HashMap::new();
    propagation::inject_context(&cx, &mut out);
    assert!(out["baggage"].len() <= MAX_BAGGAGE_BYTES);
    assert!(out["baggage"].split(',').count() <= MAX_BAGGAGE_MEMBERS);
}

/// Random bytes in real header values (an `http::HeaderMap`, as the server layers see them).
#[cfg(feature = "http")]
mod header_bytes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_header_bytes_never_panic(
            tp in proptest::collection::vec(any::<u8>(), 0..80),
            ts in proptest::collection::vec(any::<u8>(), 0..80),
            bg in proptest::collection::vec(any::<u8>(), 0..200),
            valid_prefix in any::<bool>(),
        ) {
            let mut headers = http::HeaderMap::new();
            let mut tp = tp;
            if valid_prefix {
                let mut v = format!("00-{TRACE}-").into_bytes();
                v.extend_from_slice(&tp);
                tp = v;
            }
            for (name, value) in [("traceparent", &tp), ("tracestate", &ts), ("baggage", &bg)] {
                if let Ok(value) = http::HeaderValue::from_bytes(value) {
                    headers.insert(name, value);
                }
            }
            let cx = propagation::extract(&headers);
            if let Some(trace) = cx.trace_id() {
                // A valid context only comes from a well-formed traceparent.
                let tp = headers["traceparent"].to_str().unwrap();
                prop_assert!(tp.contains(&trace));
                prop_assert_ne!(trace, "0".repeat(32));
            }
            prop_assert!(cx.baggage_len() <= MAX_BAGGAGE_MEMBERS);
            let mut out = HashMap::new();
            propagation::inject_context(&cx, &mut out);

            let strings: HashMap<String, String> = headers
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
                .collect();
            let _ = messaging::consumer_span("amqp", "q", &strings);
            let _ = messaging::correlation_id(&strings);
        }
    }
}

#[tokio::test]
async fn producer_to_consumer_link_and_correlation() {
    let cap = capture();
    let mut headers: HashMap<String, String> = HashMap::new();
    let id = CorrelationId::parse("order-7").unwrap();
    correlation::scope(id.clone(), async {
        let span = messaging::producer_span("rabbitmq", "orders");
        let _e = span.enter();
        messaging::inject(&mut headers);
    })
    .await;
    assert_eq!(headers["x-correlation-id"], "order-7");

    let restored = messaging::correlation_id(&headers).unwrap();
    assert_eq!(restored, id);
    {
        let span = messaging::consumer_span("rabbitmq", "orders", &headers);
        let _e = span.enter();
        tracing::info_span!("handler").in_scope(|| {});
    }
    {
        let span = messaging::consumer_span_with("rabbitmq", "orders", &headers, Relation::Parent);
        let _e = span.enter();
    }

    let spans = cap.spans();
    let producer = spans.iter().find(|s| s.name == "send orders").unwrap();
    assert_eq!(producer.span_kind, SpanKind::Producer);
    assert_eq!(
        attr_str(producer, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        attr_str(producer, "messaging.destination.name").as_deref(),
        Some("orders")
    );
    assert_eq!(
        attr_str(producer, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        attr_str(producer, "correlation_id").as_deref(),
        Some("order-7")
    );

    let consumers: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "process orders")
        .collect();
    assert_eq!(consumers.len(), 2);
    let linked = consumers[0];
    assert_eq!(linked.span_kind, SpanKind::Consumer);
    assert_eq!(
        attr_str(linked, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        attr_str(linked, "correlation_id").as_deref(),
        Some("order-7")
    );
    assert!(is_root(linked));
    assert_ne!(
        linked.span_context.trace_id(),
        producer.span_context.trace_id()
    );
    assert_eq!(linked.links.links.len(), 1);
    let link = &linked.links.links[0].span_context;
    assert_eq!(link.trace_id(), producer.span_context.trace_id());
    assert_eq!(link.span_id(), producer.span_context.span_id());

    let handler = spans.iter().find(|s| s.name == "handler").unwrap();
    assert_parent(handler, linked);

    let child = consumers[1];
    assert_parent(child, producer);
    assert!(child.links.links.is_empty());
}

#[test]
fn headers_without_context_give_an_empty_context() {
    let cx = propagation::extract(&HashMap::<String, String>::new());
    assert!(!cx.is_valid());
    assert_eq!(cx.trace_id(), None);
    assert!(messaging::correlation_id(&HashMap::<String, String>::new()).is_none());
    let bad = map(&[("x-correlation-id", "bad id with spaces")]);
    assert!(messaging::correlation_id(&bad).is_none());
}
