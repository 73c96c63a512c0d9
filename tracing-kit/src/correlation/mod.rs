//! Correlation IDs: one ID per business request, carried across every hop.
//!
//! A [`CorrelationId`] is taken from the incoming request (`x-correlation-id`, then
//! `x-request-id`, configurable) or generated as a UUIDv7; an incoming ID is never overwritten.
//! Within a request it lives in a task-local ([`scope`], [`current`]) and in W3C baggage under
//! [`BAGGAGE_KEY`], so it survives hops that our layers do not touch; it is recorded on spans
//! and printed on every log line.
//!
//! ```
//! use sinew_tracing_kit::correlation::{self, CorrelationId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let id = CorrelationId::parse("order-42").unwrap();
//! correlation::scope(id.clone(), async {
//!     assert_eq!(correlation::current().as_ref(), Some(&id));
//! })
//! .await;
//! assert_eq!(correlation::current(), None);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

/// The baggage key the correlation ID travels under.
pub const BAGGAGE_KEY: &str = "correlation_id";

/// The header names read (in order) and written by default.
pub const DEFAULT_HEADERS: [&str; 2] = ["x-correlation-id", "x-request-id"];

/// Longest accepted correlation ID, in bytes.
pub const MAX_LEN: usize = 128;

/// A validated correlation ID: 1 to 128 bytes of visible ASCII (no spaces, no control
/// characters), so it is safe in headers, baggage and log lines. Cheap to clone: IDs up to
/// 38 bytes (a UUID is 36) are stored inline, with no allocation; longer ones are shared.
#[derive(Clone)]
pub struct CorrelationId(Repr);

/// Longest ID stored inline.
const INLINE: usize = 38;

#[derive(Clone)]
enum Repr {
    Inline(Inline),
    Shared(Arc<str>),
}

/// An inline ID. Word-aligned, so that the UTF-8 check of [`CorrelationId::as_str`] runs a
/// word at a time from the first byte.
#[derive(Clone)]
#[repr(C, align(8))]
struct Inline {
    buf: [u8; INLINE],
    len: u8,
}

impl PartialEq for CorrelationId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CorrelationId {}

impl std::hash::Hash for CorrelationId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Why a string is not a valid [`CorrelationId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCorrelationId {
    /// It was empty.
    #[error("correlation id is empty")]
    Empty,
    /// It was longer than [`MAX_LEN`] bytes.
    #[error("correlation id is {0} bytes long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    /// It contained a byte outside visible ASCII (a control character, a space or non-ASCII).
    #[error("correlation id contains a byte outside visible ASCII at position {0}")]
    InvalidByte(usize),
}

impl CorrelationId {
    /// Validates `value`.
    ///
    /// # Errors
    ///
    /// [`InvalidCorrelationId`] when it is empty, longer than [`MAX_LEN`] bytes, or contains a
    /// byte outside `!`..=`~`.
    pub fn parse(value: &str) -> Result<Self, InvalidCorrelationId> {
        Self::validate(value.as_bytes())?;
        Ok(Self::new_unchecked(value))
    }

    /// Stores an already validated ID.
    fn new_unchecked(value: &str) -> Self {
        let bytes = value.as_bytes();
        match (u8::try_from(bytes.len()), bytes.len() <= INLINE) {
            (Ok(len), true) => {
                let mut buf = [0; INLINE];
                buf[..bytes.len()].copy_from_slice(bytes);
                Self(Repr::Inline(Inline { buf, len }))
            }
            _ => Self(Repr::Shared(Arc::from(value))),
        }
    }

    /// Validates raw bytes (a header value, say).
    ///
    /// # Errors
    ///
    /// As [`CorrelationId::parse`].
    pub fn from_bytes(value: &[u8]) -> Result<Self, InvalidCorrelationId> {
        Self::validate(value)?;
        // Validated as ASCII above.
        let s = std::str::from_utf8(value)
            .map_err(|e| InvalidCorrelationId::InvalidByte(e.valid_up_to()))?;
        Ok(Self::new_unchecked(s))
    }

    fn validate(value: &[u8]) -> Result<(), InvalidCorrelationId> {
        if value.is_empty() {
            return Err(InvalidCorrelationId::Empty);
        }
        if value.len() > MAX_LEN {
            return Err(InvalidCorrelationId::TooLong(value.len()));
        }
        if let Some(pos) = value.iter().position(|b| !(b'!'..=b'~').contains(b)) {
            return Err(InvalidCorrelationId::InvalidByte(pos));
        }
        Ok(())
    }

    /// A new random, time-ordered ID: a UUIDv7 (RFC 9562) with the Unix time in milliseconds
    /// and 74 random bits, in its hyphenated lower-case form.
    pub fn generate() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                d.as_secs()
                    .saturating_mul(1000)
                    .saturating_add(u64::from(d.subsec_millis()))
            });
        Self::v7_from_parts(millis, fastrand::u64(..), fastrand::u64(..))
    }

    /// The UUIDv7 with this timestamp and these random bits (only the low 12 bits of
    /// `rand_a` and the low 62 of `rand_b` are used), formatted straight into the inline
    /// buffer: `8-4-4-4-12` lower-case hex digits.
    fn v7_from_parts(millis: u64, rand_a: u64, rand_b: u64) -> Self {
        let high = (millis & 0xffff_ffff_ffff) << 16 | 0x7000 | (rand_a & 0x0fff);
        let low = (rand_b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        let split = |x: u64| (hex_digits((x >> 32) as u32), hex_digits(x as u32));
        let ((h0, h1), (l0, l1)) = (split(high), split(low));
        let mut buf = [0; INLINE];
        buf[..8].copy_from_slice(&h0);
        buf[8] = b'-';
        buf[9..13].copy_from_slice(&h1[..4]);
        buf[13] = b'-';
        buf[14..18].copy_from_slice(&h1[4..]);
        buf[18] = b'-';
        buf[19..23].copy_from_slice(&l0[..4]);
        buf[23] = b'-';
        buf[24..28].copy_from_slice(&l0[4..]);
        buf[28..36].copy_from_slice(&l1);
        Self(Repr::Inline(Inline { buf, len: 36 }))
    }

    /// The ID's bytes (visible ASCII), without the UTF-8 check of [`as_str`](Self::as_str).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(Inline { buf, len }) => &buf[..usize::from(*len)],
            Repr::Shared(s) => s.as_bytes(),
        }
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only validated visible ASCII is ever stored, so this never falls back.
            Repr::Inline(Inline { buf, len }) => {
                std::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(s) => s,
        }
    }
}

/// The 8 lower-case hex digits of `x`, most significant first, computed in one 64-bit word
/// (SWAR) instead of a table lookup per digit.
fn hex_digits(x: u32) -> [u8; 8] {
    const NIBBLES: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    // Byte j of `b` is byte 3 - j of `x`; spread byte j to byte 2j.
    let b = u64::from(x.swap_bytes());
    let s = (b | b << 16) & 0x0000_ffff_0000_ffff;
    let s = (s | s << 8) & 0x00ff_00ff_00ff_00ff;
    // Byte 2j: the high nibble of the pair, byte 2j + 1: the low one (digit order).
    let n = (s >> 4 & NIBBLES) | (s & NIBBLES) << 8;
    // Per byte: '0' + n, plus 39 more ('a' - '0' - 10) when n > 9. Nothing carries between
    // bytes (every byte stays below 0x80).
    let letters = (n + 0x0606_0606_0606_0606) >> 4 & 0x0101_0101_0101_0101;
    (n + 0x3030_3030_3030_3030 + letters * 39).to_le_bytes()
}

impl FromStr for CorrelationId {
    type Err = InvalidCorrelationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({:?})", self.as_str())
    }
}

impl AsRef<str> for CorrelationId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

tokio::task_local! {
    static CURRENT: CorrelationId;
}

/// Runs `future` with `id` as the current correlation ID.
pub async fn scope<F: Future>(id: CorrelationId, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// Runs `f` with `id` as the current correlation ID (for synchronous code).
pub fn sync_scope<R>(id: CorrelationId, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

/// The current task's correlation ID, if one was set with [`scope`] (our HTTP, gRPC and
/// messaging layers do so) .
pub fn current() -> Option<CorrelationId> {
    CURRENT.try_with(CorrelationId::clone).ok()
}

/// The rejection of the [`CorrelationId`] axum extractor: the handler does not run inside a
/// correlation scope, so the server layer is missing from its stack.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no correlation id in scope: wrap the router or handler in `HttpServerLayer` \
     (sinew-tracing-kit), or extract `Option<CorrelationId>`"
)]
#[non_exhaustive]
pub struct MissingCorrelationId;

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for MissingCorrelationId {
    fn into_response(self) -> axum::response::Response {
        (http::StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// Extracts the request's correlation ID in an axum handler behind
/// [`HttpServerLayer`](crate::http::HttpServerLayer) (it reads the task-local that the layer
/// sets; no request extension is involved).
///
/// ```
/// use axum::{Router, routing::get};
/// use sinew_tracing_kit::correlation::CorrelationId;
/// use sinew_tracing_kit::http::HttpServerLayer;
///
/// async fn handler(id: CorrelationId) -> String {
///     format!("request {id}")
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(HttpServerLayer::new());
/// # drop(app);
/// ```
///
/// # Errors
///
/// [`MissingCorrelationId`] (a 500 response) outside a correlation scope; extract
/// `Option<CorrelationId>` to accept that case.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CorrelationId {
    type Rejection = MissingCorrelationId;

    async fn from_request_parts(
        _parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        current().ok_or(MissingCorrelationId)
    }
}

/// `Option<CorrelationId>` in an axum handler: `None` outside a correlation scope.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for CorrelationId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(current())
    }
}

/// The ID to use: the valid incoming one, or a new one when it is missing or invalid (an
/// invalid one is logged at `debug` and replaced, never propagated).
pub fn accept_or_generate(incoming: Option<&[u8]>) -> CorrelationId {
    match incoming.map(CorrelationId::from_bytes) {
        Some(Ok(id)) => id,
        Some(Err(error)) => {
            tracing::debug!(%error, "replacing an invalid incoming correlation id");
            CorrelationId::generate()
        }
        None => CorrelationId::generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(CorrelationId::parse("abc-123_XYZ:~").is_ok());
        assert_eq!(CorrelationId::parse(""), Err(InvalidCorrelationId::Empty));
        assert_eq!(
            CorrelationId::parse("a b"),
            Err(InvalidCorrelationId::InvalidByte(1))
        );
        assert_eq!(
            CorrelationId::parse("a\nb"),
            Err(InvalidCorrelationId::InvalidByte(1))
        );
        assert_eq!(
            CorrelationId::parse("é"),
            Err(InvalidCorrelationId::InvalidByte(0))
        );
        let long = "x".repeat(129);
        assert_eq!(
            CorrelationId::parse(&long),
            Err(InvalidCorrelationId::TooLong(129))
        );
        assert!(CorrelationId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn generated_ids_are_valid_uuids() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = CorrelationId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.as_str(), uuid.hyphenated().to_string());
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(
            millis >= before && millis < before + 60_000,
            "{millis} vs {before}"
        );
        assert!(CorrelationId::parse(id.as_str()).is_ok());
        assert_ne!(CorrelationId::generate(), id);
    }

    #[test]
    fn v7_layout() {
        let id = CorrelationId::v7_from_parts(0x0123_4567_89ab, u64::MAX, u64::MAX);
        assert_eq!(id.as_str(), "01234567-89ab-7fff-bfff-ffffffffffff");
        let id = CorrelationId::v7_from_parts(0, 0, 0);
        assert_eq!(id.as_str(), "00000000-0000-7000-8000-000000000000");
    }

    proptest::proptest! {
        #[test]
        fn v7_matches_the_uuid_crate(millis: u64, a: u64, b: u64) {
            let id = CorrelationId::v7_from_parts(millis, a, b);
            let high = (millis & 0xffff_ffff_ffff) << 16 | 0x7000 | (a & 0x0fff);
            let low = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
            let expected = uuid::Uuid::from_u64_pair(high, low).hyphenated().to_string();
            proptest::prop_assert_eq!(id.as_str(), expected.as_str());
        }
    }

    #[test]
    fn hex_digits_of_edge_values() {
        assert_eq!(&hex_digits(0), b"00000000");
        assert_eq!(&hex_digits(u32::MAX), b"ffffffff");
        assert_eq!(&hex_digits(0x0123_abcd), b"0123abcd");
        assert_eq!(&hex_digits(0x9a9a_a9a9), b"9a9aa9a9");
    }

    #[test]
    fn inline_and_shared_ids_compare_by_value() {
        use std::collections::HashSet;
        let short = CorrelationId::parse(&"a".repeat(INLINE)).unwrap();
        let long = CorrelationId::parse(&"a".repeat(INLINE + 1)).unwrap();
        assert!(matches!(short.0, Repr::Inline(_)));
        assert!(matches!(long.0, Repr::Shared(_)));
        assert_eq!(short.as_str().len(), INLINE);
        assert_eq!(long.as_str().len(), INLINE + 1);
        assert_eq!(short.clone(), short);
        assert_ne!(short, long);
        let set: HashSet<_> = [short.clone(), long.clone(), short.clone()].into();
        assert_eq!(set.len(), 2);
        assert_eq!(
            format!("{short:?}"),
            format!("CorrelationId({:?})", "a".repeat(INLINE))
        );
    }

    #[test]
    fn invalid_incoming_is_replaced() {
        let id = accept_or_generate(Some(b"bad\x01id"));
        assert_ne!(id.as_str(), "bad\x01id");
        assert_eq!(accept_or_generate(Some(b"ok")).as_str(), "ok");
    }
}
