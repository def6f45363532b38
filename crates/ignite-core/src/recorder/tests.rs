//! Unit tests of the recorder.

use super::block::{INVOCATIONS, LINE_BYTES, LINE_CELLS, record_receiver_shared};
use super::ordinal::shard_ordinal;
use super::*;
use crate::profile::counter::Counter;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;

fn function(name: &str) -> FunctionId {
    FunctionId::from_deployment(name, name.as_bytes())
}

fn recorder(shards: usize, receiver_slots: usize) -> Recorder {
    Recorder::new(RecorderConfig { shards, receiver_slots }).unwrap()
}

fn collect(recorder: &Recorder) -> Vec<(FunctionId, CounterKey, u64)> {
    let mut out = Vec::new();
    recorder.visit(|f, k, v| out.push((f, k, v)));
    out
}

fn counters(recorder: &Recorder) -> BTreeMap<(FunctionId, CounterKey), u64> {
    collect(recorder).into_iter().map(|(f, k, v)| ((f, k), v)).collect()
}

fn value(recorder: &Recorder, p: &MethodProfiler, counter: Counter) -> u64 {
    let (function, method, tier) = p.key();
    counters(recorder)
        .get(&(function, CounterKey { method, tier, counter }))
        .copied()
        .unwrap_or(0)
}

/// The overflow shard's value of the counter at `offset`.
fn overflow(p: &MethodProfiler, offset: usize) -> u64 {
    let b = &p.block;
    b.cells[b.shard_start(b.shards) + offset].load(Relaxed)
}

#[test]
fn handles_are_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Recorder>();
    check::<MethodProfiler>();
}

#[test]
fn config_is_validated() {
    assert!(Recorder::new(RecorderConfig::default()).is_ok());
    assert_eq!(
        RecorderConfig::default(),
        RecorderConfig {
            shards: 16,
            receiver_slots: 8
        }
    );
    for shards in [0, 257] {
        let err = Recorder::new(RecorderConfig {
            shards,
            receiver_slots: 8,
        })
        .unwrap_err();
        assert_eq!(err, RecorderError::InvalidShards { shards, max: 256 });
    }
    let err = Recorder::new(RecorderConfig {
        shards: 4,
        receiver_slots: 65,
    })
    .unwrap_err();
    assert_eq!(err, RecorderError::InvalidReceiverSlots { slots: 65, max: 64 });
    assert!(
        Recorder::new(RecorderConfig {
            shards: 256,
            receiver_slots: 64
        })
        .is_ok()
    );
    assert!(
        Recorder::new(RecorderConfig {
            shards: 1,
            receiver_slots: 0
        })
        .is_ok()
    );
}

#[test]
fn shards_start_on_cache_lines() {
    let r = recorder(3, 5);
    let p = r
        .method(
            function("f"),
            MethodId(1),
            Tier(1),
            MethodShape {
                branch_sites: 7,
                call_sites: 3,
            },
        )
        .unwrap();
    let b = &p.block;
    assert_eq!(b.stride % LINE_CELLS, 0);
    for shard in 0..=b.shards {
        let addr = b.cells[b.shard_start(shard)..].as_ptr() as usize;
        assert_eq!(addr % LINE_BYTES, 0);
    }
    assert!(b.shard_start(b.shards) + b.stride <= b.cells.len());
}

#[test]
fn eight_threads_on_four_shards_sum_exactly() {
    const THREADS: usize = 8;
    const N: u64 = 20_000;
    let r = recorder(4, 4);
    let shape = MethodShape {
        branch_sites: 2,
        call_sites: 1,
    };
    let p = r.method(function("f"), MethodId(7), Tier(1), shape).unwrap();
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let p = p.clone();
            let barrier = &barrier;
            s.spawn(move || {
                // Take an ordinal before the barrier: all 8 threads hold distinct
                // ordinals at once, so at least 4 of them use the overflow shard.
                p.record_invocation();
                barrier.wait();
                for i in 1..N {
                    p.record_invocation();
                    p.record_backedge();
                    p.record_branch((i % 2) as u16, i % 3 == 0);
                    p.record_receiver(0, (t % 2) as u32);
                }
                p.record_backedges(1);
                p.record_deopt();
            });
        }
    });
    let n = THREADS as u64 * N;
    assert_eq!(value(&r, &p, Counter::Invocations), n);
    assert_eq!(value(&r, &p, Counter::Backedges), n);
    assert_eq!(value(&r, &p, Counter::Deopts), THREADS as u64);
    let branches: u64 = [(0, false), (0, true), (1, false), (1, true)]
        .into_iter()
        .map(|(site, taken)| value(&r, &p, Counter::Branch { site, taken }))
        .sum();
    assert_eq!(branches, THREADS as u64 * (N - 1));
    let receivers = THREADS as u64 * (N - 1);
    assert_eq!(value(&r, &p, Counter::ReceiverTotal { site: 0 }), receivers);
    assert_eq!(value(&r, &p, Counter::Receiver { site: 0, type_id: 0 }), receivers / 2);
    assert_eq!(value(&r, &p, Counter::Receiver { site: 0, type_id: 1 }), receivers / 2);
    assert!(
        overflow(&p, INVOCATIONS) >= 4 * N,
        "the overflow shard was not exercised"
    );
}

#[test]
fn recycled_thread_ordinals_keep_every_count() {
    const THREADS: u64 = 100;
    let r = recorder(2, 2);
    let p = r
        .method(
            function("pool"),
            MethodId(1),
            Tier(0),
            MethodShape {
                branch_sites: 1,
                call_sites: 1,
            },
        )
        .unwrap();
    let mut ordinals = BTreeSet::new();
    for t in 0..THREADS {
        let p = p.clone();
        let ordinal = thread::spawn(move || {
            for _ in 0..=t {
                p.record_invocation();
            }
            p.record_branch(0, true);
            p.record_receiver(0, 42);
            shard_ordinal()
        })
        .join()
        .unwrap();
        ordinals.insert(ordinal);
    }
    // Exited threads give their ordinal back, so sequential threads reuse a few of them
    // (other tests running in parallel may hold some more).
    assert!(
        ordinals.len() < THREADS as usize / 2,
        "ordinals were not recycled: {ordinals:?}"
    );
    assert_eq!(value(&r, &p, Counter::Invocations), THREADS * (THREADS + 1) / 2);
    assert_eq!(value(&r, &p, Counter::Branch { site: 0, taken: true }), THREADS);
    assert_eq!(value(&r, &p, Counter::ReceiverTotal { site: 0 }), THREADS);
    assert_eq!(value(&r, &p, Counter::Receiver { site: 0, type_id: 42 }), THREADS);
}

#[test]
fn receiver_slots_fill_then_overflow_into_the_total() {
    let r = recorder(2, 3);
    let p = r
        .method(
            function("f"),
            MethodId(3),
            Tier(1),
            MethodShape {
                branch_sites: 0,
                call_sites: 2,
            },
        )
        .unwrap();
    // Site 1: types 5, 9, 7 claim the three slots; 11 and 13 only count in the total.
    for (type_id, times) in [(5, 4), (9, 3), (7, 2), (11, 6), (13, 1), (5, 1), (u32::MAX, 2)] {
        for _ in 0..times {
            p.record_receiver(1, type_id);
        }
    }
    p.record_receiver(2, 5); // out of range: ignored
    let function = function("f");
    let key = |counter| {
        (
            function,
            CounterKey {
                method: MethodId(3),
                tier: Tier(1),
                counter,
            },
        )
    };
    let got = collect(&r);
    assert_eq!(
        got,
        vec![
            (
                key(Counter::ReceiverTotal { site: 1 }).0,
                key(Counter::ReceiverTotal { site: 1 }).1,
                19
            ),
            (function, key(Counter::Receiver { site: 1, type_id: 5 }).1, 5),
            (function, key(Counter::Receiver { site: 1, type_id: 7 }).1, 2),
            (function, key(Counter::Receiver { site: 1, type_id: 9 }).1, 3),
        ]
    );
    let tracked: u64 = got.iter().skip(1).map(|&(_, _, v)| v).sum();
    assert_eq!(got[0].2 - tracked, 6 + 1 + 2, "overflow = total - tracked");

    // u32::MAX is a valid type id (stored as 2^32).
    let q = r
        .method(
            function,
            MethodId(4),
            Tier(1),
            MethodShape {
                branch_sites: 0,
                call_sites: 1,
            },
        )
        .unwrap();
    q.record_receiver(0, u32::MAX);
    assert_eq!(
        value(
            &r,
            &q,
            Counter::Receiver {
                site: 0,
                type_id: u32::MAX
            }
        ),
        1
    );
}

#[test]
fn overflow_shard_claims_receiver_slots_once() {
    // Exercise the shared path directly: concurrent claimers never duplicate a type.
    let cells: Vec<AtomicU64> = (0..1 + 2 * 4).map(|_| AtomicU64::new(0)).collect();
    let (total, slots) = cells.split_first().unwrap();
    thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for i in 0..1000u64 {
                    record_receiver_shared(total, slots, 1 + (i + t) % 6, 1);
                }
            });
        }
    });
    assert_eq!(total.load(Relaxed), 4000);
    let tags: Vec<u64> = slots.chunks_exact(2).map(|p| p[0].load(Relaxed)).collect();
    let distinct: BTreeSet<u64> = tags.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{tags:?}");
    let tracked: u64 = slots.chunks_exact(2).map(|p| p[1].load(Relaxed)).sum();
    assert!(tracked <= 4000);
}

#[test]
fn same_key_is_idempotent_and_shape_mismatch_is_an_error() {
    let r = recorder(4, 8);
    let f = function("f");
    let shape = MethodShape {
        branch_sites: 3,
        call_sites: 1,
    };
    let a = r.method(f, MethodId(1), Tier(1), shape).unwrap();
    let b = r.method(f, MethodId(1), Tier(1), shape).unwrap();
    a.record_invocation();
    b.record_invocation();
    assert_eq!(r.len(), 1);
    assert_eq!(value(&r, &a, Counter::Invocations), 2);
    assert_eq!(a.key(), (f, MethodId(1), Tier(1)));
    assert_eq!(b.shape(), shape);

    let other = MethodShape {
        branch_sites: 4,
        call_sites: 1,
    };
    let err = r.method(f, MethodId(1), Tier(1), other).unwrap_err();
    assert_eq!(
        err,
        RecorderError::ShapeMismatch {
            function: f,
            method: MethodId(1),
            tier: Tier(1),
            registered: shape,
            requested: other,
        }
    );
    // Another tier is another entry and may have another shape.
    r.method(f, MethodId(1), Tier(2), other).unwrap();
    assert_eq!(r.len(), 2);

    let huge = MethodShape {
        branch_sites: u16::MAX,
        call_sites: u16::MAX,
    };
    let big = recorder(16, 64);
    let err = big.method(f, MethodId(2), Tier(1), huge).unwrap_err();
    assert!(matches!(err, RecorderError::ShapeTooLarge { .. }), "{err}");
    assert!(big.is_empty());
    // With 4 shards and 8 slots the same shape fits (6.2 M cells).
    assert!(r.method(f, MethodId(2), Tier(1), huge).is_ok());
    assert_eq!(r.len(), 3);
}

#[test]
fn visit_is_sorted() {
    let r = recorder(4, 2);
    let fs = [function("b"), function("a"), function("c")];
    let shape = MethodShape {
        branch_sites: 2,
        call_sites: 2,
    };
    for &f in fs.iter().rev() {
        for m in [9, 1, 4] {
            for t in [2, 0, 1] {
                let p = r.method(f, MethodId(m), Tier(t), shape).unwrap();
                p.record_invocation();
                p.record_backedges(3);
                p.record_deopt();
                p.record_branch(1, true);
                p.record_branch(0, false);
                p.record_branch(1, false);
                p.record_receiver(1, 8);
                p.record_receiver(0, 3);
                p.record_receiver(1, 2);
                p.record_receiver(0, 1);
            }
        }
    }
    assert_eq!(r.len(), 27);
    let got = collect(&r);
    assert_eq!(got.len(), 27 * (3 + 3 + 2 + 4));
    assert!(
        got.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
        "visit order is not sorted"
    );
    assert!(got.iter().all(|&(_, _, v)| v > 0));
    let first = got[0].1;
    assert_eq!(
        (first.method, first.tier, first.counter),
        (MethodId(1), Tier(0), Counter::Invocations)
    );
}

#[test]
fn branch_sites_out_of_range_are_ignored() {
    let r = recorder(2, 1);
    let p = r
        .method(
            function("f"),
            MethodId(1),
            Tier(1),
            MethodShape {
                branch_sites: 2,
                call_sites: 0,
            },
        )
        .unwrap();
    p.record_branch(1, true);
    p.record_branch(2, true);
    p.record_branch(u16::MAX, false);
    p.record_receiver(0, 1);
    let got = collect(&r);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.counter, Counter::Branch { site: 1, taken: true });
    assert_eq!(got[0].2, 1);

    let empty = r
        .method(function("f"), MethodId(2), Tier(1), MethodShape::default())
        .unwrap();
    empty.record_branch(0, false);
    empty.record_invocation();
    assert_eq!(value(&r, &empty, Counter::Invocations), 1);
    assert_eq!(value(&r, &empty, Counter::Branch { site: 0, taken: false }), 0);
}

#[test]
fn forget_function_drops_only_that_function() {
    let r = recorder(2, 2);
    let (old, new) = (function("old"), function("new"));
    let shape = MethodShape::default();
    let kept = r.method(new, MethodId(1), Tier(1), shape).unwrap();
    let mut dropped = Vec::new();
    for m in [0, 1, u32::MAX] {
        for t in [0, u8::MAX] {
            dropped.push(r.method(old, MethodId(m), Tier(t), shape).unwrap());
        }
    }
    assert_eq!(r.len(), 7);
    r.forget_function(old);
    assert_eq!(r.len(), 1);
    assert!(!r.is_empty());
    // Old handles keep working but are no longer visited.
    for p in &dropped {
        p.record_invocation();
    }
    kept.record_invocation();
    let got = collect(&r);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, new);
    // Registering again starts from zero.
    let again = r.method(old, MethodId(1), Tier(0), shape).unwrap();
    assert_eq!(value(&r, &again, Counter::Invocations), 0);
    r.forget_function(new);
    r.forget_function(old);
    assert!(r.is_empty());
}

#[test]
fn visits_are_monotone_while_recording() {
    let r = recorder(2, 2);
    let p = r
        .method(
            function("m"),
            MethodId(1),
            Tier(1),
            MethodShape {
                branch_sites: 1,
                call_sites: 1,
            },
        )
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        for t in 0..3u32 {
            let p = p.clone();
            let done = &done;
            s.spawn(move || {
                while !done.load(Relaxed) {
                    p.record_invocation();
                    p.record_receiver(0, t);
                }
            });
        }
        let mut last = BTreeMap::new();
        for _ in 0..200 {
            let now = counters(&r);
            for (key, old) in &last {
                assert!(now.get(key).copied().unwrap_or(0) >= *old, "{key:?} went down");
            }
            let total = now
                .iter()
                .find(|(k, _)| matches!(k.1.counter, Counter::ReceiverTotal { .. }));
            let tracked: u64 = now
                .iter()
                .filter(|(k, _)| matches!(k.1.counter, Counter::Receiver { .. }))
                .map(|(_, v)| v)
                .sum();
            assert!(total.map_or(0, |(_, v)| *v) >= tracked);
            last = now;
        }
        done.store(true, Relaxed);
    });
}

#[test]
fn batched_recording_equals_recording_one_at_a_time() {
    let shape = MethodShape {
        branch_sites: 2,
        call_sites: 2,
    };
    let one = recorder(4, 3);
    let batch = recorder(4, 3);
    let p = one.method(function("f"), MethodId(1), Tier(0), shape).unwrap();
    let q = batch.method(function("f"), MethodId(1), Tier(0), shape).unwrap();
    // (invocations, branch site/taken/n, receiver site/type/n), out-of-range sites included.
    type Run = (u64, (u16, bool, u64), (u16, u32, u64));
    let runs: [Run; 5] = [
        (3, (0, true, 7), (0, 5, 4)),
        (0, (1, false, 2), (1, 9, 0)),
        (1, (0, false, 1), (0, 6, 3)),
        (2, (2, true, 5), (2, 5, 8)),
        (4, (1, true, 9), (0, 7, 2)),
    ];
    for (inv, (bs, taken, bn), (cs, ty, cn)) in runs {
        for _ in 0..inv {
            p.record_invocation();
        }
        for _ in 0..bn {
            p.record_branch(bs, taken);
        }
        for _ in 0..cn {
            p.record_receiver(cs, ty);
        }
        q.record_invocations(inv);
        q.record_branches(bs, taken, bn);
        q.record_receivers(cs, ty, cn);
    }
    let got = collect(&batch);
    assert!(!got.is_empty());
    assert_eq!(got, collect(&one));
}
