//! Integration tests of the timeout middleware.
#![cfg(feature = "timeout")]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers outside #[test] functions may fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sinew_resilience::error::{BoxError, Elapsed, Error};
use sinew_resilience::timeout::{
    NoOverride, TimeoutConfig, TimeoutConfigBuilder, TimeoutFor, future::ResponseFuture,
};
use sinew_resilience::{Timeout, TimeoutLayer};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::mock;

fn config(ms: u64) -> TimeoutConfig {
    TimeoutConfig::builder()
        .timeout(Duration::from_millis(ms))
        .build()
        .unwrap()
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Case 36: a 100 ms timeout on a 1 s inner future yields `Elapsed` at 100 ms and drops the
/// inner future at that moment.
#[tokio::test(start_paused = true)]
async fn case_36_elapsed_at_deadline_and_inner_future_dropped() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let inner = service_fn(move |_: ()| {
        let guard = DropFlag(flag.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(guard);
            Ok::<_, Error<std::io::Error>>("late")
        }
    });
    let mut svc = TimeoutLayer::new(config(100)).layer(inner);
    svc.ready().await.unwrap();
    let mut fut = task::spawn(tower::Service::call(&mut svc, ()));

    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(fut.poll());
    assert!(!dropped.load(Ordering::SeqCst));

    tokio::time::advance(Duration::from_millis(1)).await;
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert!(matches!(err, Error::Timeout(e) if e.after() == Duration::from_millis(100)));
    // The response future is still alive, yet the inner one is already gone.
    assert!(dropped.load(Ordering::SeqCst));
    drop(fut);
}

#[tokio::test(start_paused = true)]
async fn response_before_deadline_passes_through() {
    let (mut svc, mut handle) = mock::spawn_layer::<&str, &str, _>(TimeoutLayer::new(config(100)));
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call("hi"));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, "hi");
    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(fut.poll());
    send.send_response("there");
    assert_eq!(assert_ready_ok!(fut.poll()), "there");
}

#[tokio::test(start_paused = true)]
async fn boxed_errors_downcast_to_elapsed() {
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(TimeoutLayer::new(config(10)));
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(()));
    let _pending_request = handle.next_request().await.unwrap();
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(10)).await;
    let err: BoxError = assert_ready!(fut.poll()).unwrap_err();
    let elapsed = err.downcast_ref::<Elapsed>().unwrap();
    assert_eq!(elapsed.after(), Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn poll_ready_delegates_to_inner() {
    let (mut svc, mut handle) = mock::spawn_layer::<(), (), _>(TimeoutLayer::new(config(10)));
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn per_request_closure_overrides_configured_timeout() {
    let layer = TimeoutLayer::new(config(100))
        .per_request(|req: &u64| (*req > 0).then(|| Duration::from_millis(*req)));
    let svc = layer.layer(service_fn(|_: u64| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, Error<()>>(())
    }));

    // No override: the configured 100 ms applies.
    let start = tokio::time::Instant::now();
    let err = svc.clone().oneshot(0).await.unwrap_err();
    assert_eq!(
        err,
        Error::Timeout(Elapsed::new(Duration::from_millis(100)))
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));

    // A shorter override.
    let start = tokio::time::Instant::now();
    let err = svc.clone().oneshot(20).await.unwrap_err();
    assert_eq!(err, Error::Timeout(Elapsed::new(Duration::from_millis(20))));
    assert_eq!(start.elapsed(), Duration::from_millis(20));

    // A longer override lets the call finish.
    let start = tokio::time::Instant::now();
    svc.oneshot(500).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn http_request_extension_overrides_configured_timeout() {
    use sinew_resilience::timeout::{FromExtension, RequestTimeout};

    let svc = TimeoutLayer::new(config(100))
        .per_request(FromExtension)
        .layer(service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, BoxError>(http::Response::new(()))
        }));

    let err = svc
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Elapsed>().unwrap().after(),
        Duration::from_millis(100)
    );

    let mut req = http::Request::new(());
    req.extensions_mut()
        .insert(RequestTimeout(Duration::from_secs(1)));
    assert!(svc.oneshot(req).await.is_ok());
}

#[test]
fn zero_timeout_is_a_config_error() {
    assert!(
        TimeoutConfig::builder()
            .timeout(Duration::ZERO)
            .build()
            .is_err()
    );
}

#[allow(dead_code)]
fn assert_send<T: Send>() {}
#[allow(dead_code)]
fn assert_sync<T: Sync>() {}

type Inner = tower::util::BoxCloneSyncService<(), (), BoxError>;
type ByFn = fn(&()) -> Option<Duration>;

#[test]
fn public_types_are_send_and_sync() {
    assert_send::<TimeoutLayer>();
    assert_sync::<TimeoutLayer>();
    assert_send::<TimeoutLayer<ByFn>>();
    assert_sync::<TimeoutLayer<ByFn>>();
    assert_send::<Timeout<Inner>>();
    assert_sync::<Timeout<Inner>>();
    assert_send::<Timeout<Inner, ByFn>>();
    assert_sync::<Timeout<Inner, ByFn>>();
    assert_send::<ResponseFuture<<Inner as tower::Service<()>>::Future>>();
    assert_send::<TimeoutConfig>();
    assert_sync::<TimeoutConfig>();
    assert_send::<TimeoutConfigBuilder>();
    assert_sync::<TimeoutConfigBuilder>();
    assert_send::<NoOverride>();
    assert_sync::<NoOverride>();
    fn is_policy<P: TimeoutFor<()>>() {}
    is_policy::<ByFn>();
}
