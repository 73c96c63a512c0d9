//! Integration tests of the bulkhead middleware.
#![cfg(feature = "bulkhead")]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers outside #[test] functions may fail loudly"
)]

use std::time::Duration;

use sinew_resilience::bulkhead::{BulkheadConfig, BulkheadConfigBuilder, future::ResponseFuture};
use sinew_resilience::classify::{Classify, DefaultClassifier, Outcome};
use sinew_resilience::error::{BoxError, BulkheadFull, Error, ErrorKind, ResilienceError};
use sinew_resilience::{Bulkhead, BulkheadLayer};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

fn reject_mode(permits: usize) -> BulkheadConfig {
    BulkheadConfig::builder()
        .max_concurrent(permits)
        .build()
        .unwrap()
}

fn wait_mode(permits: usize, wait: Duration) -> BulkheadConfig {
    BulkheadConfig::builder()
        .max_concurrent(permits)
        .max_wait(wait)
        .build()
        .unwrap()
}

fn is_full(err: &BoxError) -> bool {
    err.downcast_ref::<BulkheadFull>()
        .is_some_and(|e| e.max_concurrent() == 2)
}

/// Case 35, reject mode: with 2 permits the 3rd concurrent call is rejected at once, without
/// reaching the inner service; once a call completes its permit is free again.
#[tokio::test(start_paused = true)]
async fn case_35_reject_mode_third_call_rejected_immediately() {
    let layer = BulkheadLayer::new(reject_mode(2));
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());

    assert_ready_ok!(svc.poll_ready());
    let mut first = task::spawn(svc.call(1));
    assert_ready_ok!(svc.poll_ready());
    let _second = svc.call(2);
    assert_eq!(layer.in_flight(), 2);
    assert_eq!(layer.available(), 0);

    assert_ready_ok!(svc.poll_ready());
    let mut third = task::spawn(svc.call(3));
    let err = assert_ready!(third.poll()).unwrap_err();
    assert!(is_full(&err));
    assert_eq!(err.kind(), ErrorKind::BulkheadFull);

    // Only two requests reached the inner service.
    let (r1, send1) = handle.next_request().await.unwrap();
    let (r2, _send2) = handle.next_request().await.unwrap();
    assert_eq!((r1, r2), (1, 2));
    assert_pending!(handle.poll_request());

    assert_pending!(first.poll());
    send1.send_response(10);
    assert_eq!(assert_ready_ok!(first.poll()), 10);
    assert_eq!(layer.in_flight(), 1);

    assert_ready_ok!(svc.poll_ready());
    let _fourth = svc.call(4);
    assert_eq!(handle.next_request().await.unwrap().0, 4);
}

/// Case 35, wait mode: the 3rd call waits in `poll_ready` and goes through when a permit frees
/// within 50 ms.
#[tokio::test(start_paused = true)]
async fn case_35_wait_mode_third_call_admitted_when_permit_frees_in_time() {
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(wait_mode(
        2,
        Duration::from_millis(50),
    )));

    assert_ready_ok!(svc.poll_ready());
    let mut first = task::spawn(svc.call(1));
    assert_ready_ok!(svc.poll_ready());
    let _second = svc.call(2);
    let (_, send1) = handle.next_request().await.unwrap();
    let _req2 = handle.next_request().await.unwrap();

    assert_pending!(svc.poll_ready());
    tokio::time::advance(Duration::from_millis(40)).await;
    assert_pending!(svc.poll_ready());

    send1.send_response(10);
    assert_eq!(assert_ready_ok!(first.poll()), 10);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
    let mut third = task::spawn(svc.call(3));
    let (r3, send3) = handle.next_request().await.unwrap();
    assert_eq!(r3, 3);
    send3.send_response(30);
    assert_eq!(assert_ready_ok!(third.poll()), 30);
}

/// Case 35, wait mode: with no permit freed within 50 ms the 3rd call is rejected.
#[tokio::test(start_paused = true)]
async fn case_35_wait_mode_third_call_rejected_after_max_wait() {
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(BulkheadLayer::new(wait_mode(
        2,
        Duration::from_millis(50),
    )));

    assert_ready_ok!(svc.poll_ready());
    let _first = svc.call(1);
    assert_ready_ok!(svc.poll_ready());
    let _second = svc.call(2);

    assert_pending!(svc.poll_ready());
    tokio::time::advance(Duration::from_millis(49)).await;
    assert_pending!(svc.poll_ready());
    tokio::time::advance(Duration::from_millis(1)).await;
    // The rejection is not a `poll_ready` error: `poll_ready` succeeds and the call fails.
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(3).await.unwrap_err();
    assert!(is_full(&err));

    let _r1 = handle.next_request().await.unwrap();
    let _r2 = handle.next_request().await.unwrap();
    assert_pending!(handle.poll_request());

    // The next call waits again rather than being rejected straight away.
    assert_pending!(svc.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_releases_the_permit() {
    let layer = BulkheadLayer::new(reject_mode(1));
    let (mut svc, _handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(1);
    assert_eq!(layer.available(), 0);
    drop(fut);
    assert_eq!(layer.available(), 1);
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_permits() {
    let svc = Bulkhead::new(
        service_fn(|_: ()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Error<()>>(())
        }),
        reject_mode(1),
    );
    let mut a = svc.clone();
    let mut b = svc.clone();
    let running = a.ready().await.unwrap().call(());
    assert_eq!(svc.in_flight(), 1);
    let err = b.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(matches!(err, Error::BulkheadFull(e) if e.max_concurrent() == 1));
    running.await.unwrap();
    assert_eq!(b.available(), 1);
    b.ready().await.unwrap().call(()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn poll_ready_delegates_to_inner_in_reject_mode() {
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(BulkheadLayer::new(reject_mode(1)));
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
}

/// A rejection is not a breaker failure with the default classifier, unless configured.
#[test]
fn rejection_is_ignored_by_default_classifier_unless_counted() {
    let enum_err: Result<(), Error<std::io::Error>> = Err(BulkheadFull::new(2).into());
    let boxed: Result<(), BoxError> = Err(Box::new(BulkheadFull::new(2)));
    let c = DefaultClassifier::new();
    assert_eq!(c.classify(&enum_err), Outcome::Ignored);
    assert_eq!(c.classify(&boxed), Outcome::Ignored);
    let counting = c.count_rejections(true);
    assert_eq!(counting.classify(&enum_err), Outcome::Failure);
    assert_eq!(counting.classify(&boxed), Outcome::Failure);
}

#[test]
fn zero_permits_is_a_config_error() {
    assert!(BulkheadConfig::builder().max_concurrent(0).build().is_err());
}

#[tokio::test]
async fn layer_wraps_service_fn() {
    let svc = BulkheadLayer::new(reject_mode(2))
        .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) }));
    assert_eq!(svc.oneshot(1).await.unwrap(), 2);
}

#[allow(dead_code)]
fn assert_send<T: Send>() {}
#[allow(dead_code)]
fn assert_sync<T: Sync>() {}

type Inner = tower::util::BoxCloneSyncService<(), (), BoxError>;

#[test]
fn public_types_are_send_and_sync() {
    assert_send::<BulkheadLayer>();
    assert_sync::<BulkheadLayer>();
    assert_send::<Bulkhead<Inner>>();
    assert_sync::<Bulkhead<Inner>>();
    assert_send::<ResponseFuture<<Inner as Service<()>>::Future>>();
    assert_send::<BulkheadConfig>();
    assert_sync::<BulkheadConfig>();
    assert_send::<BulkheadConfigBuilder>();
    assert_sync::<BulkheadConfigBuilder>();
}
