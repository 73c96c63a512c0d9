//! Integration tests of the fallback middleware.
#![cfg(feature = "fallback")]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers outside #[test] functions may fail loudly"
)]

use std::convert::Infallible;

use sinew_resilience::classify::{DefaultClassifier, Outcome};
use sinew_resilience::error::{BoxError, BulkheadFull, CircuitOpen, Elapsed, Error, RateLimited};
use sinew_resilience::fallback::{
    OnAnyError, OnError, OnFailure, OnRejection, Recover, Value, future::ResponseFuture,
};
use sinew_resilience::{Fallback, FallbackLayer};
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

type Err = Error<&'static str>;

/// A service that answers `Ok(n)` for `n < 100` and otherwise fails with the error the request
/// number selects.
fn flaky() -> impl Service<u32, Response = u32, Error = Err, Future: Send> + Clone {
    service_fn(|n: u32| async move {
        match n {
            0..100 => Ok(n),
            100 => Err(Error::Inner("boom")),
            101 => Err(BulkheadFull::new(1).into()),
            102 => Err(RateLimited::new(Duration::from_secs(1)).into()),
            103 => Err(CircuitOpen::new(Duration::from_secs(1)).into()),
            _ => Err(Elapsed::new(Duration::from_secs(1)).into()),
        }
    })
}

#[tokio::test]
async fn new_replaces_only_selected_errors() {
    let svc = FallbackLayer::new(
        |err: &Err| matches!(err, Error::Inner("boom")),
        |_err: Err| 7_u32,
    )
    .layer(flaky());
    assert_eq!(svc.clone().oneshot(1).await, Ok(1));
    assert_eq!(svc.clone().oneshot(100).await, Ok(7));
    assert!(matches!(
        svc.oneshot(101).await,
        Err(Error::BulkheadFull(_))
    ));
}

#[tokio::test]
async fn on_rejection_replaces_rejections_but_not_timeouts_or_inner_errors() {
    let svc = FallbackLayer::on_rejection(|err: Err| match err {
        Error::BulkheadFull(_) => 1,
        Error::RateLimited(_) => 2,
        Error::CircuitOpen(_) => 3,
        _ => 0,
    })
    .layer(flaky());
    assert_eq!(svc.clone().oneshot(101).await, Ok(1));
    assert_eq!(svc.clone().oneshot(102).await, Ok(2));
    assert_eq!(svc.clone().oneshot(103).await, Ok(3));
    assert_eq!(svc.clone().oneshot(100).await, Err(Error::Inner("boom")));
    assert!(matches!(svc.oneshot(104).await, Err(Error::Timeout(_))));
}

#[tokio::test]
async fn on_rejection_works_with_boxed_errors() {
    let (mut svc, mut handle) = mock::spawn_layer::<(), &'static str, _>(
        FallbackLayer::on_rejection(|_err: BoxError| "fallback"),
    );
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(BulkheadFull::new(3));
    assert_eq!(fut.await.unwrap(), "fallback");

    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("inner failure"));
    assert!(fut.await.unwrap_err().is::<std::io::Error>());
}

#[tokio::test]
async fn on_any_error_replaces_every_error() {
    let svc = FallbackLayer::on_any_error(|_err: Err| 42_u32).layer(flaky());
    assert_eq!(svc.clone().oneshot(5).await, Ok(5));
    for n in 100..=104 {
        assert_eq!(svc.clone().oneshot(n).await, Ok(42), "request {n}");
    }
}

#[tokio::test]
async fn value_clones_the_fallback_on_every_error() {
    let svc =
        FallbackLayer::value(String::from("default")).layer(service_fn(|ok: bool| async move {
            if ok {
                Ok(String::from("real"))
            } else {
                Err(Error::<Infallible>::from(BulkheadFull::new(1)))
            }
        }));
    assert_eq!(svc.clone().oneshot(true).await.unwrap(), "real");
    assert_eq!(svc.clone().oneshot(false).await.unwrap(), "default");
    assert_eq!(svc.oneshot(false).await.unwrap(), "default");
}

#[tokio::test]
async fn on_failure_replaces_failed_ok_responses_via_classifier() {
    // 503 is a failure, even though the inner service returned Ok.
    let classifier = |r: &Result<u32, Err>| match r {
        Ok(503) => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let svc = FallbackLayer::on_failure(classifier, |_res: Result<u32, Err>| 200_u32).layer(
        service_fn(|status: u32| async move {
            if status == 0 {
                Err(Error::Inner("down"))
            } else {
                Ok(status)
            }
        }),
    );
    assert_eq!(svc.clone().oneshot(404).await, Ok(404));
    assert_eq!(svc.clone().oneshot(503).await, Ok(200));
    assert_eq!(svc.oneshot(0).await, Ok(200));
}

#[tokio::test]
async fn on_failure_with_default_classifier_ignores_rejections() {
    let svc = FallbackLayer::on_failure(DefaultClassifier::new(), |_res: Result<u32, Err>| 9)
        .layer(flaky());
    assert_eq!(svc.clone().oneshot(100).await, Ok(9));
    // Rejections are `Ignored`, not failures, for the default classifier.
    assert!(matches!(
        svc.clone().oneshot(101).await,
        Err(Error::BulkheadFull(_))
    ));
    assert_eq!(svc.oneshot(104).await, Ok(9));
}

#[derive(Clone)]
struct Negate;

impl Recover<i32, Err> for Negate {
    fn recover(&self, result: Result<i32, Err>) -> Result<i32, Err> {
        result.map(|n| -n)
    }
}

#[tokio::test]
async fn custom_recover_policy() {
    let svc = Fallback::new(service_fn(|n: i32| async move { Ok::<_, Err>(n) }), Negate);
    assert_eq!(svc.oneshot(3).await, Ok(-3));
    let svc = FallbackLayer::from_recover(Negate)
        .layer(service_fn(|n: i32| async move { Ok::<_, Err>(n) }));
    assert_eq!(svc.oneshot(4).await, Ok(-4));
}

#[tokio::test]
async fn poll_ready_delegates_to_inner() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<(), (), _>(FallbackLayer::on_any_error(|_err: BoxError| ()));
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
}

#[allow(dead_code)]
fn assert_send<T: Send>() {}
#[allow(dead_code)]
fn assert_sync<T: Sync>() {}

type Inner = tower::util::BoxCloneSyncService<(), u32, BoxError>;
type Handler = fn(BoxError) -> u32;
type Pred = fn(&BoxError) -> bool;
type OnFail = fn(Result<u32, BoxError>) -> u32;
type Fut = <Inner as Service<()>>::Future;

#[test]
fn public_types_are_send_and_sync() {
    assert_send::<FallbackLayer<OnError<Pred, Handler>>>();
    assert_sync::<FallbackLayer<OnError<Pred, Handler>>>();
    assert_send::<FallbackLayer<OnRejection<Handler>>>();
    assert_sync::<FallbackLayer<OnRejection<Handler>>>();
    assert_send::<FallbackLayer<OnAnyError<Handler>>>();
    assert_sync::<FallbackLayer<OnAnyError<Handler>>>();
    assert_send::<FallbackLayer<Value<u32>>>();
    assert_sync::<FallbackLayer<Value<u32>>>();
    assert_send::<FallbackLayer<OnFailure<DefaultClassifier, OnFail>>>();
    assert_sync::<FallbackLayer<OnFailure<DefaultClassifier, OnFail>>>();
    assert_send::<Fallback<Inner, OnRejection<Handler>>>();
    assert_sync::<Fallback<Inner, OnRejection<Handler>>>();
    assert_send::<Fallback<Inner, Value<u32>>>();
    assert_sync::<Fallback<Inner, Value<u32>>>();
    assert_send::<ResponseFuture<Fut, OnRejection<Handler>>>();
    assert_send::<ResponseFuture<Fut, Value<u32>>>();
    assert_send::<ResponseFuture<Fut, OnFailure<DefaultClassifier, OnFail>>>();
}
