use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass and are recorded.
    Closed,
    /// Calls are rejected until the wait ends.
    Open,
    /// A limited number of probe calls pass; their outcomes decide between closing and opening.
    HalfOpen,
    /// Set by hand: every call passes, nothing is recorded, no events.
    Disabled,
    /// Set by hand: every call is rejected, and the breaker never leaves this state by itself.
    ForcedOpen,
    /// Set by hand: every call passes and is recorded, rate-exceeded events fire, but the
    /// breaker never changes state by itself.
    MetricsOnly,
}

impl State {
    pub(crate) const fn to_tag(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::Disabled => 3,
            Self::ForcedOpen => 4,
            Self::MetricsOnly => 5,
        }
    }

    pub(crate) const fn from_tag(tag: u64) -> Self {
        match tag {
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::Disabled,
            4 => Self::ForcedOpen,
            5 => Self::MetricsOnly,
            _ => Self::Closed,
        }
    }

    /// The state's name in `snake_case`, for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Disabled => "disabled",
            Self::ForcedOpen => "forced_open",
            Self::MetricsOnly => "metrics_only",
        }
    }

    /// `true` when calls may pass (closed, half-open, disabled, metrics-only).
    pub const fn admits_calls(self) -> bool {
        !matches!(self, Self::Open | Self::ForcedOpen)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure rate reached its threshold.
    FailureRate,
    /// The slow-call rate reached its threshold.
    SlowCallRate,
    /// Both rates reached their thresholds.
    FailureAndSlowCallRate,
    /// The open wait ended.
    WaitElapsed,
    /// The half-open probes succeeded.
    ProbesSucceeded,
    /// The half-open probes failed.
    ProbesFailed,
    /// The half-open probes did not finish within the max wait.
    HalfOpenTimedOut,
    /// A manual control.
    Manual,
}

/// Something that happened to a circuit breaker, delivered to the listeners registered with
/// [`ConfigBuilder::on_event`](super::ConfigBuilder::on_event).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The breaker changed state.
    StateTransition {
        /// The breaker's name.
        name: Arc<str>,
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: TransitionReason,
    },
    /// The failure rate reached its threshold (once per crossing in metrics-only mode).
    FailureRateExceeded {
        /// The breaker's name.
        name: Arc<str>,
        /// The failure rate, in percent.
        rate: f64,
    },
    /// The slow-call rate reached its threshold.
    SlowCallRateExceeded {
        /// The breaker's name.
        name: Arc<str>,
        /// The slow-call rate, in percent.
        rate: f64,
    },
    /// [`Handle::reset`](super::Handle::reset) was called.
    Reset {
        /// The breaker's name.
        name: Arc<str>,
    },
    /// A call was rejected.
    CallNotPermitted {
        /// The breaker's name.
        name: Arc<str>,
        /// The breaker's state at the time.
        state: State,
        /// The suggested wait.
        retry_after: Duration,
    },
}

/// A snapshot of a breaker's state and counters, cheap to take (a handful of atomic loads).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Current state.
    pub state: State,
    /// Failure rate in percent, or `None` while fewer than the minimum number of calls are
    /// in the window.
    pub failure_rate: Option<f64>,
    /// Slow-call rate in percent, or `None` below the minimum number of calls.
    pub slow_call_rate: Option<f64>,
    /// Calls in the current window.
    pub buffered_calls: u64,
    /// Failed calls in the current window.
    pub failed_calls: u64,
    /// Successful calls in the current window.
    pub successful_calls: u64,
    /// Slow calls (failed or not) in the current window.
    pub slow_calls: u64,
    /// Calls rejected since the breaker was created.
    pub not_permitted_calls: u64,
}
