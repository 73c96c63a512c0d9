//! `testing::capture()`: spans recorded per thread, with assertion helpers.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use opentelemetry::trace::TraceContextExt as _;
use sinew_tracing_kit::testing::{self, SpanKind, SpanStatus};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[test]
fn parentage_trace_and_attributes() {
    let (_guard, spans) = testing::capture();
    tracing::info_span!("root", otel.kind = "server").in_scope(|| {
        tracing::debug_span!("child", n = 7, ok = true).in_scope(|| {
            tracing::trace_span!("grandchild", otel.status_code = "error").in_scope(|| {});
        });
    });
    tracing::info_span!("other").in_scope(|| {});

    assert_eq!(spans.names(), ["grandchild", "child", "root", "other"]);
    spans.assert_parent("child", "root");
    spans.assert_parent("grandchild", "child");
    spans.assert_same_trace(&["root", "child", "grandchild"]);
    spans.assert_root("root");
    spans.assert_root("other");
    assert_ne!(spans.span("other").trace_id, spans.span("root").trace_id);
    assert_eq!(spans.span("root").kind, SpanKind::Server);
    assert_eq!(spans.span("child").kind, SpanKind::Internal);
    assert_eq!(spans.attribute("child", "n").as_deref(), Some("7"));
    assert_eq!(spans.attribute("child", "ok").as_deref(), Some("true"));
    assert!(matches!(
        spans.span("grandchild").status,
        SpanStatus::Error(_)
    ));
    assert!(spans.find("missing").is_none());
    assert_eq!(spans.find_all("root").len(), 1);
    let root = spans.span("root");
    assert_eq!(root.trace_id.len(), 32);
    assert_eq!(root.span_id.len(), 16);

    spans.clear();
    assert!(spans.spans().is_empty());
}

#[test]
#[should_panic(expected = "is not a child of")]
fn assert_parent_fails_loudly() {
    let (_guard, spans) = testing::capture();
    tracing::info_span!("a").in_scope(|| {});
    tracing::info_span!("b").in_scope(|| {});
    spans.assert_parent("b", "a");
}

#[test]
fn links_are_recorded() {
    let (_guard, spans) = testing::capture();
    let producer = tracing::info_span!("producer");
    let producer_cx = producer.context().span().span_context().clone();
    drop(producer);
    let consumer = tracing::info_span!("consumer");
    consumer.add_link(producer_cx);
    drop(consumer);
    let producer = spans.span("producer");
    let consumer = spans.span("consumer");
    assert_eq!(consumer.links.len(), 1);
    assert_eq!(consumer.links[0].span_id, producer.span_id);
    assert_eq!(consumer.links[0].trace_id, producer.trace_id);
}

/// Captures on two threads at once see only their own spans.
#[test]
fn captures_are_per_thread() {
    let run = |name: &'static str| {
        std::thread::spawn(move || {
            let (_guard, spans) = testing::capture();
            for _ in 0..50 {
                tracing::info_span!("work", who = name).in_scope(|| {});
            }
            spans
                .spans()
                .iter()
                .map(|s| s.attribute("who").unwrap().to_owned())
                .collect::<Vec<_>>()
        })
    };
    let a = run("a");
    let b = run("b");
    let a = a.join().unwrap();
    let b = b.join().unwrap();
    assert_eq!(a.len(), 50);
    assert_eq!(b.len(), 50);
    assert!(a.iter().all(|w| w == "a"));
    assert!(b.iter().all(|w| w == "b"));
}

/// The global propagator is set: a `traceparent` goes out for the current span.
#[test]
fn propagator_is_set() {
    let (_guard, spans) = testing::capture();
    let mut headers = std::collections::HashMap::new();
    tracing::info_span!("client").in_scope(|| {
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
    });
    let client = spans.span("client");
    assert_eq!(
        headers.get("traceparent").unwrap(),
        &format!("00-{}-{}-01", client.trace_id, client.span_id)
    );
}
