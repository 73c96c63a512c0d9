//! A lock-free retry budget in the form of Finagle's `RetryBudget` (tower's `TpsBudget`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// fractional percentage never over-allocates). Deposits and withdrawals older than `ttl` no
/// longer count. This is Finagle's retry budget and tower's `TpsBudget`.
///
/// The window is a ring of 10 slots of `ttl/10`, each one `AtomicU64` packing a generation tag
/// and the slot's deposit and withdrawal counts, updated by compare-and-swap: no lock is ever
/// taken. Counts saturate at 2²⁰ − 1 per slot (deposits stop counting and withdrawals are
/// refused, so saturation errs towards fewer retries). Checks are exact when calls do not race;
/// threads racing a slot boundary may admit a retry or two more than the bound. Time comes from
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
#[derive(Debug, Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
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
        let generation = self.inner.generation();
        self.inner.update(generation, |d, w| {
            Some((d.saturating_add(1).min(COUNT_MAX), w))
        });
    }

    /// Takes a token for one retry; `false` (take nothing) when the budget is empty.
    pub fn try_withdraw(&self) -> bool {
        let inner = &*self.inner;
        let generation = inner.generation();
        loop {
            let (deposits, withdrawals) = inner.window(generation);
            if withdrawals >= inner.allowed(deposits) {
                return false;
            }
            let slot = &inner.slots[(generation % SLOTS) as usize];
            let current = slot.load(Ordering::Acquire);
            let (d, w) = inner.counts(current, generation);
            if w >= COUNT_MAX {
                return false;
            }
            let next = pack(generation, d, w + 1);
            if slot
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// How many retries the budget would allow right now.
    pub fn remaining(&self) -> u64 {
        let (deposits, withdrawals) = self.inner.window(self.inner.generation());
        self.inner.allowed(deposits).saturating_sub(withdrawals)
    }
}

impl Inner {
    fn generation(&self) -> u64 {
        let elapsed = Instant::now()
            .saturating_duration_since(self.start)
            .as_nanos();
        u64::try_from(elapsed / u128::from(self.slot_nanos)).unwrap_or(u64::MAX)
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

    fn update(&self, generation: u64, f: impl Fn(u64, u64) -> Option<(u64, u64)>) {
        let slot = &self.slots[(generation % SLOTS) as usize];
        let mut current = slot.load(Ordering::Acquire);
        loop {
            let (d, w) = self.counts(current, generation);
            let Some((d, w)) = f(d, w) else { return };
            match slot.compare_exchange_weak(
                current,
                pack(generation, d, w),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Deposits and withdrawals over the last `SLOTS` generations, `generation` included.
    fn window(&self, generation: u64) -> (u64, u64) {
        let mut deposits = 0u64;
        let mut withdrawals = 0u64;
        for back in 0..SLOTS {
            let Some(g) = generation.checked_sub(back) else {
                break;
            };
            let packed = self.slots[(g % SLOTS) as usize].load(Ordering::Acquire);
            let (d, w) = self.counts(packed, g);
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
