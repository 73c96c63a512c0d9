//! The per-call paths of the circuit breaker make no heap allocation.
//!
//! `allocation-counter` installs a counting global allocator (a wrapper around
//! `std::alloc::System`) whose counts are per thread, so allocations by the test harness on its
//! other threads are not counted. We cannot write that allocator here: `unsafe impl GlobalAlloc`
//! is ruled out by the workspace's `unsafe_code = "forbid"`, which no `#[allow]` can lift.
//!
//! Each case builds its breaker, warms up (first calls may touch lazily initialised statics such
//! as tracing's callsite registry), then counts the allocations of 10 000 calls, which must be 0.
//!
//! The retry success path and the composed policy's success path are covered too.
#![cfg(feature = "circuit-breaker")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::{Future, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sinew_resilience::circuit_breaker::{Config, Handle, SlidingWindow, State};
use sinew_resilience::classify::Outcome;
use sinew_resilience::{CircuitBreaker, Error};
use tower::{Service, service_fn};

const WARM_UP: usize = 100;
const CALLS: usize = 10_000;

type Err = Error<Infallible>;

/// `poll_ready`, `call`, and the future polled once with a no-op waker; every future here is
/// ready at once.
fn call_once<S: Service<u64>>(svc: &mut S, req: u64) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("poll_ready pending"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("response future pending"),
    }
}

fn bare() -> impl Service<u64, Response = u64, Error = Err> + Clone {
    service_fn(|req: u64| ready(Ok::<_, Err>(req + 1)))
}

/// Warms `f` up, then returns how many allocations `CALLS` more runs of it made.
fn allocations(mut f: impl FnMut(u64)) -> u64 {
    for i in 0..WARM_UP {
        f(i as u64);
    }
    allocation_counter::measure(|| {
        for i in 0..CALLS {
            f(i as u64);
        }
    })
    .count_total
}

#[test]
fn closed_path_through_the_service_does_not_allocate() {
    let handle = Handle::new(Config::default());
    let mut svc = CircuitBreaker::new(bare(), handle.clone());
    let n = allocations(|i| assert_eq!(call_once(&mut svc, i).unwrap(), i + 1));
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(n, 0, "{n} allocations in {CALLS} closed calls");
}

#[test]
fn closed_path_with_time_window_and_slow_calls_does_not_allocate() {
    // The other closed path: time-based window and slow-call tracking, so every call reads the
    // clock twice.
    let handle = Handle::new(
        Config::builder()
            .sliding_window(SlidingWindow::TimeBased {
                window: Duration::from_secs(10),
            })
            .slow_calls(Duration::from_secs(1), 100.0)
            .build()
            .unwrap(),
    );
    let mut svc = CircuitBreaker::new(bare(), handle.clone());
    let n = allocations(|i| assert_eq!(call_once(&mut svc, i).unwrap(), i + 1));
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(n, 0, "{n} allocations in {CALLS} closed calls");
}

#[test]
fn open_path_rejecting_with_error_enum_does_not_allocate() {
    // Opened the ordinary way, by failures: state `Open`, and each rejection computes
    // `retry_after` from the clock.
    let handle = Handle::new(Config::default());
    while let Ok(permit) = handle.try_acquire() {
        permit.record(Outcome::Failure);
    }
    assert_eq!(handle.state(), State::Open);
    let mut svc = CircuitBreaker::new(bare(), handle.clone());
    let n = allocations(|i| {
        let err = call_once(&mut svc, i).unwrap_err();
        assert!(matches!(err, Error::CircuitOpen(_)));
    });
    assert_eq!(handle.state(), State::Open);
    assert_eq!(n, 0, "{n} allocations in {CALLS} rejected calls");
}

#[test]
fn forced_open_path_rejecting_with_error_enum_does_not_allocate() {
    let handle = Handle::new(Config::default());
    handle.force_open();
    let mut svc = CircuitBreaker::new(bare(), handle.clone());
    let n = allocations(|i| {
        let err = call_once(&mut svc, i).unwrap_err();
        assert!(matches!(err, Error::CircuitOpen(_)));
    });
    assert_eq!(handle.state(), State::ForcedOpen);
    assert_eq!(n, 0, "{n} allocations in {CALLS} rejected calls");
}

#[test]
fn raw_gate_try_acquire_and_record_does_not_allocate() {
    let handle = Handle::new(Config::default());
    let n = allocations(|_| handle.try_acquire().unwrap().record(Outcome::Success));
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.metrics().buffered_calls, 100);
    assert_eq!(n, 0, "{n} allocations in {CALLS} acquire + record");
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a counter that counts nothing.
    let n = allocation_counter::measure(|| {
        std::hint::black_box(Box::new(1_u64));
    })
    .count_total;
    assert_eq!(n, 1);
}

#[cfg(feature = "retry")]
#[test]
fn retry_success_path_does_not_allocate() {
    use sinew_resilience::retry::RetryPolicy;
    // The default policy: budget deposits, per-request random stream, a clone of the inner
    // service per request.
    let mut svc = sinew_resilience::Retry::new(bare(), RetryPolicy::default());
    let n = allocations(|i| assert_eq!(call_once(&mut svc, i).unwrap(), i + 1));
    assert_eq!(n, 0, "{n} allocations in {CALLS} retry calls");
}

#[cfg(feature = "policy")]
#[test]
fn composed_policy_success_path_does_not_allocate() {
    use tower::Layer;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let policy = sinew_resilience::Policy::builder().build().unwrap();
    let mut svc = policy
        .layer()
        .layer(service_fn(|req: u64| ready(Ok::<_, Infallible>(req + 1))));
    let n = allocations(|i| assert_eq!(call_once(&mut svc, i).unwrap(), i + 1));
    assert_eq!(policy.breaker().state(), State::Closed);
    assert_eq!(
        n, 0,
        "{n} allocations in {CALLS} calls through the composed policy"
    );
}
