//! The clock the rate limiters read: `tokio::time`, so that `tokio::time::pause` and
//! `advance` control rate limiting in tests.

use governor::clock::Clock;
use governor::nanos::Nanos;
use tokio::time::Instant;

/// A governor clock over `tokio::time::Instant`, counting nanoseconds since the limiter was
/// made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    start: Instant,
}

impl TokioClock {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let elapsed = self.start.elapsed().as_nanos();
        Nanos::new(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = TokioClock::new();
        assert_eq!(clock.now(), Nanos::new(0));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(Duration::from(clock.now()), Duration::from_millis(1500));
    }
}
