//! Making the copy of a request that a retry sends.

/// Makes the copies of a request that retries send, and says whether a request may be sent
/// more than once at all.
///
/// The policy calls [`replay`](Replay::replay) once before each call that may be followed by a
/// retry, on the request *before* it is sent; `None` means "send this request once and never
/// retry it", which is how requests with one-shot bodies stay correct.
///
/// Implementations:
///
/// - [`CloneReplay`] (the default) for any `Req: Clone`;
/// - any `Fn(&Req) -> Option<Req>`, which covers types with a fallible clone such as
///   `reqwest::Request` (`|r: &reqwest::Request| r.try_clone()`);
/// - `HttpReplay` (feature `http`) for `http::Request<B>` with a `Clone` body or a
///   `ReplayBody`, which also refuses non-idempotent methods.
pub trait Replay<Req> {
    /// A copy of `req` to send on the next attempt, or `None` if it cannot be sent again.
    fn replay(&self, req: &Req) -> Option<Req>;

    /// Whether sending `req` twice is harmless. Requests that are not are only retried when the
    /// policy was built with
    /// [`retry_non_idempotent(true)`](super::RetryPolicyBuilder::retry_non_idempotent).
    ///
    /// The default says every request is idempotent.
    fn is_idempotent(&self, req: &Req) -> bool {
        let _ = req;
        true
    }
}

/// Replays requests by cloning them; the default [`Replay`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneReplay {
    _priv: (),
}

impl CloneReplay {
    /// The cloning replayer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<Req: Clone> Replay<Req> for CloneReplay {
    fn replay(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

impl<F, Req> Replay<Req> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    fn replay(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}
