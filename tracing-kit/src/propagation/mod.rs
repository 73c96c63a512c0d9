//! W3C trace-context and baggage propagation over any string header carrier.
//!
//! [`inject`] writes `traceparent`, `tracestate` and `baggage` (with the current
//! [correlation ID](crate::correlation) under [`BAGGAGE_KEY`])
//! into a [`Carrier`]; [`extract`] reads them back into a [`TraceContext`]. Carriers are
//! provided for [`http::HeaderMap`] (feature `http`), `HashMap<String, String>` (the header map
//! `sinew-messaging` uses) and `Vec<(String, String)>`.
//!
//! Both use the global OpenTelemetry propagator that [`init`](crate) installs. While the
//! global propagator is still OpenTelemetry's no-op default (nothing installed yet, as in
//! tests), a built-in W3C TraceContext + Baggage composite is used instead, so propagation
//! never silently does nothing.
//!
//! Bad input never fails: a malformed `traceparent` (wrong version, all-zero IDs, bad
//! lengths, garbage, non-UTF-8 bytes) yields a context without a remote parent, so the next
//! span starts a new trace; a `baggage` header over the W3C limits (8192 bytes, 64 members)
//! is trimmed to them, member by member, instead of being dropped.
//!
//! ```
//! use std::collections::HashMap;
//! use sinew_tracing_kit::propagation;
//!
//! let mut headers = HashMap::new();
//! headers.insert(
//!     "traceparent".to_owned(),
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
//! );
//! let cx = propagation::extract(&headers);
//! assert_eq!(cx.trace_id().as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
//!
//! let mut out = HashMap::new();
//! propagation::inject_context(&cx, &mut out);
//! assert!(out["traceparent"].contains("4bf92f3577b34da6a3ce929d0e0e4736"));
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::correlation::{self, BAGGAGE_KEY, CorrelationId};

/// W3C limit on the `baggage` header length, in bytes.
pub const MAX_BAGGAGE_BYTES: usize = 8192;

/// W3C limit on the number of `baggage` members.
pub const MAX_BAGGAGE_MEMBERS: usize = 64;

const BAGGAGE_HEADER: &str = "baggage";

/// A string header map that trace context can be injected into and extracted from.
///
/// Implemented for [`http::HeaderMap`], `HashMap<String, String>` and
/// `Vec<(String, String)>`; implement it for your own message header type. Keys are the
/// lower-case W3C names (`traceparent`, `tracestate`, `baggage`); look-ups should be
/// case-insensitive where the carrier allows it.
pub trait Carrier {
    /// The value under `key`, if present and valid UTF-8.
    fn get(&self, key: &str) -> Option<&str>;
    /// Sets `key` to `value`, replacing an existing value.
    fn set(&mut self, key: &str, value: String);
    /// All keys present.
    fn keys(&self) -> Vec<&str>;
}

impl<S: std::hash::BuildHasher> Carrier for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        if let Some(v) = HashMap::get(self, key) {
            return Some(v.as_str());
        }
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }

    fn keys(&self) -> Vec<&str> {
        HashMap::keys(self).map(String::as_str).collect()
    }
}

impl Carrier for Vec<(String, String)> {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: String) {
        if let Some(slot) = self.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            slot.1 = value;
        } else {
            self.push((key.to_owned(), value));
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.iter().map(|(k, _)| k.as_str()).collect()
    }
}

#[cfg(feature = "http")]
impl Carrier for http::HeaderMap {
    fn get(&self, key: &str) -> Option<&str> {
        http::HeaderMap::get(self, key).and_then(|v| v.to_str().ok())
    }

    fn set(&mut self, key: &str, value: String) {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::try_from(value),
        ) else {
            tracing::debug!(
                key,
                "dropping a propagation header that is not a valid HTTP header"
            );
            return;
        };
        self.insert(name, value);
    }

    fn keys(&self) -> Vec<&str> {
        http::HeaderMap::keys(self)
            .map(http::HeaderName::as_str)
            .collect()
    }
}

/// Adapts a [`Carrier`] to OpenTelemetry's `Extractor`, trimming an oversized `baggage`.
struct ExtractAdapter<'a, C: ?Sized> {
    carrier: &'a C,
    baggage: Option<Cow<'a, str>>,
}

impl<'a, C: Carrier + ?Sized> ExtractAdapter<'a, C> {
    fn new(carrier: &'a C) -> Self {
        let baggage = carrier.get(BAGGAGE_HEADER).map(trim_baggage);
        Self { carrier, baggage }
    }
}

impl<C: Carrier + ?Sized> Extractor for ExtractAdapter<'_, C> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case(BAGGAGE_HEADER) {
            self.baggage.as_deref()
        } else if key.eq_ignore_ascii_case(TRACEPARENT_HEADER) {
            self.carrier.get(key).filter(|v| valid_traceparent(v))
        } else {
            self.carrier.get(key)
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.carrier.keys()
    }
}

const TRACEPARENT_HEADER: &str = "traceparent";
#[cfg(feature = "http")]
const TRACESTATE_HEADER: &str = "tracestate";

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Strict W3C `traceparent` syntax (the SDK's parser accepts short IDs): lower-case hex,
/// `version-trace_id-parent_id-flags` with 2-32-16-2 digits, version `ff` invalid, version
/// `00` with exactly four fields, non-zero IDs.
fn valid_traceparent(value: &str) -> bool {
    let mut parts = value.trim().split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = if version == "00" {
        parts.next().is_none()
    } else {
        true
    };
    rest_ok
        && lower_hex(version, 2)
        && version != "ff"
        && lower_hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && lower_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && lower_hex(flags, 2)
}

/// `traceparent`, parsed once.
#[cfg(feature = "http")]
pub(crate) static TRACEPARENT: http::HeaderName = http::HeaderName::from_static(TRACEPARENT_HEADER);
/// `tracestate`, parsed once.
#[cfg(feature = "http")]
pub(crate) static TRACESTATE: http::HeaderName = http::HeaderName::from_static(TRACESTATE_HEADER);
/// `baggage`, parsed once.
#[cfg(feature = "http")]
pub(crate) static BAGGAGE: http::HeaderName = http::HeaderName::from_static(BAGGAGE_HEADER);

/// A remote context read straight from the `traceparent` and `tracestate` values, for the
/// unsampled fast path of the server layers: `None` when there is no valid `traceparent`;
/// `Some(Err(()))` when the full propagator must decide (a `baggage` header is present, or
/// a `traceparent` of another version).
#[cfg(feature = "http")]
pub(crate) fn fast_remote(
    traceparent: Option<&http::HeaderValue>,
    tracestate: Option<&http::HeaderValue>,
    baggage: bool,
) -> Option<Result<opentelemetry::Context, ()>> {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    if baggage {
        return Some(Err(()));
    }
    let value = traceparent?.as_bytes();
    let (trace_id, span_id, flags) = match parse_traceparent_00(value) {
        Some(parsed) => parsed,
        // Another version, or surrounding whitespace: the full validator decides, and the
        // propagator parses.
        None if valid_traceparent(std::str::from_utf8(value).ok()?) => return Some(Err(())),
        None => return None,
    };
    let state = match tracestate.map(|v| v.to_str()) {
        None => TraceState::default(),
        Some(Ok(s)) => s.parse().unwrap_or_default(),
        Some(Err(_)) => TraceState::default(),
    };
    let sc = SpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(span_id),
        TraceFlags::new(flags & 1),
        true,
        state,
    );
    Some(Ok(
        opentelemetry::Context::new().with_remote_span_context(sc)
    ))
}

/// Nibble value of each byte; 0xff for anything but `0-9a-f`.
#[cfg(feature = "http")]
const NIBBLE: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Lower-case hex digits (the first the most significant), one at a time; `None` on any
/// other byte.
#[cfg(feature = "http")]
fn hex_scalar(bytes: &[u8]) -> Option<u64> {
    let mut acc = 0u64;
    let mut bad = 0u8;
    for &b in bytes {
        let n = NIBBLE[usize::from(b)];
        bad |= n;
        acc = acc << 4 | u64::from(n & 0x0f);
    }
    // A valid nibble never has its high bits set.
    (bad & 0xf0 == 0).then_some(acc)
}

/// 16 lower-case hex digits, eight at a time.
#[cfg(feature = "http")]
fn hex16(bytes: &[u8]) -> Option<u64> {
    let (high, low) = bytes.split_at_checked(8)?;
    Some(u64::from(hex8(high)?) << 32 | u64::from(hex8(low)?))
}

/// 8 lower-case hex digits (the first the most significant) decoded in one 64-bit word
/// (SWAR): about a third of the instructions of a per-byte table lookup. `None` on any other
/// byte.
#[cfg(feature = "http")]
fn hex8(bytes: &[u8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Byte i of `x` is the i-th digit.
    let x = u64::from_le_bytes(bytes.try_into().ok()?);
    if x & HIGH != 0 {
        return None;
    }
    // Every byte is below 0x80, so these per-byte additions never carry into the next byte:
    // bit 7 of `b + 0x80 - lo` is set when `b >= lo`, and of `b + 0x7f - hi` when `b > hi`.
    let within = |lo: u64, hi: u64| (x + ONES * (0x80 - lo)) & !(x + ONES * (0x7f - hi)) & HIGH;
    if within(u64::from(b'0'), u64::from(b'9')) | within(u64::from(b'a'), u64::from(b'f')) != HIGH {
        return None;
    }
    // A digit's value is its low nibble, plus 9 for a letter (bit 6 set).
    let v = (x & (ONES * 0x0f)) + ((x >> 6) & ONES) * 9;
    // Each 16-bit lane k gets byte k of the result: digit 2k high, digit 2k + 1 low.
    const LANE: u64 = 0x000f_000f_000f_000f;
    let pairs = ((v & LANE) << 4) | ((v >> 8) & LANE);
    // Gather the four lanes' bytes into the low 32 bits (lane k to byte k), then put lane 0
    // (the first two digits) on top.
    let packed = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff;
    let packed = (packed | packed >> 16) & 0xffff_ffff;
    u32::try_from(packed).ok().map(u32::swap_bytes)
}

/// Parses a version-00 `traceparent` in one pass (`00-` 32 hex `-` 16 hex `-` 2 hex, lower
/// case, non-zero IDs), as the W3C specification requires; `None` for anything else.
#[cfg(feature = "http")]
fn parse_traceparent_00(value: &[u8]) -> Option<(u128, u64, u8)> {
    if value.len() != 55 || !value.starts_with(b"00-") || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace = u128::from(hex16(&value[3..19])?) << 64 | u128::from(hex16(&value[19..35])?);
    let span = hex16(&value[36..52])?;
    let flags = u8::try_from(hex_scalar(&value[53..55])?).ok()?;
    (trace != 0 && span != 0).then_some((trace, span, flags))
}

/// Adapts a [`Carrier`] to OpenTelemetry's `Injector`, trimming an oversized `baggage`.
struct InjectAdapter<'a, C: ?Sized>(&'a mut C);

impl<C: Carrier + ?Sized> Injector for InjectAdapter<'_, C> {
    fn set(&mut self, key: &str, value: String) {
        if key.eq_ignore_ascii_case(BAGGAGE_HEADER) {
            let value = match trim_baggage(&value) {
                Cow::Borrowed(_) => value,
                Cow::Owned(trimmed) => trimmed,
            };
            if !value.is_empty() {
                self.0.set(key, value);
            }
        } else {
            self.0.set(key, value);
        }
    }
}

/// Trims a `baggage` header to [`MAX_BAGGAGE_MEMBERS`] members and [`MAX_BAGGAGE_BYTES`]
/// bytes, keeping members in order and skipping any that would not fit.
pub fn trim_baggage(header: &str) -> Cow<'_, str> {
    let members = header.split(',').filter(|m| !m.trim().is_empty());
    if header.len() <= MAX_BAGGAGE_BYTES && members.clone().count() <= MAX_BAGGAGE_MEMBERS {
        return Cow::Borrowed(header);
    }
    let mut out = String::with_capacity(header.len().min(MAX_BAGGAGE_BYTES));
    let mut count = 0;
    for member in members {
        if count == MAX_BAGGAGE_MEMBERS {
            break;
        }
        let member = member.trim();
        let extra = member.len() + usize::from(!out.is_empty());
        if out.len() + extra > MAX_BAGGAGE_BYTES {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(member);
        count += 1;
    }
    tracing::debug!(
        from_bytes = header.len(),
        to_bytes = out.len(),
        members = count,
        "trimmed baggage to the W3C limits"
    );
    Cow::Owned(out)
}

fn fallback() -> &'static TextMapCompositePropagator {
    static FALLBACK: OnceLock<TextMapCompositePropagator> = OnceLock::new();
    FALLBACK.get_or_init(|| {
        TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ])
    })
}

/// Runs `f` with the global propagator, or the built-in W3C composite while the global one is
/// the no-op default.
fn with_propagator<T>(mut f: impl FnMut(&dyn TextMapPropagator) -> T) -> T {
    opentelemetry::global::get_text_map_propagator(|global| {
        if global.fields().next().is_none() {
            f(fallback())
        } else {
            f(global)
        }
    })
}

/// A propagated trace context: the remote parent read from a carrier (if any was valid) and
/// its baggage. Cheap to clone.
///
/// This wraps an [`opentelemetry::Context`]; [`TraceContext::as_otel`] and the `From`
/// conversions are the escape hatch to it (they follow the `opentelemetry` minor version
/// this crate pins).
#[derive(Clone, Default)]
pub struct TraceContext(opentelemetry::Context);

impl TraceContext {
    /// The context of `span` (its trace and span IDs, and the baggage it carries); for a
    /// disabled span, the current OpenTelemetry context (see [`current`](Self::current)).
    pub fn of_span(span: &tracing::Span) -> Self {
        Self(otel_context_of(span))
    }

    /// The context of the current `tracing` span. Without one (a request that is not sampled
    /// gets no span from our server layers), the current OpenTelemetry context, which those
    /// layers set to the request's remote context: the trace continues either way.
    pub fn current() -> Self {
        Self::of_span(&tracing::Span::current())
    }

    /// Whether a valid span context is present (a remote parent after [`extract`]).
    pub fn is_valid(&self) -> bool {
        self.0.span().span_context().is_valid()
    }

    /// Whether the span context came from another process.
    pub fn is_remote(&self) -> bool {
        self.0.span().span_context().is_remote()
    }

    /// Whether the span context is sampled.
    pub fn is_sampled(&self) -> bool {
        self.0.span().span_context().is_sampled()
    }

    /// The trace ID as 32 lower-case hex digits, when valid.
    pub fn trace_id(&self) -> Option<String> {
        let span = self.0.span();
        let sc = span.span_context();
        sc.is_valid().then(|| sc.trace_id().to_string())
    }

    /// The span ID as 16 lower-case hex digits, when valid.
    pub fn span_id(&self) -> Option<String> {
        let span = self.0.span();
        let sc = span.span_context();
        sc.is_valid().then(|| sc.span_id().to_string())
    }

    /// A baggage value.
    pub fn baggage(&self, key: &str) -> Option<&str> {
        self.0.baggage().get(key).map(|v| v.as_str())
    }

    /// Number of baggage members.
    pub fn baggage_len(&self) -> usize {
        self.0.baggage().len()
    }

    /// The correlation ID carried in baggage, if valid.
    pub fn correlation_id(&self) -> Option<CorrelationId> {
        self.baggage(BAGGAGE_KEY)
            .and_then(|v| CorrelationId::parse(v).ok())
    }

    /// This context with `id` in its baggage under [`BAGGAGE_KEY`] (an existing value is kept
    /// if equal, replaced otherwise).
    #[must_use]
    pub fn with_correlation_id(&self, id: &CorrelationId) -> Self {
        Self(with_correlation_baggage(&self.0, id))
    }

    /// Makes this context the parent of `span`, which must not have been entered yet (since
    /// tracing-opentelemetry 0.32 a started span cannot change parent). Returns whether it
    /// took effect.
    pub fn set_as_parent_of(&self, span: &tracing::Span) -> bool {
        span.set_parent(self.0.clone()).is_ok()
    }

    /// Adds a link from `span` to this context's span (no-op when invalid).
    pub fn link_from(&self, span: &tracing::Span) {
        span.add_link(self.0.span().span_context().clone());
    }

    /// The underlying OpenTelemetry context.
    pub fn as_otel(&self) -> &opentelemetry::Context {
        &self.0
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id())
            .field("span_id", &self.span_id())
            .field("sampled", &self.is_sampled())
            .field("baggage_len", &self.baggage_len())
            .finish()
    }
}

impl From<opentelemetry::Context> for TraceContext {
    fn from(cx: opentelemetry::Context) -> Self {
        Self(cx)
    }
}

impl From<TraceContext> for opentelemetry::Context {
    fn from(cx: TraceContext) -> Self {
        cx.0
    }
}

pub(crate) fn with_correlation_baggage(
    cx: &opentelemetry::Context,
    id: &CorrelationId,
) -> opentelemetry::Context {
    let baggage = cx.baggage();
    if baggage.get(BAGGAGE_KEY).map(|v| v.as_str()) == Some(id.as_str()) {
        return cx.clone();
    }
    let members = baggage
        .iter()
        .filter(|(k, _)| k.as_str() != BAGGAGE_KEY)
        .map(|(k, (v, m))| KeyValueMetadata::new(k.clone(), v.clone(), m.clone()))
        .chain(std::iter::once(KeyValueMetadata::new(
            BAGGAGE_KEY,
            id.as_str().to_owned(),
            "",
        )));
    cx.with_baggage(members.collect::<Vec<_>>())
}

pub(crate) fn baggage_members(
    baggage: &opentelemetry::baggage::Baggage,
) -> impl Iterator<Item = KeyValueMetadata> + '_ {
    baggage
        .iter()
        .map(|(k, (v, m))| KeyValueMetadata::new(k.clone(), v.clone(), m.clone()))
}

/// Reads the trace context and baggage from `carrier`. Never fails: invalid input gives a
/// context without a remote parent.
pub fn extract<C: Carrier + ?Sized>(carrier: &C) -> TraceContext {
    TraceContext(extract_otel(carrier))
}

pub(crate) fn extract_otel<C: Carrier + ?Sized>(carrier: &C) -> opentelemetry::Context {
    let adapter = ExtractAdapter::new(carrier);
    with_propagator(|p| p.extract_with_context(&opentelemetry::Context::new(), &adapter))
}

/// Writes `cx` into `carrier` (`traceparent`, `tracestate`, `baggage`).
pub fn inject_context<C: Carrier + ?Sized>(cx: &TraceContext, carrier: &mut C) {
    inject_otel(&cx.0, carrier);
}

pub(crate) fn inject_otel<C: Carrier + ?Sized>(cx: &opentelemetry::Context, carrier: &mut C) {
    let mut adapter = InjectAdapter(carrier);
    with_propagator(|p| p.inject_context(cx, &mut adapter));
}

/// Writes the context of `span` (for a disabled span, the current OpenTelemetry context) into
/// `carrier`, adding the current correlation ID (if any) to the baggage.
pub fn inject_span<C: Carrier + ?Sized>(span: &tracing::Span, carrier: &mut C) {
    let cx = otel_context_of(span);
    let cx = match correlation::current() {
        Some(id) => with_correlation_baggage(&cx, &id),
        None => cx,
    };
    inject_otel(&cx, carrier);
}

/// The OpenTelemetry context of `span`; for a disabled span (`Span::none()`, or one no
/// subscriber is interested in), the current context. `OpenTelemetrySpanExt::context` would
/// give the empty context there, which loses the trace of a request that is not sampled.
pub(crate) fn otel_context_of(span: &tracing::Span) -> opentelemetry::Context {
    if span.is_disabled() {
        opentelemetry::Context::current()
    } else {
        span.context()
    }
}

/// Writes the context of the current `tracing` span into `carrier`, adding the current
/// correlation ID (if any) to the baggage.
pub fn inject<C: Carrier + ?Sized>(carrier: &mut C) {
    inject_span(&tracing::Span::current(), carrier);
}

/// The first valid correlation ID under one of `headers` in `carrier`, else the one in the
/// carrier's baggage. Invalid values are skipped (and logged at `debug`).
pub fn correlation_id_from<C: Carrier + ?Sized, H: AsRef<str>>(
    carrier: &C,
    headers: &[H],
) -> Option<CorrelationId> {
    for name in headers {
        if let Some(value) = carrier.get(name.as_ref()) {
            match CorrelationId::parse(value) {
                Ok(id) => return Some(id),
                Err(error) => {
                    tracing::debug!(%error, header = name.as_ref(), "ignoring an invalid correlation id");
                }
            }
        }
    }
    carrier.get(BAGGAGE_HEADER)?;
    extract(carrier).correlation_id()
}

#[cfg(test)]
mod tests {

    #[cfg(feature = "http")]
    proptest::proptest! {
        #[test]
        fn word_at_a_time_hex_agrees_with_the_per_byte_decoder(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"0123456789abcdef".to_vec()),
                    proptest::num::u8::ANY,
                ],
                8,
            )
        ) {
            let expected = super::hex_scalar(&bytes).map(|v| u32::try_from(v).unwrap());
            proptest::prop_assert_eq!(super::hex8(&bytes), expected);
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn word_at_a_time_hex_edges() {
        use super::{hex8, hex16};
        assert_eq!(hex8(b"00000000"), Some(0));
        assert_eq!(hex8(b"ffffffff"), Some(u32::MAX));
        assert_eq!(hex8(b"0123abcd"), Some(0x0123_abcd));
        assert_eq!(hex16(b"4bf92f3577b34da6"), Some(0x4bf9_2f35_77b3_4da6));
        // Just outside each range, upper case, and high bytes.
        for bad in [
            b"/0000000",
            b":0000000",
            b"`0000000",
            b"g0000000",
            b"A0000000",
            b"\x800000000",
        ] {
            assert_eq!(hex8(&bad[..8]), None, "{bad:?}");
        }
        assert_eq!(hex8(b"0000000"), None);
    }

    #[cfg(feature = "http")]
    #[test]
    fn one_pass_traceparent_parser_agrees_with_the_validator() {
        let cases = [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
            "",
        ];
        for case in cases {
            let fast = parse_traceparent_00(case.as_bytes());
            if let Some((trace, span, flags)) = fast {
                assert!(valid_traceparent(case), "{case}");
                assert_eq!(format!("00-{trace:032x}-{span:016x}-{flags:02x}"), case);
            } else if case.starts_with("00-") && case.len() == 55 {
                assert!(!valid_traceparent(case), "{case}");
            }
        }
    }

    proptest::proptest! {
        #[cfg(feature = "http")]
        #[test]
        fn one_pass_parser_never_accepts_what_the_validator_rejects(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..70)) {
            if parse_traceparent_00(&bytes).is_some() {
                proptest::prop_assert!(valid_traceparent(std::str::from_utf8(&bytes).unwrap()));
            }
        }
    }

    use super::*;

    #[test]
    fn trims_by_members_and_bytes() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let header = many.join(",");
        let trimmed = trim_baggage(&header);
        assert_eq!(trimmed.split(',').count(), MAX_BAGGAGE_MEMBERS);
        assert!(trimmed.starts_with("k0=v,k1=v"));

        let big: Vec<String> = (0..20)
            .map(|i| format!("k{i}={}", "x".repeat(1000)))
            .collect();
        let header = big.join(",");
        let trimmed = trim_baggage(&header);
        assert!(trimmed.len() <= MAX_BAGGAGE_BYTES);
        assert_eq!(trimmed.split(',').count(), 8);

        assert!(matches!(trim_baggage("a=1,b=2"), Cow::Borrowed(_)));
    }

    #[test]
    fn strict_traceparent() {
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        let p = "00f067aa0ba902b7";
        assert!(valid_traceparent(&format!("00-{t}-{p}-01")));
        assert!(valid_traceparent(&format!("01-{t}-{p}-01-future")));
        assert!(!valid_traceparent(&format!("00-{t}-{p}-01-extra")));
        assert!(!valid_traceparent(&format!("00-{}-{p}-01", &t[1..])));
        assert!(!valid_traceparent(&format!(
            "00-{}-{p}-01",
            t.to_uppercase()
        )));
        assert!(!valid_traceparent(&format!("ff-{t}-{p}-01")));
    }

    #[test]
    fn vec_carrier_replaces() {
        let mut v: Vec<(String, String)> = vec![("TraceParent".into(), "x".into())];
        Carrier::set(&mut v, "traceparent", "y".into());
        assert_eq!(v.len(), 1);
        assert_eq!(Carrier::get(&v, "traceparent"), Some("y"));
    }
}
