//! OTLP export end to end into `FakeCollector`, over gRPC and HTTP, on both runtime flavours.
//!
//! Each test installs its subscriber for its own thread only (`init_scoped`) and owns its
//! collector, so the tests run in parallel without sharing global state. Spans are created on
//! the test's own thread (inside `block_on`), where that subscriber is the default.
#![cfg(all(feature = "otlp", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sinew_tracing_kit::init::{self, Config, Protocol, ShutdownOutcome};
use sinew_tracing_kit::testing::{FakeCollector, RecordedSpan};

const WAIT: Duration = Duration::from_secs(10);

fn config(collector: &FakeCollector, protocol: Protocol) -> Config {
    Config::builder()
        .service_name("orders")
        .service_version("1.2.3")
        .environment("test")
        .resource_attribute("team", "payments")
        .endpoint(collector.endpoint())
        .protocol(protocol)
        .filter("info")
        .shutdown_deadline(WAIT)
        .log_writer(std::io::sink)
        .build()
        .unwrap()
}

fn make_spans() {
    tracing::info_span!("checkout", order.id = 42, otel.kind = "server").in_scope(|| {
        tracing::info_span!("charge", amount = "9.99").in_scope(|| {
            tracing::info!("charged");
        });
    });
    // Filtered out by `info`: never created, never exported.
    tracing::debug_span!("noise").in_scope(|| {});
}

fn by_name<'a>(spans: &'a [RecordedSpan], name: &str) -> &'a RecordedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:?}"))
}

async fn check(collector: &FakeCollector) {
    let spans = collector.spans(2, WAIT).await;
    assert_eq!(spans.len(), 2, "{spans:?}");
    let checkout = by_name(&spans, "checkout");
    let charge = by_name(&spans, "charge");
    assert_eq!(checkout.attribute("order.id"), Some("42"));
    assert_eq!(charge.attribute("amount"), Some("9.99"));
    assert_eq!(
        charge.parent_span_id.as_deref(),
        Some(checkout.span_id.as_str())
    );
    assert_eq!(charge.trace_id, checkout.trace_id);
    assert_eq!(checkout.parent_span_id, None);
    assert_eq!(charge.events, ["charged"]);

    let resource = collector.resource_attributes().unwrap();
    assert_eq!(resource["service.name"], "orders");
    assert_eq!(resource["service.version"], "1.2.3");
    assert_eq!(resource["deployment.environment.name"], "test");
    assert_eq!(resource["team"], "payments");
    assert!(uuid_like(&resource["service.instance.id"]));
    assert_eq!(collector.resources().len(), 1);
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

async fn export_and_shut_down(protocol: Protocol) {
    let collector = match protocol {
        Protocol::Grpc => FakeCollector::start().unwrap(),
        _ => FakeCollector::start_http().unwrap(),
    };
    let guard = init::init_scoped(config(&collector, protocol)).unwrap();
    make_spans();
    // Batched: nothing needs to have arrived yet; shutdown must flush it all.
    assert_eq!(guard.shutdown(), ShutdownOutcome::Flushed);
    // Everything is there once shutdown returns: no waiting needed.
    assert_eq!(collector.received().len(), 2);
    check(&collector).await;
    // Idempotent.
    assert_eq!(guard.shutdown(), ShutdownOutcome::AlreadyShutDown);
    assert_eq!(
        guard.shutdown_with_deadline(Duration::from_millis(1)),
        ShutdownOutcome::AlreadyShutDown
    );
    drop(guard);
    assert_eq!(collector.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_on_a_multi_thread_runtime() {
    export_and_shut_down(Protocol::Grpc).await;
}

#[tokio::test(flavor = "current_thread")]
async fn grpc_on_a_current_thread_runtime() {
    export_and_shut_down(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_on_a_multi_thread_runtime() {
    export_and_shut_down(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "current_thread")]
async fn http_on_a_current_thread_runtime() {
    export_and_shut_down(Protocol::HttpProtobuf).await;
}

/// `init` outside any runtime, with gRPC: the exporter brings its own.
#[test]
fn grpc_without_a_runtime() {
    let collector = FakeCollector::start().unwrap();
    let guard = init::init_scoped(config(&collector, Protocol::Grpc)).unwrap();
    make_spans();
    assert!(guard.shutdown().is_flushed());
    assert_eq!(collector.received().len(), 2);
}

/// Dropping the guard flushes, like `shutdown`.
#[tokio::test(flavor = "current_thread")]
async fn drop_flushes() {
    let collector = FakeCollector::start().unwrap();
    let guard = init::init_scoped(config(&collector, Protocol::Grpc)).unwrap();
    make_spans();
    drop(guard);
    check(&collector).await;
}

/// A collector that accepts connections and never answers: shutdown gives up at its deadline
/// instead of hanging (export timeout is far longer).
#[tokio::test(flavor = "current_thread")]
async fn shutdown_gives_up_at_its_deadline() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold connections without reading or answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let guard = init::init_scoped(
        Config::builder()
            .endpoint(format!("http://{addr}"))
            .protocol(Protocol::HttpProtobuf)
            .export_timeout(Duration::from_secs(600))
            .log_writer(std::io::sink)
            .build()
            .unwrap(),
    )
    .unwrap();
    make_spans();
    let outcome = guard.shutdown_with_deadline(Duration::from_millis(300));
    assert_eq!(outcome, ShutdownOutcome::TimedOut);
    assert_eq!(guard.shutdown(), ShutdownOutcome::AlreadyShutDown);
}

/// Without an endpoint nothing is exported and shutdown has nothing to wait for.
#[test]
fn no_endpoint_exports_nothing() {
    let guard =
        init::init_scoped(Config::builder().log_writer(std::io::sink).build().unwrap()).unwrap();
    make_spans();
    assert_eq!(guard.shutdown(), ShutdownOutcome::Flushed);
}
