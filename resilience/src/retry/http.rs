//! HTTP support: `Retry-After` and `grpc-retry-pushback-ms` hints, idempotency, and replayable
//! request bodies.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use ::http::{Method, Request, Response};
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use super::RetryPolicy;
use super::config::RetryPolicyBuilder;
use super::hint::{Hint, RetryHint};
use super::replay::Replay;
use crate::classify::HttpClassifier;
use crate::error::ResilienceError;

const GRPC_PUSHBACK: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

impl RetryPolicy<HttpClassifier, HttpHint, HttpReplay> {
    /// A builder with the default settings for `http::Request`/`http::Response` services:
    /// [`HttpClassifier`], [`HttpHint`] and [`HttpReplay`].
    pub fn http_builder() -> RetryPolicyBuilder<HttpClassifier, HttpHint, HttpReplay> {
        RetryPolicyBuilder::new()
            .classifier(HttpClassifier::new())
            .hint(HttpHint::new())
            .replay(HttpReplay::new())
    }
}

/// Reads hints from HTTP responses and from errors.
///
/// - `grpc-retry-pushback-ms: <n>` waits `n` ms; a negative or malformed value means do not
///   retry (gRPC A6). It takes precedence over `Retry-After`.
/// - `Retry-After: <seconds>` or `Retry-After: <HTTP-date>` (IMF-fixdate, such as
///   `Sun, 06 Nov 1994 08:49:37 GMT`) waits that long; a date in the past waits nothing. A
///   malformed value, or one of the obsolete date forms, is ignored (the backoff applies).
/// - On an error, [`ResilienceError::retry_after`].
///
/// The policy's `max_retry_after` caps every hint: a longer one gives up.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpHint {
    _priv: (),
}

impl HttpHint {
    /// The HTTP hint reader.
    pub const fn new() -> Self {
        Self { _priv: () }
    }

    /// The hint carried by response headers, reading HTTP-dates against `now`.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Hint {
        if let Some(v) = headers.get(&GRPC_PUSHBACK) {
            return match v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()) {
                Some(ms) if ms >= 0 => Hint::After(Duration::from_millis(ms.unsigned_abs())),
                _ => Hint::Stop,
            };
        }
        headers
            .get(RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, now))
            .map_or(Hint::None, Hint::After)
    }
}

impl<B, E: ResilienceError> RetryHint<Response<B>, E> for HttpHint {
    fn hint(&self, result: &Result<Response<B>, E>) -> Hint {
        match result {
            Ok(res) => Self::from_headers(res.headers(), SystemTime::now()),
            Err(e) => e.retry_after().map_or(Hint::None, Hint::After),
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an IMF-fixdate.
fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let s = value.to_str().ok()?.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(s.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(s)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT` into seconds since the Unix epoch.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = &b[r];
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == &b[8..11])? as u64 + 1;
    let (day, year) = (num(5..7)?, num(12..16)?);
    let (h, m, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm), for years from 1970.
const fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Replays `http::Request`s and retries only idempotent ones.
///
/// A request is idempotent when its method is GET, HEAD, OPTIONS, TRACE, PUT or DELETE, or
/// when it carries an `Idempotency-Key` header (the IETF draft's way of making a POST safe to
/// repeat). Others are retried only with
/// [`retry_non_idempotent(true)`](RetryPolicyBuilder::retry_non_idempotent).
///
/// Requests are copied with their method, URI, version, headers and extensions, and either a
/// `Clone` body or a [`ReplayBody`]: a buffered one replays, a streaming one is sent once.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpReplay {
    _priv: (),
}

impl HttpReplay {
    /// The HTTP replayer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }

    fn idempotent<B>(req: &Request<B>) -> bool {
        matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        ) || req.headers().contains_key(IDEMPOTENCY_KEY)
    }
}

fn copy_parts<B, B2>(req: &Request<B>, body: B2) -> Request<B2> {
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

impl<B: Clone> Replay<Request<B>> for HttpReplay {
    fn replay(&self, req: &Request<B>) -> Option<Request<B>> {
        Some(copy_parts(req, req.body().clone()))
    }

    fn is_idempotent(&self, req: &Request<B>) -> bool {
        Self::idempotent(req)
    }
}

impl<B> Replay<Request<ReplayBody<B>>> for HttpReplay {
    fn replay(&self, req: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        let body = req.body().replay()?;
        Some(copy_parts(req, body))
    }

    fn is_idempotent(&self, req: &Request<ReplayBody<B>>) -> bool {
        Self::idempotent(req)
    }
}

/// The default body buffering cap of [`buffer_request`]: 64 KiB.
const DEFAULT_MAX_BUFFER: usize = 64 * 1024;

pin_project! {
    /// A request body that can be replayed if it was small enough to buffer.
    ///
    /// Made by [`buffer_request`] (or [`ReplayBody::buffer`]): a body of at most the cap is
    /// read into memory and replays any number of times; a larger one keeps the prefix read so
    /// far and streams the rest after it, in order, once. [`HttpReplay`] retries the first kind
    /// and sends the second once, intact.
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Full { data: Bytes, trailers: Option<HeaderMap>, sent_data: bool, sent_trailers: bool },
        Streaming { prefix: Option<Bytes>, #[pin] rest: B },
    }
}

impl<B> std::fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full { data, .. } => f
                .debug_struct("ReplayBody::Full")
                .field("len", &data.len())
                .finish_non_exhaustive(),
            Kind::Streaming { prefix, .. } => f
                .debug_struct("ReplayBody::Streaming")
                .field("prefix_len", &prefix.as_ref().map_or(0, Bytes::len))
                .finish_non_exhaustive(),
        }
    }
}

impl<B> ReplayBody<B> {
    /// A replayable body holding `data`.
    pub const fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data,
                trailers: None,
                sent_data: false,
                sent_trailers: false,
            },
        }
    }

    /// `true` when the whole body is buffered and can be replayed.
    pub const fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Full { .. })
    }

    /// A fresh copy of a buffered body, from its start; `None` for a streaming one.
    pub fn replay(&self) -> Option<Self> {
        match &self.kind {
            Kind::Full { data, trailers, .. } => Some(Self {
                kind: Kind::Full {
                    data: data.clone(),
                    trailers: trailers.clone(),
                    sent_data: false,
                    sent_trailers: false,
                },
            }),
            Kind::Streaming { .. } => None,
        }
    }
}

impl<B> ReplayBody<B>
where
    B: Body + Unpin,
{
    /// Reads `body` into memory if it holds at most `max_bytes`; otherwise keeps what was read
    /// and the rest of the stream, to be sent once.
    ///
    /// # Errors
    ///
    /// The body's own error, if reading it fails.
    pub async fn buffer(mut body: B, max_bytes: usize) -> Result<Self, B::Error> {
        if body.size_hint().lower() > max_bytes as u64 {
            return Ok(Self::streaming(Bytes::new(), body));
        }
        let mut buf = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            match frame.into_data() {
                Ok(mut data) => {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        buf.extend_from_slice(chunk);
                        let n = chunk.len();
                        data.advance(n);
                    }
                    if buf.len() > max_bytes {
                        return Ok(Self::streaming(buf.freeze(), body));
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        match &mut trailers {
                            None => trailers = Some(t),
                            Some(all) => all.extend(t),
                        }
                    }
                }
            }
        }
        Ok(Self {
            kind: Kind::Full {
                data: buf.freeze(),
                trailers,
                sent_data: false,
                sent_trailers: false,
            },
        })
    }

    const fn streaming(prefix: Bytes, rest: B) -> Self {
        Self {
            kind: Kind::Streaming {
                prefix: Some(prefix),
                rest,
            },
        }
    }
}

/// Buffers `req`'s body (up to `max_bytes`; `None` means 64 KiB) so that [`HttpReplay`] can
/// retry it. A larger body is sent once, intact, and never retried.
///
/// Call it before the retry service, for example in the handler that builds the request; the
/// inner service must accept `Request<ReplayBody<B>>`.
///
/// # Errors
///
/// The body's own error, if reading it fails.
pub async fn buffer_request<B>(
    req: Request<B>,
    max_bytes: Option<usize>,
) -> Result<Request<ReplayBody<B>>, B::Error>
where
    B: Body + Unpin,
{
    let (parts, body) = req.into_parts();
    let body = ReplayBody::buffer(body, max_bytes.unwrap_or(DEFAULT_MAX_BUFFER)).await?;
    Ok(Request::from_parts(parts, body))
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Full {
                data,
                trailers,
                sent_data,
                sent_trailers,
            } => {
                if !*sent_data {
                    *sent_data = true;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                    }
                }
                if !*sent_trailers {
                    *sent_trailers = true;
                    if let Some(t) = trailers.clone() {
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                }
                Poll::Ready(None)
            }
            KindProj::Streaming { prefix, rest } => {
                if let Some(p) = prefix.take()
                    && !p.is_empty()
                {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                let frame = ready!(rest.poll_frame(cx));
                Poll::Ready(
                    frame.map(|r| r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))),
                )
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full {
                data,
                trailers,
                sent_data,
                sent_trailers,
            } => (*sent_data || data.is_empty()) && (*sent_trailers || trailers.is_none()),
            Kind::Streaming { prefix, rest } => {
                prefix.as_ref().is_none_or(Bytes::is_empty) && rest.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full {
                data, sent_data, ..
            } => SizeHint::with_exact(if *sent_data { 0 } else { data.len() as u64 }),
            Kind::Streaming { prefix, rest } => {
                let p = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let r = rest.size_hint();
                let mut h = SizeHint::new();
                h.set_lower(r.lower().saturating_add(p));
                if let Some(u) = r.upper() {
                    h.set_upper(u.saturating_add(p));
                }
                h
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            parse_retry_after(&v("3"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(&v("Sun, 06 Nov 1994 08:49:40 GMT"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(&v("Sun, 06 Nov 1994 08:49:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&v("soon"), now), None);
        assert_eq!(parse_retry_after(&v("-3"), now), None);
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
    }

    #[test]
    fn grpc_pushback_rules() {
        let now = SystemTime::now();
        let mut h = HeaderMap::new();
        h.insert(GRPC_PUSHBACK, HeaderValue::from_static("250"));
        h.insert(RETRY_AFTER, HeaderValue::from_static("9"));
        assert_eq!(
            HttpHint::from_headers(&h, now),
            Hint::After(Duration::from_millis(250))
        );
        h.insert(GRPC_PUSHBACK, HeaderValue::from_static("-1"));
        assert_eq!(HttpHint::from_headers(&h, now), Hint::Stop);
        h.insert(GRPC_PUSHBACK, HeaderValue::from_static("abc"));
        assert_eq!(HttpHint::from_headers(&h, now), Hint::Stop);
        h.remove(GRPC_PUSHBACK);
        assert_eq!(
            HttpHint::from_headers(&h, now),
            Hint::After(Duration::from_secs(9))
        );
    }

    #[test]
    fn idempotency_rules() {
        let req = |m: Method| Request::builder().method(m).body(()).unwrap();
        assert!(HttpReplay::idempotent(&req(Method::GET)));
        assert!(HttpReplay::idempotent(&req(Method::DELETE)));
        assert!(!HttpReplay::idempotent(&req(Method::POST)));
        assert!(!HttpReplay::idempotent(&req(Method::PATCH)));
        let keyed = Request::builder()
            .method(Method::POST)
            .header("Idempotency-Key", "abc")
            .body(())
            .unwrap();
        assert!(HttpReplay::idempotent(&keyed));
    }
}
