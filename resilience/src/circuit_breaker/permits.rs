//! Half-open permits: a counter tagged with the half-open cycle it belongs to, so a permit
//! returned late from an earlier cycle can never inflate the current one.

use crate::sync::{AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Release};

const COUNT_MASK: u64 = 0xffff_ffff;

#[derive(Debug)]
pub(crate) struct Permits {
    /// `| cycle:32 | remaining:32 |`
    word: AtomicU64,
}

const fn tag(generation: u64) -> u64 {
    (generation & 0xffff_ffff) << 32
}

impl Permits {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
        }
    }

    /// Starts a new cycle with `count` permits. Called under the transition lock, before the
    /// half-open state is published.
    pub(crate) fn reset(&self, generation: u64, count: u32) {
        self.word.store(tag(generation) | u64::from(count), Release);
    }

    /// Takes a permit of cycle `generation`, if one is left.
    pub(crate) fn try_acquire(&self, generation: u64) -> bool {
        let mut cur = self.word.load(Acquire);
        loop {
            if cur & !COUNT_MASK != tag(generation) || cur & COUNT_MASK == 0 {
                return false;
            }
            match self
                .word
                .compare_exchange_weak(cur, cur - 1, AcqRel, Acquire)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back a permit of cycle `generation`; does nothing if that cycle is over.
    pub(crate) fn release(&self, generation: u64) {
        let mut cur = self.word.load(Acquire);
        loop {
            if cur & !COUNT_MASK != tag(generation) {
                return;
            }
            match self
                .word
                .compare_exchange_weak(cur, cur + 1, AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    #[cfg(all(test, sinew_loom))]
    pub(crate) fn remaining(&self, generation: u64) -> u64 {
        let cur = self.word.load(Acquire);
        if cur & !COUNT_MASK == tag(generation) {
            cur & COUNT_MASK
        } else {
            0
        }
    }
}
