//! A lock-free retry budget in the form of Finagle's `RetryBudget` (tower's `TpsBudget`).

use crate::sync::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;

const SLOTS: u64 = 10;
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const GEN_MASK: u64 = (1 << (64 - 2 * COUNT_BITS)) - 1;

/// Limits retries to a fraction of recent traffic plus a small floor, so that retries cannot
/// multiply the load on a struggling service.
///
/// Every original request deposits one token; every retry withdraws one. Within the last `ttl`
/// at most `min_per_sec·ttl + retry_percent·deposits` retries are allowed (rounded down, so a
/// fractional percentage never over-allocates). Deposits and withdrawals older than `ttl` (to
/// the granularity of one slot, `ttl/10`) no longer count. This is Finagle's retry budget and
/// tower's `TpsBudget`.
///
/// The window is a ring of 10 slots of `ttl/10`, each one `AtomicU64` packing a 24-bit
/// generation tag and the slot's deposit and withdrawal counts, updated by compare-and-swap: no
/// lock is ever taken. A withdrawal judges the total with the very value of the current slot it
/// then swaps, so racing withdrawals within one slot cannot overshoot; only threads straddling
/// a slot boundary may admit one retry more each. Counts saturate at 2²⁰ − 1 per slot
/// (deposits stop counting and withdrawals are refused, so saturation errs towards fewer
/// retries); a slot left untouched for a multiple of 5·2²⁵ slots (over 190 days) could be
/// mistaken for a current one. Time comes from
/// [`tokio::time::Instant`], so paused tests control it.
///
/// # Clone
///
/// Clones share one budget (it sits behind an `Arc`); hand the same budget to several policies
/// to limit them together.
///
/// # Default
///
/// `ttl` 10 s, `min_per_sec` 10, `retry_percent` 0.2: 20 % extra load plus 10 retries a second,
/// Finagle's defaults.
///
/// ```
/// use std::time::Duration;
/// use sinew_resilience::retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sinew_resilience::error::ConfigError> {
/// let budget = RetryBudget::builder()
///     .ttl(Duration::from_secs(10))
///     .min_per_sec(0)
///     .retry_percent(0.5)
///     .build()?;
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field(
                "ttl",
                &Duration::from_nanos(self.inner.slot_nanos.saturating_mul(SLOTS)),
            )
            .field("reserve", &self.inner.reserve)
            .field("retry_percent", &self.inner.percent)
            .finish_non_exhaustive()
    }
}

struct Inner {
    start: Instant,
    slot_nanos: u64,
    reserve: u64,
    percent: f64,
    slots: [AtomicU64; SLOTS as usize],
}

/// Builds a [`RetryBudget`]; see there for the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryBudgetBuilder {
    ttl: Duration,
    min_per_sec: u32,
    retry_percent: f64,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudgetBuilder {
    /// A builder with the default settings.
    pub const fn new() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_percent: 0.2,
        }
    }

    /// How long deposits and withdrawals count, from 1 s to 60 s.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retries per second allowed regardless of traffic (may be zero).
    pub const fn min_per_sec(mut self, min_per_sec: u32) -> Self {
        self.min_per_sec = min_per_sec;
        self
    }

    /// Retries allowed per original request, as a ratio: `0.2` is 20 % extra load. From 0 to
    /// 1000, as in tower.
    pub const fn retry_percent(mut self, retry_percent: f64) -> Self {
        self.retry_percent = retry_percent;
        self
    }

    /// Validates the settings and builds the budget.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when `ttl` is outside 1–60 s or `retry_percent` outside
    /// `0.0..=1000.0`.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        let ttl = ConfigError::check_range("ttl", self.ttl.as_secs_f64(), 1.0, 60.0)?;
        let percent = ConfigError::check_range("retry_percent", self.retry_percent, 0.0, 1000.0)?;
        let slot_nanos = u64::try_from(self.ttl.as_nanos() / u128::from(SLOTS)).unwrap_or(u64::MAX);
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                start: Instant::now(),
                slot_nanos: slot_nanos.max(1),
                // At most 60 s · u32::MAX: fits easily.
                reserve: (f64::from(self.min_per_sec) * ttl).floor() as u64,
                percent,
                slots: Default::default(),
            }),
        })
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        // The defaults are valid; build by hand rather than unwrap.
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                slot_nanos: 1_000_000_000,
                reserve: 100,
                percent: 0.2,
                slots: Default::default(),
            }),
        }
    }
}

const fn pack(tag: u64, deposits: u64, withdrawals: u64) -> u64 {
    ((tag & GEN_MASK) << (2 * COUNT_BITS)) | (deposits << COUNT_BITS) | withdrawals
}

const fn unpack(v: u64) -> (u64, u64, u64) {
    (
        v >> (2 * COUNT_BITS),
        (v >> COUNT_BITS) & COUNT_MAX,
        v & COUNT_MAX,
    )
}

impl RetryBudget {
    /// A builder with the default settings.
    pub const fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::new()
    }

    /// Records an original request.
    pub fn deposit(&self) {
        let inner = &*self.inner;
        loop {
            let Some((generation, current, d, w)) = inner.load_current() else {
                continue;
            };
            let next = pack(generation, (d + 1).min(COUNT_MAX), w);
            if inner
                .slot(generation)
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Takes a token for one retry; `false` (take nothing) when the budget is empty.
    pub fn try_withdraw(&self) -> bool {
        let inner = &*self.inner;
        loop {
            // Load the current slot first and judge with those very counts: the CAS below then
            // succeeds only if nobody changed the slot since, so two racing withdrawals in one
            // slot cannot both pass on a stale total.
            let Some((generation, current, d, w)) = inner.load_current() else {
                continue;
            };
            let (older_d, older_w) = inner.older(generation);
            if w >= COUNT_MAX || older_w + w >= inner.allowed(older_d + d) {
                return false;
            }
            let next = pack(generation, d, w + 1);
            if inner
                .slot(generation)
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// How many retries the budget would allow right now.
    pub fn remaining(&self) -> u64 {
        let generation = self.inner.generation();
        let (d, w) = self.inner.counts(
            self.inner.slot(generation).load(Ordering::Acquire),
            generation,
        );
        let (older_d, older_w) = self.inner.older(generation);
        self.inner.allowed(older_d + d).saturating_sub(older_w + w)
    }
}

impl Inner {
    fn generation(&self) -> u64 {
        // 64-bit nanoseconds last 584 years; a 64-bit division is several times cheaper than
        // the 128-bit one `as_nanos` would need.
        let elapsed = Instant::now().saturating_duration_since(self.start);
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        nanos / self.slot_nanos
    }

    fn allowed(&self, deposits: u64) -> u64 {
        self.reserve
            .saturating_add((self.percent * deposits as f64).floor() as u64)
    }

    /// The slot's counts if its tag is `generation`, else zero (the slot is stale).
    fn counts(&self, packed: u64, generation: u64) -> (u64, u64) {
        let (tag, d, w) = unpack(packed);
        if tag == generation & GEN_MASK {
            (d, w)
        } else {
            (0, 0)
        }
    }

    fn slot(&self, generation: u64) -> &AtomicU64 {
        &self.slots[(generation % SLOTS) as usize]
    }

    /// Reads the clock and the current slot: `(generation, raw, deposits, withdrawals)`, the
    /// counts zeroed if the slot still holds an older generation. `None` when the slot already
    /// holds a *newer* generation than the clock read (this thread was preempted across a
    /// whole ttl): the caller reads the clock again rather than overwrite newer counts.
    fn load_current(&self) -> Option<(u64, u64, u64, u64)> {
        let generation = self.generation();
        let current = self.slot(generation).load(Ordering::Acquire);
        let (tag, d, w) = unpack(current);
        let ours = generation & GEN_MASK;
        if tag == ours {
            return Some((generation, current, d, w));
        }
        // A tag a little ahead of the clock read means another thread read the clock later
        // than we did; anything else is an old generation (tags wrap after 2²⁴ slots, so a
        // far-"ahead" tag is really one left from long ago, and must not make us spin).
        let ahead = tag.wrapping_sub(ours) & GEN_MASK;
        if ahead <= 4 * SLOTS {
            None
        } else {
            Some((generation, current, 0, 0))
        }
    }

    /// Deposits and withdrawals in the 9 slots before `generation`.
    fn older(&self, generation: u64) -> (u64, u64) {
        let mut deposits = 0u64;
        let mut withdrawals = 0u64;
        for back in 1..SLOTS {
            let Some(g) = generation.checked_sub(back) else {
                break;
            };
            let (d, w) = self.counts(self.slot(g).load(Ordering::Acquire), g);
            deposits += d;
            withdrawals += w;
        }
        (deposits, withdrawals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips() {
        let v = pack(123_456, COUNT_MAX, 7);
        assert_eq!(unpack(v), (123_456, COUNT_MAX, 7));
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_refills_after_ttl() {
        let b = RetryBudget::default();
        let mut n = 0;
        while b.try_withdraw() {
            n += 1;
        }
        assert_eq!(n, 100);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.remaining(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_percent_rounds_down() {
        let b = RetryBudget::builder()
            .min_per_sec(0)
            .retry_percent(0.25)
            .build()
            .unwrap();
        for _ in 0..7 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn long_idle_wrapped_tags_count_as_stale() {
        let b = RetryBudget::default();
        b.deposit();
        // Far beyond the 2²⁴-slot tag range: the old slot must read as stale, not spin.
        tokio::time::advance(Duration::from_secs((1 << 23) + 5)).await;
        assert_eq!(b.remaining(), 100);
        b.deposit();
        assert!(b.try_withdraw());
    }

    #[test]
    fn racing_threads_never_exceed_the_bound() {
        // Real clock, well inside one 10 s window: 1000 deposits allow exactly 300 withdrawals
        // (a slot boundary during the test could admit at most one more per thread).
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.deposit();
        }
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..200).filter(|_| b.try_withdraw()).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!((300..=308).contains(&total), "{total}");
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(RetryBudget::builder().ttl(Duration::ZERO).build().is_err());
        assert!(RetryBudget::builder().retry_percent(-0.1).build().is_err());
        assert!(
            RetryBudget::builder()
                .retry_percent(f64::NAN)
                .build()
                .is_err()
        );
    }
}
