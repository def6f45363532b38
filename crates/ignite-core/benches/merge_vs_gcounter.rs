//! The profile state against `crdts::GCounter`, on the same merge: a receiver takes in the
//! states of 1,000 nodes, each 100 counters (50 methods × {invocations, back-edges}), then
//! one round of updates. Ignite's lanes also keep the signed delta for forwarding; the
//! GCounter map keeps only the counts. Live heap is measured with a counting allocator.
//!
//! Run: `cargo bench -p ignite-core --bench merge_vs_gcounter`

use crdts::{CmRDT, CvRDT, GCounter};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use ignite_core::crypto::SigBytes;
use ignite_core::profile::{FunctionState, LaneId, StoredDelta};
use ignite_core::{Counter, CounterKey, FunctionId, GroupId, Incarnation, MethodId, NodeKey, Tier};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout as requested.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const NODES: u32 = 1_000;
const METHODS: u32 = 50;

type Actor = ([u8; 32], u64);

struct NodeState {
    lane: LaneId,
    deltas: Vec<(StoredDelta, Vec<(CounterKey, u64)>)>,
}

fn function() -> FunctionId {
    FunctionId {
        name: [1; 16],
        code: [2; 32],
    }
}

fn entries(node: u32, round: u64) -> Vec<(CounterKey, u64)> {
    let mut e = Vec::new();
    for m in 0..METHODS {
        for counter in [Counter::Invocations, Counter::Backedges] {
            let base = u64::from(node % 97 + m + 1) * if counter == Counter::Backedges { 37 } else { 1 };
            e.push((
                CounterKey {
                    method: MethodId(m),
                    tier: Tier(0),
                    counter,
                },
                base * round,
            ));
        }
    }
    e.sort();
    e
}

fn nodes(rounds: u64) -> Vec<NodeState> {
    (0..NODES)
        .map(|n| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_le_bytes());
            let lane = LaneId {
                function: function(),
                node: NodeKey(key),
                incarnation: Incarnation(1),
                group: GroupId(0),
            };
            let deltas = (1..=rounds)
                .map(|r| {
                    let e = entries(n, r);
                    let d = StoredDelta {
                        seq: r as u32,
                        issued_at: r * 1000,
                        full: r == 1,
                        entries: ignite_core::wire::encode_entries(&e).into(),
                        signature: SigBytes([0; 32], [0; 32]),
                    };
                    (d, e)
                })
                .collect();
            NodeState { lane, deltas }
        })
        .collect()
}

fn ignite_merge(states: &[NodeState], rounds: usize) -> FunctionState {
    let mut f = FunctionState::default();
    for r in 0..rounds {
        for s in states {
            let (d, e) = &s.deltas[r];
            black_box(f.apply_verified(&s.lane, d, e));
        }
    }
    f
}

fn gcounter_merge(states: &[NodeState], rounds: usize) -> BTreeMap<CounterKey, GCounter<Actor>> {
    let mut m: BTreeMap<CounterKey, GCounter<Actor>> = BTreeMap::new();
    for r in 0..rounds {
        for s in states {
            let (_, e) = &s.deltas[r];
            let actor: Actor = (s.lane.node.0, s.lane.incarnation.0);
            for (k, v) in e {
                // The node's state for this counter: one actor at its absolute value.
                let mut theirs = GCounter::new();
                theirs.apply(theirs.inc_many(actor, *v));
                m.entry(*k).or_default().merge(theirs);
            }
        }
    }
    m
}

fn bench(c: &mut Criterion) {
    let states = nodes(2);
    let entries_per_round = u64::from(NODES) * u64::from(METHODS) * 2;
    let mut g = c.benchmark_group("merge_1000_nodes");
    g.throughput(Throughput::Elements(entries_per_round * 2));
    g.bench_function("ignite_lanes", |b| b.iter(|| black_box(ignite_merge(&states, 2))));
    g.bench_function("crdts_gcounter", |b| b.iter(|| black_box(gcounter_merge(&states, 2))));
    g.throughput(Throughput::Elements(entries_per_round));
    g.bench_function("ignite_lanes/update_round", |b| {
        b.iter_batched(
            || ignite_merge(&states, 1),
            |mut f| {
                for s in &states {
                    let (d, e) = &s.deltas[1];
                    black_box(f.apply_verified(&s.lane, d, e));
                }
                f
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn report_memory() {
    let states = nodes(2);
    let before = LIVE.load(Ordering::Relaxed);
    let f = ignite_merge(&states, 2);
    let ignite = LIVE.load(Ordering::Relaxed) - before;
    let before = LIVE.load(Ordering::Relaxed);
    let m = gcounter_merge(&states, 2);
    let gcounter = LIVE.load(Ordering::Relaxed) - before;
    // Same merged totals.
    for (k, gc) in &m {
        let total: u64 = gc.read().try_into().expect("fits in u64");
        assert_eq!(f.merged(k), total, "{k:?}");
    }
    let counters = f64::from(NODES) * f64::from(METHODS) * 2.0;
    println!(
        "merge_vs_gcounter/memory: {NODES} nodes x {} counters: ignite lanes {:.2} MiB ({:.1} B per counter, signed deltas for forwarding included), crdts GCounter map {:.2} MiB ({:.1} B per counter); same totals",
        METHODS * 2,
        ignite as f64 / 1048576.0,
        ignite as f64 / counters,
        gcounter as f64 / 1048576.0,
        gcounter as f64 / counters
    );
    black_box((f, m));
}

criterion_group!(benches, bench);

fn main() {
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        report_memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
