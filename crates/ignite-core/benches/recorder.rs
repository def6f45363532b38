//! Cost of recording JIT profile counts through a [`MethodProfiler`].
//!
//! Multi-threaded cases use `iter_custom`: each thread waits on a barrier, times its own
//! `iters` records, and the slowest thread's time is reported, so the figure is wall time per
//! record per thread. The `threads/1` baseline is measured the same way (one spawned thread),
//! so `threads/2 / threads/1` is the contention ratio.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use ignite_core::ids::{FunctionId, MethodId, Tier};
use ignite_core::recorder::{MethodProfiler, MethodShape, Recorder, RecorderConfig};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn profiler(shape: MethodShape) -> MethodProfiler {
    let recorder = Recorder::new(RecorderConfig::default()).expect("default config is valid");
    let function = FunctionId::from_deployment("bench", b"bench code");
    recorder
        .method(function, MethodId(1), Tier(1), shape)
        .expect("fresh method")
}

/// Runs `work(iters)` on `threads` fresh threads started together; returns the slowest
/// thread's own time.
fn parallel<F>(threads: usize, iters: u64, work: F) -> Duration
where
    F: Fn(u64) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let work = Arc::clone(&work);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                // Warm the thread (shard ordinal, caches) before timing.
                work(1);
                barrier.wait();
                let start = Instant::now();
                work(iters);
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread panicked"))
        .max()
        .unwrap_or_default()
}

fn record_invocation(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_invocation");
    let p = profiler(MethodShape::default());
    group.bench_function("uncontended", |b| b.iter(|| black_box(&p).record_invocation()));
    for threads in [1, 2] {
        group.bench_function(format!("threads/{threads}"), |b| {
            b.iter_custom(|iters| {
                let p = p.clone();
                parallel(threads, iters, move |n| {
                    let p = black_box(&p);
                    for _ in 0..n {
                        black_box(p).record_invocation();
                    }
                })
            })
        });
    }
    // Control: each thread updates its own private counter the same way (relaxed load and
    // store), so any slowdown at 2 threads is the machine's (shared cores), not contention.
    for threads in [1, 2] {
        group.bench_function(format!("private_control/threads/{threads}"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, move |n| {
                    let c = std::sync::atomic::AtomicU64::new(0);
                    let c = black_box(&c);
                    for _ in 0..n {
                        let c = black_box(c);
                        c.store(
                            c.load(std::sync::atomic::Ordering::Relaxed) + 1,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                })
            })
        });
    }
    group.finish();
}

fn record_receiver(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_receiver");
    let shape = MethodShape {
        branch_sites: 0,
        call_sites: 4,
    };
    let p = profiler(shape);
    group.bench_function("monomorphic", |b| {
        b.iter(|| black_box(&p).record_receiver(black_box(2), black_box(17)))
    });
    let types = [17u32, 4, 99, 1000];
    let mut i = 0usize;
    group.bench_function("polymorphic_4", |b| {
        b.iter(|| {
            i = (i + 1) & 3;
            black_box(&p).record_receiver(black_box(3), types[i]);
        })
    });
    group.finish();
}

fn atomic_fetch_add(c: &mut Criterion) {
    let mut group = c.benchmark_group("atomic_fetch_add");
    let counter = Arc::new(AtomicU64::new(0));
    for threads in [1, 2] {
        group.bench_function(format!("threads/{threads}"), |b| {
            b.iter_custom(|iters| {
                let counter = Arc::clone(&counter);
                parallel(threads, iters, move |n| {
                    let counter = black_box(&*counter);
                    for _ in 0..n {
                        black_box(counter).fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, record_invocation, record_receiver, atomic_fetch_add);
criterion_main!(benches);
