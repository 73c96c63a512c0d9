//! Lock-free sliding windows.
//!
//! Both windows keep their aggregate counters exact without a lock by one ordering rule: an
//! outcome is added to the aggregate *before* it is stored where an evicting thread can find
//! it, so every subtraction removes something that was added earlier and no counter ever goes
//! below zero, even transiently.

use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};

/// Outcome of one recorded call, as stored in a slot.
pub(crate) const EMPTY: u8 = 0;
const PRESENT: u8 = 0b100;
const FAILED: u8 = 0b001;
const SLOW: u8 = 0b010;

pub(crate) const fn encode(failed: bool, slow: bool) -> u8 {
    PRESENT | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 }
}

/// Counts read from a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
}

// Count window word: | calls made:32 | failed:16 | slow:16 |
//
// The call counter only grows (wrapping after 2^32 calls, which moves the ring's cursor once and
// keeps the counters exact); the number of calls in the window is `min(counter, size)`, or
// `size` once the ring has been filled.
const FIELD: u32 = 16;
const MASK: u64 = (1 << FIELD) - 1;
const SLOW_SHIFT: u32 = 0;
const FAILED_SHIFT: u32 = FIELD;
const COUNTER_SHIFT: u32 = 2 * FIELD;
const ONE_CALL: u64 = 1 << COUNTER_SHIFT;
/// The failed and slow fields of a count window word.
const OUTCOMES: u64 = (MASK << FAILED_SHIFT) | (MASK << SLOW_SHIFT);

#[inline(always)]
const fn contribution(code: u8) -> u64 {
    ((((code & FAILED) != 0) as u64) << FAILED_SHIFT)
        | ((((code & SLOW) != 0) as u64) << SLOW_SHIFT)
}

/// The last `size` outcomes, in a ring of one-byte slots.
#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u64,
    /// `u64::MAX / size + 1`, for a division-free `made % size` (Lemire's fastmod; exact for
    /// the 32-bit call counter).
    fastmod: u64,
    word: AtomicU64,
    /// Set once `size` calls have been made since the last reset.
    full: AtomicBool,
    slots: Box<[AtomicU8]>,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        let size = u64::from(size.max(1));
        Self {
            size,
            fastmod: (u64::MAX / size).wrapping_add(1),
            word: AtomicU64::new(0),
            full: AtomicBool::new(false),
            slots: (0..size).map(|_| AtomicU8::new(EMPTY)).collect(),
        }
    }

    #[inline(always)]
    fn unpack(&self, word: u64, full: bool) -> Counts {
        let made = word >> COUNTER_SHIFT;
        Counts {
            calls: if full { self.size } else { made.min(self.size) },
            failed: (word >> FAILED_SHIFT) & MASK,
            slow: (word >> SLOW_SHIFT) & MASK,
        }
    }

    /// Records one outcome; returns the counts right after it entered the window.
    #[inline(always)]
    pub(crate) fn record(&self, code: u8) -> Counts {
        let add = contribution(code);
        if add == 0 {
            // The steady state of a healthy service: the ring is full and holds no failed or
            // slow outcome, so every slot is a success. A success evicting the oldest of them
            // leaves the window exactly as it was, wherever the cursor stands, so there is
            // nothing to write: two plain loads instead of a contended read-modify-write.
            // A concurrent failure is ordered after this call, which is what the counts show.
            let word = self.word.load(Relaxed);
            if word & OUTCOMES == 0
                && (word >> COUNTER_SHIFT >= self.size || self.full.load(Relaxed))
            {
                return self.unpack(word, true);
            }
        }
        // Claim a slot and count the new outcome in one atomic add.
        let before = self.word.fetch_add(ONE_CALL + add, Relaxed);
        let mut after = before.wrapping_add(ONE_CALL + add);
        let made = before >> COUNTER_SHIFT;
        // Full once `size` calls were made; the flag only matters after the 32-bit counter
        // wraps, so the steady state does not read it.
        let full = if made + 1 >= self.size {
            if made + 1 == self.size {
                self.full.store(true, Relaxed);
            }
            true
        } else {
            self.full.load(Relaxed)
        };
        let Some(slot) = self.slots.get(self.slot_of(made) as usize) else {
            return self.unpack(after, full);
        };
        // A success replacing a success while the window holds failures elsewhere.
        if add == 0 && slot.load(Relaxed) == code {
            return self.unpack(after, full);
        }
        let sub = contribution(slot.swap(code, Relaxed));
        if sub != 0 {
            after = self.word.fetch_sub(sub, Relaxed) - sub;
        }
        self.unpack(after, full)
    }

    pub(crate) fn counts(&self) -> Counts {
        self.unpack(self.word.load(Relaxed), self.full.load(Relaxed))
    }

    /// `made % size` without a division (`made` < 2^32).
    #[inline(always)]
    fn slot_of(&self, made: u64) -> u64 {
        let low = self.fastmod.wrapping_mul(made);
        ((u128::from(low) * u128::from(self.size)) >> 64) as u64
    }

    /// Empties the window. Only called under the breaker's transition lock.
    pub(crate) fn reset(&self) {
        for slot in self.slots.iter() {
            let sub = contribution(slot.swap(EMPTY, Relaxed));
            if sub != 0 {
                self.word.fetch_sub(sub, Relaxed);
            }
        }
        self.full.store(false, Relaxed);
        // Clear the call counter, keeping whatever in-flight records added to the rest.
        let mut cur = self.word.load(Relaxed);
        loop {
            let new = cur & OUTCOMES;
            match self.word.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }
}

// Time bucket word: | calls:21 | failed:21 | slow:21 |
const B_FIELD: u32 = 21;
const B_MASK: u64 = (1 << B_FIELD) - 1;

const fn bucket_add(code: u8) -> u64 {
    (1 << (2 * B_FIELD))
        | ((((code & FAILED) != 0) as u64) << B_FIELD)
        | (((code & SLOW) != 0) as u64)
}

/// The outcomes of the last `buckets · width` nanoseconds.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    width: u64,
    /// Absolute index (time / width) of the newest bucket.
    head: AtomicU64,
    buckets: Box<[AtomicU64]>,
    calls: AtomicU64,
    failed: AtomicU64,
    slow: AtomicU64,
}

impl TimeWindow {
    pub(crate) fn new(buckets: usize, width: u64) -> Self {
        Self {
            width: width.max(1),
            head: AtomicU64::new(0),
            buckets: (0..buckets.max(1)).map(|_| AtomicU64::new(0)).collect(),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    fn bucket(&self, index: u64) -> Option<&AtomicU64> {
        self.buckets
            .get((index % self.buckets.len() as u64) as usize)
    }

    fn evict(&self, bucket: &AtomicU64) {
        let old = bucket.swap(0, Relaxed);
        if old != 0 {
            self.calls
                .fetch_sub((old >> (2 * B_FIELD)) & B_MASK, Relaxed);
            self.failed.fetch_sub((old >> B_FIELD) & B_MASK, Relaxed);
            self.slow.fetch_sub(old & B_MASK, Relaxed);
        }
    }

    /// Moves the window so that its newest bucket covers `now`, evicting what fell out.
    fn advance(&self, now: u64) -> u64 {
        let index = now / self.width;
        let mut head = self.head.load(Relaxed);
        while index > head {
            match self
                .head
                .compare_exchange_weak(head, index, Relaxed, Relaxed)
            {
                Ok(_) => {
                    let n = self.buckets.len() as u64;
                    let from = head.saturating_add(1).max(index.saturating_sub(n - 1));
                    for i in from..=index {
                        if let Some(b) = self.bucket(i) {
                            self.evict(b);
                        }
                    }
                    break;
                }
                Err(actual) => head = actual,
            }
        }
        index
    }

    pub(crate) fn record(&self, code: u8, now: u64) -> Counts {
        let index = self.advance(now);
        let failed = u64::from(code & FAILED != 0);
        let slow = u64::from(code & SLOW != 0);
        // Aggregate first, bucket second (see the module docs).
        let calls = self.calls.fetch_add(1, Relaxed) + 1;
        let failed = if failed != 0 {
            self.failed.fetch_add(1, Relaxed) + 1
        } else {
            self.failed.load(Relaxed)
        };
        let slow = if slow != 0 {
            self.slow.fetch_add(1, Relaxed) + 1
        } else {
            self.slow.load(Relaxed)
        };
        if let Some(b) = self.bucket(index) {
            b.fetch_add(bucket_add(code), Relaxed);
        }
        Counts {
            calls,
            failed,
            slow,
        }
    }

    pub(crate) fn counts(&self, now: u64) -> Counts {
        self.advance(now);
        Counts {
            calls: self.calls.load(Relaxed),
            failed: self.failed.load(Relaxed),
            slow: self.slow.load(Relaxed),
        }
    }

    pub(crate) fn reset(&self) {
        for b in self.buckets.iter() {
            self.evict(b);
        }
    }
}

/// The closed-state window, of either kind.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    #[inline]
    pub(crate) fn record(&self, code: u8, now: u64) -> Counts {
        match self {
            Self::Count(w) => w.record(code),
            Self::Time(w) => w.record(code, now),
        }
    }

    pub(crate) fn counts(&self, now: u64) -> Counts {
        match self {
            Self::Count(w) => w.counts(),
            Self::Time(w) => w.counts(now),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w.reset(),
        }
    }

    pub(crate) const fn needs_clock(&self) -> bool {
        matches!(self, Self::Time(_))
    }
}

#[cfg(all(test, not(sinew_loom)))]
mod tests {
    use super::*;

    const S: u8 = encode(false, false);
    const F: u8 = encode(true, false);

    #[test]
    fn fastmod_matches_modulo() {
        for size in [1u32, 2, 3, 5, 7, 100, 1000, 32_768] {
            let w = CountWindow::new(size);
            for made in (0..5000u64).chain([u64::from(u32::MAX) - 3, u64::from(u32::MAX)]) {
                assert_eq!(
                    w.slot_of(made),
                    made % u64::from(size),
                    "size {size}, made {made}"
                );
            }
        }
    }

    #[test]
    fn healthy_window_skips_writes_and_still_slides_after_a_failure() {
        let w = CountWindow::new(4);
        for _ in 0..4 {
            w.record(S);
        }
        let before = w.word.load(Relaxed);
        // All successes: a success changes nothing, not even the cursor.
        for _ in 0..10 {
            assert_eq!(
                w.record(S),
                Counts {
                    calls: 4,
                    failed: 0,
                    slow: 0
                }
            );
        }
        assert_eq!(w.word.load(Relaxed), before);
        // A failure is counted, and exactly `size` successes later it has left the window.
        assert_eq!(w.record(F).failed, 1);
        for _ in 0..3 {
            assert_eq!(w.record(S).failed, 1);
        }
        assert_eq!(w.record(S).failed, 0);
        // Not yet full after a reset: successes are counted one by one again.
        w.reset();
        assert_eq!(w.record(S).calls, 1);
        assert_eq!(w.record(S).calls, 2);
    }

    #[test]
    fn count_window_slides() {
        let w = CountWindow::new(3);
        w.record(F);
        w.record(F);
        assert_eq!(
            w.record(S),
            Counts {
                calls: 3,
                failed: 2,
                slow: 0
            }
        );
        assert_eq!(
            w.record(S),
            Counts {
                calls: 3,
                failed: 1,
                slow: 0
            }
        );
        assert_eq!(
            w.record(S),
            Counts {
                calls: 3,
                failed: 0,
                slow: 0
            }
        );
        w.reset();
        assert_eq!(w.counts(), Counts::default());
        assert_eq!(
            w.record(encode(true, true)),
            Counts {
                calls: 1,
                failed: 1,
                slow: 1
            }
        );
    }

    #[test]
    fn time_window_evicts_old_buckets() {
        let w = TimeWindow::new(10, 100);
        w.record(F, 0);
        w.record(F, 950);
        assert_eq!(w.counts(999).calls, 2);
        // At 1000 the bucket holding t=0 is the one reused for index 10.
        assert_eq!(
            w.counts(1000),
            Counts {
                calls: 1,
                failed: 1,
                slow: 0
            }
        );
        assert_eq!(w.counts(5000), Counts::default());
        assert_eq!(
            w.record(S, 5000),
            Counts {
                calls: 1,
                failed: 0,
                slow: 0
            }
        );
    }
}
