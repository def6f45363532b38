//! The time-ordered event queue: virtual time in microseconds, ties broken by insertion
//! order, so the same schedule always pops in the same order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A queue of events of type `E` by virtual time.
#[derive(Debug)]
pub struct Queue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, Slot<E>)>>,
    next: u64,
    popped: u64,
}

/// Wraps an event so the heap orders by (time, sequence) only.
#[derive(Debug)]
struct Slot<E>(E);

impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            next: 0,
            popped: 0,
        }
    }
}

impl<E> Queue<E> {
    /// Schedules `event` at `at_us`.
    pub fn push(&mut self, at_us: u64, event: E) {
        self.heap.push(Reverse((at_us, self.next, Slot(event))));
        self.next += 1;
    }

    /// The earliest event, with its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse((at, _, Slot(e))) = self.heap.pop()?;
        self.popped += 1;
        Some((at, e))
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
    }
}
