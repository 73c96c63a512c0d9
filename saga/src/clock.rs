//! Wall-clock milliseconds for the store, driven by tokio's clock so that paused time in tests
//! moves leases, deadlines and retry times too.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::store::Millis;

/// Unix milliseconds anchored once to the system clock and advanced by `tokio::time::Instant`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    wall: Millis,
    anchor: Instant,
}

impl Clock {
    /// The process-wide clock: every orchestrator in a process reads the same time.
    pub(crate) fn new() -> Self {
        static ANCHOR: OnceLock<Clock> = OnceLock::new();
        *ANCHOR.get_or_init(Self::anchored)
    }

    fn anchored() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            wall,
            anchor: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Millis {
        self.wall
            .saturating_add(i64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(i64::MAX))
    }

    /// The tokio instant at which the clock reads `at`.
    pub(crate) fn instant_at(&self, at: Millis) -> Instant {
        let now = self.now();
        let ahead = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
        Instant::now() + Duration::from_millis(ahead)
    }
}

pub(crate) fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
