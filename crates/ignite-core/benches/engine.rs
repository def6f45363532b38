//! Benchmarks of the engine's receive path. Every message is real signed, sealed bytes fed
//! to `Engine::handle_message`, as a driver would.
//!
//! * `merge/*`: a steady stream of 1,000-entry deltas of one lane. `first_delivery` is the
//!   whole receive cost of a new delta; `resealed_duplicate` is the same kind of message when
//!   the delta is already held (a new envelope, so the delta-level cache answers and neither
//!   the signature check nor the merge runs); `verify_1_signature` and `decode_entries` time
//!   those two steps alone on the same bytes. `first_delivery - resealed_duplicate -
//!   verify_1_signature` is what decoding and merging the entries costs.
//! * `verify/*`: first delivery, exact duplicate (envelope cache) and re-sealed duplicate
//!   (delta cache) of a one-delta message and of a 64-delta message from 64 nodes (batch
//!   verification), and 64 one-delta messages handed over together (`handle_messages`).
//!
//! Run: `cargo bench -p ignite-core --bench engine -- [merge|verify]`.
//! Wire and memory reports: `cargo bench -p ignite-core --bench engine_report`.

#[path = "support/mod.rs"]
mod support;

use criterion::{BatchSize, Criterion, Throughput};
use ignite_core::crypto::{self, BatchItem};
use ignite_core::wire::{self, Limits};
use ignite_core::{Engine, GroupId, Incoming, Peer};
use std::hint::black_box;

use support::*;

// ---------------------------------------------------------------------------------------
// Timed benches.
// ---------------------------------------------------------------------------------------

/// Entries per delta in the merge benches.
const MERGE_ENTRIES: usize = 1_000;

fn bench_merge(c: &mut Criterion) {
    let tenant = Tenant::new();
    let (mut engine, topic) = tenant.receiver();
    let mut stream = Stream::new(&tenant, 1, GroupId(0), MERGE_ENTRIES);
    assert_eq!(stream.keys.len(), MERGE_ENTRIES);
    // Warm the lane (and the certificate cache), as in steady state.
    for _ in 0..32 {
        let msg = next_message(&tenant, &mut stream);
        assert_eq!(deliver(&mut engine, &topic, NOW, &msg).deltas_applied, 1);
    }
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements(MERGE_ENTRIES as u64));

    let applied_before = engine.stats().deltas_applied;
    let mut delivered = 0u64;
    group.bench_function("first_delivery", |b| {
        b.iter_batched(
            || next_message(&tenant, &mut stream),
            |msg| {
                delivered += 1;
                deliver(&mut engine, &topic, NOW, &msg)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(engine.stats().deltas_applied - applied_before, delivered);

    // One more delta, held from now on; re-sealed in a new envelope for every iteration.
    let held_msg = next_message(&tenant, &mut stream);
    assert_eq!(deliver(&mut engine, &topic, NOW, &held_msg).deltas_applied, 1);
    let dup_before = engine.stats().deltas_duplicate;
    let verified_before = engine.stats().signatures_verified;
    let mut filler = 0u64;
    let mut delivered = 0u64;
    group.bench_function("resealed_duplicate", |b| {
        b.iter_batched(
            || {
                filler += 1;
                batch_message(&tenant, std::slice::from_ref(&stream), Some(filler_function(filler)))
            },
            |msg| {
                delivered += 1;
                deliver(&mut engine, &topic, NOW, &msg)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(engine.stats().deltas_duplicate - dup_before, delivered);
    assert_eq!(engine.stats().signatures_verified, verified_before);

    // The two steps the duplicate skips, alone, on the same delta.
    let tenant_id = tenant.root.id();
    let delta = stream.last().clone();
    let signed = delta.signed_bytes(
        &tenant_id,
        &ignite_core::profile::LaneId {
            function: stream.lane.function,
            node: stream.node.cert.cert.node,
            incarnation: stream.lane.incarnation,
            group: stream.lane.group,
        },
    );
    let item = [BatchItem {
        key: stream.node.cert.cert.node.0,
        signed: &signed,
        sig: delta.signature,
    }];
    assert!(crypto::verify_many(&item).iter().all(|r| r.is_ok()));
    group.bench_function("verify_1_signature", |b| {
        b.iter(|| crypto::verify_many(black_box(&item)))
    });
    let limits = Limits::default();
    group.bench_function("decode_entries", |b| {
        b.iter(|| wire::decode_entries(black_box(&delta.entries), &limits).expect("decodes"))
    });
    group.finish();
    assert!(engine.stats().rejected.is_empty(), "{:?}", engine.stats().rejected);
}

/// Entries per delta in the verify benches.
const VERIFY_ENTRIES: usize = 100;
/// Deltas (and distinct signers) in the batch message.
const BATCH: usize = 64;

fn bench_verify(c: &mut Criterion) {
    let tenant = Tenant::new();
    let (mut engine, topic) = tenant.receiver();
    let mut group = c.benchmark_group("verify");

    // One delta per message.
    let mut single = Stream::new(&tenant, 1, GroupId(1), VERIFY_ENTRIES);
    for _ in 0..32 {
        let msg = next_message(&tenant, &mut single);
        assert_eq!(deliver(&mut engine, &topic, NOW, &msg).deltas_applied, 1);
    }
    group.throughput(Throughput::Elements(1));
    let applied_before = engine.stats().deltas_applied;
    let mut delivered = 0u64;
    group.bench_function("single/first", |b| {
        b.iter_batched(
            || next_message(&tenant, &mut single),
            |msg| {
                delivered += 1;
                deliver(&mut engine, &topic, NOW, &msg)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(engine.stats().deltas_applied - applied_before, delivered);

    let held = next_message(&tenant, &mut single);
    assert_eq!(deliver(&mut engine, &topic, NOW, &held).deltas_applied, 1);
    let before = engine.stats().duplicate_messages;
    let mut delivered = 0u64;
    group.bench_function("single/cached_duplicate", |b| {
        b.iter(|| {
            delivered += 1;
            deliver(&mut engine, &topic, NOW, black_box(&held))
        })
    });
    assert_eq!(engine.stats().duplicate_messages - before, delivered);

    let mut filler = 0u64;
    let before = engine.stats().deltas_duplicate;
    let verified_before = engine.stats().signatures_verified;
    let mut delivered = 0u64;
    group.bench_function("single/resealed_duplicate", |b| {
        b.iter_batched(
            || {
                filler += 1;
                batch_message(&tenant, std::slice::from_ref(&single), Some(filler_function(filler)))
            },
            |msg| {
                delivered += 1;
                deliver(&mut engine, &topic, NOW, &msg)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(engine.stats().deltas_duplicate - before, delivered);
    assert_eq!(engine.stats().signatures_verified, verified_before);

    // 64 deltas from 64 nodes per message: batch verification.
    let mut streams: Vec<Stream> = (0..BATCH as u32)
        .map(|i| Stream::new(&tenant, 100 + i, GroupId(0), VERIFY_ENTRIES))
        .collect();
    let next_batch = |streams: &mut [Stream]| {
        for s in streams.iter_mut() {
            s.next_delta(&tenant);
        }
        batch_message(&tenant, streams, None)
    };
    for _ in 0..4 {
        let msg = next_batch(&mut streams);
        assert_eq!(deliver(&mut engine, &topic, NOW, &msg).deltas_applied, BATCH);
    }
    group.throughput(Throughput::Elements(BATCH as u64));
    let applied_before = engine.stats().deltas_applied;
    let mut delivered = 0u64;
    group.bench_function("batch64/first", |b| {
        b.iter_batched(
            || next_batch(&mut streams),
            |msg| {
                delivered += 1;
                deliver(&mut engine, &topic, NOW, &msg)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(engine.stats().deltas_applied - applied_before, delivered * BATCH as u64);

    let held = next_batch(&mut streams);
    assert_eq!(deliver(&mut engine, &topic, NOW, &held).deltas_applied, BATCH);
    group.bench_function("batch64/cached_duplicate", |b| {
        b.iter(|| deliver(&mut engine, &topic, NOW, black_box(&held)))
    });
    let before = engine.stats().deltas_duplicate;
    let verified_before = engine.stats().signatures_verified;
    let mut delivered = 0u64;
    group.bench_function("batch64/resealed_duplicate", |b| {
        b.iter_batched(
            || {
                filler += 1;
                batch_message(&tenant, &streams, Some(filler_function(filler)))
            },
            |msg| {
                delivered += 1;
                deliver(&mut engine, &topic, NOW, &msg)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(engine.stats().deltas_duplicate - before, delivered * BATCH as u64);
    assert_eq!(engine.stats().signatures_verified, verified_before);

    // 64 one-delta messages from 64 nodes handed over together (`handle_messages`): the
    // engine batch-verifies across messages.
    let mut senders: Vec<Stream> = (0..BATCH as u32)
        .map(|i| Stream::new(&tenant, 200 + i, GroupId(1), VERIFY_ENTRIES))
        .collect();
    let next_messages =
        |senders: &mut [Stream]| -> Vec<Vec<u8>> { senders.iter_mut().map(|s| next_message(&tenant, s)).collect() };
    let deliver_all = |engine: &mut Engine, messages: &[Vec<u8>]| -> usize {
        let incoming: Vec<Incoming<'_>> = messages
            .iter()
            .map(|bytes| Incoming::new(Peer(1), Some(&topic), bytes))
            .collect();
        let applied = engine
            .handle_messages(NOW, &incoming)
            .into_iter()
            .map(|r| r.expect("message accepted").deltas_applied)
            .sum();
        while engine.poll_output().is_some() {}
        applied
    };
    for _ in 0..4 {
        let messages = next_messages(&mut senders);
        assert_eq!(deliver_all(&mut engine, &messages), BATCH);
    }
    let applied_before = engine.stats().deltas_applied;
    let verified_before = engine.stats().signatures_verified;
    let mut delivered = 0u64;
    group.bench_function("messages64/first", |b| {
        b.iter_batched(
            || next_messages(&mut senders),
            |messages| {
                delivered += 1;
                deliver_all(&mut engine, &messages)
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(engine.stats().deltas_applied - applied_before, delivered * BATCH as u64);
    assert_eq!(
        engine.stats().signatures_verified - verified_before,
        delivered * BATCH as u64
    );
    group.finish();
    assert!(engine.stats().rejected.is_empty(), "{:?}", engine.stats().rejected);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_merge(&mut c);
    bench_verify(&mut c);
    c.final_summary();
}
