//! The real, global `init` (its own test binary, one test: global state is set once per
//! process). Exports over HTTP into a `FakeCollector`.
#![cfg(all(feature = "otlp", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use sinew_tracing_kit::init::{self, Config, InitError, Protocol, ShutdownOutcome};
use sinew_tracing_kit::testing::FakeCollector;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_init_exports_propagates_and_refuses_a_second_init() {
    let collector = FakeCollector::start_http().unwrap();
    let config = || {
        Config::builder()
            .service_name("global")
            .service_version("0.0.1")
            .endpoint(collector.endpoint())
            .protocol(Protocol::HttpProtobuf)
            .log_writer(std::io::sink)
            .build()
            .unwrap()
    };
    let guard = init::init(config()).unwrap();

    // Spans from spawned tasks on worker threads reach the global subscriber.
    tokio::spawn(async {
        tracing::info_span!("on-a-worker").in_scope(|| {});
    })
    .await
    .unwrap();

    // The global propagator injects a traceparent.
    let mut headers = HashMap::new();
    tracing::info_span!("outgoing").in_scope(|| {
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
    });
    assert!(headers.contains_key("traceparent"), "{headers:?}");

    assert!(matches!(
        init::init(config()),
        Err(InitError::AlreadyInitialized)
    ));

    assert_eq!(guard.shutdown(), ShutdownOutcome::Flushed);
    let mut names: Vec<String> = collector
        .spans(2, Duration::from_secs(10))
        .await
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    assert_eq!(names, ["on-a-worker", "outgoing"]);
    assert_eq!(
        collector.resource_attributes().unwrap()["service.name"],
        "global"
    );
    assert_eq!(guard.shutdown(), ShutdownOutcome::AlreadyShutDown);
}
