//! HTTP support: `Retry-After` and `grpc-retry-pushback-ms` hints, idempotency, and replayable
//! request bodies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::RetryPolicy;
use super::body::ReplayBody;
use super::config::RetryPolicyBuilder;
use super::hint::{Hint, RetryHint};
use super::replay::Replay;
use crate::classify::HttpClassifier;
use crate::error::ResilienceError;
use ::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use ::http::{Method, Request, Response};

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
///
/// Clients whose responses are not `http::Response` reuse the header logic through
/// [`HttpHint::from_headers`] in a closure, for example with reqwest:
///
/// ```
/// use std::time::SystemTime;
/// use sinew_resilience::retry::{Hint, HttpHint, RetryPolicy};
/// use sinew_resilience::classify::Outcome;
///
/// let policy = RetryPolicy::builder()
///     .classifier(|r: &Result<reqwest::Response, reqwest::Error>| match r {
///         Ok(res) if res.status().is_server_error() => Outcome::Failure,
///         Ok(_) => Outcome::Success,
///         Err(_) => Outcome::Failure,
///     })
///     .hint(|r: &Result<reqwest::Response, reqwest::Error>| match r {
///         Ok(res) => HttpHint::from_headers(res.headers(), SystemTime::now()),
///         Err(_) => Hint::None,
///     })
///     .replay(|req: &reqwest::Request| req.try_clone())
///     .build();
/// assert!(policy.is_ok());
/// ```
///
/// With tonic, read `grpc-retry-pushback-ms` from `Status::metadata()` the same way.
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
///
/// `Replay` is implemented for `Request<B>` with `B: Clone` and for `Request<ReplayBody<B>>`
/// (which is not `Clone`): wrap bodies that are neither with [`ReplayBodyLayer`] or
/// [`buffer_request`](super::buffer_request).
///
/// [`ReplayBodyLayer`]: super::ReplayBodyLayer
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
        Self::idempotent_parts(req.method(), req.headers())
    }

    fn idempotent_parts(method: &Method, headers: &HeaderMap) -> bool {
        matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        ) || headers.contains_key(IDEMPOTENCY_KEY)
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

#[cfg(feature = "reqwest")]
impl Replay<reqwest::Request> for HttpReplay {
    fn replay(&self, req: &reqwest::Request) -> Option<reqwest::Request> {
        req.try_clone()
    }

    fn is_idempotent(&self, req: &reqwest::Request) -> bool {
        Self::idempotent_parts(req.method(), req.headers())
    }
}

#[cfg(feature = "reqwest")]
impl<E: ResilienceError> RetryHint<reqwest::Response, E> for HttpHint {
    fn hint(&self, result: &Result<reqwest::Response, E>) -> Hint {
        match result {
            Ok(res) => Self::from_headers(res.headers(), SystemTime::now()),
            Err(e) => e.retry_after().map_or(Hint::None, Hint::After),
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
