//! What a [`Fallback`](super::Fallback) does with a finished call.

use std::fmt;
use std::sync::Arc;

use crate::classify::{Classify, Outcome};
use crate::error::ResilienceError;

/// Decides whether a finished call is replaced by a fallback, and builds it.
///
/// [`FallbackLayer`](super::FallbackLayer)'s constructors build the common ones; implement
/// this trait for anything else.
pub trait Recover<Res, E> {
    /// Returns `result` unchanged, or the fallback that replaces it.
    fn recover(&self, result: Result<Res, E>) -> Result<Res, E>;
}

fn used() {
    tracing::debug!("fallback used");
}

/// Replaces the errors a predicate selects with the handler's response.
/// Made by [`FallbackLayer::new`](super::FallbackLayer::new).
#[derive(Clone, Copy)]
pub struct OnError<P, H> {
    pub(crate) predicate: P,
    pub(crate) handler: H,
}

impl<Res, E, P, H> Recover<Res, E> for OnError<P, H>
where
    P: Fn(&E) -> bool,
    H: Fn(E) -> Res,
{
    fn recover(&self, result: Result<Res, E>) -> Result<Res, E> {
        match result {
            Err(err) if (self.predicate)(&err) => {
                used();
                Ok((self.handler)(err))
            }
            other => other,
        }
    }
}

/// Replaces rejections (circuit open, bulkhead full, rate limited) with the handler's response.
/// Made by [`FallbackLayer::on_rejection`](super::FallbackLayer::on_rejection).
#[derive(Clone, Copy)]
pub struct OnRejection<H> {
    pub(crate) handler: H,
}

impl<Res, E, H> Recover<Res, E> for OnRejection<H>
where
    E: ResilienceError,
    H: Fn(E) -> Res,
{
    fn recover(&self, result: Result<Res, E>) -> Result<Res, E> {
        match result {
            Err(err) if err.kind().is_rejection() => {
                used();
                Ok((self.handler)(err))
            }
            other => other,
        }
    }
}

/// Replaces every error with the handler's response.
/// Made by [`FallbackLayer::on_any_error`](super::FallbackLayer::on_any_error).
#[derive(Clone, Copy)]
pub struct OnAnyError<H> {
    pub(crate) handler: H,
}

impl<Res, E, H> Recover<Res, E> for OnAnyError<H>
where
    H: Fn(E) -> Res,
{
    fn recover(&self, result: Result<Res, E>) -> Result<Res, E> {
        result.or_else(|err| {
            used();
            Ok((self.handler)(err))
        })
    }
}

/// Replaces every error with a clone of one value.
/// Made by [`FallbackLayer::value`](super::FallbackLayer::value).
///
/// The value sits behind an `Arc`, so it is cloned only when it is used.
pub struct Value<Res> {
    pub(crate) value: Arc<Res>,
}

impl<Res> Clone for Value<Res> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
        }
    }
}

impl<Res: Clone, E> Recover<Res, E> for Value<Res> {
    fn recover(&self, result: Result<Res, E>) -> Result<Res, E> {
        result.or_else(|_| {
            used();
            Ok(Res::clone(&self.value))
        })
    }
}

/// Replaces every result a classifier calls [`Outcome::Failure`], `Ok` responses included,
/// with the handler's response. Made by [`FallbackLayer::on_failure`](super::FallbackLayer::on_failure).
#[derive(Clone, Copy)]
pub struct OnFailure<C, H> {
    pub(crate) classifier: C,
    pub(crate) handler: H,
}

impl<Res, E, C, H> Recover<Res, E> for OnFailure<C, H>
where
    C: Classify<Res, E>,
    H: Fn(Result<Res, E>) -> Res,
{
    fn recover(&self, result: Result<Res, E>) -> Result<Res, E> {
        match self.classifier.classify(&result) {
            Outcome::Failure => {
                used();
                Ok((self.handler)(result))
            }
            Outcome::Success | Outcome::Ignored => result,
        }
    }
}

impl<P, H> fmt::Debug for OnError<P, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnError")
            .field("predicate", &std::any::type_name::<P>())
            .field("handler", &std::any::type_name::<H>())
            .finish()
    }
}

impl<H> fmt::Debug for OnRejection<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRejection")
            .field("handler", &std::any::type_name::<H>())
            .finish()
    }
}

impl<H> fmt::Debug for OnAnyError<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnAnyError")
            .field("handler", &std::any::type_name::<H>())
            .finish()
    }
}

impl<Res> fmt::Debug for Value<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("value", &std::any::type_name::<Res>())
            .finish()
    }
}

impl<C: fmt::Debug, H> fmt::Debug for OnFailure<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnFailure")
            .field("classifier", &self.classifier)
            .field("handler", &std::any::type_name::<H>())
            .finish()
    }
}
