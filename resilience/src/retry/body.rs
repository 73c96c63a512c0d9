//! Replayable HTTP request bodies: buffered up to a cap, streamed once beyond it.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ::http::Request;
use ::http::header::HeaderMap;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::future::BufferBodyFuture;

/// The default body buffering cap: 64 KiB.
pub(crate) const DEFAULT_MAX_BUFFER: usize = 64 * 1024;

pin_project! {
    /// A request body that can be replayed if it was small enough to buffer.
    ///
    /// Made by [`ReplayBodyLayer`], [`buffer_request`] or [`ReplayBody::buffer`]: a body of at
    /// most the cap is read into memory and replays any number of times; a larger one keeps the
    /// prefix read so far and streams the rest after it, in order, once.
    /// [`HttpReplay`](super::HttpReplay) retries the first kind and sends the second once,
    /// intact.
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
        Self::full_with(data, None)
    }

    const fn full_with(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Full {
                data,
                trailers,
                sent_data: false,
                sent_trailers: false,
            },
        }
    }

    /// A body sent once: `prefix`, then the rest of `rest`.
    const fn streaming(prefix: Bytes, rest: B) -> Self {
        Self {
            kind: Kind::Streaming {
                prefix: Some(prefix),
                rest,
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
            Kind::Full { data, trailers, .. } => {
                Some(Self::full_with(data.clone(), trailers.clone()))
            }
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
        let mut collector = Collector::new(max_bytes);
        let complete = poll_fn(|cx| collector.poll_collect(&mut body, cx)).await?;
        Ok(collector.finish(complete, body))
    }
}

/// Reads a body's frames until it ends or passes the cap.
#[derive(Debug)]
pub(crate) struct Collector {
    buf: BytesMut,
    trailers: Option<HeaderMap>,
    max_bytes: usize,
}

impl Collector {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            trailers: None,
            max_bytes,
        }
    }

    /// `Ready(Ok(true))` when the whole body was read, `Ready(Ok(false))` when it passed the
    /// cap (or announces that it will).
    pub(crate) fn poll_collect<B>(
        &mut self,
        body: &mut B,
        cx: &mut Context<'_>,
    ) -> Poll<Result<bool, B::Error>>
    where
        B: Body + Unpin,
    {
        if self.buf.is_empty() && body.size_hint().lower() > self.max_bytes as u64 {
            return Poll::Ready(Ok(false));
        }
        loop {
            let Some(frame) = ready!(Pin::new(&mut *body).poll_frame(cx)) else {
                return Poll::Ready(Ok(true));
            };
            match frame?.into_data() {
                Ok(mut data) => {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        let n = chunk.len();
                        self.buf.extend_from_slice(chunk);
                        data.advance(n);
                    }
                    if self.buf.len() > self.max_bytes {
                        return Poll::Ready(Ok(false));
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        match &mut self.trailers {
                            None => self.trailers = Some(t),
                            Some(all) => all.extend(t),
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn finish<B>(self, complete: bool, body: B) -> ReplayBody<B> {
        if complete {
            ReplayBody::full_with(self.buf.freeze(), self.trailers)
        } else {
            ReplayBody::streaming(self.buf.freeze(), body)
        }
    }
}

/// Buffers `req`'s body (up to `max_bytes`; `None` means 64 KiB) so that
/// [`HttpReplay`](super::HttpReplay) can retry it. A larger body is sent once, intact, and
/// never retried.
///
/// For use outside a tower stack; inside one, [`ReplayBodyLayer`] does the same.
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

/// Layer that buffers request bodies into [`ReplayBody`], so that a [`Retry`](super::Retry)
/// inside it can replay them. Put it *outside* the retry layer:
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use sinew_resilience::retry::{ReplayBody, ReplayBodyLayer, RetryLayer, RetryPolicy};
/// use sinew_resilience::BoxError;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), BoxError> {
/// let client = service_fn(|req: Request<ReplayBody<Full<Bytes>>>| async move {
///     Ok::<_, BoxError>(Response::new(req.body().is_replayable()))
/// });
/// let svc = ServiceBuilder::new()
///     .layer(ReplayBodyLayer::new())
///     .layer(RetryLayer::new(RetryPolicy::http_builder().build()?))
///     .service(client);
/// let res = svc.oneshot(Request::new(Full::new(Bytes::from_static(b"hi")))).await?;
/// assert!(*res.body());
/// # Ok(()) }
/// ```
///
/// # Default
///
/// Bodies of up to 64 KiB are buffered.
#[derive(Debug, Clone, Copy)]
pub struct ReplayBodyLayer {
    max_bytes: usize,
}

impl Default for ReplayBodyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayBodyLayer {
    /// A layer buffering bodies of up to 64 KiB.
    pub const fn new() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BUFFER,
        }
    }

    /// Buffers bodies of up to `max_bytes` instead.
    pub const fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

impl<S> Layer<S> for ReplayBodyLayer {
    type Service = BufferBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferBody {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

/// Service that buffers request bodies into [`ReplayBody`]; see [`ReplayBodyLayer`].
///
/// A body error while buffering becomes the service's error through `Into`. Needs `S: Clone`,
/// like [`Retry`](super::Retry): the buffering happens before the inner call.
#[derive(Debug, Clone)]
pub struct BufferBody<S> {
    inner: S,
    max_bytes: usize,
}

impl<S> BufferBody<S> {
    /// The wrapped service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for BufferBody<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body + Unpin,
    B::Error: Into<S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BufferBodyFuture<S, B, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        BufferBodyFuture::new(ready, req, Collector::new(self.max_bytes))
    }
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
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn trailers_survive_buffering_and_replay() {
        let mut t = HeaderMap::new();
        t.insert("x-checksum", "abc".parse().unwrap());
        let body =
            Full::new(Bytes::from_static(b"data")).with_trailers(std::future::ready(Some(Ok(t))));
        let buffered = ReplayBody::buffer(body, 1024).await.unwrap();
        let copy = buffered.replay().unwrap();
        for b in [buffered, copy] {
            let collected = b.collect().await.unwrap();
            assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
            assert_eq!(collected.to_bytes(), Bytes::from_static(b"data"));
        }
    }

    #[tokio::test]
    async fn announced_large_bodies_are_not_read_ahead() {
        let body = Full::new(Bytes::from(vec![7u8; 100]));
        let b = ReplayBody::buffer(body, 10).await.unwrap();
        assert!(!b.is_replayable());
        assert_eq!(b.size_hint().exact(), Some(100));
        assert_eq!(b.collect().await.unwrap().to_bytes().len(), 100);
    }
}
