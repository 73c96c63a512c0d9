//! Per-request timeouts.

use std::time::Duration;

/// Chooses a timeout for one request, overriding the configured one.
///
/// Returning `None` keeps the configured timeout. A returned `Duration::ZERO` fails the call at
/// once unless the inner future is ready on its first poll. Implemented for every
/// `Fn(&Req) -> Option<Duration>`, for [`NoOverride`] and, with the `http` feature, for
/// [`FromExtension`].
pub trait TimeoutFor<Req> {
    /// The timeout for `req`, or `None` for the configured one.
    fn timeout_for(&self, req: &Req) -> Option<Duration>;
}

impl<F, Req> TimeoutFor<Req> for F
where
    F: Fn(&Req) -> Option<Duration>,
{
    fn timeout_for(&self, req: &Req) -> Option<Duration> {
        self(req)
    }
}

/// Every request gets the configured timeout. The default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoOverride;

impl<Req> TimeoutFor<Req> for NoOverride {
    fn timeout_for(&self, _req: &Req) -> Option<Duration> {
        None
    }
}

/// A request extension that overrides the configured timeout of one `http::Request`, read by
/// [`FromExtension`].
///
/// ```
/// use std::time::Duration;
/// use sinew_resilience::timeout::RequestTimeout;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(RequestTimeout(Duration::from_millis(250)));
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestTimeout(pub Duration);

/// Reads the timeout of an `http::Request` from its [`RequestTimeout`] extension, if it has
/// one.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FromExtension;

#[cfg(feature = "http")]
impl<B> TimeoutFor<http::Request<B>> for FromExtension {
    fn timeout_for(&self, req: &http::Request<B>) -> Option<Duration> {
        req.extensions().get::<RequestTimeout>().map(|t| t.0)
    }
}
