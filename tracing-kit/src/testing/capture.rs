//! [`capture`]: record spans in memory, for the current thread only.

use std::fmt;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

use super::span::{RecordedSpan, from_sdk};
use crate::init::{export_noise_filter, set_global_propagator};

/// Installs, as the current thread's default subscriber, the OpenTelemetry layer over an
/// in-memory exporter with a synchronous processor and the always-on sampler; sets the global
/// W3C propagator. Every span is available from the [`SpanRecorder`] as soon as it closes.
///
/// Only spans on this thread are seen, so tests running in parallel do not interfere; use a
/// current-thread runtime (`#[tokio::test]`'s default). Nothing is logged.
///
/// ```
/// use sinew_tracing_kit::testing;
///
/// let (_guard, spans) = testing::capture();
/// tracing::info_span!("parent").in_scope(|| {
///     tracing::info_span!("child", answer = 42).in_scope(|| {});
/// });
/// spans.assert_parent("child", "parent");
/// spans.assert_same_trace(&["parent", "child"]);
/// assert_eq!(spans.span("child").attribute("answer"), Some("42"));
/// ```
///
/// # Callsite caching
///
/// tracing caches, per callsite, whether any subscriber is interested. In a test binary where
/// some tests reach a callsite with no subscriber of their own while others capture, that cache
/// can race into "never interested" and silently drop the span for every thread. If you see
/// spans missing intermittently, install a global default subscriber once in that binary,
/// for example `tracing::subscriber::set_global_default(tracing_subscriber::registry())`.
pub fn capture() -> (CaptureGuard, SpanRecorder) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(env!("CARGO_PKG_NAME")))
        .with_filter(export_noise_filter());
    let default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    set_global_propagator();
    (
        CaptureGuard {
            _default: default,
            _provider: provider,
        },
        SpanRecorder { exporter },
    )
}

/// Keeps [`capture`]'s subscriber installed on this thread; dropping it restores the previous
/// one.
#[must_use = "dropping the guard stops capturing at once"]
pub struct CaptureGuard {
    _default: tracing::subscriber::DefaultGuard,
    _provider: SdkTracerProvider,
}

impl fmt::Debug for CaptureGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureGuard").finish_non_exhaustive()
    }
}

/// The spans [`capture`] recorded, with assertion helpers. Cheap to clone (shared).
///
/// The `assert_*` helpers and [`span`](Self::span) panic with a readable message listing the
/// recorded spans: they are meant for tests.
#[derive(Clone)]
pub struct SpanRecorder {
    exporter: InMemorySpanExporter,
}

impl fmt::Debug for SpanRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanRecorder")
            .field("spans", &self.names())
            .finish()
    }
}

impl SpanRecorder {
    /// Every finished span, in the order they ended.
    pub fn spans(&self) -> Vec<RecordedSpan> {
        self.exporter
            .get_finished_spans()
            .unwrap_or_default()
            .iter()
            .map(from_sdk)
            .collect()
    }

    /// The names of the finished spans, in the order they ended.
    pub fn names(&self) -> Vec<String> {
        self.spans().into_iter().map(|s| s.name).collect()
    }

    /// The first finished span called `name`.
    pub fn find(&self, name: &str) -> Option<RecordedSpan> {
        self.spans().into_iter().find(|s| s.name == name)
    }

    /// Every finished span called `name`.
    pub fn find_all(&self, name: &str) -> Vec<RecordedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// The first finished span called `name`.
    ///
    /// # Panics
    ///
    /// When there is none.
    #[allow(clippy::panic, reason = "a test assertion helper")]
    pub fn span(&self, name: &str) -> RecordedSpan {
        self.find(name).unwrap_or_else(|| {
            panic!(
                "no finished span named {name:?}; recorded: {:?}",
                self.names()
            )
        })
    }

    /// The value of attribute `key` on the first span called `name`.
    pub fn attribute(&self, name: &str, key: &str) -> Option<String> {
        self.find(name).and_then(|s| s.attributes.get(key).cloned())
    }

    /// Asserts that span `child`'s parent is span `parent` (first spans of those names).
    ///
    /// # Panics
    ///
    /// When either is missing or the parent differs.
    pub fn assert_parent(&self, child: &str, parent: &str) {
        let c = self.span(child);
        let p = self.span(parent);
        assert_eq!(
            c.parent_span_id.as_deref(),
            Some(p.span_id.as_str()),
            "span {child:?} is not a child of {parent:?}"
        );
        assert_eq!(c.trace_id, p.trace_id, "span {child:?} is in another trace");
    }

    /// Asserts that the spans of these names (first of each) are in one trace.
    ///
    /// # Panics
    ///
    /// When one is missing or the trace IDs differ.
    pub fn assert_same_trace(&self, names: &[&str]) {
        let spans: Vec<RecordedSpan> = names.iter().map(|n| self.span(n)).collect();
        if let Some(first) = spans.first() {
            for s in &spans {
                assert_eq!(
                    s.trace_id, first.trace_id,
                    "span {:?} (trace {}) is not in the trace of {:?} ({})",
                    s.name, s.trace_id, first.name, first.trace_id
                );
            }
        }
    }

    /// Asserts that span `name` has no parent.
    ///
    /// # Panics
    ///
    /// When it is missing or has a parent.
    pub fn assert_root(&self, name: &str) {
        let s = self.span(name);
        assert_eq!(s.parent_span_id, None, "span {name:?} has a parent");
    }

    /// Forgets every span recorded so far.
    pub fn clear(&self) {
        self.exporter.reset();
    }
}
