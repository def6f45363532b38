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
//!
//! With `tenants > 1` every peer (machine) runs a node of each tenant in one engine, all
//! tenants deploy the same function (same id), and the tenants share the gossip network;
//! tenant `i` receives a share of the invocations proportional to `i + 1`. With `--faults`
//! the run also has churn ([`crate::churn`]) and, with several tenants, misrouted
//! deliveries (a message also handed to an engine under another tenant's topic).

mod fleet;
mod result;
mod timeline;

pub use result::{ChurnCounts, ScaleResult};
pub use timeline::{Breakdown, KeyTimeline, breakdown as timeline_breakdown, to_csv as timeline_csv};

use crate::churn::{self, ChurnConfig, ChurnKind};
use crate::gossip::GossipConfig;
use crate::net::{NetConfig, Partition, PeerSet};
use crate::rng::{Rng, Zipf};
use crate::world::{Ev, Step, World};
use fleet::{Life, PeerRt, Tenants};
use ignite_core::code::{CodeConfig, CompiledCode, HardwareClass};
use ignite_core::{Config, Counter, Event, FunctionId, Incarnation, MethodId, RecorderConfig, Thresholds, Tier};
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
    /// Longest wait of a busy lane whose only changes are settled counters (the engine's
    /// `settled_publish_ms`; 0 publishes them every interval), ms.
    pub settled_publish_ms: u64,
    /// The engine's `predict_from_pct` (smallest signed share of a threshold from which
    /// it may be reached by prediction; 100 turns prediction off).
    pub predict_from_pct: u32,
    /// The engine's `code.install_announce_pct` (how soon after its last presence a node
    /// announces new installs, in percent of the presence interval).
    pub install_announce_pct: u32,
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
    /// Network faults: 30% loss, 5% duplication, reordering jitter, a partition of zone 0
    /// from the other zones that heals, churn ([`ScaleConfig::churn`]) and, with several
    /// tenants, 1% misrouted deliveries.
    pub faults: bool,
    /// Churn with `faults` (crash and restart with or without a snapshot, leave, join).
    pub churn: ChurnConfig,
    /// Tenants sharing the machines and the gossip network (1 = the scenario as specified).
    pub tenants: u32,
    /// IGN's compile knob: one elected node compiles each key and the fleet installs its
    /// code (false), or every node compiles for itself once the pooled count crosses the
    /// threshold (true; profiles are still shared, code is not).
    pub every_node_compiles: bool,
    /// Queue every publish frame, also those whose receiver already has the message and
    /// would drop them (by default they are counted as sent but not queued, see
    /// [`World::skip_seen_within_us`](crate::world::World::skip_seen_within_us)): every
    /// result is the same either way but `events`.
    pub queue_seen_frames: bool,
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
            settled_publish_ms: Config::default().settled_publish_ms,
            predict_from_pct: Config::default().predict_from_pct,
            install_announce_pct: CodeConfig::default().install_announce_pct,
            compile_ms: [20, 200],
            code_bytes: 4_096,
            settle_ms: 30_000,
            net: NetConfig::default(),
            gossip: GossipConfig::default(),
            faults: false,
            churn: ChurnConfig::default(),
            tenants: 1,
            every_node_compiles: false,
            queue_seen_frames: false,
        }
    }
}

/// Why a scale run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The engine refused a configuration or a tenant.
    #[error(transparent)]
    Engine(#[from] ignite_core::EngineError),
    /// A recorder could not be set up.
    #[error(transparent)]
    Recorder(#[from] ignite_core::RecorderError),
    /// A crashed peer could not restart.
    #[error("restart of peer {peer}: {reason}")]
    Restart {
        /// The peer.
        peer: u32,
        /// Why.
        reason: String,
    },
}

/// Scenario tags: an invocation arrival, the churn event of index `tag >> 8`, the restart
/// after the crash of index `tag >> 8`.
const INVOKE: u64 = 1;
const CHURN: u64 = 2;
const RESTART: u64 = 3;
/// A local compile finished (every-node mode): tenant `tag >> 8 & 0xff`, tier
/// `tag >> 16 & 0xff`, method `tag >> 24`.
const LOCAL_COMPILE: u64 = 4;

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

/// Runs the scale scenario. `progress(invocations_done)` is called now and then.
pub fn run(c: &ScaleConfig, mut progress: impl FnMut(u64)) -> Result<ScaleResult, ScaleError> {
    let tenants = Tenants::new(c.seed, c.tenants);
    let nt = tenants.len();
    let function = FunctionId::from_deployment("scale", b"scale scenario deployment");
    let class = HardwareClass::new("x86_64", "x86-64-v2", "simnet", "1", [0; 32]).expect("class");
    let mut configs = Vec::new();
    for i in 0..c.peers {
        configs.push(Config {
            seed: c.seed ^ u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            publish_floor_ms: c.sync_interval_ms,
            settled_publish_ms: c.settled_publish_ms,
            predict_from_pct: c.predict_from_pct,
            // The mesh drops duplicates before the engine sees them; the engine's own
            // caches of seen messages need not span minutes of fleet traffic.
            seen_cache: 8_192,
            thresholds: c.thresholds,
            recorder: RecorderConfig {
                shards: 1,
                receiver_slots: 0,
            },
            code: CodeConfig {
                // Without a class the engine runs no elections: every node compiles itself.
                hardware: if c.every_node_compiles {
                    Vec::new()
                } else {
                    vec![class.clone()]
                },
                install_announce_pct: c.install_announce_pct,
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
        if nt > 1 {
            world.misroute = 0.01;
        }
    }
    // Churn: drawn before the run, inside the first 70% of the expected traffic time so
    // that restarted peers catch up before the end.
    let warmup_us = 3 * world.heartbeat_us();
    let traffic_us = (c.invocations as f64 / (f64::from(c.peers) * c.rate_per_peer) * 1e6) as u64;
    let plan = if c.faults {
        let mut r = Rng::new(c.seed).child(0x6368_7572_6e00_0000);
        churn::plan(
            c.peers,
            &c.churn,
            warmup_us + traffic_us / 10,
            warmup_us + traffic_us * 7 / 10,
            &mut r,
        )
    } else {
        Vec::new()
    };
    let mut rts: Vec<PeerRt> = (0..c.peers)
        .map(|i| {
            PeerRt::new(
                Rng::new(c.seed).child(0x7065_6572_0000_0000 | u64::from(i)),
                nt,
                c.methods,
            )
        })
        .collect();
    let late: Vec<u32> = plan
        .iter()
        .filter(|e| e.kind == ChurnKind::Join)
        .map(|e| e.peer)
        .collect();
    for i in 0..c.peers {
        if late.contains(&i) {
            continue;
        }
        rts[i as usize].profilers = fleet::join_all(&mut world, i, &tenants, function, c.methods)?;
        rts[i as usize].life = Life::Up;
    }
    for e in &plan {
        if matches!(e.kind, ChurnKind::Crash { snapshot: true, .. }) {
            world.persist[e.peer as usize] = true;
            world.snapshot(e.peer);
        }
    }
    world.start();
    // Let meshes form before traffic starts.
    while world.queue.peek_time().is_some_and(|t| t < warmup_us) {
        world.step();
    }
    world.introduce_mesh_peers();
    let t0 = world.now_us;
    // Frames to peers that already have the message need no event while no peer can crash
    // and come back before they would arrive. Not during the warm-up, whose last event
    // gives `t0`.
    world.skip_seen_within_us = if c.queue_seen_frames {
        0
    } else if c.faults {
        c.churn.down_ms.0.min(c.churn.down_ms.1).saturating_mul(1_000)
    } else {
        u64::MAX
    };
    for (i, rt) in rts.iter_mut().enumerate() {
        if rt.life != Life::Up {
            continue;
        }
        let at = t0 + (rt.rng.exp(c.rate_per_peer) * 1e6) as u64;
        world.queue.push(
            at,
            Ev::Scenario {
                peer: i as u32,
                tag: INVOKE,
            },
        );
    }
    for (idx, e) in plan.iter().enumerate() {
        world.queue.push(
            e.at_us.max(t0),
            Ev::Scenario {
                peer: e.peer,
                tag: CHURN | (idx as u64) << 8,
            },
        );
    }
    let zipf = Zipf::new(c.methods as usize, c.zipf_s);
    let fleet_rate = f64::from(c.peers) * c.rate_per_peer * f64::from(c.calls);
    let rates: Vec<Vec<f64>> = (0..nt)
        .map(|ti| {
            (0..c.methods as usize)
                .map(|k| fleet_rate * tenants.share(ti) * zipf.probability(k))
                .collect()
        })
        .collect();
    let mut timeline = timeline::Timeline::new(t0, c.peers, [c.thresholds.tier1, c.thresholds.tier2], &rates);
    let mut compiles_seen = world.compiles.len();
    let mut done = 0u64;
    let mut warm = 0u64;
    let mut ns_warm = 0u64;
    let mut calls_per_method = vec![vec![0u64; c.methods as usize]; nt];
    // Calls recorded per (tenant, method, tier), at `(ti * methods + m) * 3 + tier`.
    let mut recorded = vec![0u64; nt * c.methods as usize * 3];
    let slot = |ti: usize, m: u32, tier: u8| (ti * c.methods as usize + m as usize) * 3 + usize::from(tier);
    let mut lost: BTreeMap<(usize, u32, u8), u64> = BTreeMap::new();
    let mut churned = ChurnCounts::default();
    let mut install_violations = 0u64;
    let mut thresholds = (0u64, 0u64);
    let mut local_compiles: BTreeMap<(usize, u32, u8), u64> = BTreeMap::new();
    let t2 = c.thresholds.tier2;
    let class_id = class.id();
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
            let event_tenant = match &e {
                Event::ThresholdReached { tenant, .. } => tenants.index(tenant),
                Event::Install(ins) => tenants.index(&ins.tenant),
                _ => None,
            };
            if let Some(ti) = event_tenant {
                timeline.event(world.now_us, p, ti, &e);
            }
            if let Event::ThresholdReached { predicted, .. } = &e {
                if *predicted {
                    thresholds.1 += 1;
                } else {
                    thresholds.0 += 1;
                }
            }
            if let Event::ThresholdReached {
                tenant, method, tier, ..
            } = &e
                && c.every_node_compiles
                && let Some(ti) = tenants.index(tenant)
            {
                let t = usize::from(tier.0.clamp(1, 2)) - 1;
                world.queue.push(
                    world.now_us + c.compile_ms[t] * 1_000,
                    Ev::Scenario {
                        peer: p,
                        tag: LOCAL_COMPILE
                            | (ti as u64) << 8
                            | u64::from(tier.0) << 16
                            | u64::from(method.method.0) << 24,
                    },
                );
            }
            if let Event::Install(ins) = e {
                let st = &ins.manifest.statement;
                let ti = tenants.index(&ins.tenant);
                let ok = ti.is_some()
                    && ins.tenant == st.tenant
                    && st.key.function == function
                    && ins.class.id() == class_id
                    && st.class == class_id;
                let (Some(ti), true) = (ti, ok) else {
                    install_violations += 1;
                    continue;
                };
                if let Some(t) = rts[p as usize].tier[ti].get_mut(st.key.method.0 as usize) {
                    *t = (*t).max(st.key.tier.0);
                }
            }
        }
        // After the events: a compile request follows the threshold event of the same step.
        for i in compiles_seen..world.compiles.len() {
            if let Some(ti) = tenants.index(&world.compile_tenants[i]) {
                let (peer, key) = (world.compiles[i].0, world.compiles[i].1);
                timeline.compile(world.now_us, peer, ti, key.method.0, key.tier);
            }
        }
        compiles_seen = world.compiles.len();
        let Step::Scenario { peer, tag } = ev else {
            continue;
        };
        match tag & 0xff {
            INVOKE => {}
            CHURN => {
                let e = plan[(tag >> 8) as usize];
                let rt = &mut rts[peer as usize];
                match e.kind {
                    ChurnKind::Crash { down_us, .. } => {
                        if rt.life != Life::Up {
                            continue;
                        }
                        rt.crashed_unpublished = fleet::unpublished(&world, peer, &tenants, function);
                        world.crash(peer);
                        rt.life = Life::Down;
                        world.queue.push(
                            world.now_us + down_us,
                            Ev::Scenario {
                                peer,
                                tag: RESTART | (tag >> 8) << 8,
                            },
                        );
                    }
                    ChurnKind::Leave => {
                        if rt.life == Life::Up {
                            world.leave(peer);
                            rt.life = Life::Gone;
                            churned.leaves += 1;
                        }
                    }
                    ChurnKind::Join => {
                        rt.profilers = fleet::join_all(&mut world, peer, &tenants, function, c.methods)?;
                        world.introduce(peer);
                        let rt = &mut rts[peer as usize];
                        rt.life = Life::Up;
                        churned.joins += 1;
                        let at = world.now_us + (rt.rng.exp(c.rate_per_peer) * 1e6).max(1.0) as u64;
                        world.queue.push(at, Ev::Scenario { peer, tag: INVOKE });
                    }
                }
                continue;
            }
            RESTART => {
                let ChurnKind::Crash { snapshot, .. } = plan[(tag >> 8) as usize].kind else {
                    continue;
                };
                let before = std::mem::take(&mut rts[peer as usize].crashed_unpublished);
                let kept = if snapshot {
                    let restart = |reason: String| ScaleError::Restart { peer, reason };
                    let snap = world.last_snapshot(peer).ok_or_else(|| restart("no snapshot".into()))?;
                    world
                        .restart(peer, Some(&snap), Incarnation(rts[peer as usize].incarnation))
                        .map_err(restart)?;
                    rts[peer as usize].profilers = fleet::rejoin_restored(&world, peer, &tenants, function, c.methods)?;
                    churned.restarts_from_snapshot += 1;
                    // What the snapshot still holds unsigned is published after the restart.
                    fleet::unpublished(&world, peer, &tenants, function)
                } else {
                    rts[peer as usize].incarnation += 1;
                    world
                        .restart(peer, None, Incarnation(rts[peer as usize].incarnation))
                        .map_err(|reason| ScaleError::Restart { peer, reason })?;
                    rts[peer as usize].profilers = fleet::join_all(&mut world, peer, &tenants, function, c.methods)?;
                    world.introduce(peer);
                    churned.restarts_without_state += 1;
                    BTreeMap::new()
                };
                for (k, v) in before {
                    let gone = v.saturating_sub(kept.get(&k).copied().unwrap_or(0));
                    if gone > 0 {
                        *lost.entry(k).or_insert(0) += gone;
                    }
                }
                let rt = &mut rts[peer as usize];
                rt.reset_host();
                rt.life = Life::Up;
                let at = world.now_us + (rt.rng.exp(c.rate_per_peer) * 1e6).max(1.0) as u64;
                world.queue.push(at, Ev::Scenario { peer, tag: INVOKE });
                continue;
            }
            LOCAL_COMPILE => {
                let (ti, tier, m) = ((tag >> 8 & 0xff) as usize, (tag >> 16 & 0xff) as u8, (tag >> 24) as u32);
                let rt = &mut rts[peer as usize];
                if rt.life == Life::Up {
                    *local_compiles.entry((ti, m, tier)).or_insert(0) += 1;
                    if let Some(t) = rt.tier[ti].get_mut(m as usize) {
                        *t = (*t).max(tier);
                    }
                    let method = ignite_core::MethodKey {
                        function,
                        method: MethodId(m),
                    };
                    world.engines[peer as usize].set_code_current(&tenants.ids[ti], method, Tier(tier))?;
                }
                continue;
            }
            _ => continue,
        }
        if done >= c.invocations {
            continue;
        }
        let rt = &mut rts[peer as usize];
        match rt.life {
            Life::Up => {}
            // Requests are routed to live peers: this arrival process pauses.
            Life::Gone | Life::Down | Life::Pending => continue,
        }
        done += 1;
        last_invoke_us = world.now_us;
        let ti = tenants.draw(&mut rt.rng);
        for _ in 0..c.calls {
            let m = zipf.sample(&mut rt.rng);
            let tier = rt.tier[ti][m];
            rt.profilers[ti][m][usize::from(tier)].record_invocation();
            timeline.call(world.now_us, ti, m as u32, tier);
            recorded[slot(ti, m as u32, tier)] += 1;
            calls_per_method[ti][m] += 1;
            if tier < 2 {
                warm += 1;
            }
            if rt.local[ti][m] < t2 {
                ns_warm += 1;
            }
            rt.local[ti][m] += 1;
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

    // The floor, per tenant (each tenant's fleet shares only its own profiles).
    let n = f64::from(c.peers);
    let d = c.gossip.mesh_n as f64;
    let hops = if c.peers <= 1 { 0.0 } else { (n.ln() / d.ln()).ceil() };
    let delay_s = c.compile_ms[1] as f64 / 1e3 + hops * world.net.median_link_us() / 1e6;
    let mut warm_min = 0.0;
    for (ti, calls) in calls_per_method.iter().enumerate() {
        for (k, total) in calls.iter().enumerate() {
            warm_min += (*total as f64).min(t2 as f64 + rates[ti][k] * delay_s);
        }
    }

    // Compiles per key (tenant, method, tier, class).
    let mut per_key: BTreeMap<(usize, u32, u8, [u8; 16]), u64> = BTreeMap::new();
    for ((_, key, class, _), tenant) in world.compiles.iter().zip(&world.compile_tenants) {
        let ti = tenants.index(tenant).unwrap_or(usize::MAX);
        *per_key.entry((ti, key.method.0, key.tier.0, class.0)).or_insert(0) += 1;
    }
    for ((ti, m, tier), n) in &local_compiles {
        *per_key.entry((*ti, *m, *tier, class.id().0)).or_insert(0) += n;
    }
    let compiles_per_key_mean = if per_key.is_empty() {
        0.0
    } else {
        per_key.values().sum::<u64>() as f64 / per_key.len() as f64
    };

    // Totals: every live peer, every tenant.
    let mut tenant_totals_exact = vec![true; nt];
    let mut peers_inexact = 0;
    for (p, e) in world.engines.iter().enumerate() {
        if rts[p].life != Life::Up {
            continue;
        }
        let mut exact = true;
        for (ti, id) in tenants.ids.iter().enumerate() {
            let tenant_exact = e.profile(id, &function).is_some_and(|view| {
                (0..c.methods).all(|m| {
                    (0..3u8).all(|t| {
                        let want = recorded[slot(ti, m, t)] - lost.get(&(ti, m, t)).copied().unwrap_or(0);
                        view.count(MethodId(m), Tier(t), Counter::Invocations) == want
                    })
                })
            });
            tenant_totals_exact[ti] &= tenant_exact;
            exact &= tenant_exact;
        }
        if !exact {
            peers_inexact += 1;
        }
    }
    if std::env::var("IGNITE_DUMP_STATS").is_ok() {
        let mut a = [0u64; 8];
        for e in &world.engines {
            let st = e.stats();
            for (i, v) in [
                st.published_messages,
                st.presences_published,
                st.claims_published,
                st.manifests_published,
                st.published_entries,
                st.deltas_applied,
                st.messages_in,
                st.sent_messages,
            ]
            .iter()
            .enumerate()
            {
                a[i] += v;
            }
        }
        eprintln!(
            "published_messages presences claims manifests entries deltas_applied messages_in sent {:?}",
            a
        );
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
        thresholds_signed_predicted: thresholds,
        msgs_per_peer_per_s: during.messages as f64 / n / traffic_seconds,
        bytes_per_peer_per_s: during.bytes as f64 / n / traffic_seconds,
        state_bytes_per_peer_max: world.engines.iter().map(|e| e.state_bytes() as u64).max().unwrap_or(0),
        dissemination_hops_p99: hops_p99,
        lost_unpublished: lost.values().sum(),
        totals_exact: tenant_totals_exact.iter().all(|x| *x),
        peers_inexact,
        sim_seconds,
        signatures_verified: verified,
        signatures_reused: reused_v,
        opens,
        opens_reused: reused_o,
        merges: world.shared.merges().0,
        merges_reused: world.shared.merges().1,
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
        tenants: nt as u32,
        every_node_compiles: c.every_node_compiles,
        churn: churned,
        install_violations,
        misrouted: (world.traffic.misrouted, world.traffic.misrouted_accepted),
        tenant_totals_exact,
        timeline: timeline.finish(),
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
