//! Every log line inside a span carries `trace_id`, `span_id` and `correlation_id`.
//!
//! The subscriber is installed for the test's thread only (`init_scoped`) and writes into a
//! buffer, so the tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::sync::{Arc, Mutex};

use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::TraceContextExt as _;
use sinew_tracing_kit::correlation::{self, CorrelationId};
use sinew_tracing_kit::init::{self, Config, LogFormat};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

fn install(format: LogFormat) -> (init::ScopedGuard, Buffer) {
    let buffer = Buffer::default();
    let guard = init::init_scoped(
        Config::builder()
            .service_name("logs-test")
            .log_format(format)
            .log_writer(buffer.clone())
            .build()
            .unwrap(),
    )
    .unwrap();
    (guard, buffer)
}

/// Logs outside any span, inside a span, and in a nested span with a correlation ID; returns
/// the expected (trace_id, outer span_id, inner span_id).
fn log_some() -> (String, String, String) {
    tracing::info!("before");
    let outer = tracing::info_span!("outer");
    let _o = outer.enter();
    tracing::info!(k = "v", "in outer");
    let outer_cx = outer.context();
    let trace_id = outer_cx.span().span_context().trace_id().to_string();
    let outer_id = outer_cx.span().span_context().span_id().to_string();
    let inner_id = correlation::sync_scope(CorrelationId::parse("order-42").unwrap(), || {
        let inner = tracing::info_span!("inner");
        let _i = inner.enter();
        tracing::warn!("in inner");
        inner.context().span().span_context().span_id().to_string()
    });
    (trace_id, outer_id, inner_id)
}

#[test]
fn human_lines_carry_the_ids() {
    let (_guard, buffer) = install(LogFormat::Human);
    let (trace_id, outer_id, inner_id) = log_some();
    assert_eq!(trace_id.len(), 32);
    let lines = buffer.lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");

    assert!(lines[0].ends_with("before"), "{}", lines[0]);
    assert!(!lines[0].contains("trace_id="));

    assert!(lines[1].contains("in outer"));
    assert!(lines[1].contains("k=\"v\""));
    assert!(
        lines[1].ends_with(&format!(" trace_id={trace_id} span_id={outer_id}")),
        "{}",
        lines[1]
    );

    assert!(lines[2].contains("in inner"));
    assert!(
        lines[2].ends_with(&format!(
            " trace_id={trace_id} span_id={inner_id} correlation_id=order-42"
        )),
        "{}",
        lines[2]
    );
}

#[test]
fn json_lines_carry_the_ids() {
    let (_guard, buffer) = install(LogFormat::Json);
    let (trace_id, outer_id, inner_id) = log_some();
    let lines: Vec<serde_json::Value> = buffer
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);

    assert_eq!(lines[0]["fields"]["message"], "before");
    assert!(lines[0].get("trace_id").is_none());
    assert!(lines[0].get("correlation_id").is_none());

    assert_eq!(lines[1]["fields"]["message"], "in outer");
    assert_eq!(lines[1]["fields"]["k"], "v");
    assert_eq!(lines[1]["span"]["name"], "outer");
    assert_eq!(lines[1]["trace_id"], trace_id.as_str());
    assert_eq!(lines[1]["span_id"], outer_id.as_str());
    assert!(lines[1].get("correlation_id").is_none());

    assert_eq!(lines[2]["level"], "WARN");
    assert_eq!(lines[2]["trace_id"], trace_id.as_str());
    assert_eq!(lines[2]["span_id"], inner_id.as_str());
    assert_eq!(lines[2]["correlation_id"], "order-42");
}

/// Without the task-local, the correlation ID comes from the context's baggage (a hop our
/// layers did not touch); an invalid one is not printed.
#[test]
fn correlation_id_from_baggage() {
    let (_guard, buffer) = install(LogFormat::Human);
    let with = |value: &str| {
        opentelemetry::Context::current().with_baggage([opentelemetry::KeyValue::new(
            correlation::BAGGAGE_KEY,
            value.to_owned(),
        )])
    };
    {
        let _cx = with("from-baggage").attach();
        tracing::info_span!("s").in_scope(|| tracing::info!("valid"));
    }
    {
        let _cx = with("bad id").attach();
        tracing::info_span!("s").in_scope(|| tracing::info!("invalid"));
    }
    let lines = buffer.lines();
    assert!(
        lines[0].ends_with(" correlation_id=from-baggage"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(" span_id="), "{}", lines[1]);
    assert!(!lines[1].contains("correlation_id"), "{}", lines[1]);
}

/// The filter applies: below-level events are not printed.
#[test]
fn the_filter_applies() {
    let buffer = Buffer::default();
    let _guard = init::init_scoped(
        Config::builder()
            .filter("warn")
            .log_writer(buffer.clone())
            .build()
            .unwrap(),
    )
    .unwrap();
    tracing::info!("hidden");
    tracing::warn!("shown");
    let lines = buffer.lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].ends_with("shown"));
}
