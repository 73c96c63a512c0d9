//! Test helpers: record spans in memory with [`capture`], and receive OTLP exports with
//! [`FakeCollector`], so exporter tests run end to end without Jaeger or a collector.
//!
//! Neither exposes OpenTelemetry SDK or protobuf types: spans come back as [`RecordedSpan`].
//!
//! ```
//! use sinew_tracing_kit::testing::{self, SpanKind};
//!
//! let (_guard, spans) = testing::capture();
//! tracing::info_span!("work", otel.kind = "client").in_scope(|| {});
//! assert_eq!(spans.span("work").kind, SpanKind::Client);
//! spans.assert_root("work");
//! ```

mod capture;
mod collector;
mod span;

pub use capture::{CaptureGuard, SpanRecorder, capture};
pub use collector::FakeCollector;
pub use span::{RecordedSpan, SpanKind, SpanLink, SpanStatus};
