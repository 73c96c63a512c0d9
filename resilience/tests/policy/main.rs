//! The composed policy: layer order, shared state and validation.
#![cfg(feature = "policy")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sinew_resilience::circuit_breaker::{self, SlidingWindow, State};
use sinew_resilience::error::ConfigError;
use sinew_resilience::{Error, FallbackLayer, Policy};
use tower::{Layer, ServiceExt, service_fn};

fn small_breaker() -> circuit_breaker::ConfigBuilder {
    circuit_breaker::Config::builder()
        .sliding_window(SlidingWindow::CountBased { size: 4 })
        .minimum_calls(4)
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_recorded_and_timeouts_count_as_failures() {
    let policy = Policy::builder()
        .timeout(Duration::from_millis(100))
        .retry(|r| r.max_attempts(2))
        .circuit_breaker(small_breaker())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = policy.layer().layer(service_fn(move |_: ()| {
        c.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), std::io::Error>(())
        }
    }));
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the timeout was retried");
    assert_eq!(
        policy.breaker().metrics().failed_calls,
        2,
        "one failure per attempt"
    );

    // Two more attempts open the breaker; the next request is rejected without calling.
    let _ = svc.clone().oneshot(()).await;
    assert_eq!(policy.breaker().state(), State::Open);
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(matches!(err, Error::CircuitOpen(_)));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "rejections are not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn bulkhead_rejections_do_not_trip_the_breaker() {
    let policy = Policy::builder()
        .max_concurrent(1)
        .retry(|r| r.max_attempts(1))
        .circuit_breaker(small_breaker())
        .build()
        .unwrap();
    let svc = policy.layer().layer(service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<(), std::io::Error>(())
    }));
    let first = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    for _ in 0..10 {
        let err = svc.clone().oneshot(()).await.unwrap_err();
        assert!(matches!(err, Error::BulkheadFull(_)));
    }
    first.await.unwrap().unwrap();
    assert_eq!(policy.breaker().state(), State::Closed);
    assert_eq!(policy.breaker().metrics().failed_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn fallback_sees_only_the_final_outcome() {
    let policy = Policy::builder()
        .retry(|r| r.max_attempts(3))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = policy
        .layer()
        .fallback(FallbackLayer::on_any_error(
            |_err: Error<std::io::Error>| "cached",
        ))
        .layer(service_fn(move |_: ()| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<&str, _>(std::io::Error::other("down")) }
        }));
    assert_eq!(svc.oneshot(()).await.unwrap(), "cached");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn services_from_one_policy_share_the_breaker() {
    let policy = Policy::builder()
        .retry(|r| r.max_attempts(1))
        .circuit_breaker(small_breaker())
        .build()
        .unwrap();
    let a = policy.layer().layer(service_fn(|_: ()| async {
        Err::<(), _>(std::io::Error::other("a"))
    }));
    let b = policy
        .layer()
        .layer(service_fn(|_: ()| async { Ok::<(), std::io::Error>(()) }));
    for _ in 0..4 {
        let _ = a.clone().oneshot(()).await;
    }
    assert!(matches!(b.oneshot(()).await, Err(Error::CircuitOpen(_))));
}

#[test]
fn nonsense_is_rejected_when_built() {
    assert!(matches!(
        Policy::builder().timeout(Duration::ZERO).build(),
        Err(ConfigError::Zero { .. })
    ));
    assert!(Policy::builder().max_concurrent(0).build().is_err());
    assert!(
        Policy::builder()
            .retry(|r| r.max_attempts(0))
            .build()
            .is_err()
    );
    assert!(
        Policy::builder()
            .circuit_breaker(circuit_breaker::Config::builder().failure_rate_threshold(150.0))
            .build()
            .is_err()
    );
    assert!(
        Policy::builder()
            .retry(|r| r
                .base_delay(Duration::from_secs(5))
                .max_delay(Duration::from_secs(1)))
            .build()
            .is_err()
    );
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Policy>();
    send_sync::<
        sinew_resilience::policy::PolicyLayer<
            sinew_resilience::classify::DefaultClassifier,
            sinew_resilience::retry::ErrorHint,
            sinew_resilience::retry::CloneReplay,
        >,
    >();
    send_sync::<
        sinew_resilience::policy::PolicyService<
            tower_test::mock::Mock<(), ()>,
            sinew_resilience::classify::DefaultClassifier,
            sinew_resilience::retry::ErrorHint,
            sinew_resilience::retry::CloneReplay,
        >,
    >();
}
