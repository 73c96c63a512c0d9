use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use sinew_resilience::circuit_breaker::{
    CircuitBreaker, Config, Handle, OpenWait, SlidingWindow, State,
};
use sinew_resilience::classify::{DefaultClassifier, Outcome};
use sinew_resilience::error::{BulkheadFull, CircuitOpen, ResilienceError};
use sinew_resilience::{BoxError, CircuitBreakerLayer, Error};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

fn w5() -> Config {
    Config::builder()
        .sliding_window(SlidingWindow::CountBased { size: 5 })
        .minimum_calls(5)
        .half_open_permits(4)
        .open_wait(OpenWait::Fixed(Duration::from_secs(5)))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn service_records_and_rejects_without_calling_inner() {
    let layer = CircuitBreakerLayer::new(w5());
    let breaker = layer.handle().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut svc = layer.layer(service_fn(move |_: ()| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), BoxError>("boom".into()) }
    }));
    for _ in 0..5 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(err.kind(), sinew_resilience::error::ErrorKind::Inner);
    }
    assert_eq!(breaker.state(), State::Open);
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("a typed rejection");
    assert_eq!(open.retry_after(), Duration::from_secs(5));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker() {
    let layer = CircuitBreakerLayer::new(w5());
    let svc = layer.layer(service_fn(|_: ()| async {
        Err::<(), Error<&str>>(Error::Inner("x"))
    }));
    for _ in 0..5 {
        let _ = svc.clone().oneshot(()).await;
    }
    assert!(matches!(
        svc.clone().oneshot(()).await,
        Err(Error::CircuitOpen(_))
    ));
    assert_eq!(svc.handle().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn case_19_dropped_probe_future_returns_its_permit() {
    let handle = Handle::new(w5());
    handle.open_for(Duration::from_secs(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    let (mut svc, mut inner) =
        mock::spawn_layer::<(), (), _>(CircuitBreakerLayer::from_handle(handle.clone()));
    inner.allow(10);
    assert_ready_ok!(svc.poll_ready());
    // Take all four probes, then drop one future before it completes.
    let mut futures = Vec::new();
    for _ in 0..4 {
        assert_ready_ok!(svc.poll_ready());
        futures.push(svc.call(()));
    }
    assert_eq!(handle.state(), State::HalfOpen);
    assert!(handle.try_acquire().is_err());
    let dropped = futures.pop().unwrap();
    drop(dropped);
    let again = handle
        .try_acquire()
        .expect("the dropped probe's permit came back");
    drop(again);
    assert_eq!(handle.metrics().buffered_calls, 0, "nothing was recorded");
    let mut first = tokio_test::task::spawn(futures.remove(0));
    assert_pending!(first.poll());
}

#[test]
fn case_20_half_open_admits_exactly_four_of_64_racing_callers() {
    for _ in 0..20 {
        let handle = Handle::new(w5());
        handle.open_for(Duration::ZERO);
        let barrier = Arc::new(Barrier::new(64));
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let (h, b, a) = (handle.clone(), barrier.clone(), admitted.clone());
                std::thread::spawn(move || {
                    b.wait();
                    match h.try_acquire() {
                        Ok(permit) => {
                            a.fetch_add(1, Ordering::SeqCst);
                            // Hold the permit until everyone has tried.
                            std::thread::sleep(Duration::from_millis(20));
                            drop(permit);
                            true
                        }
                        Err(_) => false,
                    }
                })
            })
            .collect();
        let results: Vec<bool> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|ok| **ok).count(), 4);
        assert_eq!(admitted.load(Ordering::SeqCst), 4);
        assert_eq!(handle.metrics().not_permitted_calls, 60);
    }
}

#[tokio::test(start_paused = true)]
async fn case_28_classification() {
    // A "business" error classified as success does not count.
    let layer = CircuitBreakerLayer::new(w5()).classifier(|r: &Result<u16, Error<&str>>| match r {
        Ok(status) if *status >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(Error::Inner("not found")) => Outcome::Success,
        Err(_) => Outcome::Failure,
    });
    let h = layer.handle().clone();
    let svc = layer.layer(service_fn(|code: u16| async move {
        if code == 404 {
            Err(Error::Inner("not found"))
        } else {
            Ok(code)
        }
    }));
    for _ in 0..10 {
        let _ = svc.clone().oneshot(404).await;
    }
    assert_eq!(h.metrics().failed_calls, 0);
    // A result predicate marks an Ok value as a failure.
    for _ in 0..5 {
        let _ = svc.clone().oneshot(503).await;
    }
    assert_eq!(h.state(), State::Open);

    // Rejections from an inner bulkhead: ignored by default, counted when asked to.
    for count_rejections in [false, true] {
        let layer = CircuitBreakerLayer::new(w5())
            .classifier(DefaultClassifier::new().count_rejections(count_rejections));
        let h = layer.handle().clone();
        let svc = layer.layer(service_fn(|_: ()| async {
            Err::<(), Error<()>>(BulkheadFull::new(1).into())
        }));
        for _ in 0..5 {
            let _ = svc.clone().oneshot(()).await;
        }
        let expected = if count_rejections {
            State::Open
        } else {
            State::Closed
        };
        assert_eq!(h.state(), expected);
        assert_eq!(
            h.metrics().buffered_calls,
            if count_rejections { 5 } else { 0 }
        );
    }
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn http_classifier_counts_503_but_not_404() {
    use sinew_resilience::classify::HttpClassifier;
    let layer = CircuitBreakerLayer::new(w5()).classifier(HttpClassifier::new());
    let h = layer.handle().clone();
    let svc = layer.layer(service_fn(|status: u16| async move {
        Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
    }));
    for _ in 0..5 {
        svc.clone().oneshot(404).await.unwrap();
    }
    assert_eq!(h.metrics().failed_calls, 0);
    for _ in 0..3 {
        svc.clone().oneshot(503).await.unwrap();
    }
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn mock_inner_errors_pass_through_and_rejections_are_ready() {
    let (mut svc, mut inner) = mock::spawn_layer::<(), (), _>(CircuitBreaker::<()>::layer(w5()));
    inner.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut fut = tokio_test::task::spawn(svc.call(()));
    let (_, send) = inner.next_request().await.unwrap();
    send.send_error("inner failure");
    let err = assert_ready_err!(fut.poll());
    assert!(err.downcast_ref::<CircuitOpen>().is_none());
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Handle>();
    send_sync::<CircuitBreakerLayer>();
    send_sync::<CircuitBreaker<mock::Mock<(), ()>>>();
    send_sync::<sinew_resilience::circuit_breaker::Permit>();
    send_sync::<sinew_resilience::circuit_breaker::Registry<String>>();
    send::<
        sinew_resilience::circuit_breaker::future::ResponseFuture<
            mock::future::ResponseFuture<()>,
            DefaultClassifier,
        >,
    >();
    send_sync::<
        sinew_resilience::circuit_breaker::KeyedCircuitBreakerLayer<String, fn(&()) -> String>,
    >();
    send_sync::<
        sinew_resilience::circuit_breaker::KeyedCircuitBreaker<
            mock::Mock<(), ()>,
            String,
            fn(&()) -> String,
        >,
    >();
}
