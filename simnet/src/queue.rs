//! The time-ordered event queue: virtual time in microseconds, ties broken by insertion
//! order, so the same schedule always pops in the same order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Slots per chunk of the slab.
const CHUNK: usize = 1 << 16;

/// A queue of events of type `E` by virtual time.
///
/// The heap orders small keys (time, sequence, slot); the events themselves wait in a slab,
/// so that sifting moves 24 bytes per level instead of whole events. The slab grows by
/// chunks of fixed size: with tens of millions of frames in flight, a slab that doubled
/// would need its old and new copies at once.
#[derive(Debug)]
pub struct Queue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Vec<Option<E>>>,
    /// Slots handed out so far (used or free).
    slots: usize,
    free: Vec<u32>,
    next: u64,
    popped: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            slots: 0,
            free: Vec::new(),
            next: 0,
            popped: 0,
        }
    }
}

impl<E> Queue<E> {
    /// Schedules `event` at `at_us`.
    pub fn push(&mut self, at_us: u64, event: E) {
        let slot = match self.free.pop() {
            Some(i) => {
                *self.slot_mut(i) = Some(event);
                i
            }
            None => {
                let i = u32::try_from(self.slots).expect("fewer than 2^32 events waiting");
                if self.slots.is_multiple_of(CHUNK) {
                    self.slab.push(Vec::with_capacity(CHUNK));
                }
                self.slab.last_mut().expect("a chunk with room").push(Some(event));
                self.slots += 1;
                i
            }
        };
        self.heap.push(Reverse((at_us, self.next, slot)));
        self.next += 1;
    }

    /// The earliest event, with its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        self.popped += 1;
        let e = self.slot_mut(slot).take().expect("a queued slot holds its event");
        self.free.push(slot);
        Some((at, e))
    }

    fn slot_mut(&mut self, slot: u32) -> &mut Option<E> {
        let i = slot as usize;
        &mut self.slab[i / CHUNK][i % CHUNK]
    }

    /// Time of the earliest event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events popped so far.
    pub fn popped(&self) -> u64 {
        self.popped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut q = Queue::default();
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
        assert_eq!(q.popped(), 4);
        // Freed slots are reused without disturbing the order.
        q.push(9, "f");
        q.push(7, "e");
        q.push(7, "e2");
        assert_eq!(q.len(), 3);
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(7, "e"), (7, "e2"), (9, "f")]);
        assert!(q.is_empty());
    }

    #[test]
    fn the_slab_grows_by_chunks_and_reuses_slots() {
        let mut q = Queue::default();
        let n = 2 * CHUNK as u64 + 5;
        for i in 0..n {
            q.push(n - i, i);
        }
        assert_eq!(q.slab.len(), 3);
        assert!(q.slab.iter().all(|c| c.capacity() == CHUNK));
        for i in 0..n {
            assert_eq!(q.pop(), Some((i + 1, n - 1 - i)));
        }
        // Freed slots serve the next pushes: no new chunk.
        for i in 0..n {
            q.push(n + 1 + i, i);
        }
        assert_eq!(q.slab.len(), 3);
        assert_eq!(q.pop(), Some((n + 1, 0)));
    }
}
