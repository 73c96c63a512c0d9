//! Per-call cost of our circuit breaker next to a bare tower service and the peer crates
//! (failsafe, recloser, tower-resilience), on one thread and on two threads sharing one breaker.
//!
//! Every `Service` entry goes through the same harness, [`drive`]: `poll_ready`, `call`, and the
//! future polled to completion with a no-op waker, on the calling thread, without a runtime.
//! The inner service is always [`bare`], whose future is `std::future::ready`.
//!
//! - failsafe and recloser are measured twice: through their synchronous `call(|| ..)` wrapped
//!   around `drive(bare)` (the API their READMEs benchmark), and through their future-aware APIs
//!   (`failsafe::futures::CircuitBreaker::call`, `recloser::AsyncRecloser::call`) inside a small
//!   tower `Service` adapter, so that they run under exactly the same harness as ours.
//! - tower-resilience's breaker is async (a `tokio::sync::Mutex` and a boxed future per call),
//!   but its futures complete without a runtime when uncontended, so it runs under the same
//!   harness too: no `block_on`, no `to_async`. Under contention its mutex may return `Pending`;
//!   [`drive`] then re-polls in a spin loop, as it would for any entry.
//!
//! The two-thread groups use `iter_custom`: two scoped threads, each with its own clone of the
//! service (all clones share one breaker), wait on a barrier, then each makes `iters` calls. The
//! reported time per iteration is the wall time (first start to last finish) divided by the
//! total number of calls, `2 * iters`.
//!
//! Run with
//! `cargo bench -p sinew-resilience --bench breaker -- --warm-up-time 1 --measurement-time 3`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::{black_box, spin_loop};
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sinew_resilience::circuit_breaker::{Config, Handle, State};
use sinew_resilience::classify::Outcome;
use sinew_resilience::{CircuitBreaker, Error};
use tower::Layer;
use tower::Service;
use tower::retry::{Policy, Retry};
use tower::service_fn;

type Req = u64;
type BareError = Error<Infallible>;

/// The bare service every entry wraps: answers at once, never fails.
fn bare()
-> impl Service<Req, Response = Req, Error = BareError, Future = Ready<Result<Req, BareError>>>
+ Clone
+ Send
+ 'static {
    service_fn(|req: Req| ready(Ok::<_, BareError>(req.wrapping_add(1))))
}

/// The calling harness shared by every `Service` entry: `poll_ready`, `call`, poll to
/// completion with a no-op waker. `Pending` (only a contended `tokio::sync::Mutex` in
/// tower-resilience returns it here) is re-polled in a spin loop.
#[inline(always)]
fn drive<S: Service<Req>>(svc: &mut S, req: Req) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => spin_loop(),
        }
    }
    let mut fut = pin!(svc.call(req));
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        spin_loop();
    }
}

/// Runs `call` `iters` times on each of two threads, each with its own `state` made by `make`,
/// and returns the wall time divided by two, so that criterion's time per iteration is the
/// wall time per call across both threads.
fn two_threads<T: Send>(
    iters: u64,
    make: impl Fn() -> T,
    call: impl Fn(&mut T) + Sync,
) -> Duration {
    let barrier = Barrier::new(2);
    let states = [make(), make()];
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = states
            .into_iter()
            .map(|mut state| {
                let (barrier, call) = (&barrier, &call);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        call(&mut state);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    (end - start) / 2
}

/// failsafe's future-aware breaker as a tower service.
#[derive(Clone)]
struct FailsafeService<S, B> {
    inner: S,
    breaker: B,
}

impl<S, B> Service<Req> for FailsafeService<S, B>
where
    S: Service<Req>,
    B: failsafe::futures::CircuitBreaker,
{
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<
        S::Future,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}

/// recloser's future-aware breaker as a tower service.
#[derive(Clone)]
struct RecloserService<S> {
    inner: S,
    breaker: recloser::AsyncRecloser,
}

impl<S: Service<Req>> Service<Req> for RecloserService<S> {
    type Response = S::Response;
    type Error = recloser::Error<S::Error>;
    type Future = recloser::RecloserFuture<S::Future, recloser::AnyError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(recloser::Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}

/// A retry policy that never retries (but clones the request, as a policy that might would).
#[derive(Clone, Copy)]
struct NeverRetry;

impl<Res, E> Policy<Req, Res, E> for NeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(*req)
    }
}

/// tower's retry with its `TpsBudget` (Finagle's defaults: 10 s, 10/s, 20 %): a deposit per
/// request, as our default policy makes, and a withdrawal before any retry.
#[derive(Clone)]
struct TowerBudgetRetry(Arc<tower::retry::budget::TpsBudget>);

impl<Res, E> Policy<Req, Res, E> for TowerBudgetRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(*req)
    }
}

fn ours_closed() -> CircuitBreaker<impl Service<Req, Response = Req, Error = BareError> + Clone> {
    // Default config: count-based window of 100 calls, slow calls not tracked (so no clock read
    // per call).
    CircuitBreaker::new(bare(), Handle::new(Config::default()))
}

/// The same, on a breaker that lives for the process (`Handle::new_static`): no reference
/// count updates per call.
fn ours_closed_static()
-> CircuitBreaker<impl Service<Req, Response = Req, Error = BareError> + Clone> {
    CircuitBreaker::new(bare(), Handle::new_static(Config::default()))
}

/// A breaker opened the ordinary way, by failures (state `Open`, default 30 s wait, so each
/// rejection reads the clock to compute `retry_after`).
fn opened_by_failures() -> Handle {
    let handle = Handle::new(Config::default());
    while let Ok(permit) = handle.try_acquire() {
        permit.record(Outcome::Failure);
    }
    assert_eq!(handle.state(), State::Open);
    handle
}

fn tower_resilience_closed() -> impl Service<Req, Error: std::fmt::Debug> + Clone + Send {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .layer(bare())
}

fn failsafe_service() -> impl Service<Req, Error: std::fmt::Debug> + Clone + Send {
    FailsafeService {
        inner: bare(),
        breaker: failsafe::Config::new().build(),
    }
}

fn recloser_service() -> impl Service<Req, Error: std::fmt::Debug> + Clone + Send {
    RecloserService {
        inner: bare(),
        breaker: recloser::AsyncRecloser::from(recloser::Recloser::default()),
    }
}

fn tower_retry() -> impl Service<Req, Error: std::fmt::Debug> + Clone + Send {
    Retry::new(NeverRetry, bare())
}

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker_1_thread");

    let mut svc = bare();
    g.bench_function("bare_service", |b| b.iter(|| drive(&mut svc, black_box(1))));

    let mut svc = ours_closed();
    g.bench_function("sinew_closed", |b| b.iter(|| drive(&mut svc, black_box(1))));

    let mut svc = ours_closed_static();
    g.bench_function("sinew_closed_static", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    let handle = opened_by_failures();
    let mut svc = CircuitBreaker::new(bare(), handle.clone());
    g.bench_function("sinew_open_rejecting", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });
    assert_eq!(
        handle.state(),
        State::Open,
        "the breaker half-opened mid-run"
    );

    let handle = Handle::new(Config::default());
    g.bench_function("sinew_gate_acquire_record", |b| {
        b.iter(|| {
            black_box(&handle)
                .try_acquire()
                .unwrap()
                .record(Outcome::Success)
        })
    });

    let fs = failsafe::Config::new().build();
    let mut inner = bare();
    g.bench_function("failsafe_sync_call", |b| {
        b.iter(|| failsafe::CircuitBreaker::call(&fs, || drive(&mut inner, black_box(1))))
    });

    let mut svc = failsafe_service();
    g.bench_function("failsafe_future_service", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    let rc = recloser::Recloser::default();
    let mut inner = bare();
    g.bench_function("recloser_sync_call", |b| {
        b.iter(|| rc.call(|| drive(&mut inner, black_box(1))))
    });

    let mut svc = recloser_service();
    g.bench_function("recloser_future_service", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    let mut svc = tower_resilience_closed();
    g.bench_function("tower_resilience_closed", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    let mut svc = tower_retry();
    g.bench_function("tower_retry_no_retry", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    g.finish();
}

fn two_threads_shared(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker_2_threads");

    let svc = bare();
    g.bench_function("bare_service", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s| {
                    black_box(drive(s, black_box(1))).unwrap();
                },
            )
        })
    });

    let svc = ours_closed();
    g.bench_function("sinew_closed", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s| {
                    black_box(drive(s, black_box(1))).unwrap();
                },
            )
        })
    });

    let svc = ours_closed_static();
    g.bench_function("sinew_closed_static", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s| {
                    black_box(drive(s, black_box(1))).unwrap();
                },
            )
        })
    });

    let handle = opened_by_failures();
    let svc = CircuitBreaker::new(bare(), handle.clone());
    g.bench_function("sinew_open_rejecting", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s| {
                    black_box(drive(s, black_box(1))).unwrap_err();
                },
            )
        })
    });
    assert_eq!(
        handle.state(),
        State::Open,
        "the breaker half-opened mid-run"
    );

    let handle = Handle::new(Config::default());
    g.bench_function("sinew_gate_acquire_record", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || handle.clone(),
                |h| {
                    black_box(&*h)
                        .try_acquire()
                        .unwrap()
                        .record(Outcome::Success);
                },
            )
        })
    });

    let fs = failsafe::Config::new().build();
    g.bench_function("failsafe_sync_call", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || (fs.clone(), bare()),
                |(fs, inner)| {
                    black_box(failsafe::CircuitBreaker::call(fs, || {
                        drive(inner, black_box(1))
                    }))
                    .unwrap();
                },
            )
        })
    });

    let svc = failsafe_service();
    g.bench_function("failsafe_future_service", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s| {
                    black_box(drive(s, black_box(1))).unwrap();
                },
            )
        })
    });

    let rc = Arc::new(recloser::Recloser::default());
    g.bench_function("recloser_sync_call", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || (Arc::clone(&rc), bare()),
                |(rc, inner)| {
                    black_box(rc.call(|| drive(inner, black_box(1)))).unwrap();
                },
            )
        })
    });

    let svc = recloser_service();
    g.bench_function("recloser_future_service", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s| {
                    black_box(drive(s, black_box(1))).unwrap();
                },
            )
        })
    });

    let svc = tower_resilience_closed();
    g.bench_function("tower_resilience_closed", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s| {
                    black_box(drive(s, black_box(1))).unwrap();
                },
            )
        })
    });

    let svc = tower_retry();
    g.bench_function("tower_retry_no_retry", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                || svc.clone(),
                |s| {
                    black_box(drive(s, black_box(1))).unwrap();
                },
            )
        })
    });

    g.finish();
}

/// tower's `Retry` next to ours on the success path (one attempt, no retry), with policies that
/// would retry on failure but never get to.
fn retry_success_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry_success_path");

    let mut svc = bare();
    g.bench_function("bare_service", |b| b.iter(|| drive(&mut svc, black_box(1))));

    let mut svc = tower_retry();
    g.bench_function("tower_retry_no_retry", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    let mut svc = Retry::new(
        TowerBudgetRetry(Arc::new(tower::retry::budget::TpsBudget::default())),
        bare(),
    );
    g.bench_function("tower_retry_tps_budget", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    // Ours with the default policy: 3 attempts, full jitter, a Finagle budget (one deposit
    // per request), a per-request random stream.
    let mut svc =
        sinew_resilience::Retry::new(bare(), sinew_resilience::retry::RetryPolicy::default());
    g.bench_function("sinew_retry_default", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    let policy = sinew_resilience::retry::RetryPolicy::builder()
        .no_budget()
        .build()
        .unwrap();
    let mut svc = sinew_resilience::Retry::new(bare(), policy);
    g.bench_function("sinew_retry_no_budget", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    g.finish();
}

fn composed_policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("composed_policy");
    // The timeout layer creates a tokio `Sleep` per call, which needs a runtime context (the
    // sleep is never polled here: the inner future is ready at once).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    let mut svc = bare();
    g.bench_function("bare_service", |b| b.iter(|| drive(&mut svc, black_box(1))));

    // Fallback-free default policy: retry (budget) -> breaker -> bulkhead -> timeout.
    let policy = sinew_resilience::Policy::builder().build().unwrap();
    let mut svc = policy.layer().layer(bare());
    g.bench_function("sinew_policy_default", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });

    // tower's nearest equivalent: Retry -> ConcurrencyLimit -> Timeout (no breaker in tower).
    let mut svc = tower::ServiceBuilder::new()
        .retry(NeverRetry)
        .concurrency_limit(100)
        .timeout(Duration::from_secs(10))
        .service(bare());
    g.bench_function("tower_retry_limit_timeout", |b| {
        b.iter(|| drive(&mut svc, black_box(1)))
    });
    g.finish();
}

fn config() -> Criterion {
    // Short runs: the machine has 2 cores shared with others. The command-line flags
    // (`--warm-up-time`, `--measurement-time`) override these.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = one_thread, two_threads_shared, retry_success_path, composed_policy
}
criterion_main!(benches);
