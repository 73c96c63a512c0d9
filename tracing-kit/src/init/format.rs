//! The log formatter: `tracing-subscriber`'s own human or JSON line, plus `trace_id`,
//! `span_id` and `correlation_id`.

use std::fmt;

use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::TraceContextExt as _;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::correlation::{self, CorrelationId};

/// The IDs printed on a log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LogIds {
    pub(crate) trace_id: Option<String>,
    pub(crate) span_id: Option<String>,
    pub(crate) correlation_id: Option<CorrelationId>,
}

impl LogIds {
    /// The IDs of the current OpenTelemetry context.
    ///
    /// `tracing-opentelemetry` activates a span's OpenTelemetry context when the span is
    /// entered, so this is the entered span's context. (Looking the span up through the
    /// dispatcher would not work here: inside an event callback the dispatcher is busy and
    /// `Span::current()` is disabled.) The correlation ID comes from the task-local, else from
    /// the context's baggage, and is printed only when valid.
    pub(crate) fn current() -> Self {
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let sc = span.span_context();
        let (trace_id, span_id) = if sc.is_valid() {
            (
                Some(sc.trace_id().to_string()),
                Some(sc.span_id().to_string()),
            )
        } else {
            (None, None)
        };
        let correlation_id = correlation::current().or_else(|| {
            cx.baggage()
                .get(correlation::BAGGAGE_KEY)
                .and_then(|v| CorrelationId::parse(v.as_str()).ok())
        });
        Self {
            trace_id,
            span_id,
            correlation_id,
        }
    }
}

/// Wraps `tracing-subscriber`'s formatter `F` and appends the IDs of [`LogIds::current`].
#[derive(Debug)]
pub(crate) struct WithIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithIds<F> {
    pub(crate) const fn human(inner: F) -> Self {
        Self { inner, json: false }
    }

    pub(crate) const fn json(inner: F) -> Self {
        Self { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let ids = LogIds::current();
        if self.json {
            write_json(&mut writer, line, &ids)?;
        } else {
            write_human(&mut writer, line, &ids)?;
        }
        writer.write_char('\n')
    }
}

fn write_human(w: &mut impl fmt::Write, line: &str, ids: &LogIds) -> fmt::Result {
    w.write_str(line)?;
    if let Some(trace_id) = &ids.trace_id {
        write!(w, " trace_id={trace_id}")?;
    }
    if let Some(span_id) = &ids.span_id {
        write!(w, " span_id={span_id}")?;
    }
    if let Some(id) = &ids.correlation_id {
        // Validated visible ASCII: no quoting needed.
        write!(w, " correlation_id={id}")?;
    }
    Ok(())
}

fn write_json(w: &mut impl fmt::Write, line: &str, ids: &LogIds) -> fmt::Result {
    let Some(body) = line.strip_suffix('}') else {
        // Not an object (cannot happen with the JSON formatter): leave it alone.
        return w.write_str(line);
    };
    w.write_str(body)?;
    let mut first = body.trim_end().ends_with('{');
    let mut field = |w: &mut dyn fmt::Write, key: &str, value: &str| -> fmt::Result {
        if !first {
            w.write_char(',')?;
        }
        first = false;
        // The IDs are hex or validated visible ASCII; `"` and `\` still need escaping.
        w.write_char('"')?;
        w.write_str(key)?;
        w.write_str("\":\"")?;
        for c in value.chars() {
            if c == '"' || c == '\\' {
                w.write_char('\\')?;
            }
            w.write_char(c)?;
        }
        w.write_char('"')
    };
    if let Some(trace_id) = &ids.trace_id {
        field(w, "trace_id", trace_id)?;
    }
    if let Some(span_id) = &ids.span_id {
        field(w, "span_id", span_id)?;
    }
    if let Some(id) = &ids.correlation_id {
        field(w, "correlation_id", id.as_str())?;
    }
    w.write_char('}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> LogIds {
        LogIds {
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".to_owned()),
            span_id: Some("b7ad6b7169203331".to_owned()),
            correlation_id: CorrelationId::parse("a\"b\\c").ok(),
        }
    }

    #[test]
    fn json_ids_are_appended_and_escaped() {
        let mut out = String::new();
        write_json(&mut out, r#"{"level":"INFO"}"#, &ids()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(v["span_id"], "b7ad6b7169203331");
        assert_eq!(v["correlation_id"], "a\"b\\c");
        assert_eq!(v["level"], "INFO");

        let mut out = String::new();
        write_json(&mut out, "{}", &ids()).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());

        let mut out = String::new();
        write_json(&mut out, r#"{"a":1}"#, &LogIds::default()).unwrap();
        assert_eq!(out, r#"{"a":1}"#);
    }

    #[test]
    fn human_ids_are_appended() {
        let mut out = String::new();
        write_human(&mut out, "INFO x: hello", &ids()).unwrap();
        assert_eq!(
            out,
            "INFO x: hello trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331 correlation_id=a\"b\\c"
        );
    }
}
