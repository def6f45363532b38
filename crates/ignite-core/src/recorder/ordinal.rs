//! Per-thread shard ordinals, recycled through a process-wide free list.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Ordinal of a thread that has none (yet, or any more): always routed to the overflow shard.
const UNASSIGNED: usize = usize::MAX;

/// The process-wide pool of shard ordinals: `0..next`, minus the ones in use.
struct OrdinalPool {
    next: usize,
    free: BTreeSet<usize>,
}

static ORDINALS: Mutex<OrdinalPool> = Mutex::new(OrdinalPool {
    next: 0,
    free: BTreeSet::new(),
});

fn ordinal_pool() -> MutexGuard<'static, OrdinalPool> {
    // The pool is consistent after every statement, so a poisoned lock is still usable.
    ORDINALS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The calling thread's shard ordinal; gives it back to the pool when the thread exits.
struct ThreadOrdinal(Cell<usize>);

impl Drop for ThreadOrdinal {
    fn drop(&mut self) {
        let ordinal = self.0.replace(UNASSIGNED);
        if ordinal != UNASSIGNED {
            // Releasing under the mutex orders this thread's last (plain) writes to its shards
            // before the first access of the next thread that takes the ordinal.
            ordinal_pool().free.insert(ordinal);
        }
    }
}

thread_local! {
    static THREAD_ORDINAL: ThreadOrdinal = const { ThreadOrdinal(Cell::new(UNASSIGNED)) };
}

/// The calling thread's shard ordinal, taking the lowest free one on first use.
///
/// Returns [`UNASSIGNED`] while or after the thread's locals are destroyed: the ordinal may
/// already belong to another thread then.
#[inline]
pub(super) fn shard_ordinal() -> usize {
    THREAD_ORDINAL
        .try_with(|slot| {
            let ordinal = slot.0.get();
            if ordinal != UNASSIGNED {
                ordinal
            } else {
                assign_ordinal(&slot.0)
            }
        })
        .unwrap_or(UNASSIGNED)
}

#[cold]
#[inline(never)]
fn assign_ordinal(slot: &Cell<usize>) -> usize {
    let ordinal = {
        let mut pool = ordinal_pool();
        match pool.free.pop_first() {
            Some(ordinal) => ordinal,
            None => {
                let ordinal = pool.next;
                pool.next += 1;
                ordinal
            }
        }
    };
    slot.set(ordinal);
    ordinal
}
