//! How the consumer span relates to the producer context in the headers
//! ([`ConsumerTrace`]), on the memory backend.
#![cfg(all(feature = "memory", feature = "testing", feature = "opentelemetry"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sinew_messaging::memory::MemoryBroker;
use sinew_messaging::{
    ConsumerTrace, Delivery, Event, Outcome, Publisher, Subscriber, Subscription,
    SubscriptionConfig, handler_fn,
};
use sinew_tracing_kit::testing::{RecordedSpan, SpanKind, capture};
use tracing::Instrument;

struct Run {
    request: RecordedSpan,
    producer: RecordedSpan,
    consumer: RecordedSpan,
    /// The span current inside the handler, as a child of the consumer span.
    inner: RecordedSpan,
}

/// Publishes one event inside a `request` span and lets a handler with `trace` consume it.
async fn run(trace: Option<ConsumerTrace>) -> Run {
    let (_guard, spans) = capture();
    tracing::callsite::rebuild_interest_cache();
    let broker = MemoryBroker::new();
    let mut builder = SubscriptionConfig::builder("email", "welcome").routing_key("user.created");
    if let Some(trace) = trace {
        builder = builder.consumer_trace(trace);
    }
    let config = builder.build().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sub = broker
        .subscriber()
        .subscribe(
            config,
            handler_fn("welcome", move |_d: Delivery| {
                let tx = tx.clone();
                async move {
                    tracing::info_span!("handler-work").in_scope(|| {});
                    tx.send(()).unwrap();
                    Ok(Outcome::Ack)
                }
            }),
        )
        .await
        .unwrap();
    let message = Event::new("user.created", "u-1", "ada".to_owned())
        .to_message("accounts")
        .unwrap();
    let id = message.message_id().to_owned();
    broker
        .publisher()
        .publish(message)
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();
    rx.recv().await.unwrap();
    assert!(sub.shutdown(Duration::from_secs(5)).await.drained());

    let find = |kind: SpanKind| {
        spans
            .spans()
            .into_iter()
            .find(|s| s.kind == kind && s.attribute("messaging.message.id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("no {kind:?} span; recorded: {:?}", spans.names()))
    };
    Run {
        request: spans.span("request"),
        producer: find(SpanKind::Producer),
        consumer: find(SpanKind::Consumer),
        inner: spans.span("handler-work"),
    }
}

fn links_to_producer(run: &Run) -> bool {
    run.consumer
        .links
        .iter()
        .any(|l| l.trace_id == run.producer.trace_id && l.span_id == run.producer.span_id)
}

#[tokio::test]
async fn default_consumer_span_is_child_of_and_linked_to_the_producer() {
    let run = run(None).await;
    assert_eq!(
        run.producer.parent_span_id.as_deref(),
        Some(run.request.span_id.as_str())
    );
    assert_eq!(run.consumer.trace_id, run.request.trace_id, "one trace");
    assert_eq!(
        run.consumer.parent_span_id.as_deref(),
        Some(run.producer.span_id.as_str()),
        "the consumer span is a child of the producer span"
    );
    assert!(links_to_producer(&run), "links: {:?}", run.consumer.links);
    assert_eq!(run.inner.trace_id, run.request.trace_id);
    assert_eq!(
        run.inner.parent_span_id.as_deref(),
        Some(run.consumer.span_id.as_str()),
        "the handler runs inside the consumer span"
    );
}

#[tokio::test]
async fn child_and_link_explicitly() {
    let run = run(Some(ConsumerTrace::ChildAndLink)).await;
    assert_eq!(
        run.consumer.parent_span_id.as_deref(),
        Some(run.producer.span_id.as_str())
    );
    assert!(links_to_producer(&run));
}

#[tokio::test]
async fn link_only_keeps_the_consumer_in_its_own_trace() {
    let run = run(Some(ConsumerTrace::LinkOnly)).await;
    assert_ne!(
        run.consumer.trace_id, run.producer.trace_id,
        "the consumer span starts a trace of its own"
    );
    assert_eq!(run.consumer.parent_span_id, None, "a root span");
    assert!(links_to_producer(&run), "links: {:?}", run.consumer.links);
    assert_eq!(run.inner.trace_id, run.consumer.trace_id);
}
