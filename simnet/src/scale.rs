//! The scale scenario: one function of 200 methods; each invocation calls 20 methods drawn
//! by Zipf(1.0); open-loop Poisson arrivals at 20 invocations/s per peer; tier thresholds
//! 200 and 5,000; 3 zones with log-normal link latency (median 1 ms in-zone, 20 ms
//! across); run until 1M invocations, then a quiet period for convergence.
//!
//! "Warm" is a method execution below the top tier (tier 2), whose threshold is `T` =
//! 5,000: the lower bound is `warm_min = Σ_k min(total_k, T + rate_k × (compile_time +
//! ceil(log_D N) × median_link))` over methods `k`, with `rate_k` the fleet-wide call
//! rate of method `k`. No sharing (NS) is reported beside it from the same invocation
//! stream: every peer runs `min(its calls of k, T)` warm itself.

use crate::gossip::GossipConfig;
use crate::net::{NetConfig, Partition, PeerSet};
use crate::rng::{Rng, Zipf};
use crate::world::{Ev, Step, World, ms};
use ignite_core::code::{CodeConfig, CompiledCode, HardwareClass};
use ignite_core::{
    Config, Counter, Event, FunctionId, MethodId, MethodProfiler, MethodShape, RecorderConfig, Roles,
    TenantCredentials, TenantId, TenantRoot, TenantSecrets, Thresholds, Tier,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Parameters of a scale run.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    /// Peers.
    pub peers: u32,
    /// Seed of every draw.
    pub seed: u64,
    /// Function invocations to run (fleet-wide).
    pub invocations: u64,
    /// Methods of the function.
    pub methods: u32,
    /// Methods called per invocation.
    pub calls: u32,
    /// Zipf exponent of method popularity.
    pub zipf_s: f64,
    /// Invocations per second per peer (Poisson).
    pub rate_per_peer: f64,
    /// Tier thresholds.
    pub thresholds: Thresholds,
    /// Interval between a peer's profile publications (the engine's publish floor), ms.
    pub sync_interval_ms: u64,
    /// Compile time of tier 1 and tier 2 code, ms of the compiling host.
    pub compile_ms: [u64; 2],
    /// Size of a compiled artifact, bytes.
    pub code_bytes: usize,
    /// Quiet time after the last invocation, for convergence, ms.
    pub settle_ms: u64,
    /// Network.
    pub net: NetConfig,
    /// Gossip mesh.
    pub gossip: GossipConfig,
    /// Network faults: 30% loss, 5% duplication, reordering jitter and a partition of zone 0
    /// from the other zones that heals (churn is not simulated yet).
    pub faults: bool,
}

impl ScaleConfig {
    /// The scenario exactly as specified, for `peers` peers.
    pub fn new(peers: u32, seed: u64) -> ScaleConfig {
        ScaleConfig {
            peers,
            seed,
            invocations: 1_000_000,
            methods: 200,
            calls: 20,
            zipf_s: 1.0,
            rate_per_peer: 20.0,
            thresholds: Thresholds {
                tier1: 200,
                tier2: 5_000,
            },
            sync_interval_ms: 1_000,
            compile_ms: [20, 200],
            code_bytes: 4_096,
            settle_ms: 30_000,
            net: NetConfig::default(),
            gossip: GossipConfig::default(),
            faults: false,
        }
    }
}

/// What a scale run measured (simulated quantities only: byte-identical per seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleResult {
    /// Peers.
    pub peers: u32,
    /// Function invocations run.
    pub invocations: u64,
    /// Events processed by the simulator.
    pub events: u64,
    /// Method executions below tier 2.
    pub warm_invocations: u64,
    /// The physical floor of warm executions (see the module documentation).
    pub warm_min: f64,
    /// `warm_invocations / warm_min`.
    pub excess_warm: f64,
    /// Warm executions without sharing (same invocation stream).
    pub ns_warm_invocations: u64,
    /// `ns_warm_invocations / warm_min`.
    pub ns_excess_warm: f64,
    /// Publish compiles per (method, tier, class) compiled.
    pub compiles_per_key_mean: f64,
    /// Messages sent per peer per simulated second while invocations ran.
    pub msgs_per_peer_per_s: f64,
    /// Bytes sent per peer per simulated second while invocations ran.
    pub bytes_per_peer_per_s: f64,
    /// Largest engine state of a peer at the end, bytes.
    pub state_bytes_per_peer_max: u64,
    /// 99th percentile of mesh hops to a message's first delivery.
    pub dissemination_hops_p99: u32,
    /// Counts lost to crashes before they were signed.
    pub lost_unpublished: u64,
    /// Every live peer's merged counts equal the recorded totals minus `lost_unpublished`.
    pub totals_exact: bool,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Signature verifications performed once and reused by other engines.
    pub signatures_verified: u64,
    /// Signature checks answered from the shared results.
    pub signatures_reused: u64,
    /// Decryptions performed once.
    pub opens: u64,
    /// Decryptions answered from the shared results.
    pub opens_reused: u64,
    /// Messages and bytes per peer per second, by kind (gossip RPC kind, or `direct` for
    /// anti-entropy and blob transfer).
    pub by_kind_per_peer_per_s: BTreeMap<String, (f64, f64)>,
    /// Engine messages published (deltas, presence, claims, manifests) per peer per second.
    pub published_per_peer_per_s: f64,
}

const INVOKE: u64 = 1;

/// Deterministic compiled bytes for a request (the simulated host compiler).
fn sim_code(req: &ignite_core::code::CompileRequest, size: usize) -> CompiledCode {
    let mut h = blake3::Hasher::new_derive_key("ignite simnet code");
    h.update(&request_bytes(req));
    let mut bytes = vec![0u8; size];
    h.finalize_xof().fill(&mut bytes);
    CompiledCode {
        bytes,
        assumptions: Vec::new(),
    }
}

/// What identifies a compile: key, class and generation (the code depends on nothing else).
fn request_bytes(req: &ignite_core::code::CompileRequest) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&req.key.function.code);
    v.extend_from_slice(&req.key.method.0.to_le_bytes());
    v.push(req.key.tier.0);
    v.extend_from_slice(&req.class.id().0);
    v.extend_from_slice(&req.generation.to_le_bytes());
    v
}

/// Per-peer runtime: profilers per (method, tier) and the tier installed per method.
struct PeerRt {
    profilers: Vec<[MethodProfiler; 3]>,
    tier: Vec<u8>,
    rng: Rng,
    local: Vec<u64>,
}

/// Runs the scale scenario. `progress(invocations_done)` is called now and then.
pub fn run(c: &ScaleConfig, mut progress: impl FnMut(u64)) -> Result<ScaleResult, ignite_core::EngineError> {
    let root = TenantRoot::from_secret(blake3::derive_key("simnet root", &c.seed.to_le_bytes()));
    let secrets = TenantSecrets::from_seed(&blake3::derive_key("simnet secrets", &c.seed.to_le_bytes()));
    let tenant: TenantId = root.id();
    let function = FunctionId::from_deployment("scale", b"scale scenario deployment");
    let class = HardwareClass::new("x86_64", "x86-64-v2", "simnet", "1", [0; 32]).expect("class");
    let start = ms(0);
    let day = 86_400_000;
    let mut configs = Vec::new();
    for i in 0..c.peers {
        configs.push(Config {
            seed: c.seed ^ u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            publish_floor_ms: c.sync_interval_ms,
            // The mesh drops duplicates before the engine sees them; the engine's own
            // caches of seen messages need not span minutes of fleet traffic.
            seen_cache: 8_192,
            thresholds: c.thresholds,
            recorder: RecorderConfig {
                shards: 1,
                receiver_slots: 0,
            },
            code: CodeConfig {
                hardware: vec![class.clone()],
                ..CodeConfig::default()
            },
            ..Config::default()
        });
    }
    let compile_ms = c.compile_ms;
    let code_bytes = c.code_bytes;
    let compiler = Box::new(move |req: &ignite_core::code::CompileRequest| {
        let t = usize::from(req.key.tier.0.clamp(1, 2)) - 1;
        (sim_code(req, code_bytes), compile_ms[t] * 1_000)
    });
    let mut net = c.net.clone();
    if c.faults {
        net.loss = 0.3;
        net.duplicate = 0.05;
        net.reorder_jitter_us = 5_000.0;
    }
    let mut world = World::new(c.seed, configs, net, c.gossip.clone(), compiler)?;
    if c.faults {
        // Zone 0 is cut off both ways from 5 s to 25 s after traffic starts.
        let start = 3 * world.heartbeat_us() + 5_000_000;
        world.net.add_partition(Partition {
            from: PeerSet::Zones(vec![0]),
            to: PeerSet::Zones((1..c.net.zones.max(2)).collect()),
            start_us: start,
            heal_us: start + 20_000_000,
            both_ways: true,
        });
    }
    let shape = MethodShape::default();
    let mut rts = Vec::new();
    for i in 0..c.peers {
        let creds = TenantCredentials::issue(
            &root,
            secrets.clone(),
            &blake3::derive_key("simnet node", &u64::from(i).to_le_bytes()),
            Roles::ALL,
            start,
            start.plus_ms(30 * day),
            u64::from(i),
        );
        let (recorder, topic) = world.engines[i as usize].join_tenant(start, creds)?;
        world.subscribe(i, &topic);
        let profilers = (0..c.methods)
            .map(|m| {
                let p = |t: u8| recorder.method(function, MethodId(m), Tier(t), shape);
                Ok([p(0)?, p(1)?, p(2)?])
            })
            .collect::<Result<Vec<_>, ignite_core::RecorderError>>()?;
        rts.push(PeerRt {
            profilers,
            tier: vec![0; c.methods as usize],
            rng: Rng::new(c.seed).child(0x7065_6572_0000_0000 | u64::from(i)),
            local: vec![0; c.methods as usize],
        });
    }
    world.start();
    // Let meshes form before traffic starts.
    let warmup_us = 3 * world.heartbeat_us();
    while world.queue.peek_time().is_some_and(|t| t < warmup_us) {
        world.step();
    }
    world.introduce_mesh_peers();
    let t0 = world.now_us;
    for (i, rt) in rts.iter_mut().enumerate() {
        let at = t0 + (rt.rng.exp(c.rate_per_peer) * 1e6) as u64;
        world.queue.push(
            at,
            Ev::Scenario {
                peer: i as u32,
                tag: INVOKE,
            },
        );
    }
    let zipf = Zipf::new(c.methods as usize, c.zipf_s);
    let mut done = 0u64;
    let mut warm = 0u64;
    let mut ns_warm = 0u64;
    let mut calls_per_method = vec![0u64; c.methods as usize];
    let mut recorded: BTreeMap<(u32, u8), u64> = BTreeMap::new();
    let t2 = c.thresholds.tier2;
    let mut last_invoke_us = t0;
    let mut end_us = u64::MAX;
    // Traffic while invocations ran (rates exclude the quiet period).
    let mut during = None;
    loop {
        if world.queue.peek_time().is_none_or(|t| t > end_us) {
            break;
        }
        let ev = world.step();
        if ev == Step::Idle {
            break;
        }
        for (p, e) in world.events.drain(..) {
            if let Event::Install(ins) = e {
                let k = ins.manifest.statement.key;
                let rt = &mut rts[p as usize];
                if let Some(t) = rt.tier.get_mut(k.method.0 as usize) {
                    *t = (*t).max(k.tier.0);
                }
            }
        }
        let Step::Scenario { peer, tag: INVOKE } = ev else {
            continue;
        };
        if done >= c.invocations {
            continue;
        }
        done += 1;
        last_invoke_us = world.now_us;
        let rt = &mut rts[peer as usize];
        for _ in 0..c.calls {
            let m = zipf.sample(&mut rt.rng);
            let tier = rt.tier[m];
            rt.profilers[m][usize::from(tier)].record_invocation();
            *recorded.entry((m as u32, tier)).or_insert(0) += 1;
            calls_per_method[m] += 1;
            if tier < 2 {
                warm += 1;
            }
            if rt.local[m] < t2 {
                ns_warm += 1;
            }
            rt.local[m] += 1;
        }
        if done.is_multiple_of(10_000) {
            progress(done);
        }
        if done < c.invocations {
            let at = world.now_us + (rt.rng.exp(c.rate_per_peer) * 1e6).max(1.0) as u64;
            world.queue.push(at, Ev::Scenario { peer, tag: INVOKE });
        } else {
            end_us = world.now_us + c.settle_ms * 1_000;
            during = Some(world.traffic.clone());
        }
    }
    progress(done);
    let sim_seconds = (world.now_us - t0) as f64 / 1e6;
    let during = during.unwrap_or_else(|| world.traffic.clone());
    let traffic_seconds = ((last_invoke_us - t0) as f64 / 1e6).max(1e-9);

    // The floor.
    let n = f64::from(c.peers);
    let d = c.gossip.mesh_n as f64;
    let hops = if c.peers <= 1 { 0.0 } else { (n.ln() / d.ln()).ceil() };
    let delay_s = c.compile_ms[1] as f64 / 1e3 + hops * world.net.median_link_us() / 1e6;
    let fleet_rate = n * c.rate_per_peer * f64::from(c.calls);
    let warm_min: f64 = (0..c.methods as usize)
        .map(|k| {
            let total = calls_per_method[k] as f64;
            let rate_k = fleet_rate * zipf.probability(k);
            total.min(t2 as f64 + rate_k * delay_s)
        })
        .sum();

    // Compiles per key.
    let mut per_key: BTreeMap<(u32, u8, [u8; 16]), u64> = BTreeMap::new();
    for (_, key, class, _) in &world.compiles {
        *per_key.entry((key.method.0, key.tier.0, class.0)).or_insert(0) += 1;
    }
    let compiles_per_key_mean = if per_key.is_empty() {
        0.0
    } else {
        per_key.values().sum::<u64>() as f64 / per_key.len() as f64
    };

    // Totals.
    let mut totals_exact = true;
    for e in &world.engines {
        let Some(view) = e.profile(&tenant, &function) else {
            totals_exact = false;
            break;
        };
        for ((m, t), v) in &recorded {
            if view.count(MethodId(*m), Tier(*t), Counter::Invocations) != *v {
                totals_exact = false;
            }
        }
    }
    let hops_p99 = percentile(&world.traffic.hops, 0.99);
    let ((verified, opens), (reused_v, reused_o)) = world.crypto_work();
    Ok(ScaleResult {
        peers: c.peers,
        invocations: done,
        events: world.queue.popped(),
        warm_invocations: warm,
        warm_min,
        excess_warm: warm as f64 / warm_min.max(1.0),
        ns_warm_invocations: ns_warm,
        ns_excess_warm: ns_warm as f64 / warm_min.max(1.0),
        compiles_per_key_mean,
        msgs_per_peer_per_s: during.messages as f64 / n / traffic_seconds,
        bytes_per_peer_per_s: during.bytes as f64 / n / traffic_seconds,
        state_bytes_per_peer_max: world.engines.iter().map(|e| e.state_bytes() as u64).max().unwrap_or(0),
        dissemination_hops_p99: hops_p99,
        lost_unpublished: 0,
        totals_exact,
        sim_seconds,
        signatures_verified: verified,
        signatures_reused: reused_v,
        opens,
        opens_reused: reused_o,
        by_kind_per_peer_per_s: during
            .by_kind
            .iter()
            .map(|(k, (m, b))| {
                (
                    k.to_string(),
                    (*m as f64 / n / traffic_seconds, *b as f64 / n / traffic_seconds),
                )
            })
            .collect(),
        published_per_peer_per_s: during.published as f64 / n / traffic_seconds,
    })
}

fn percentile(h: &BTreeMap<u32, u64>, q: f64) -> u32 {
    let total: u64 = h.values().sum();
    let want = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (k, v) in h {
        seen += v;
        if seen >= want {
            return *k;
        }
    }
    0
}
