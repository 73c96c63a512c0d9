//! Configuration of the [`Bulkhead`](super::Bulkhead) middleware.

use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::ConfigError;

const DEFAULT_MAX_CONCURRENT: usize = 25;

/// Validated configuration of a [`Bulkhead`](super::Bulkhead).
///
/// Build one with [`BulkheadConfig::builder`].
///
/// # Default
///
/// 25 calls at once (resilience4j's default), and a call that finds no free permit is rejected
/// at once (no waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadConfig {
    pub(crate) max_concurrent: usize,
    pub(crate) max_wait: Option<Duration>,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_wait: None,
        }
    }
}

impl BulkheadConfig {
    /// A builder, starting from the [defaults](BulkheadConfig#default).
    pub const fn builder() -> BulkheadConfigBuilder {
        BulkheadConfigBuilder {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_wait: None,
        }
    }

    /// How many calls may be in flight at once.
    pub const fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// How long a call may wait for a permit before it is rejected; `None` rejects at once.
    pub const fn max_wait(&self) -> Option<Duration> {
        self.max_wait
    }
}

/// Builder of [`BulkheadConfig`].
#[derive(Debug, Clone, Copy)]
pub struct BulkheadConfigBuilder {
    max_concurrent: usize,
    max_wait: Option<Duration>,
}

impl Default for BulkheadConfigBuilder {
    fn default() -> Self {
        BulkheadConfig::builder()
    }
}

impl BulkheadConfigBuilder {
    /// How many calls may be in flight at once.
    pub const fn max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.max_concurrent = max_concurrent;
        self
    }

    /// Lets a call wait up to `max_wait` for a permit before it is rejected. The wait happens
    /// in `poll_ready`. `Duration::ZERO` is the same as not waiting.
    pub const fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = if max_wait.is_zero() {
            None
        } else {
            Some(max_wait)
        };
        self
    }

    /// Rejects a call at once when no permit is free (the default).
    pub const fn reject_when_full(mut self) -> Self {
        self.max_wait = None;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] when `max_concurrent` is zero, [`ConfigError::TooLarge`] when it
    /// exceeds what a `tokio::sync::Semaphore` can hold.
    pub fn build(self) -> Result<BulkheadConfig, ConfigError> {
        if self.max_concurrent == 0 {
            return Err(ConfigError::Zero {
                field: "max_concurrent",
            });
        }
        if self.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(ConfigError::TooLarge {
                field: "max_concurrent",
                value: self.max_concurrent as u64,
                max: Semaphore::MAX_PERMITS as u64,
            });
        }
        Ok(BulkheadConfig {
            max_concurrent: self.max_concurrent,
            max_wait: self.max_wait,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_permits_is_rejected() {
        let err = BulkheadConfig::builder()
            .max_concurrent(0)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            ConfigError::Zero {
                field: "max_concurrent"
            }
        );
    }

    #[test]
    fn too_many_permits_is_rejected() {
        let err = BulkheadConfig::builder()
            .max_concurrent(usize::MAX)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }));
    }

    #[test]
    fn zero_wait_means_reject_at_once() {
        let c = BulkheadConfig::builder()
            .max_wait(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(c.max_wait(), None);
        assert_eq!(
            BulkheadConfig::builder().build().unwrap(),
            BulkheadConfig::default()
        );
    }
}
