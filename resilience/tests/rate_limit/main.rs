//! Integration tests of the rate-limit middleware.
#![cfg(feature = "rate-limit")]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers outside #[test] functions may fail loudly"
)]

use std::num::NonZeroU32;
use std::time::Duration;

use sinew_resilience::error::{BoxError, Error, ErrorKind, RateLimited, ResilienceError};
use sinew_resilience::rate_limit::{
    RateLimitConfig, RateLimitConfigBuilder, future::ResponseFuture,
};
use sinew_resilience::{KeyedRateLimit, KeyedRateLimitLayer, RateLimit, RateLimitLayer};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

type Echo = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, Error<()>>>>;

fn echo() -> Echo {
    service_fn(|x| std::future::ready(Ok(x)))
}

fn per_second(n: u32) -> RateLimitConfig {
    RateLimitConfig::builder().per_second(n).build().unwrap()
}

async fn call<S>(svc: &mut S, req: u32) -> Result<u32, Error<()>>
where
    S: Service<u32, Response = u32, Error = Error<()>>,
{
    svc.ready().await?.call(req).await
}

fn retry_after(result: Result<u32, Error<()>>) -> Duration {
    match result {
        Err(Error::RateLimited(limited)) => limited.retry_after(),
        other => panic!("expected a rate-limit rejection, got {other:?}"),
    }
}

/// The burst is admitted, the next call is rejected with the exact wait, and admitted again
/// after that wait.
#[tokio::test(start_paused = true)]
async fn burst_admitted_then_rejected_with_retry_after_then_admitted_after_wait() {
    let mut svc = RateLimitLayer::new(per_second(2)).layer(echo());

    assert_eq!(call(&mut svc, 1).await.unwrap(), 1);
    assert_eq!(call(&mut svc, 2).await.unwrap(), 2);
    assert_eq!(
        retry_after(call(&mut svc, 3).await),
        Duration::from_millis(500)
    );

    tokio::time::advance(Duration::from_millis(499)).await;
    assert_eq!(
        retry_after(call(&mut svc, 3).await),
        Duration::from_millis(1)
    );

    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(call(&mut svc, 3).await.unwrap(), 3);
    // Only one cell came back.
    assert_eq!(
        retry_after(call(&mut svc, 4).await),
        Duration::from_millis(500)
    );
}

#[tokio::test(start_paused = true)]
async fn burst_larger_than_rate() {
    let config = RateLimitConfig::builder()
        .period(Duration::from_secs(1))
        .burst(NonZeroU32::new(3).unwrap())
        .build()
        .unwrap();
    let mut svc = RateLimit::new(echo(), config);
    for i in 0..3 {
        call(&mut svc, i).await.unwrap();
    }
    assert_eq!(retry_after(call(&mut svc, 3).await), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_limit() {
    let layer = RateLimitLayer::new(per_second(2));
    let mut a = layer.layer(echo());
    let mut b = a.clone();
    // A second service of the same layer shares it too.
    let mut c = layer.layer(echo());

    call(&mut a, 1).await.unwrap();
    call(&mut b, 2).await.unwrap();
    assert!(call(&mut c, 3).await.is_err());
    assert!(call(&mut a, 3).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn keyed_limits_are_independent_per_key() {
    let config = RateLimitConfig::builder().per_minute(1).build().unwrap();
    let layer = KeyedRateLimitLayer::new(config, |req: &u32| req % 2);
    let mut svc = layer.layer(echo());
    let mut clone = svc.clone();

    call(&mut svc, 0).await.unwrap();
    assert_eq!(
        retry_after(call(&mut clone, 2).await),
        Duration::from_secs(60)
    );
    // Key 1 has its own limit.
    call(&mut svc, 1).await.unwrap();
    assert_eq!(
        retry_after(call(&mut svc, 3).await),
        Duration::from_secs(60)
    );
    assert_eq!(layer.len(), 2);

    tokio::time::advance(Duration::from_secs(30)).await;
    layer.retain_recent();
    assert_eq!(layer.len(), 2, "both keys are still limited");
    assert_eq!(
        retry_after(call(&mut svc, 0).await),
        Duration::from_secs(30)
    );

    tokio::time::advance(Duration::from_secs(30)).await;
    call(&mut svc, 0).await.unwrap();

    // governor forgets a key one replenish period after its limit has fully recovered.
    tokio::time::advance(Duration::from_secs(120)).await;
    layer.retain_recent();
    layer.shrink_to_fit();
    assert!(svc.is_empty(), "recovered keys are forgotten");
    call(&mut svc, 1).await.unwrap();
    assert_eq!(svc.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn keyed_service_without_layer() {
    let mut svc = KeyedRateLimit::new(echo(), per_second(1), |req: &u32| *req);
    call(&mut svc, 7).await.unwrap();
    assert!(call(&mut svc, 7).await.is_err());
    call(&mut svc, 8).await.unwrap();
}

/// The rejection comes from the response future and never reaches the inner service;
/// `poll_ready` only delegates.
#[tokio::test(start_paused = true)]
async fn rejection_is_returned_by_call_not_poll_ready() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(RateLimitLayer::new(per_second(1)));
    assert_ready_ok!(svc.poll_ready());
    let mut first = task::spawn(svc.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(1);
    assert_ready_ok!(first.poll());

    assert_ready_ok!(svc.poll_ready());
    let mut second = task::spawn(svc.call(2));
    let err: BoxError = assert_ready!(second.poll()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.is::<RateLimited>());
    assert_pending!(handle.poll_request());
}

#[tokio::test(start_paused = true)]
async fn poll_ready_delegates_to_inner() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(RateLimitLayer::new(per_second(1)));
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
}

#[test]
fn zero_rates_are_config_errors() {
    assert!(RateLimitConfig::builder().per_second(0).build().is_err());
    assert!(RateLimitConfig::builder().per_minute(0).build().is_err());
    assert!(
        RateLimitConfig::builder()
            .period(Duration::ZERO)
            .build()
            .is_err()
    );
}

#[allow(dead_code)]
fn assert_send<T: Send>() {}
#[allow(dead_code)]
fn assert_sync<T: Sync>() {}

type Inner = tower::util::BoxCloneSyncService<u32, u32, BoxError>;
type KeyFn = fn(&u32) -> u32;

#[test]
fn public_types_are_send_and_sync() {
    assert_send::<RateLimitLayer>();
    assert_sync::<RateLimitLayer>();
    assert_send::<RateLimit<Inner>>();
    assert_sync::<RateLimit<Inner>>();
    assert_send::<KeyedRateLimitLayer<u32, KeyFn>>();
    assert_sync::<KeyedRateLimitLayer<u32, KeyFn>>();
    assert_send::<KeyedRateLimit<Inner, u32, KeyFn>>();
    assert_sync::<KeyedRateLimit<Inner, u32, KeyFn>>();
    assert_send::<ResponseFuture<<Inner as Service<u32>>::Future>>();
    assert_send::<RateLimitConfig>();
    assert_sync::<RateLimitConfig>();
    assert_send::<RateLimitConfigBuilder>();
    assert_sync::<RateLimitConfigBuilder>();
}
