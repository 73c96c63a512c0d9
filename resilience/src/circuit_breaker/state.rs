//! The shared breaker state: one atomic state word read on every call, lock-free windows, and a
//! mutex taken only to change state.

use std::fmt;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::config::{AfterHalfOpenTimeout, Config, HalfOpenDecision, SlidingWindow};
use super::event::{Event, Metrics, State, TransitionReason};
use super::permits::Permits;
use super::window::{CountWindow, Counts, TimeWindow, Window, encode};
use crate::classify::Outcome;
use crate::error::CircuitOpen;

const TAG_BITS: u32 = 8;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

const CLOSED_TAG: u64 = State::Closed.to_tag();
const SUCCESS_CODE: u8 = encode(false, false);

const fn pack(generation: u64, state: State) -> u64 {
    (generation << TAG_BITS) | state.to_tag()
}

const fn generation(word: u64) -> u64 {
    word >> TAG_BITS
}

const fn state_of(word: u64) -> State {
    State::from_tag(word & TAG_MASK)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A manual transition that the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal circuit breaker state transition from {from} to {to}")]
pub struct IllegalTransition {
    from: State,
    to: State,
}

impl IllegalTransition {
    /// The state the breaker was in (and still is).
    pub const fn from(&self) -> State {
        self.from
    }

    /// The state that was asked for.
    pub const fn to(&self) -> State {
        self.to
    }
}

#[derive(Debug, Default)]
struct Control {
    consecutive_opens: u32,
    timer: Option<tokio::task::AbortHandle>,
}

struct Transition {
    from: State,
    to: State,
    reason: TransitionReason,
}

/// Keeps a field on its own cache line, so that threads writing one hot field (the window)
/// do not slow down threads reading another (the state word).
#[derive(Debug)]
#[repr(align(64))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

pub(crate) struct Shared {
    /// Read by every call; written only on transitions.
    state: Padded<AtomicU64>,
    /// Written by every recorded call.
    closed: Padded<Window>,
    /// Written by every rejected call.
    not_permitted: Padded<AtomicU64>,
    config: Config,
    minimum_calls: u64,
    track_duration: bool,
    base: Instant,
    open_until: AtomicU64,
    half_open_until: AtomicU64,
    permits: Permits,
    half_open: CountWindow,
    half_open_metrics: AtomicBool,
    rate_exceeded: AtomicBool,
    control: Mutex<Control>,
    watch: watch::Sender<State>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerState")
            .field("name", &self.config.name)
            .field("state", &state_of(self.state.load(Relaxed)))
            .finish_non_exhaustive()
    }
}

/// The breaker state, reference-counted or (for breakers that live as long as the process)
/// `'static`, which saves the two atomic reference-count updates per call.
#[derive(Debug, Clone)]
pub(crate) enum SharedRef {
    Counted(Arc<Shared>),
    Static(&'static Shared),
}

impl std::ops::Deref for SharedRef {
    type Target = Shared;

    #[inline(always)]
    fn deref(&self) -> &Shared {
        match self {
            Self::Counted(arc) => arc,
            Self::Static(shared) => shared,
        }
    }
}

enum WeakRef {
    Counted(Weak<Shared>),
    Static(&'static Shared),
}

impl WeakRef {
    fn upgrade(&self) -> Option<SharedRef> {
        match self {
            Self::Counted(weak) => weak.upgrade().map(SharedRef::Counted),
            Self::Static(shared) => Some(SharedRef::Static(shared)),
        }
    }
}

impl SharedRef {
    fn downgrade(&self) -> WeakRef {
        match self {
            Self::Counted(arc) => WeakRef::Counted(Arc::downgrade(arc)),
            Self::Static(shared) => WeakRef::Static(shared),
        }
    }
}

/// What a permit was granted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum PermitKind {
    Closed = 0,
    HalfOpen = 1,
    MetricsOnly = 2,
    Untracked = 3,
}

impl Shared {
    fn new(config: Config) -> Self {
        let closed = match config.window {
            SlidingWindow::CountBased { size } => Window::Count(CountWindow::new(size)),
            SlidingWindow::TimeBased { window } => {
                let (buckets, width) = Config::time_buckets(window);
                Window::Time(TimeWindow::new(buckets, width))
            }
        };
        Self {
            minimum_calls: u64::from(config.effective_minimum_calls()),
            track_duration: config.slow_call_duration.is_some(),
            half_open: CountWindow::new(config.half_open_permits),
            closed: Padded(closed),
            config,
            base: Instant::now(),
            state: Padded(AtomicU64::new(pack(0, State::Closed))),
            open_until: AtomicU64::new(0),
            half_open_until: AtomicU64::new(u64::MAX),
            permits: Permits::new(),
            half_open_metrics: AtomicBool::new(false),
            not_permitted: Padded(AtomicU64::new(0)),
            rate_exceeded: AtomicBool::new(false),
            control: Mutex::new(Control::default()),
            watch: watch::Sender::new(State::Closed),
        }
    }
}

impl SharedRef {
    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The closed state without slow-call tracking is the steady state of every healthy
    /// service: decide it inline from one load, and keep everything else out of line so the
    /// caller's hot loop stays small and the permit stays in registers.
    #[inline(always)]
    fn acquire(&self) -> Result<Permit, CircuitOpen> {
        let word = self.state.load(Acquire);
        if word & TAG_MASK == CLOSED_TAG && !self.track_duration {
            return Ok(Permit::new(
                self.clone(),
                generation(word),
                PermitKind::Closed,
                0,
            ));
        }
        self.acquire_slow()
    }

    #[inline(never)]
    fn acquire_slow(&self) -> Result<Permit, CircuitOpen> {
        loop {
            let word = self.state.load(Acquire);
            let generation = generation(word);
            let kind = match state_of(word) {
                State::Closed => PermitKind::Closed,
                State::Disabled => PermitKind::Untracked,
                State::MetricsOnly => PermitKind::MetricsOnly,
                State::Open => {
                    let now = self.now();
                    let until = self.open_until.load(Acquire);
                    if now < until {
                        return Err(self.reject(State::Open, Duration::from_nanos(until - now)));
                    }
                    self.transition_if(generation, State::HalfOpen, TransitionReason::WaitElapsed);
                    continue;
                }
                State::HalfOpen => {
                    if self.now() >= self.half_open_until.load(Acquire) {
                        let to = match self.config.after_half_open_timeout {
                            AfterHalfOpenTimeout::Open => State::Open,
                            AfterHalfOpenTimeout::Closed => State::Closed,
                        };
                        self.transition_if(generation, to, TransitionReason::HalfOpenTimedOut);
                        continue;
                    }
                    if !self.permits.try_acquire(generation) {
                        return Err(self.reject(State::HalfOpen, Duration::ZERO));
                    }
                    PermitKind::HalfOpen
                }
                State::ForcedOpen => {
                    return Err(self.reject(State::ForcedOpen, self.config.open_wait.wait(1)));
                }
            };
            let start = if self.track_duration && kind != PermitKind::Untracked {
                self.now()
            } else {
                0
            };
            return Ok(Permit::new(self.clone(), generation, kind, start));
        }
    }

    #[cold]
    fn reject(&self, state: State, retry_after: Duration) -> CircuitOpen {
        self.not_permitted.fetch_add(1, Relaxed);
        if !self.config.listeners.is_empty() {
            self.emit(&Event::CallNotPermitted {
                name: self.config.name.clone(),
                state,
                retry_after,
            });
        }
        tracing::trace!(breaker = %self.config.name, %state, ?retry_after, "call not permitted");
        CircuitOpen::new(retry_after)
    }

    /// A success recorded in the closed state of a count-based window, without slow-call
    /// tracking: one state load and one `fetch_add`, inline. Anything else takes [`Self::record`].
    #[inline(always)]
    fn record_closed_success(&self, generation: u64) {
        let word = self.state.load(Acquire);
        if let (true, Window::Count(window)) =
            (super::state::generation(word) == generation, &*self.closed)
        {
            let counts = window.record(SUCCESS_CODE);
            if counts.failed != 0 || counts.slow != 0 {
                self.evaluate_closed(generation, PermitKind::Closed, counts);
            }
            return;
        }
        self.record(generation, PermitKind::Closed, Outcome::Success, None);
    }

    #[inline(never)]
    fn record(
        &self,
        generation: u64,
        kind: PermitKind,
        outcome: Outcome,
        duration: Option<Duration>,
    ) {
        if kind == PermitKind::Untracked {
            return;
        }
        let slow = match (self.config.slow_call_duration, duration) {
            (Some(limit), Some(took)) => took > limit,
            _ => false,
        };
        let code = match outcome {
            Outcome::Success => encode(false, slow),
            Outcome::Failure => encode(true, slow),
            Outcome::Ignored => {
                if kind == PermitKind::HalfOpen {
                    self.permits.release(generation);
                }
                return;
            }
        };
        let word = self.state.load(Acquire);
        if super::state::generation(word) != generation {
            // A call admitted before the last transition. While open, count it (the metrics
            // still describe the window that opened the breaker) but decide nothing: no second
            // open event and no longer wait.
            if kind == PermitKind::Closed
                && state_of(word) == State::Open
                && !self.half_open_metrics.load(Relaxed)
            {
                let now = if self.closed.needs_clock() {
                    self.now()
                } else {
                    0
                };
                self.closed.record(code, now);
            }
            return;
        }
        match kind {
            PermitKind::Closed | PermitKind::MetricsOnly => {
                let now = if self.closed.needs_clock() {
                    self.now()
                } else {
                    0
                };
                let counts = self.closed.record(code, now);
                // A window without failed or slow calls cannot trip, whatever its size: skip
                // the rate maths for the steady state of a healthy service.
                if counts.failed != 0 || counts.slow != 0 || kind == PermitKind::MetricsOnly {
                    self.evaluate_closed(generation, kind, counts);
                }
            }
            PermitKind::HalfOpen => {
                let counts = self.half_open.record(code);
                self.evaluate_half_open(generation, code, counts);
            }
            PermitKind::Untracked => {}
        }
    }

    fn rates(&self, counts: Counts, minimum: u64) -> Option<(f64, f64)> {
        if counts.calls == 0 || counts.calls < minimum {
            return None;
        }
        let calls = counts.calls as f64;
        Some((
            counts.failed as f64 * 100.0 / calls,
            counts.slow as f64 * 100.0 / calls,
        ))
    }

    fn exceeded(&self, counts: Counts, minimum: u64) -> Option<(bool, bool, f64, f64)> {
        let (failure, slow) = self.rates(counts, minimum)?;
        let f = failure >= self.config.failure_rate_threshold;
        let s = self.track_duration && slow >= self.config.slow_call_rate_threshold;
        (f || s).then_some((f, s, failure, slow))
    }

    fn evaluate_closed(&self, generation: u64, kind: PermitKind, counts: Counts) {
        let Some((failed, slow, failure_rate, slow_rate)) =
            self.exceeded(counts, self.minimum_calls)
        else {
            if kind == PermitKind::MetricsOnly {
                self.rate_exceeded.store(false, Relaxed);
            }
            return;
        };
        if kind == PermitKind::MetricsOnly {
            if !self.rate_exceeded.swap(true, Relaxed) {
                self.emit_rates(failed, slow, failure_rate, slow_rate);
            }
            return;
        }
        let reason = match (failed, slow) {
            (true, true) => TransitionReason::FailureAndSlowCallRate,
            (true, false) => TransitionReason::FailureRate,
            _ => TransitionReason::SlowCallRate,
        };
        let transition = {
            let mut control = self.control();
            let word = self.state.load(Acquire);
            if super::state::generation(word) != generation || state_of(word) != State::Closed {
                return;
            }
            self.transition_locked(&mut control, word, State::Open, reason, None)
        };
        tracing::debug!(
            breaker = %self.config.name,
            failure_rate,
            slow_call_rate = slow_rate,
            calls = counts.calls,
            "circuit breaker threshold reached"
        );
        self.emit_rates(failed, slow, failure_rate, slow_rate);
        self.emit_transition(transition);
    }

    fn evaluate_half_open(&self, generation: u64, code: u8, counts: Counts) {
        let permits = u64::from(self.config.half_open_permits);
        let (to, reason) = match self.config.half_open_decision {
            HalfOpenDecision::AnyFailure if code & 0b011 != 0 => {
                (State::Open, TransitionReason::ProbesFailed)
            }
            _ if counts.calls < permits => return,
            HalfOpenDecision::AnyFailure => (State::Closed, TransitionReason::ProbesSucceeded),
            HalfOpenDecision::Rate => match self.exceeded(counts, permits) {
                Some(_) => (State::Open, TransitionReason::ProbesFailed),
                None => (State::Closed, TransitionReason::ProbesSucceeded),
            },
        };
        self.transition_if(generation, to, reason);
    }

    fn emit_rates(&self, failed: bool, slow: bool, failure_rate: f64, slow_rate: f64) {
        if self.config.listeners.is_empty() {
            return;
        }
        if failed {
            self.emit(&Event::FailureRateExceeded {
                name: self.config.name.clone(),
                rate: failure_rate,
            });
        }
        if slow {
            self.emit(&Event::SlowCallRateExceeded {
                name: self.config.name.clone(),
                rate: slow_rate,
            });
        }
    }

    /// Moves from the state of `expected_generation` to `to`, unless another thread already
    /// moved on.
    fn transition_if(&self, expected_generation: u64, to: State, reason: TransitionReason) {
        let transition = {
            let mut control = self.control();
            let word = self.state.load(Acquire);
            if generation(word) != expected_generation {
                return;
            }
            self.transition_locked(&mut control, word, to, reason, None)
        };
        self.emit_transition(transition);
    }

    /// Changes state. The caller holds the control lock, so every field written here is
    /// visible to whoever loads the new state word (`Release` below, `Acquire` in readers).
    fn transition_locked(
        &self,
        control: &mut Control,
        word: u64,
        to: State,
        reason: TransitionReason,
        open_until: Option<u64>,
    ) -> Option<Transition> {
        let from = state_of(word);
        let now = self.now();
        if from == to {
            if let (State::Open, Some(until)) = (to, open_until) {
                self.open_until.store(until, Release);
                self.schedule(
                    control,
                    generation(word),
                    until,
                    State::HalfOpen,
                    TransitionReason::WaitElapsed,
                );
            }
            return None;
        }
        let next = generation(word) + 1;
        if let Some(timer) = control.timer.take() {
            timer.abort();
        }
        match to {
            State::Open => {
                let until = open_until.unwrap_or_else(|| {
                    control.consecutive_opens = control.consecutive_opens.saturating_add(1);
                    now.saturating_add(nanos(self.config.open_wait.wait(control.consecutive_opens)))
                });
                self.open_until.store(until, Release);
                self.schedule(
                    control,
                    next,
                    until,
                    State::HalfOpen,
                    TransitionReason::WaitElapsed,
                );
            }
            State::HalfOpen => {
                self.half_open.reset();
                self.half_open_metrics.store(true, Relaxed);
                self.permits.reset(next, self.config.half_open_permits);
                let until = self
                    .config
                    .half_open_max_wait
                    .map_or(u64::MAX, |d| now.saturating_add(nanos(d)));
                self.half_open_until.store(until, Release);
                if until != u64::MAX {
                    let after = match self.config.after_half_open_timeout {
                        AfterHalfOpenTimeout::Open => State::Open,
                        AfterHalfOpenTimeout::Closed => State::Closed,
                    };
                    self.schedule(
                        control,
                        next,
                        until,
                        after,
                        TransitionReason::HalfOpenTimedOut,
                    );
                }
            }
            State::Closed | State::MetricsOnly => {
                if to == State::Closed {
                    control.consecutive_opens = 0;
                }
                self.closed.reset();
                self.half_open_metrics.store(false, Relaxed);
                self.rate_exceeded.store(false, Relaxed);
            }
            State::Disabled | State::ForcedOpen => {}
        }
        self.state.store(pack(next, to), Release);
        self.watch.send_replace(to);
        Some(Transition { from, to, reason })
    }

    /// Arms the automatic transition timer, when enabled and a runtime is at hand.
    fn schedule(
        &self,
        control: &mut Control,
        generation: u64,
        at: u64,
        to: State,
        reason: TransitionReason,
    ) {
        if !self.config.automatic_transition {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(breaker = %self.config.name, "no tokio runtime: automatic transition falls back to the next call");
            return;
        };
        let deadline = self.base + Duration::from_nanos(at);
        let weak = self.downgrade();
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(shared) = weak.upgrade() {
                shared.transition_if(generation, to, reason);
            }
        });
        if let Some(old) = control.timer.replace(task.abort_handle()) {
            old.abort();
        }
    }

    fn emit_transition(&self, transition: Option<Transition>) {
        let Some(Transition { from, to, reason }) = transition else {
            return;
        };
        match to {
            State::Open | State::ForcedOpen => {
                tracing::warn!(breaker = %self.config.name, %from, %to, ?reason, "circuit breaker state change");
            }
            _ => {
                tracing::info!(breaker = %self.config.name, %from, %to, ?reason, "circuit breaker state change")
            }
        }
        if !self.config.listeners.is_empty() {
            self.emit(&Event::StateTransition {
                name: self.config.name.clone(),
                from,
                to,
                reason,
            });
        }
    }

    fn emit(&self, event: &Event) {
        for listener in &self.config.listeners {
            listener(event);
        }
    }

    fn metrics(&self) -> Metrics {
        let state = state_of(self.state.load(Acquire));
        let (counts, minimum) = if self.half_open_metrics.load(Relaxed) {
            (
                self.half_open.counts(),
                u64::from(self.config.half_open_permits),
            )
        } else {
            (self.closed.counts(self.now()), self.minimum_calls)
        };
        let rates = self.rates(counts, minimum);
        Metrics {
            state,
            failure_rate: rates.map(|r| r.0),
            slow_call_rate: rates.map(|r| r.1),
            buffered_calls: counts.calls,
            failed_calls: counts.failed,
            successful_calls: counts.calls.saturating_sub(counts.failed),
            slow_calls: counts.slow,
            not_permitted_calls: self.not_permitted.load(Relaxed),
        }
    }

    fn manual(&self, to: State, open_until: Option<u64>) -> Result<(), IllegalTransition> {
        let transition = {
            let mut control = self.control();
            let word = self.state.load(Acquire);
            let from = state_of(word);
            if from == State::Closed && to == State::HalfOpen {
                return Err(IllegalTransition { from, to });
            }
            self.transition_locked(&mut control, word, to, TransitionReason::Manual, open_until)
        };
        self.emit_transition(transition);
        Ok(())
    }
}

/// A handle on one circuit breaker's shared state: read its state and metrics, watch it, and
/// drive it by hand.
///
/// # Clone
///
/// Clones share the breaker: every [`CircuitBreaker`](super::CircuitBreaker) service built from
/// a handle (or from a layer holding it) counts into, and is gated by, the same state.
#[derive(Debug, Clone)]
pub struct Handle {
    shared: SharedRef,
}

impl Handle {
    /// A new breaker in the closed state.
    pub fn new(config: Config) -> Self {
        Self {
            shared: SharedRef::Counted(Arc::new(Shared::new(config))),
        }
    }

    /// A new breaker that lives until the process exits: its memory (a few hundred bytes plus
    /// one byte per call in a count-based window) is never freed.
    ///
    /// Calls through it skip the two atomic reference-count updates that a [`Handle::new`]
    /// breaker pays per call (about 10 ns on a 2-vCPU VM; see `docs/benchmarks.md`). Use it for
    /// the breakers you create once at startup. Never create one per request, per connection or
    /// per key: each call leaks another breaker.
    pub fn new_static(config: Config) -> Self {
        Self {
            shared: SharedRef::Static(Box::leak(Box::new(Shared::new(config)))),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The breaker's configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        state_of(self.shared.state.load(Acquire))
    }

    /// A snapshot of the state and counters.
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    /// A receiver that sees every state change, for health endpoints.
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.shared.watch.subscribe()
    }

    /// Asks to make one call. On success, report the call's outcome through the returned
    /// [`Permit`]; dropping it unreported gives a half-open probe slot back and records nothing.
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the breaker does not admit calls now.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        self.shared.acquire()
    }

    /// Goes to [`State::ForcedOpen`]: every call is rejected until another manual transition.
    pub fn force_open(&self) {
        let _ = self.shared.manual(State::ForcedOpen, None);
    }

    /// Goes to [`State::Disabled`]: every call passes and nothing is recorded.
    pub fn disable(&self) {
        let _ = self.shared.manual(State::Disabled, None);
    }

    /// Goes to [`State::MetricsOnly`]: every call passes and is recorded, but the breaker never
    /// opens by itself.
    pub fn metrics_only(&self) {
        let _ = self.shared.manual(State::MetricsOnly, None);
    }

    /// Goes to [`State::Closed`] with an empty window.
    pub fn close(&self) {
        let _ = self.shared.manual(State::Closed, None);
    }

    /// Opens for `duration` instead of the configured wait, then half-opens as usual.
    pub fn open_for(&self, duration: Duration) {
        let until = self.shared.now().saturating_add(nanos(duration));
        let _ = self.shared.manual(State::Open, Some(until));
    }

    /// Opens until `deadline`, then half-opens as usual.
    pub fn open_until(&self, deadline: Instant) {
        let until = nanos(deadline.saturating_duration_since(self.shared.base));
        let _ = self.shared.manual(State::Open, Some(until));
    }

    /// Half-opens now.
    ///
    /// # Errors
    ///
    /// [`IllegalTransition`] from the closed state, which may only open.
    pub fn half_open(&self) -> Result<(), IllegalTransition> {
        self.shared.manual(State::HalfOpen, None)
    }

    /// Returns to [`State::Closed`] from any state, empties the window and the rejection
    /// counter, and emits [`Event::Reset`].
    pub fn reset(&self) {
        let shared = &self.shared;
        let transition = {
            let mut control = shared.control();
            let word = shared.state.load(Acquire);
            let t = shared.transition_locked(
                &mut control,
                word,
                State::Closed,
                TransitionReason::Manual,
                None,
            );
            control.consecutive_opens = 0;
            shared.closed.reset();
            shared.half_open_metrics.store(false, Relaxed);
            shared.not_permitted.store(0, Relaxed);
            t
        };
        tracing::info!(breaker = %shared.config.name, "circuit breaker reset");
        shared.emit_transition(transition);
        if !shared.config.listeners.is_empty() {
            shared.emit(&Event::Reset {
                name: shared.config.name.clone(),
            });
        }
    }
}

/// Permission to make one call through a breaker. Report the result with [`Permit::record`];
/// dropping a permit unreported records nothing (and returns a half-open probe slot).
#[must_use = "report the call's outcome with `record`, or drop the permit to record nothing"]
pub struct Permit {
    shared: SharedRef,
    /// `generation << 8 | kind`. Every field is a whole word: the permit is written into the
    /// response future and read back by its `poll`, and byte-sized fields next to word-sized
    /// reads defeat the CPU's store-to-load forwarding (a measurable stall per call).
    meta: u64,
    /// When the permit was granted, in the breaker's nanoseconds (slow-call tracking only).
    start: u64,
}

/// The `kind` byte of a permit whose outcome was reported (its drop does nothing).
const SETTLED: u64 = 0xff;

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.shared.config.name)
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl Permit {
    #[inline(always)]
    fn new(shared: SharedRef, generation: u64, kind: PermitKind, start: u64) -> Self {
        // The generation comes from the state word shifted right by 8: it fits in 56 bits.
        Self {
            shared,
            meta: generation << 8 | kind as u64,
            start,
        }
    }

    #[inline(always)]
    const fn generation(&self) -> u64 {
        self.meta >> 8
    }

    /// The kind, or `None` once settled.
    #[inline(always)]
    const fn kind(&self) -> Option<PermitKind> {
        match self.meta & 0xff {
            0 => Some(PermitKind::Closed),
            1 => Some(PermitKind::HalfOpen),
            2 => Some(PermitKind::MetricsOnly),
            3 => Some(PermitKind::Untracked),
            _ => None,
        }
    }

    /// Marks the outcome reported; returns the kind it had.
    #[inline(always)]
    fn settle(&mut self) -> Option<PermitKind> {
        let kind = self.kind();
        self.meta |= SETTLED;
        kind
    }

    /// Records the call's outcome. With slow-call tracking on, the duration is measured from
    /// when the permit was granted.
    #[inline(always)]
    pub fn record(mut self, outcome: Outcome) {
        self.record_in_place(outcome);
    }

    /// [`record`](Self::record) without moving the permit: the response future records through
    /// a reference, because moving the permit out of it costs a store-forwarding stall per call
    /// (a 16-byte load of what was written as two 8-byte stores). A second call records nothing.
    #[inline(always)]
    pub(crate) fn record_in_place(&mut self, outcome: Outcome) {
        if self.meta & 0xff == PermitKind::Closed as u64
            && matches!(outcome, Outcome::Success)
            && !self.shared.track_duration
        {
            self.meta |= SETTLED;
            self.shared.record_closed_success(self.generation());
            return;
        }
        self.record_slow(outcome);
    }

    #[inline(never)]
    fn record_slow(&mut self, outcome: Outcome) {
        let duration = if self.shared.track_duration {
            Some(Duration::from_nanos(
                self.shared.now().saturating_sub(self.start),
            ))
        } else {
            None
        };
        if let Some(kind) = self.settle() {
            self.shared
                .record(self.generation(), kind, outcome, duration);
        }
    }

    /// Records the call's outcome with a duration you measured yourself.
    pub fn record_with_duration(mut self, outcome: Outcome, duration: Duration) {
        if let Some(kind) = self.settle() {
            self.shared
                .record(self.generation(), kind, outcome, Some(duration));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.meta & 0xff == PermitKind::HalfOpen as u64 {
            self.shared.permits.release(self.generation());
        }
    }
}
