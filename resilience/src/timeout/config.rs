//! Configuration of the [`Timeout`](super::Timeout) middleware.

use std::time::Duration;

use crate::error::ConfigError;

/// The default timeout: 30 seconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Validated configuration of a [`Timeout`](super::Timeout).
///
/// Build one with [`TimeoutConfig::builder`].
///
/// # Default
///
/// A timeout of 30 seconds (Polly's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutConfig {
    pub(crate) timeout: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl TimeoutConfig {
    /// A builder, starting from the [defaults](TimeoutConfig#default).
    pub const fn builder() -> TimeoutConfigBuilder {
        TimeoutConfigBuilder {
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The timeout applied to requests that do not carry their own.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Builder of [`TimeoutConfig`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutConfigBuilder {
    timeout: Duration,
}

impl Default for TimeoutConfigBuilder {
    fn default() -> Self {
        TimeoutConfig::builder()
    }
}

impl TimeoutConfigBuilder {
    /// How long a call may take before it is cancelled.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] when the timeout is zero.
    pub fn build(self) -> Result<TimeoutConfig, ConfigError> {
        Ok(TimeoutConfig {
            timeout: ConfigError::check_nonzero("timeout", self.timeout)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeout_is_rejected() {
        let err = TimeoutConfig::builder()
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err, ConfigError::Zero { field: "timeout" });
    }

    #[test]
    fn default_is_thirty_seconds() {
        assert_eq!(TimeoutConfig::default().timeout(), Duration::from_secs(30));
        assert_eq!(
            TimeoutConfig::builder().build().unwrap(),
            TimeoutConfig::default()
        );
    }
}
