//! A queue of fixed-size blocks, for the ready messages of a queue.
//!
//! Ready messages are stored by value (they are moved in on publish, with no allocation),
//! so one `VecDeque` of them would reallocate and copy every waiting message each time it
//! doubled, with the broker's lock held, and would keep its largest size after a burst.
//! Blocks never move their messages, and go back to the allocator as the queue drains.

use std::collections::VecDeque;

/// Messages per block.
const BLOCK: usize = 64;

#[derive(Debug)]
pub(super) struct Blocks<T> {
    blocks: VecDeque<VecDeque<T>>,
    len: usize,
    /// The last block emptied, kept for the next one needed, so that a queue around a block
    /// boundary does not allocate and free a block per message.
    spare: Option<VecDeque<T>>,
    /// Blocks emptied beyond the spare, for the owner to free outside its lock.
    emptied: Vec<VecDeque<T>>,
}

impl<T> Default for Blocks<T> {
    fn default() -> Self {
        Self {
            blocks: VecDeque::new(),
            len: 0,
            spare: None,
            emptied: Vec::new(),
        }
    }
}

impl<T> Blocks<T> {
    pub(super) const fn len(&self) -> usize {
        self.len
    }

    pub(super) const fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn block(&mut self) -> VecDeque<T> {
        self.spare
            .take()
            .or_else(|| self.emptied.pop())
            .unwrap_or_else(|| VecDeque::with_capacity(BLOCK))
    }

    fn retire(&mut self, block: VecDeque<T>) {
        if self.spare.is_none() {
            self.spare = Some(block);
        } else {
            self.emptied.push(block);
        }
    }

    /// The blocks emptied since the last call (but one kept for reuse). Freeing a block can
    /// make the allocator consolidate its free lists, which takes long enough to matter
    /// inside a lock: the caller drops them after releasing it.
    pub(super) fn take_emptied(&mut self) -> Vec<VecDeque<T>> {
        std::mem::take(&mut self.emptied)
    }

    pub(super) fn push_back(&mut self, item: T) {
        if self.blocks.back().is_none_or(|b| b.len() >= BLOCK) {
            let block = self.block();
            self.blocks.push_back(block);
        }
        if let Some(block) = self.blocks.back_mut() {
            block.push_back(item);
            self.len += 1;
        }
    }

    pub(super) fn push_front(&mut self, item: T) {
        if self.blocks.front().is_none_or(|b| b.len() >= BLOCK) {
            let block = self.block();
            self.blocks.push_front(block);
        }
        if let Some(block) = self.blocks.front_mut() {
            block.push_front(item);
            self.len += 1;
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<T> {
        let block = self.blocks.front_mut()?;
        let item = block.pop_front();
        if block.is_empty()
            && let Some(block) = self.blocks.pop_front()
        {
            self.retire(block);
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks.iter().flatten()
    }

    /// Removes the item at position `at`, counting from the front.
    pub(super) fn remove(&mut self, mut at: usize) -> Option<T> {
        let i = self.blocks.iter().position(|b| {
            let here = at < b.len();
            if !here {
                at -= b.len();
            }
            here
        })?;
        let block = self.blocks.get_mut(i)?;
        let item = block.remove(at);
        if block.is_empty()
            && let Some(block) = self.blocks.remove(i)
        {
            self.retire(block);
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, Blocks};

    #[test]
    fn keeps_order_across_blocks_from_both_ends() {
        let mut q = Blocks::default();
        let n = 3 * BLOCK + 5;
        for i in 0..n {
            q.push_back(i);
        }
        for i in 1..=BLOCK + 2 {
            q.push_front(n + i);
        }
        let expected: Vec<usize> = (1..=BLOCK + 2).rev().map(|i| n + i).chain(0..n).collect();
        assert_eq!(q.len(), expected.len());
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), expected);
        assert_eq!(q.remove(BLOCK + 3), Some(expected[BLOCK + 3]));
        let mut expected = expected;
        expected.remove(BLOCK + 3);
        let mut got = Vec::new();
        while let Some(i) = q.pop_front() {
            got.push(i);
        }
        assert_eq!(got, expected);
        assert!(q.is_empty());
        assert_eq!(q.take_emptied().len(), 5, "six blocks emptied, one kept");
        assert!(q.take_emptied().is_empty());
        assert_eq!(q.remove(0), None);
        q.push_back(7);
        assert_eq!(q.pop_front(), Some(7));
    }
}
