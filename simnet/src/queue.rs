//! The time-ordered event queue: virtual time in microseconds, ties broken by insertion
//! order, so the same schedule always pops in the same order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Slots per chunk of the slab.
const CHUNK: usize = 1 << 16;
/// A bucket spans 2^6 = 64 µs of virtual time.
const BUCKET_SHIFT: u32 = 6;
/// Buckets in the ring: events up to 4,096 × 64 µs ≈ 262 ms ahead wait in the ring.
const RING: u64 = 1 << 12;

/// An event's place in the order: time, insertion number, slab slot.
type Key = (u64, u64, u32);

/// A queue of events of type `E` by virtual time.
///
/// Keys (time, insertion number, slot) wait in a ring of 64 µs buckets covering the next
/// 262 ms, appended unsorted and sorted once, when their bucket becomes the current one;
/// keys further ahead wait in a binary heap and move into the ring as it advances. With
/// millions of frames in flight, a push is an append and a pop takes from a short sorted
/// vector, instead of a binary heap's ~20 levels of scattered memory per operation. The
/// events themselves wait in a slab that grows by chunks of fixed size: with tens of
/// millions of frames in flight, a slab that doubled would need its old and new copies at
/// once.
#[derive(Debug)]
pub struct Queue<E> {
    /// Bucket `b` (time `b << BUCKET_SHIFT` on) is `ring[b % RING]`, for `b` from `cur` to
    /// `cur + RING - 1`. The current bucket is sorted, last key first to pop; the others
    /// are in insertion order.
    ring: Vec<Vec<Key>>,
    cur: u64,
    /// Keys in the ring.
    in_ring: usize,
    /// Keys of buckets from `cur + RING` on.
    far: BinaryHeap<Reverse<Key>>,
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
            ring: (0..RING).map(|_| Vec::new()).collect(),
            cur: 0,
            in_ring: 0,
            far: BinaryHeap::new(),
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
        let key = (at_us, self.next, slot);
        self.next += 1;
        let b = at_us >> BUCKET_SHIFT;
        if b <= self.cur {
            // Into the sorted current bucket. A time before the bucket's start is earlier
            // than every key waiting, so it sorts first all the same.
            let bucket = &mut self.ring[(self.cur % RING) as usize];
            let at = bucket.partition_point(|k| (k.0, k.1) > (key.0, key.1));
            bucket.insert(at, key);
            self.in_ring += 1;
        } else if b < self.cur + RING {
            self.ring[(b % RING) as usize].push(key);
            self.in_ring += 1;
        } else {
            self.far.push(Reverse(key));
        }
    }

    /// Makes the current bucket the first one holding a key (sorted), if any key waits.
    fn settle(&mut self) -> bool {
        loop {
            let bucket = &mut self.ring[(self.cur % RING) as usize];
            if !bucket.is_empty() {
                return true;
            }
            // A drained bucket gives its memory back: at any time most buckets are empty,
            // and keeping each one's largest size would hold memory for nothing.
            if bucket.capacity() > 64 {
                *bucket = Vec::new();
            }
            if self.in_ring == 0 {
                // Nothing within the ring: jump to the first far bucket.
                let Some(Reverse((at, _, _))) = self.far.peek() else {
                    return false;
                };
                self.cur = at >> BUCKET_SHIFT;
            } else {
                self.cur += 1;
            }
            // The ring now reaches one bucket further (or a whole ring further after a
            // jump): move the far keys it covers.
            while let Some(Reverse(k)) = self.far.peek().copied() {
                let b = k.0 >> BUCKET_SHIFT;
                if b >= self.cur + RING {
                    break;
                }
                self.far.pop();
                self.ring[(b % RING) as usize].push(k);
                self.in_ring += 1;
            }
            let bucket = &mut self.ring[(self.cur % RING) as usize];
            bucket.sort_unstable_by_key(|k| Reverse((k.0, k.1)));
        }
    }

    /// The earliest event, with its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        if !self.settle() {
            return None;
        }
        let (at, _, slot) = self.ring[(self.cur % RING) as usize]
            .pop()
            .expect("a settled bucket holds a key");
        self.in_ring -= 1;
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
    pub fn peek_time(&mut self) -> Option<u64> {
        if !self.settle() {
            return None;
        }
        self.ring[(self.cur % RING) as usize].last().map(|k| k.0)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.in_ring + self.far.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events popped so far.
    pub fn popped(&self) -> u64 {
        self.popped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// One step of a schedule: push an event `delay` after the last popped time (or, with
    /// `early`, that much before it), pop, or peek.
    #[derive(Clone, Debug)]
    enum Op {
        Push { delay: u64, early: bool },
        Pop,
        Peek,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Delays from the same microsecond to far beyond the ring (262 ms).
        let delay = prop_oneof![0..64u64, 0..20_000u64, 0..600_000u64, 0..30_000_000u64];
        prop_oneof![
            4 => (delay, proptest::bool::weighted(0.05)).prop_map(|(delay, early)| Op::Push { delay, early }),
            3 => Just(Op::Pop),
            1 => Just(Op::Peek),
        ]
    }

    proptest! {
        /// The bucketed queue pops exactly what a binary heap of (time, insertion order)
        /// pops, whatever the mix of near, far, same-time and earlier-than-now pushes.
        #[test]
        fn pops_like_a_binary_heap(ops in proptest::collection::vec(op(), 1..400)) {
            let mut q = Queue::default();
            let mut reference: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
            let (mut now, mut n) = (1_000_000u64, 0u64);
            for op in ops {
                match op {
                    Op::Push { delay, early } => {
                        let at = if early { now.saturating_sub(delay) } else { now + delay };
                        q.push(at, n);
                        reference.push(Reverse((at, n)));
                        n += 1;
                    }
                    Op::Pop => {
                        let want = reference.pop().map(|Reverse(k)| k);
                        prop_assert_eq!(q.pop(), want);
                        if let Some((at, _)) = want {
                            now = now.max(at);
                        }
                    }
                    Op::Peek => {
                        prop_assert_eq!(q.peek_time(), reference.peek().map(|Reverse((at, _))| *at));
                    }
                }
                prop_assert_eq!(q.len(), reference.len());
            }
            while let Some(Reverse(k)) = reference.pop() {
                prop_assert_eq!(q.pop(), Some(k));
            }
            prop_assert!(q.is_empty());
        }
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
