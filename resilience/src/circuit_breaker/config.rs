use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::event::Event;
use crate::error::ConfigError;

/// Largest count-based window. Counters are packed in 16-bit fields with headroom for calls
/// still being recorded.
pub(crate) const MAX_COUNT_WINDOW: u32 = 1 << 15;
/// Largest number of half-open probes (the half-open decision window is a count window).
pub(crate) const MAX_HALF_OPEN_PERMITS: u32 = MAX_COUNT_WINDOW;
const MAX_TIME_BUCKETS: u64 = 60;

/// Which calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlidingWindow {
    /// The last `size` calls. Each new call pushes the oldest one out.
    CountBased {
        /// Number of calls in the window (1..=32768).
        size: u32,
    },
    /// The calls of the last `window` of time, kept in up to 60 buckets (one per second for
    /// windows of 10 s to 60 s). Old buckets leave the window as time passes, with or without
    /// calls.
    TimeBased {
        /// Length of the window.
        window: Duration,
    },
}

/// How long the breaker stays open before it lets probes through.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum OpenWait {
    /// Always the same wait.
    Fixed(Duration),
    /// `initial · multiplier^(n−1)` for the n-th consecutive opening, capped at `max`. A close
    /// resets `n`.
    Exponential {
        /// Wait after the first opening.
        initial: Duration,
        /// Growth per consecutive opening (at least 1.0).
        multiplier: f64,
        /// Longest wait.
        max: Duration,
    },
}

impl OpenWait {
    /// The wait after the `attempt`-th consecutive opening (1-based).
    pub fn wait(&self, attempt: u32) -> Duration {
        match *self {
            Self::Fixed(d) => d,
            Self::Exponential {
                initial,
                multiplier,
                max,
            } => {
                let exp = attempt.saturating_sub(1).min(1024) as i32;
                let secs = initial.as_secs_f64() * multiplier.powi(exp);
                if secs.is_finite() && secs < max.as_secs_f64() {
                    Duration::from_secs_f64(secs)
                } else {
                    max
                }
            }
        }
    }
}

/// How a half-open breaker decides whether the service has recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HalfOpenDecision {
    /// Wait for every probe to finish, then compare their failure and slow-call rates with the
    /// thresholds (resilience4j).
    #[default]
    Rate,
    /// Re-open on the first failed probe; close once every probe has succeeded (Polly, opossum).
    AnyFailure,
}

/// The state a half-open breaker moves to when its probes do not finish within
/// [`ConfigBuilder::half_open_max_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AfterHalfOpenTimeout {
    /// Open again (the safe choice).
    #[default]
    Open,
    /// Close.
    Closed,
}

pub(crate) type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// Circuit breaker settings, validated. Build one with [`Config::builder`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | name | `"default"` |
/// | sliding window | count-based, 100 calls |
/// | minimum calls before any rate counts | 20 |
/// | failure-rate threshold | 50 % |
/// | slow calls | not tracked |
/// | slow-call rate threshold | 100 % (when tracked) |
/// | wait in open | fixed 30 s |
/// | half-open probes | 5, decided on their failure rate |
/// | half-open max wait | 60 s, then open again |
/// | automatic open → half-open timer | off (the first call after the wait probes) |
#[derive(Clone)]
pub struct Config {
    pub(crate) name: Arc<str>,
    pub(crate) window: SlidingWindow,
    pub(crate) minimum_calls: u32,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) open_wait: OpenWait,
    pub(crate) half_open_permits: u32,
    pub(crate) half_open_decision: HalfOpenDecision,
    pub(crate) half_open_max_wait: Option<Duration>,
    pub(crate) after_half_open_timeout: AfterHalfOpenTimeout,
    pub(crate) automatic_transition: bool,
    pub(crate) listeners: Vec<Listener>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("failure_rate_threshold", &self.failure_rate_threshold)
            .field("slow_call_rate_threshold", &self.slow_call_rate_threshold)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("open_wait", &self.open_wait)
            .field("half_open_permits", &self.half_open_permits)
            .field("half_open_decision", &self.half_open_decision)
            .field("half_open_max_wait", &self.half_open_max_wait)
            .field("after_half_open_timeout", &self.after_half_open_timeout)
            .field("automatic_transition", &self.automatic_transition)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: Arc::from("default"),
            window: SlidingWindow::CountBased { size: 100 },
            minimum_calls: 20,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: None,
            open_wait: OpenWait::Fixed(Duration::from_secs(30)),
            half_open_permits: 5,
            half_open_decision: HalfOpenDecision::Rate,
            half_open_max_wait: Some(Duration::from_secs(60)),
            after_half_open_timeout: AfterHalfOpenTimeout::Open,
            automatic_transition: false,
            listeners: Vec::new(),
        }
    }
}

impl Config {
    /// A builder starting from the [defaults](Config#default).
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Self::default(),
        }
    }

    /// The breaker's name, used in events and `tracing` fields.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The minimum number of calls before rates count, after clamping to a count window's size.
    pub(crate) fn effective_minimum_calls(&self) -> u32 {
        match self.window {
            SlidingWindow::CountBased { size } => self.minimum_calls.min(size),
            SlidingWindow::TimeBased { .. } => self.minimum_calls,
        }
    }

    /// Buckets and bucket width (nanoseconds) of a time-based window.
    pub(crate) fn time_buckets(window: Duration) -> (usize, u64) {
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let secs = window.as_secs();
        let buckets = if secs < 10 {
            10
        } else {
            secs.min(MAX_TIME_BUCKETS)
        };
        (buckets as usize, (nanos / buckets).max(1))
    }
}

/// Builds a validated [`Config`].
///
/// ```
/// use std::time::Duration;
/// use sinew_resilience::circuit_breaker::{Config, OpenWait, SlidingWindow};
///
/// let config = Config::builder()
///     .name("users-api")
///     .sliding_window(SlidingWindow::TimeBased { window: Duration::from_secs(30) })
///     .minimum_calls(10)
///     .failure_rate_threshold(25.0)
///     .slow_calls(Duration::from_secs(2), 80.0)
///     .open_wait(OpenWait::Exponential {
///         initial: Duration::from_secs(5),
///         multiplier: 2.0,
///         max: Duration::from_secs(300),
///     })
///     .half_open_permits(3)
///     .build()?;
/// # let _ = config;
/// # Ok::<(), sinew_resilience::error::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Names the breaker (for events, metrics and logs).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets the sliding window.
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.config.window = window;
        self
    }

    /// Calls needed in the window before the rates count. For a count-based window, a value
    /// above the window size is clamped to it.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Opens the breaker when at least this percentage of calls failed (`0 < p <= 100`).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate_threshold = percent;
        self
    }

    /// Tracks slow calls: a call taking longer than `duration` is slow, and the breaker opens
    /// when at least `rate_percent` of the calls in the window were slow.
    pub fn slow_calls(mut self, duration: Duration, rate_percent: f64) -> Self {
        self.config.slow_call_duration = Some(duration);
        self.config.slow_call_rate_threshold = rate_percent;
        self
    }

    /// How long to stay open before probing.
    pub fn open_wait(mut self, wait: OpenWait) -> Self {
        self.config.open_wait = wait;
        self
    }

    /// Number of concurrent probes a half-open breaker admits.
    pub fn half_open_permits(mut self, permits: u32) -> Self {
        self.config.half_open_permits = permits;
        self
    }

    /// How the probes' outcomes decide between closing and re-opening.
    pub fn half_open_decision(mut self, decision: HalfOpenDecision) -> Self {
        self.config.half_open_decision = decision;
        self
    }

    /// Longest time to stay half-open waiting for probes (`None`: no limit), and where to go
    /// when it runs out.
    pub fn half_open_max_wait(
        mut self,
        wait: Option<Duration>,
        then: AfterHalfOpenTimeout,
    ) -> Self {
        self.config.half_open_max_wait = wait;
        self.config.after_half_open_timeout = then;
        self
    }

    /// Moves from open to half-open (and ends an expired half-open) on a timer, without waiting
    /// for a call. The timer runs on the tokio runtime current when the breaker opens; without
    /// one the transition happens on the next call, as when this is off.
    ///
    /// Off by default: then an open breaker half-opens only when a call tries it after the
    /// wait. Turn it on when callers skip open breakers (a load balancer picking among
    /// instances), or the skipped instances would never be tried again.
    pub fn automatic_transition(mut self, enabled: bool) -> Self {
        self.config.automatic_transition = enabled;
        self
    }

    /// Registers a listener for state transitions, rate-exceeded events, resets and
    /// rejections. Listeners run synchronously on the thread that caused the event and must be
    /// quick; with none registered, events cost nothing.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.config.listeners.push(Arc::new(listener));
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that is out of range: a threshold outside
    /// `(0, 100]`, a zero window, minimum or permit count, a zero wait, a window or permit
    /// count above 32768, or an exponential open wait whose multiplier is below 1 or whose
    /// `max` is below its `initial`.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = &self.config;
        check_percent("failure_rate_threshold", c.failure_rate_threshold)?;
        check_percent("slow_call_rate_threshold", c.slow_call_rate_threshold)?;
        if let Some(d) = c.slow_call_duration {
            ConfigError::check_nonzero("slow_call_duration", d)?;
        }
        match c.window {
            SlidingWindow::CountBased { size } => {
                check_count("sliding_window.size", size, MAX_COUNT_WINDOW)?;
            }
            SlidingWindow::TimeBased { window } => {
                ConfigError::check_nonzero("sliding_window.window", window)?;
            }
        }
        if c.minimum_calls == 0 {
            return Err(ConfigError::Zero {
                field: "minimum_calls",
            });
        }
        check_count(
            "half_open_permits",
            c.half_open_permits,
            MAX_HALF_OPEN_PERMITS,
        )?;
        if let Some(d) = c.half_open_max_wait {
            ConfigError::check_nonzero("half_open_max_wait", d)?;
        }
        match c.open_wait {
            OpenWait::Fixed(d) => {
                ConfigError::check_nonzero("open_wait", d)?;
            }
            OpenWait::Exponential {
                initial,
                multiplier,
                max,
            } => {
                ConfigError::check_nonzero("open_wait.initial", initial)?;
                ConfigError::check_range("open_wait.multiplier", multiplier, 1.0, 1e6)?;
                if max < initial {
                    return Err(ConfigError::LessThan {
                        field: "open_wait.max",
                        value: format!("{max:?}"),
                        other: "open_wait.initial",
                        other_value: format!("{initial:?}"),
                    });
                }
            }
        }
        Ok(self.config)
    }
}

fn check_percent(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_nan() || value <= 0.0 || value > 100.0 {
        return Err(ConfigError::OutOfRange {
            field,
            value,
            min: f64::MIN_POSITIVE,
            max: 100.0,
        });
    }
    Ok(())
}

fn check_count(field: &'static str, value: u32, max: u32) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::Zero { field });
    }
    if value > max {
        return Err(ConfigError::TooLarge {
            field,
            value: u64::from(value),
            max: u64::from(max),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_rejected() {
        assert!(matches!(
            Config::builder().failure_rate_threshold(0.0).build(),
            Err(ConfigError::OutOfRange {
                field: "failure_rate_threshold",
                ..
            })
        ));
        assert!(
            Config::builder()
                .failure_rate_threshold(100.5)
                .build()
                .is_err()
        );
        assert!(
            Config::builder()
                .failure_rate_threshold(f64::NAN)
                .build()
                .is_err()
        );
        assert!(Config::builder().half_open_permits(0).build().is_err());
        assert!(Config::builder().minimum_calls(0).build().is_err());
        assert!(
            Config::builder()
                .sliding_window(SlidingWindow::CountBased { size: 0 })
                .build()
                .is_err()
        );
        assert!(
            Config::builder()
                .sliding_window(SlidingWindow::CountBased { size: 40_000 })
                .build()
                .is_err()
        );
        assert!(
            Config::builder()
                .open_wait(OpenWait::Exponential {
                    initial: Duration::from_secs(10),
                    multiplier: 2.0,
                    max: Duration::from_secs(5),
                })
                .build()
                .is_err()
        );
        assert!(Config::builder().build().is_ok());
    }

    #[test]
    fn exponential_wait_grows_and_caps() {
        let w = OpenWait::Exponential {
            initial: Duration::from_secs(5),
            multiplier: 1.5,
            max: Duration::from_secs(60),
        };
        assert_eq!(w.wait(1), Duration::from_secs(5));
        assert_eq!(w.wait(2), Duration::from_millis(7500));
        assert_eq!(w.wait(100), Duration::from_secs(60));
    }

    #[test]
    fn time_buckets() {
        assert_eq!(
            Config::time_buckets(Duration::from_secs(20)),
            (20, 1_000_000_000)
        );
        assert_eq!(
            Config::time_buckets(Duration::from_secs(5)),
            (10, 500_000_000)
        );
        assert_eq!(
            Config::time_buckets(Duration::from_secs(600)),
            (60, 10_000_000_000)
        );
    }
}
