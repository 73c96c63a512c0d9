use std::time::Duration;

use sinew_resilience::circuit_breaker::{
    AfterHalfOpenTimeout, Config, ConfigBuilder, Event, Handle, OpenWait, SlidingWindow, State,
    TransitionReason,
};
use sinew_resilience::classify::Outcome;
use tokio::time::advance;

use crate::support::{Recorder, trace_init};

const F: Outcome = Outcome::Failure;
const S: Outcome = Outcome::Success;
const I: Outcome = Outcome::Ignored;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Base config B of the reference: 50 % failure, 50 % slow (> 4 s), 4 half-open permits,
/// 5 s open wait, 1 s half-open max wait.
fn base() -> ConfigBuilder {
    Config::builder()
        .name("b")
        .failure_rate_threshold(50.0)
        .slow_calls(secs(4), 50.0)
        .half_open_permits(4)
        .open_wait(OpenWait::Fixed(secs(5)))
        .half_open_max_wait(Some(secs(1)), AfterHalfOpenTimeout::Open)
}

fn w5() -> ConfigBuilder {
    base()
        .sliding_window(SlidingWindow::CountBased { size: 5 })
        .minimum_calls(5)
}

fn t20() -> ConfigBuilder {
    base()
        .sliding_window(SlidingWindow::TimeBased { window: secs(20) })
        .minimum_calls(5)
}

fn with_events(builder: ConfigBuilder) -> (Handle, Recorder<Event>) {
    trace_init();
    let events = Recorder::default();
    let sink = events.clone();
    let handle = Handle::new(
        builder
            .on_event(move |e| sink.push(e.clone()))
            .build()
            .unwrap(),
    );
    (handle, events)
}

fn call(h: &Handle, outcome: Outcome) {
    call_for(h, outcome, Duration::from_millis(100));
}

fn call_for(h: &Handle, outcome: Outcome, took: Duration) {
    h.try_acquire()
        .expect("call should be permitted")
        .record_with_duration(outcome, took);
}

fn transitions(events: &[Event]) -> Vec<(State, State)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StateTransition { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

fn count<P: Fn(&Event) -> bool>(events: &[Event], p: P) -> usize {
    events.iter().filter(|e| p(e)).count()
}

fn is_failure_rate(e: &Event) -> bool {
    matches!(e, Event::FailureRateExceeded { .. })
}

fn is_slow_rate(e: &Event) -> bool {
    matches!(e, Event::SlowCallRateExceeded { .. })
}

/// Opens a W5 breaker with five failures.
fn open(h: &Handle) {
    for _ in 0..5 {
        call(h, F);
    }
    assert_eq!(h.state(), State::Open);
}

/// Opens, waits out the 5 s, and takes the breaker to half-open by acquiring (and dropping)
/// one permit.
async fn half_open(h: &Handle) {
    open(h);
    advance(secs(6)).await;
    drop(h.try_acquire().unwrap());
    assert_eq!(h.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn case_01_below_minimum_calls_never_trips() {
    let (h, _) = with_events(w5());
    for _ in 0..3 {
        call(&h, F);
    }
    let m = h.metrics();
    assert_eq!(m.state, State::Closed);
    assert_eq!(m.failure_rate, None);
    assert_eq!(m.buffered_calls, 3);
}

#[tokio::test(start_paused = true)]
async fn case_02_opens_on_fifth_outcome_at_60_percent() {
    let (h, events) = with_events(w5());
    for o in [F, F, F, S] {
        call(&h, o);
        assert_eq!(h.state(), State::Closed);
    }
    call(&h, S);
    let m = h.metrics();
    assert_eq!(m.state, State::Open);
    assert_eq!(m.failure_rate, Some(60.0));
    let ev = events.take();
    assert_eq!(count(&ev, is_failure_rate), 1);
    assert_eq!(transitions(&ev), vec![(State::Closed, State::Open)]);
    let err = h.try_acquire().unwrap_err();
    assert!(err.retry_after() <= secs(5));
    assert_eq!(h.metrics().not_permitted_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn case_03_window_really_slides() {
    let (h, _) = with_events(w5());
    for o in [F, S, F, S, S] {
        call(&h, o);
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.metrics().failure_rate, Some(40.0));
    call(&h, F); // oldest F evicted: S,F,S,S,F
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.metrics().failure_rate, Some(40.0));
    call(&h, F); // F,S,S,F,F
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.metrics().failure_rate, Some(60.0));
}

#[tokio::test(start_paused = true)]
async fn case_03b_opens_on_the_50th_failure_after_1000_successes() {
    let (h, _) = with_events(
        base()
            .sliding_window(SlidingWindow::CountBased { size: 100 })
            .minimum_calls(100),
    );
    for _ in 0..1000 {
        call(&h, S);
    }
    for n in 1..=50 {
        assert_eq!(
            h.state(),
            State::Closed,
            "opened early, after {} failures",
            n - 1
        );
        call(&h, F);
    }
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn case_04_time_window_threshold_is_inclusive() {
    let (h, _) = with_events(t20());
    for o in [S, S, S, F, F] {
        call(&h, o);
        advance(secs(1)).await;
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.metrics().failure_rate, Some(40.0));
    call(&h, F); // 3 of 6 = 50 %
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn case_05_time_window_evicts_old_buckets() {
    let (h, _) = with_events(t20());
    for _ in 0..4 {
        call(&h, F);
    }
    advance(secs(21)).await;
    call(&h, S);
    let m = h.metrics();
    assert_eq!(m.state, State::Closed);
    assert_eq!(m.buffered_calls, 1);
    assert_eq!(m.failed_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn case_06_slow_call_rate_opens() {
    let (h, events) = with_events(w5());
    call_for(&h, F, secs(5));
    call_for(&h, S, secs(5));
    call(&h, F);
    call(&h, S);
    call_for(&h, S, secs(5));
    let m = h.metrics();
    assert_eq!(m.state, State::Open);
    assert_eq!(m.slow_call_rate, Some(60.0));
    assert_eq!(m.failure_rate, Some(40.0));
    let ev = events.take();
    assert_eq!(count(&ev, is_slow_rate), 1);
    assert_eq!(count(&ev, is_failure_rate), 0);
}

#[tokio::test(start_paused = true)]
async fn case_07_exactly_the_threshold_is_not_slow() {
    let (h, _) = with_events(w5());
    for _ in 0..5 {
        call_for(&h, S, secs(4));
    }
    assert_eq!(h.metrics().slow_calls, 0);
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn case_07b_slow_measured_from_permit_through_paused_time() {
    let (h, _) = with_events(w5());
    let p = h.try_acquire().unwrap();
    advance(secs(5)).await;
    p.record(S);
    assert_eq!(h.metrics().slow_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn case_08_open_waits_then_half_opens_with_fresh_metrics() {
    let (h, _) = with_events(w5());
    open(&h);
    assert!(h.try_acquire().is_err());
    advance(secs(3)).await;
    let err = h.try_acquire().unwrap_err();
    assert_eq!(err.retry_after(), secs(2));
    assert_eq!(h.metrics().not_permitted_calls, 2);
    advance(secs(3)).await;
    let permit = h.try_acquire().expect("permitted after the wait");
    let m = h.metrics();
    assert_eq!(m.state, State::HalfOpen);
    assert_eq!(m.buffered_calls, 0);
    assert_eq!(m.failed_calls, 0);
    drop(permit);
}

#[tokio::test(start_paused = true)]
async fn case_09_open_for_and_open_until_override_the_wait() {
    let (h, _) = with_events(w5());
    h.open_for(secs(7200));
    advance(secs(3600)).await;
    assert!(h.try_acquire().is_err());
    advance(secs(3601)).await;
    drop(h.try_acquire().unwrap());
    assert_eq!(h.state(), State::HalfOpen);

    let (h, _) = with_events(w5());
    let t = tokio::time::Instant::now() + secs(100);
    h.open_until(t);
    advance(secs(99)).await;
    assert!(h.try_acquire().is_err());
    advance(secs(2)).await;
    drop(h.try_acquire().unwrap());
    assert_eq!(h.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn case_10_open_wait_backoff_grows_and_resets_on_close() {
    let (h, _) = with_events(w5().open_wait(OpenWait::Exponential {
        initial: secs(5),
        multiplier: 1.5,
        max: secs(60),
    }));
    open(&h);
    advance(secs(5)).await;
    // Four failed probes: open again, now for 7.5 s.
    for _ in 0..4 {
        call(&h, F);
    }
    assert_eq!(h.state(), State::Open);
    advance(secs(6)).await;
    assert!(h.try_acquire().is_err(), "still open at +6 s");
    advance(secs(5)).await; // +11 s
    for _ in 0..4 {
        call(&h, S);
    }
    assert_eq!(h.state(), State::Closed);
    // The attempt counter was reset: the next wait is 5 s again.
    open(&h);
    advance(secs(5)).await;
    drop(h.try_acquire().unwrap());
    assert_eq!(h.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn case_11_half_open_admits_exactly_the_permits() {
    let (h, _) = with_events(w5());
    half_open(&h).await;
    let mut held: Vec<_> = (0..4).map(|_| h.try_acquire().unwrap()).collect();
    assert!(h.try_acquire().is_err());
    assert!(h.try_acquire().is_err());
    held.pop(); // released, unrecorded
    let again = h
        .try_acquire()
        .expect("a released permit is available again");
    assert!(h.try_acquire().is_err());
    drop(again);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn case_12_reentering_half_open_restores_all_permits() {
    let (h, _) = with_events(w5());
    half_open(&h).await;
    for _ in 0..4 {
        call(&h, F);
    }
    assert_eq!(h.state(), State::Open);
    advance(secs(6)).await;
    let held: Vec<_> = (0..4).map(|_| h.try_acquire().unwrap()).collect();
    assert_eq!(h.state(), State::HalfOpen);
    assert!(h.try_acquire().is_err());
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn case_13_half_open_reopens_on_failure_rate() {
    let (h, _) = with_events(w5());
    half_open(&h).await;
    for o in [F, F, S] {
        call(&h, o);
        assert_eq!(h.state(), State::HalfOpen);
    }
    call(&h, F);
    let m = h.metrics();
    assert_eq!(m.state, State::Open);
    assert_eq!(m.failure_rate, Some(75.0));
}

#[tokio::test(start_paused = true)]
async fn case_14_half_open_reopens_on_slow_rate() {
    let (h, _) = with_events(w5());
    half_open(&h).await;
    for _ in 0..3 {
        call_for(&h, S, secs(5));
    }
    call_for(&h, S, secs(1));
    let m = h.metrics();
    assert_eq!(m.state, State::Open);
    assert_eq!(m.slow_call_rate, Some(75.0));
    assert_eq!(m.failure_rate, Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn case_15_half_open_closes_and_resets_metrics() {
    let (h, _) = with_events(w5());
    half_open(&h).await;
    for o in [F, S, S, S] {
        call(&h, o);
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.metrics().buffered_calls, 0);
    call(&h, S);
    let m = h.metrics();
    assert_eq!(m.buffered_calls, 1);
    assert_eq!(m.successful_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn case_16_ignored_probe_releases_its_permit() {
    let (h, _) = with_events(w5());
    half_open(&h).await;
    for o in [S, S, S, I] {
        call(&h, o);
    }
    assert_eq!(h.state(), State::HalfOpen);
    assert_eq!(h.metrics().buffered_calls, 3);
    call(&h, F);
    let m = h.metrics();
    assert_eq!(m.state, State::Closed);
}

#[tokio::test(start_paused = true)]
async fn case_17_ignored_probes_never_fill_the_decision_window() {
    let (h, _) = with_events(w5());
    half_open(&h).await;
    for _ in 0..3 {
        call(&h, I);
    }
    for _ in 0..3 {
        call(&h, S);
        assert_eq!(h.state(), State::HalfOpen);
    }
    call(&h, S);
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn case_18_stuck_half_open_ends_after_max_wait() {
    for (then, expected) in [
        (AfterHalfOpenTimeout::Open, State::Open),
        (AfterHalfOpenTimeout::Closed, State::Closed),
    ] {
        let (h, events) = with_events(w5().half_open_max_wait(Some(secs(1)), then));
        half_open(&h).await;
        let stuck: Vec<_> = (0..4).map(|_| h.try_acquire().unwrap()).collect();
        advance(secs(1)).await;
        let next = h.try_acquire();
        assert_eq!(h.state(), expected);
        assert_eq!(next.is_ok(), expected == State::Closed);
        assert!(events.take().iter().any(|e| matches!(
            e,
            Event::StateTransition {
                reason: TransitionReason::HalfOpenTimedOut,
                ..
            }
        )));
        // The stuck probes finish late: they count for nothing.
        for p in stuck {
            p.record(F);
        }
        assert_eq!(h.state(), expected);
    }
}

// Case 19 (a dropped probe future) and case 20 (64 racing callers) are in `service.rs`.

#[tokio::test(start_paused = true)]
async fn case_21_late_outcome_is_counted_but_decides_nothing() {
    let (h, events) = with_events(w5());
    let late = h.try_acquire().unwrap();
    for o in [F, F, F, S, S] {
        call(&h, o);
    }
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.metrics().failed_calls, 3);
    late.record_with_duration(S, Duration::from_millis(1));
    // Counted: the oldest F left the window.
    assert_eq!(h.metrics().failed_calls, 2);
    let ev = events.take();
    assert_eq!(transitions(&ev).len(), 1);
    assert_eq!(count(&ev, is_failure_rate), 1);
    // The deadline was not extended.
    advance(secs(5)).await;
    drop(h.try_acquire().unwrap());
    assert_eq!(h.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn case_22_reset_from_any_state() {
    for setup in 0..4 {
        let (h, events) = with_events(w5());
        match setup {
            0 => open(&h),
            1 => half_open(&h).await,
            2 => h.force_open(),
            _ => call(&h, F),
        }
        events.take();
        h.reset();
        let m = h.metrics();
        assert_eq!(m.state, State::Closed);
        assert_eq!(m.buffered_calls, 0);
        assert_eq!(m.not_permitted_calls, 0);
        assert!(
            events
                .take()
                .iter()
                .any(|e| matches!(e, Event::Reset { .. }))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn case_23_closed_to_half_open_by_hand_is_illegal() {
    let (h, events) = with_events(w5());
    let err = h.half_open().unwrap_err();
    assert_eq!((err.from(), err.to()), (State::Closed, State::HalfOpen));
    assert_eq!(h.state(), State::Closed);
    assert!(events.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn case_24_forced_open_never_leaves_by_itself() {
    let (h, _) = with_events(w5());
    h.force_open();
    assert!(h.try_acquire().is_err());
    advance(secs(60)).await;
    assert!(h.try_acquire().is_err());
    assert_eq!(h.state(), State::ForcedOpen);
    assert_eq!(h.metrics().not_permitted_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn case_25_disabled_permits_and_records_nothing() {
    let (h, events) = with_events(w5());
    h.disable();
    events.take();
    for _ in 0..20 {
        call(&h, F);
    }
    let m = h.metrics();
    assert_eq!(m.state, State::Disabled);
    assert_eq!(m.buffered_calls, 0);
    assert!(events.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn case_26_metrics_only_emits_once_and_never_transitions() {
    let (h, events) = with_events(w5());
    h.metrics_only();
    events.take();
    for o in [F, F, F, S, S] {
        call(&h, o);
    }
    let m = h.metrics();
    assert_eq!(m.state, State::MetricsOnly);
    assert_eq!(m.failure_rate, Some(60.0));
    call(&h, F);
    let ev = events.take();
    assert_eq!(count(&ev, is_failure_rate), 1);
    assert!(transitions(&ev).is_empty());
}

#[tokio::test(start_paused = true)]
async fn case_27_each_real_transition_emits_exactly_one_event() {
    let (h, events) = with_events(w5());
    h.close(); // already closed
    assert!(events.take().is_empty());
    h.force_open();
    h.force_open();
    h.disable();
    h.close();
    assert_eq!(
        transitions(&events.take()),
        vec![
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Disabled),
            (State::Disabled, State::Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn case_29_automatic_transition_timer() {
    let (h, _) = with_events(w5().automatic_transition(true));
    let mut states = h.subscribe();
    open(&h);
    assert_eq!(*states.borrow_and_update(), State::Open);
    advance(secs(5)).await;
    states.changed().await.unwrap();
    assert_eq!(*states.borrow_and_update(), State::HalfOpen);

    // A manual transition before the deadline cancels the pending timer.
    let (h, _) = with_events(w5().automatic_transition(true));
    open(&h);
    advance(secs(2)).await;
    h.force_open();
    advance(secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(h.state(), State::ForcedOpen);
}

#[tokio::test(start_paused = true)]
async fn case_30_minimum_calls_clamped_to_window() {
    let (h, _) = with_events(
        base()
            .sliding_window(SlidingWindow::CountBased { size: 5 })
            .minimum_calls(10),
    );
    open(&h);
}

#[tokio::test(start_paused = true)]
async fn any_failure_half_open_decision() {
    let (h, _) = with_events(
        w5().half_open_decision(sinew_resilience::circuit_breaker::HalfOpenDecision::AnyFailure),
    );
    half_open(&h).await;
    call(&h, S);
    call(&h, F);
    assert_eq!(h.state(), State::Open);
}
