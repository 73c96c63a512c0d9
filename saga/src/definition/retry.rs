use std::num::NonZeroU32;
use std::time::Duration;

use crate::error::ConfigError;

/// How often and how fast a step (or a compensation) is retried.
///
/// Attempt `n` (1-based) that fails with a retryable or unknown error is followed by a pause of
/// `initial_backoff * multiplier^(n-1)`, capped at `max_backoff`, then attempt `n + 1`, until
/// `max_attempts` attempts have been made (or forever with [`RetryPolicyBuilder::forever`]).
/// The pauses are deterministic (no jitter) so that recovery and tests can predict them.
///
/// # Default
///
/// 3 attempts, 100 ms initial backoff, multiplier 2, at most 10 s between attempts.
///
/// ```
/// use std::time::Duration;
/// use sinew_saga::RetryPolicy;
///
/// let policy = RetryPolicy::builder()
///     .max_attempts(5)
///     .initial_backoff(Duration::from_millis(50))
///     .build()?;
/// assert_eq!(policy.backoff(1), Duration::from_millis(50));
/// assert_eq!(policy.backoff(3), Duration::from_millis(200));
/// # Ok::<_, sinew_saga::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub(crate) max_attempts: Option<NonZeroU32>,
    pub(crate) initial_backoff: Duration,
    pub(crate) multiplier: f64,
    pub(crate) max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: NonZeroU32::new(3),
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A builder starting from the [default](#default).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: Self::default(),
            attempts: Some(3),
        }
    }

    /// One attempt, no retries.
    pub const fn never() -> Self {
        Self {
            max_attempts: Some(NonZeroU32::MIN),
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(10),
        }
    }

    /// The maximum number of attempts, `None` for unlimited.
    pub const fn max_attempts(&self) -> Option<NonZeroU32> {
        self.max_attempts
    }

    /// Whether another attempt may follow attempt `attempt` (1-based).
    pub fn allows_retry_after(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt < max.get())
    }

    /// The pause after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exp);
        if !secs.is_finite() || secs >= self.max_backoff.as_secs_f64() {
            self.max_backoff
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// Builds a [`RetryPolicy`]; see there for the defaults.
#[derive(Clone, Debug)]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
    attempts: Option<u32>,
}

impl RetryPolicyBuilder {
    /// The maximum number of attempts, the first included (at least 1).
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.attempts = Some(attempts);
        self
    }

    /// Retry without limit (the paper's "until it succeeds").
    pub const fn forever(mut self) -> Self {
        self.attempts = None;
        self
    }

    /// The pause after the first failed attempt (greater than zero).
    pub const fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.policy.initial_backoff = backoff;
        self
    }

    /// The factor each pause grows by (`1.0..=10.0`).
    pub const fn multiplier(mut self, multiplier: f64) -> Self {
        self.policy.multiplier = multiplier;
        self
    }

    /// The longest pause (at least the initial backoff).
    pub const fn max_backoff(mut self, backoff: Duration) -> Self {
        self.policy.max_backoff = backoff;
        self
    }

    /// Validates the policy.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] for zero attempts or a zero initial backoff;
    /// [`ConfigError::OutOfRange`] for a multiplier outside `1.0..=10.0` or a maximum backoff
    /// below the initial one.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let mut policy = self.policy;
        policy.max_attempts = match self.attempts {
            None => None,
            Some(n) => Some(NonZeroU32::new(n).ok_or(ConfigError::Zero {
                field: "max_attempts",
            })?),
        };
        if policy.initial_backoff.is_zero() {
            return Err(ConfigError::Zero {
                field: "initial_backoff",
            });
        }
        if !(1.0..=10.0).contains(&policy.multiplier) {
            return Err(ConfigError::OutOfRange {
                field: "multiplier",
                why: "must be within 1.0..=10.0",
            });
        }
        if policy.max_backoff < policy.initial_backoff {
            return Err(ConfigError::OutOfRange {
                field: "max_backoff",
                why: "must be at least `initial_backoff`",
            });
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::builder()
            .initial_backoff(Duration::from_secs(1))
            .max_backoff(Duration::from_secs(5))
            .build()
            .unwrap();
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(3), Duration::from_secs(4));
        assert_eq!(p.backoff(4), Duration::from_secs(5));
        assert_eq!(p.backoff(1000), Duration::from_secs(5));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(RetryPolicy::builder().max_attempts(0).build().is_err());
        assert!(RetryPolicy::builder().multiplier(0.5).build().is_err());
        assert!(
            RetryPolicy::builder()
                .initial_backoff(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            RetryPolicy::builder()
                .forever()
                .build()
                .unwrap()
                .max_attempts()
                .is_none()
        );
    }
}
