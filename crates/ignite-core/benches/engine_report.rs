//! One-shot reports of the engine's wire and memory cost (printed, deterministic except the
//! times they print):
//!
//! * `report/bytes_per_counter`: encoded bytes per published counter for a recorder of 200
//!   methods under Zipf(1.0) traffic, publishing every second for 30 s of virtual time.
//! * `report/memory`: state held by one engine receiving deltas from 1,000 nodes × 200
//!   methods, by `Engine::state_bytes` and by the process RSS.
//!
//! Run: `cargo bench -p ignite-core --bench engine_report -- [report/memory|report/bytes_per_counter]`.

#[path = "support/mod.rs"]
mod support;

use ignite_core::profile::StoredDelta;
use ignite_core::rng::SplitMix64;
use ignite_core::tenancy::SignedCert;
use ignite_core::wire::{self, Body, Envelope, Limits, Sealer};
use ignite_core::{
    Config, CounterKey, Engine, GroupId, Incarnation, MethodId, MethodProfiler, MethodShape, Output, Tier,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use support::*;

// ---------------------------------------------------------------------------------------
// One-shot reports.
// ---------------------------------------------------------------------------------------

/// A Zipf(s) sampler over ranks `0..n` (rank 0 most frequent), by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|c| *c <= u).min(self.cdf.len() - 1)
    }
}

/// A fixed permutation of `0..n`, so that hot methods are spread over method ids and groups.
fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..n as u32).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        ids.swap(i, rng.below(i as u64 + 1) as usize);
    }
    ids
}

const METHODS: usize = 200;
const METHODS_PER_INVOCATION: usize = 20;
const PUBLICATIONS: u64 = 30;

/// Where the published bytes went, summed over every published message.
#[derive(Default, Debug)]
struct Breakdown {
    messages: u64,
    bytes: u64,
    /// Envelope: version, tag, epoch, nonce, length prefix and the AEAD tag.
    envelope: u64,
    /// Encoded certificates.
    certs: u64,
    /// Encoded function ids.
    functions: u64,
    /// Encoded entries (what the signatures cover besides the header).
    entries_bytes: u64,
    /// Delta framing: indexes, incarnation, group, seq, time, flag, signature, lengths.
    delta_headers: u64,
    deltas: u64,
    entries: u64,
    full_entries: u64,
}

impl Breakdown {
    fn add(&mut self, sealer: &Sealer, bytes: &[u8]) {
        let limits = Limits::default();
        let env = Envelope::decode(bytes, &limits).expect("own message decodes");
        let plain = sealer.open(&env).expect("own message opens");
        let Body::Deltas(batch) = Body::decode(&plain, &limits).expect("own body decodes") else {
            return;
        };
        let certs: u64 = batch
            .certs
            .iter()
            .map(|c| postcard::to_allocvec(c).expect("encodes").len() as u64)
            .sum();
        let functions: u64 = batch
            .functions
            .iter()
            .map(|f| postcard::to_allocvec(f).expect("encodes").len() as u64)
            .sum();
        let entries_bytes: u64 = batch.deltas.iter().map(|d| d.entries.len() as u64).sum();
        self.messages += 1;
        self.bytes += bytes.len() as u64;
        self.envelope += (bytes.len() - plain.len()) as u64;
        self.certs += certs;
        self.functions += functions;
        self.entries_bytes += entries_bytes;
        self.delta_headers += plain.len() as u64 - certs - functions - entries_bytes;
        for d in &batch.deltas {
            let n = wire::decode_entries(d.entries, &limits).expect("entries decode").len() as u64;
            self.deltas += 1;
            self.entries += n;
            if d.full {
                self.full_entries += n;
            }
        }
    }
}

/// Runs one publishing engine for 30 s of virtual time; returns (published bytes, published
/// entries as the engine counts them, counters that really changed, breakdown).
fn publication_run(shape: MethodShape, invocations_per_s: u32) -> (u64, u64, u64, Breakdown) {
    let tenant = Tenant::new();
    let mut engine = Engine::new(Config::default(), Incarnation(1)).expect("default config is valid");
    let (recorder, _topic) = engine
        .join_tenant(T0, tenant.creds(&tenant.node(0)))
        .expect("valid credentials");
    let function = bench_function_id();
    let profilers: Vec<MethodProfiler> = permutation(METHODS, 11)
        .into_iter()
        .map(|m| {
            recorder
                .method(function, MethodId(m), Tier(0), shape)
                .expect("registers")
        })
        .collect();
    let zipf = Zipf::new(METHODS, 1.0);
    let mut rng = SplitMix64::new(42);
    let mut breakdown = Breakdown::default();
    let mut previous: BTreeMap<CounterKey, u64> = BTreeMap::new();
    let mut changed = 0u64;
    for second in 0..PUBLICATIONS {
        for _ in 0..invocations_per_s {
            for _ in 0..METHODS_PER_INVOCATION {
                let p = &profilers[zipf.sample(&mut rng)];
                p.record_invocation();
                p.record_backedges(rng.below(64));
                for site in 0..shape.branch_sites {
                    p.record_branch(site, rng.below(10) < 7);
                }
                for site in 0..shape.call_sites {
                    // Mostly monomorphic sites, with a tail of other receiver types.
                    let type_id = match rng.below(100) {
                        0..90 => u32::from(site),
                        90..98 => 100 + u32::from(site),
                        r => 1_000 + r as u32,
                    };
                    p.record_receiver(site, type_id);
                }
            }
        }
        // Ground truth: counters that changed since the previous publication.
        let mut current = BTreeMap::new();
        recorder.visit(|_, k, v| {
            current.insert(k, v);
        });
        changed += current.iter().filter(|(k, v)| previous.get(k) != Some(v)).count() as u64;
        previous = current;
        let until = T0.plus_ms((second + 1) * 1_000);
        while let Some(t) = engine.poll_timeout().filter(|t| *t <= until) {
            engine.handle_timeout(t);
            while let Some(out) = engine.poll_output() {
                if let Output::Publish { bytes, .. } = out {
                    breakdown.add(&tenant.sealer, &bytes);
                }
            }
        }
    }
    let stats = engine.stats();
    assert_eq!(stats.published_bytes, breakdown.bytes);
    assert_eq!(stats.published_messages, PUBLICATIONS, "one message per publication");
    (stats.published_bytes, stats.published_entries, changed, breakdown)
}

fn report_bytes() {
    println!(
        "report/bytes_per_counter: 200 methods, {METHODS_PER_INVOCATION} Zipf(1.0) methods per invocation, publishing every 1 s for {PUBLICATIONS} s (target <= 8 B per changed counter)"
    );
    let shapes = [
        ("invocations+backedges", MethodShape::default()),
        (
            "+2 branch sites, 1 call site",
            MethodShape {
                branch_sites: 2,
                call_sites: 1,
            },
        ),
    ];
    for (name, shape) in shapes {
        for rate in [10, 100, 1_000] {
            let start = Instant::now();
            let (bytes, entries, changed, b) = publication_run(shape, rate);
            let per = |n: u64| n as f64 / changed as f64;
            println!(
                "report/bytes_per_counter/{name}/{rate}_inv_per_s: {:.2} B per published entry \
                 ({bytes} B / {entries} entries, {} in full deltas); {:.2} B per changed counter \
                 ({changed} changed); per changed counter: entries {:.2}, delta headers+sigs {:.2} \
                 ({} deltas), cert {:.2}, function id {:.2}, envelope+AEAD {:.2} [{:.1} ms]",
                bytes as f64 / entries as f64,
                b.full_entries,
                per(bytes),
                per(b.entries_bytes),
                per(b.delta_headers),
                b.deltas,
                per(b.certs),
                per(b.functions),
                per(b.envelope),
                start.elapsed().as_secs_f64() * 1e3,
            );
            if b.entries != entries {
                println!(
                    "report/bytes_per_counter/{name}/{rate}_inv_per_s: NOTE engine counted {entries} published \
                     entries, the messages hold {}",
                    b.entries
                );
            }
        }
    }
}

/// The process's resident set size in bytes, from /proc/self/status.
fn vm_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

const FLEET: u32 = 1_000;

/// Signed messages of one round of a fleet, and the heap bytes their deltas take once
/// stored by a receiver (encoded entries plus the `StoredDelta` itself).
struct Round {
    messages: Vec<Vec<u8>>,
    stored_bytes: u64,
}

/// The receiver's state after a round, as `report_memory` prints it.
fn print_state(label: &str, engine: &Engine, held: u64, stored: u64, rss: String, detail: String) {
    let state = engine.state_bytes() as u64;
    let certs = (FLEET as u64 + 1) * (std::mem::size_of::<SignedCert>() as u64 + 48);
    println!(
        "report/memory/{label}: state_bytes {state} B = {:.2} MiB ({:.1} B per held counter); of which stored \
         signed deltas {:.2} MiB, certificates {:.2} MiB, counter values + lane/sum overhead {:.2} MiB \
         (values alone at 24 B per counter: {:.2} MiB); RSS delta since before ingest {rss}; {detail}",
        mib(state),
        state as f64 / held as f64,
        mib(stored),
        mib(certs),
        mib(state.saturating_sub(stored + certs)),
        mib(held * 24),
    );
}

fn report_memory() {
    println!(
        "report/memory: one receiver, {FLEET} nodes x {METHODS} methods x {{invocations, backedges}} at tier 0, \
         one function, default config ({} groups, full_every {}) (target <= 8 MiB)",
        Config::default().groups,
        Config::default().full_every
    );
    println!(
        "report/memory: size_of (CounterKey, u64) = {} B, StoredDelta = {} B, SignedCert = {} B",
        std::mem::size_of::<(CounterKey, u64)>(),
        std::mem::size_of::<StoredDelta>(),
        std::mem::size_of::<SignedCert>()
    );
    let tenant = Tenant::new();
    let function = bench_function_id();
    let groups = Config::default().groups;
    let all_methods: Vec<MethodId> = (0..METHODS as u32).map(MethodId).collect();
    let lanes: Vec<(LaneSpec, Vec<CounterKey>)> = (0..groups)
        .map(|g| {
            let group = GroupId(g);
            let methods: Vec<MethodId> = all_methods
                .iter()
                .copied()
                .filter(|m| GroupId::of(*m, groups) == group)
                .collect();
            let lane = LaneSpec {
                function,
                incarnation: Incarnation(1),
                group,
            };
            (lane, inv_backedge_keys(&methods))
        })
        .collect();
    let counters: usize = lanes.iter().map(|(_, k)| k.len()).sum();
    assert_eq!(counters, 2 * METHODS);
    let held = FLEET as u64 * counters as u64;

    let start = Instant::now();
    let nodes: Vec<Node> = (0..FLEET).map(|i| tenant.node(1 + i)).collect();
    let mut rng = SplitMix64::new(5);
    // Each node's current values, per lane.
    let mut values: Vec<Vec<Vec<(CounterKey, u64)>>> = nodes
        .iter()
        .map(|_| {
            lanes
                .iter()
                .map(|(_, keys)| keys.iter().map(|k| (*k, 1 + rng.below(100_000))).collect())
                .collect()
        })
        .collect();
    // One message per node holding its deltas of the round (one per lane with changes).
    let make_round = |round: u32, full: bool, changes: &[Vec<Vec<(CounterKey, u64)>>]| -> Round {
        let mut stored_bytes = 0u64;
        let messages = nodes
            .iter()
            .zip(changes)
            .map(|(node, per_lane)| {
                let deltas: Vec<(LaneSpec, StoredDelta)> = lanes
                    .iter()
                    .zip(per_lane)
                    .filter(|(_, entries)| !entries.is_empty())
                    .map(|((lane, _), entries)| {
                        let at = T0.plus_ms(u64::from(round) * 1_000);
                        (*lane, sign_delta(&tenant, node, *lane, round, at, full, entries))
                    })
                    .collect();
                stored_bytes += deltas
                    .iter()
                    .map(|(_, d)| (d.entries.len() + std::mem::size_of::<StoredDelta>()) as u64)
                    .sum::<u64>();
                let items: Vec<(&SignedCert, LaneSpec, &StoredDelta)> =
                    deltas.iter().map(|(lane, d)| (&node.cert, *lane, d)).collect();
                seal_batch(&tenant, &items, None)
            })
            .collect();
        Round { messages, stored_bytes }
    };
    let first = make_round(1, true, &values);
    let build = start.elapsed();
    let wire_bytes: usize = first.messages.iter().map(Vec::len).sum();

    let (mut engine, topic) = tenant.receiver();
    let rss_before = vm_rss();
    let start = Instant::now();
    for m in &first.messages {
        assert_eq!(
            deliver(&mut engine, &topic, T0.plus_ms(1_000), m).deltas_applied,
            lanes.len()
        );
    }
    let ingest = start.elapsed();
    let mut stored = first.stored_bytes;
    print_state(
        "1_full_delta_per_lane",
        &engine,
        held,
        stored,
        rss_delta(rss_before, vm_rss()),
        format!(
            "built {FLEET} nodes' signed deltas ({} signatures + {FLEET} certificates, {:.2} MiB on the wire) in \
             {:.0} ms, ingested in {:.0} ms ({:.1} us per message)",
            FLEET as usize * lanes.len(),
            mib(wire_bytes as u64),
            build.as_secs_f64() * 1e3,
            ingest.as_secs_f64() * 1e3,
            ingest.as_secs_f64() * 1e6 / f64::from(FLEET),
        ),
    );
    drop(first);

    // Steady state: 15 partial deltas per lane (rounds 2..=16), each raising the counters of
    // the methods one node's traffic touched in a second (200 Zipf(1.0) draws); the state
    // just before the next full delta is the largest an honest fleet makes a lane hold.
    // Round 17 is full (every counter), as the default `full_every` of 16 makes it.
    let zipf = Zipf::new(METHODS, 1.0);
    let order = permutation(METHODS, 11);
    let (mut build, mut ingest) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let mut partial_entries = 0u64;
    for round in 2..=17u32 {
        let full = round == 17;
        let start = Instant::now();
        let changes: Vec<Vec<Vec<(CounterKey, u64)>>> = values
            .iter_mut()
            .map(|per_lane| {
                let touched: BTreeSet<MethodId> = (0..200).map(|_| MethodId(order[zipf.sample(&mut rng)])).collect();
                per_lane
                    .iter_mut()
                    .map(|lane_values| {
                        let mut out = Vec::new();
                        for (k, v) in lane_values.iter_mut() {
                            if touched.contains(&k.method) {
                                *v += 1 + rng.below(50);
                            }
                            if full || touched.contains(&k.method) {
                                out.push((*k, *v));
                            }
                        }
                        out
                    })
                    .collect()
            })
            .collect();
        let r = make_round(round, full, &changes);
        build += start.elapsed();
        let now = T0.plus_ms(u64::from(round) * 1_000);
        let start = Instant::now();
        for m in &r.messages {
            assert!(deliver(&mut engine, &topic, now, m).deltas_applied > 0);
        }
        ingest += start.elapsed();
        if full {
            stored = r.stored_bytes;
            print_state(
                "after_full_round_17",
                &engine,
                held,
                stored,
                rss_delta(rss_before, vm_rss()),
                "every lane holds one full delta again".to_owned(),
            );
        } else {
            stored += r.stored_bytes;
            partial_entries += changes.iter().flatten().map(|l| l.len() as u64).sum::<u64>();
        }
        if round == 16 {
            print_state(
                "after_16_rounds",
                &engine,
                held,
                stored,
                rss_delta(rss_before, vm_rss()),
                format!(
                    "1 full + 15 partial deltas per lane ({partial_entries} partial entries); rounds 2..=16 built in \
                     {:.0} ms, ingested in {:.0} ms",
                    build.as_secs_f64() * 1e3,
                    ingest.as_secs_f64() * 1e3
                ),
            );
        }
    }
    let s = engine.stats();
    // Hash caches are not part of `state_bytes`: each entry is a 32-byte hash in a BTreeSet
    // and again in a VecDeque.
    println!(
        "report/memory: not in state_bytes: duplicate caches (message hashes seen {}, delta hashes <= {} of \
         cap {}), about 80 B per entry",
        s.messages_in - s.duplicate_messages,
        (s.deltas_applied + s.deltas_duplicate).min(Config::default().seen_cache as u64),
        Config::default().seen_cache
    );
    assert!(s.rejected.is_empty(), "{:?}", s.rejected);
}

fn rss_delta(before: Option<u64>, after: Option<u64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{:.2} MiB", mib(a.saturating_sub(b))),
        _ => "unavailable".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Entry point.
// ---------------------------------------------------------------------------------------

/// Criterion options that take a value (so the value is not taken for the filter).
const VALUE_OPTIONS: &[&str] = &[
    "-c",
    "--color",
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--format",
    "--profile-time",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
];

/// The benchmark filter given on the command line, if any.
fn cli_filter(args: &[String]) -> Option<&str> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if VALUE_OPTIONS.contains(&a) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            return Some(a);
        }
        i += 1;
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--test` (cargo test --benches) and `--list` run nothing.
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let filter = cli_filter(&args);
    let wants = |name: &str| filter.is_none_or(|f| name.contains(f));
    if wants("report/memory") {
        report_memory();
    }
    if wants("report/bytes_per_counter") {
        report_bytes();
    }
}
