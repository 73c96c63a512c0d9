//! Configuration of the [`RateLimit`](super::RateLimit) and
//! [`KeyedRateLimit`](super::KeyedRateLimit) middleware.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

use crate::error::ConfigError;

const DEFAULT_PER_SECOND: u32 = 100;

/// Validated configuration of a rate limiter: a steady rate and a burst.
///
/// The limiter is a GCRA (generic cell rate algorithm, from `governor`): it admits up to
/// `burst` calls at once and then one call every `period`, the burst capacity refilling at the
/// same pace. Build one with [`RateLimitConfig::builder`].
///
/// # Default
///
/// 100 calls per second with a burst of 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    pub(crate) quota: Quota,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        // `DEFAULT_PER_SECOND` is a non-zero constant.
        let per_second = NonZeroU32::MIN.saturating_add(DEFAULT_PER_SECOND - 1);
        Self {
            quota: Quota::per_second(per_second),
        }
    }
}

impl RateLimitConfig {
    /// A builder, starting from the [defaults](RateLimitConfig#default).
    pub const fn builder() -> RateLimitConfigBuilder {
        RateLimitConfigBuilder {
            rate: Rate::PerSecond(DEFAULT_PER_SECOND),
            burst: None,
        }
    }

    /// The most calls admitted at once.
    pub fn burst(&self) -> NonZeroU32 {
        self.quota.burst_size()
    }

    /// The time it takes to regain one call of capacity.
    pub fn period(&self) -> Duration {
        self.quota.replenish_interval()
    }
}

#[derive(Debug, Clone, Copy)]
enum Rate {
    PerSecond(u32),
    PerMinute(u32),
    Period(Duration),
}

/// Builder of [`RateLimitConfig`].
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use sinew_resilience::rate_limit::RateLimitConfig;
///
/// // 10 calls per second, at most 20 at once.
/// let config = RateLimitConfig::builder()
///     .per_second(10)
///     .burst(NonZeroU32::new(20).unwrap())
///     .build()
///     .unwrap();
/// assert_eq!(config.period(), Duration::from_millis(100));
/// assert_eq!(config.burst().get(), 20);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfigBuilder {
    rate: Rate,
    burst: Option<NonZeroU32>,
}

impl Default for RateLimitConfigBuilder {
    fn default() -> Self {
        RateLimitConfig::builder()
    }
}

impl RateLimitConfigBuilder {
    /// Admits `n` calls per second; the burst defaults to `n`.
    pub const fn per_second(mut self, n: u32) -> Self {
        self.rate = Rate::PerSecond(n);
        self
    }

    /// Admits `n` calls per minute; the burst defaults to `n`.
    pub const fn per_minute(mut self, n: u32) -> Self {
        self.rate = Rate::PerMinute(n);
        self
    }

    /// Admits one call every `period`; the burst defaults to 1.
    pub const fn period(mut self, period: Duration) -> Self {
        self.rate = Rate::Period(period);
        self
    }

    /// Admits up to `burst` calls at once.
    pub const fn burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] when the rate is zero calls per second or minute, or the period
    /// is zero.
    pub fn build(self) -> Result<RateLimitConfig, ConfigError> {
        let quota = match self.rate {
            Rate::PerSecond(n) => {
                NonZeroU32::new(n)
                    .map(Quota::per_second)
                    .ok_or(ConfigError::Zero {
                        field: "per_second",
                    })?
            }
            Rate::PerMinute(n) => {
                NonZeroU32::new(n)
                    .map(Quota::per_minute)
                    .ok_or(ConfigError::Zero {
                        field: "per_minute",
                    })?
            }
            Rate::Period(period) => {
                Quota::with_period(period).ok_or(ConfigError::Zero { field: "period" })?
            }
        };
        let quota = match self.burst {
            Some(burst) => quota.allow_burst(burst),
            None => quota,
        };
        Ok(RateLimitConfig { quota })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rates_are_rejected() {
        let zero = |b: RateLimitConfigBuilder| b.build().unwrap_err();
        assert_eq!(
            zero(RateLimitConfig::builder().per_second(0)),
            ConfigError::Zero {
                field: "per_second"
            }
        );
        assert_eq!(
            zero(RateLimitConfig::builder().per_minute(0)),
            ConfigError::Zero {
                field: "per_minute"
            }
        );
        assert_eq!(
            zero(RateLimitConfig::builder().period(Duration::ZERO)),
            ConfigError::Zero { field: "period" }
        );
    }

    #[test]
    fn rates_and_bursts() {
        let c = RateLimitConfig::builder().per_minute(6).build().unwrap();
        assert_eq!(c.period(), Duration::from_secs(10));
        assert_eq!(c.burst().get(), 6);
        let c = RateLimitConfig::builder()
            .period(Duration::from_millis(250))
            .build()
            .unwrap();
        assert_eq!(c.period(), Duration::from_millis(250));
        assert_eq!(c.burst().get(), 1);
        let d = RateLimitConfig::default();
        assert_eq!(d.burst().get(), 100);
        assert_eq!(d.period(), Duration::from_millis(10));
        assert_eq!(RateLimitConfig::builder().build().unwrap(), d);
    }
}
