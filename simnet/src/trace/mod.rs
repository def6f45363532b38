//! The trace scenario: open-loop traffic over many functions of one tenant, served by a
//! container runtime model on every peer, with Ignite (IGN) and no sharing (NS) measured on
//! the same invocation stream.
//!
//! - Functions: [`TraceConfig::functions`] functions of [`TraceConfig::methods`] methods;
//!   function popularity Zipf(1.0); each invocation makes [`TraceConfig::calls`] method
//!   calls drawn Zipf(1.0) over the function's methods.
//! - Arrivals ([`arrivals`]): Poisson or Azure-like bursts at `peers × rate_per_peer`
//!   invocations per second; durations log-normal(μ = −0.38, σ = 2.36) s per function.
//! - Runtime ([`runtime`]): one container per (peer, function) with a keep-alive drawn
//!   uniformly in 10–20 min; an invocation's latency is the cold initialization if it
//!   started a container, plus each call's share of the duration divided by the speedup of
//!   the tier it ran at (1, 3, 10 for tiers 0, 1, 2).
//! - Hardware: even peers run x86-64-v2 code only, odd peers x86-64-v3 code and, second
//!   best, x86-64-v2 code; the engines elect compilers per class.
//! - Speculation break: tier-2 code carries a monomorphic-call assumption; from
//!   [`TraceConfig::break_after_ms`] after traffic starts, on a fraction of the peers,
//!   invocations of one function break it: the host reports the deopt, falls back to a lower
//!   tier and refuses the speculation from then on (its assumption check); the engines
//!   retire the code once deopts come from `retire_min_nodes` nodes and recompile without it.
//!
//! The result ([`TraceResult`]) holds simulated quantities only: byte-identical per seed.

pub mod arrivals;
mod host;
pub mod runtime;

pub use arrivals::{Arrival, ArrivalConfig, ArrivalKind, Arrivals, AzureShape, base_duration_s};
pub use host::{SPECULATION, sim_code};

use crate::gossip::GossipConfig;
use crate::net::NetConfig;
use crate::rng::{Rng, Zipf};
use crate::world::{Ev, Step, World, ms};
use host::{Counts, Host};
use ignite_core::code::{CodeConfig, HardwareClass};
use ignite_core::{
    ClassId, Config, Counter, FunctionId, MethodId, RecorderConfig, Roles, TenantCredentials, TenantId, TenantRoot,
    TenantSecrets, Thresholds, Tier,
};
use runtime::PeerRt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Parameters of a trace run. [`TraceConfig::new`] documents each default and its source.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// Peers.
    pub peers: u32,
    /// Seed of every draw.
    pub seed: u64,
    /// Functions of the tenant.
    pub functions: u32,
    /// Methods per function.
    pub methods: u32,
    /// Method calls per invocation.
    pub calls: u32,
    /// Zipf exponent of function popularity.
    pub function_zipf_s: f64,
    /// Zipf exponent of method popularity within a function.
    pub method_zipf_s: f64,
    /// Arrival process.
    pub arrivals: ArrivalKind,
    /// Shape of Azure-like bursts.
    pub azure: AzureShape,
    /// Mean invocations per second per peer.
    pub rate_per_peer: f64,
    /// Function invocations to run (fleet-wide).
    pub invocations: u64,
    /// Tier thresholds (fleet-wide for IGN, per container for NS), in method calls.
    pub thresholds: Thresholds,
    /// Interval between a peer's profile publications, ms.
    pub sync_interval_ms: u64,
    /// Container keep-alive range, ms (drawn uniformly per container).
    pub keep_alive_ms: (u64, u64),
    /// Initialization of a new container (runtime start, code loading), ms.
    pub cold_init_ms: u64,
    /// Speed of each tier relative to tier 0.
    pub speedup: [f64; 3],
    /// Compile time of tier-1 and tier-2 code on the elected host, ms.
    pub compile_ms: [u64; 2],
    /// Size of a compiled artifact, bytes.
    pub code_bytes: usize,
    /// When the speculation breaks, ms after traffic starts (`None`: halfway through the
    /// expected traffic time, `invocations / (peers × rate_per_peer)`).
    pub break_after_ms: Option<u64>,
    /// Share of the peers on which the speculation breaks (at least one peer).
    pub break_fraction: f64,
    /// The function whose speculation breaks (index; 0 is the most popular).
    pub break_function: u32,
    /// Quiet time after the last invocation, for convergence, ms.
    pub settle_ms: u64,
    /// Network.
    pub net: NetConfig,
    /// Gossip mesh.
    pub gossip: GossipConfig,
    /// Network faults: 30% loss, 5% duplication, reordering jitter up to 5 ms.
    pub faults: bool,
}

impl TraceConfig {
    /// The default trace run for `peers` peers. Sources and assumptions:
    /// - 50 functions of 8 methods, 8 calls per invocation, Zipf(1.0) popularity of
    ///   functions and methods: assumed (one tenant's application).
    /// - 1 invocation per second per peer: assumed (a simulated second costs about the same
    ///   whatever the rate, so a higher rate would shorten the simulated time per
    ///   invocation; a lower one lengthen it). Containers are evicted mostly in the OFF
    ///   periods of bursty arrivals, as in the Azure trace, where 70% of functions are
    ///   invoked less often than every 10–20 minutes (seed paper, §2).
    /// - thresholds 200 and 5,000 calls: HotSpot's tiered policy in spirit (the engine's
    ///   defaults, as in the scale scenario).
    /// - keep-alive 10–20 min: Azure Functions' container recycling (Shahrad et al., cited
    ///   by the seed paper).
    /// - cold initialization 500 ms: assumed (the seed paper's measured cold-start latencies
    ///   are not published).
    /// - speedups 1×, 3×, 10× for tiers 0, 1, 2: assumed, within the seed paper's measured
    ///   3.3–72× (Java) and 3.8–15.2× (JavaScript) hot/warm range.
    /// - compile 20 ms (tier 1) and 200 ms (tier 2), 4 KiB artifacts: as in the scale
    ///   scenario (assumed).
    /// - speculation break on 10% of peers, function 0: assumed.
    pub fn new(peers: u32, seed: u64) -> TraceConfig {
        TraceConfig {
            peers,
            seed,
            functions: 50,
            methods: 8,
            calls: 8,
            function_zipf_s: 1.0,
            method_zipf_s: 1.0,
            arrivals: ArrivalKind::Azure,
            azure: AzureShape::default(),
            rate_per_peer: 1.0,
            invocations: 100_000,
            thresholds: Thresholds {
                tier1: 200,
                tier2: 5_000,
            },
            sync_interval_ms: 1_000,
            keep_alive_ms: (600_000, 1_200_000),
            cold_init_ms: 500,
            speedup: [1.0, 3.0, 10.0],
            compile_ms: [20, 200],
            code_bytes: 4_096,
            break_after_ms: None,
            break_fraction: 0.1,
            break_function: 0,
            settle_ms: 30_000,
            net: NetConfig::default(),
            gossip: GossipConfig::default(),
            faults: false,
        }
    }

    /// Fleet-wide invocations per second.
    pub fn fleet_rate(&self) -> f64 {
        f64::from(self.peers) * self.rate_per_peer
    }

    /// The arrival generator's parameters.
    pub fn arrival_config(&self) -> ArrivalConfig {
        ArrivalConfig {
            kind: self.arrivals,
            peers: self.peers,
            functions: self.functions,
            zipf_s: self.function_zipf_s,
            fleet_rate: self.fleet_rate(),
            shape: self.azure,
        }
    }

    /// When the speculation breaks, ms after traffic starts.
    pub fn break_after(&self) -> u64 {
        self.break_after_ms
            .unwrap_or_else(|| (self.invocations as f64 / self.fleet_rate() * 500.0) as u64)
    }
}

/// Results of the checkers; the run fails when one fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    /// No peer installed code of a class it cannot run.
    pub installs_runnable: bool,
    /// No peer installed code carrying the broken speculation after it observed the break.
    pub no_broken_install_after_break: bool,
    /// Every peer's merged invocation counts equal the recorded totals.
    pub totals_exact: bool,
}

impl Checks {
    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.installs_runnable && self.no_broken_install_after_break && self.totals_exact
    }
}

/// What a trace run measured (simulated quantities only: byte-identical per seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceResult {
    /// Peers.
    pub peers: u32,
    /// Functions.
    pub functions: u32,
    /// Arrival process.
    pub arrivals: ArrivalKind,
    /// Function invocations run.
    pub invocations: u64,
    /// Events processed by the simulator.
    pub events: u64,
    /// Simulated seconds (traffic and quiet period).
    pub sim_seconds: f64,
    /// Simulated seconds from the start of traffic to the last invocation.
    pub traffic_seconds: f64,
    /// Invocations that started a new container (the same for IGN and NS).
    pub cold_starts: u64,
    /// Containers evicted after an idle time longer than their keep-alive (found by the
    /// next invocation, or idle past it when traffic ended).
    pub evictions: u64,
    /// IGN: cold starts whose first invocation ran tier-2 code.
    pub hot_starts: u64,
    /// IGN: `hot_starts / cold_starts`.
    pub hot_start_share: f64,
    /// NS: cold starts whose first invocation ran tier-2 code (a new container starts at
    /// tier 0, so none).
    pub ns_hot_starts: u64,
    /// NS: `ns_hot_starts / cold_starts`.
    pub ns_hot_start_share: f64,
    /// Method calls executed.
    pub method_executions: u64,
    /// IGN: method calls run below tier 2.
    pub warm_executions: u64,
    /// NS: method calls run below tier 2.
    pub ns_warm_executions: u64,
    /// IGN: median invocation latency, ms.
    pub latency_p50_ms: f64,
    /// IGN: 99th percentile invocation latency, ms.
    pub latency_p99_ms: f64,
    /// NS: median invocation latency, ms.
    pub ns_latency_p50_ms: f64,
    /// NS: 99th percentile invocation latency, ms.
    pub ns_latency_p99_ms: f64,
    /// Compile requests (publish compiles).
    pub compiles: u64,
    /// Compiles per election (function, method, tier, class, generation) compiled.
    pub compiles_per_key_mean: f64,
    /// Compiles by class level.
    pub compiles_by_class: BTreeMap<String, u64>,
    /// Code installs.
    pub installs: u64,
    /// Code installs by class level.
    pub installs_by_class: BTreeMap<String, u64>,
    /// Code uninstalls (retired or no longer holding code).
    pub uninstalls: u64,
    /// Deoptimizations reported by hosts.
    pub deopts: u64,
    /// Peers on which the speculation breaks.
    pub breaking_peers: u32,
    /// When the speculation broke, s after traffic started.
    pub break_at_s: f64,
    /// Manifests retired (refused as retired by some peer).
    pub retired: u64,
    /// (method, class) of the broken function whose tier-2 code was recompiled without
    /// the speculation and installed.
    pub recompiled_without_speculation: u64,
    /// Messages sent per peer per simulated second while invocations ran.
    pub msgs_per_peer_per_s: f64,
    /// Bytes sent per peer per simulated second while invocations ran.
    pub bytes_per_peer_per_s: f64,
    /// Every peer's merged invocation counts equal the recorded totals.
    pub totals_exact: bool,
    /// Checker results.
    pub checks: Checks,
}

/// The two hardware classes: x86-64-v2 and x86-64-v3.
pub fn classes() -> [HardwareClass; 2] {
    let c = |level| HardwareClass::new("x86_64", level, "simnet", "1", [0; 32]).expect("class");
    [c("x86-64-v2"), c("x86-64-v3")]
}

/// The classes peer `i` runs, best first: x86-64-v2 on even peers, x86-64-v3 then
/// x86-64-v2 on odd peers.
pub fn peer_classes(i: u32) -> Vec<HardwareClass> {
    let [v2, v3] = classes();
    if i.is_multiple_of(2) { vec![v2] } else { vec![v3, v2] }
}

/// The id of function `f` (a deployment of its own).
pub fn function_id(f: u32) -> FunctionId {
    FunctionId::from_deployment(&format!("fn{f}"), format!("trace deployment {f}").as_bytes())
}

/// Which peers break the speculation: `ceil(fraction × peers)` (at least one), chosen by a
/// seeded shuffle.
pub fn breaking_peers(c: &TraceConfig) -> Vec<u32> {
    let n = ((c.break_fraction * f64::from(c.peers)).ceil() as u32).clamp(1, c.peers);
    let mut all: Vec<u32> = (0..c.peers).collect();
    Rng::new(c.seed).child(0x6272_6561_6b00).shuffle(&mut all);
    let mut out = all[..n as usize].to_vec();
    out.sort_unstable();
    out
}

fn engine_configs(c: &TraceConfig) -> Vec<Config> {
    (0..c.peers)
        .map(|i| Config {
            seed: c.seed ^ u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            publish_floor_ms: c.sync_interval_ms,
            seen_cache: 8_192,
            thresholds: c.thresholds,
            // Rarely invoked functions must not be dropped during a long run.
            function_ttl_ms: 7 * 86_400_000,
            recorder: RecorderConfig {
                shards: 1,
                receiver_slots: 0,
            },
            code: CodeConfig {
                hardware: peer_classes(i),
                ..CodeConfig::default()
            },
            ..Config::default()
        })
        .collect()
}

const INVOKE: u64 = 1 << 32;

/// The world with every peer joined and meshes formed, and the host model; traffic starts
/// at the world's current time.
fn setup(c: &TraceConfig) -> Result<(World, Host), ignite_core::EngineError> {
    let root = TenantRoot::from_secret(blake3::derive_key("simnet root", &c.seed.to_le_bytes()));
    let secrets = TenantSecrets::from_seed(&blake3::derive_key("simnet secrets", &c.seed.to_le_bytes()));
    let tenant: TenantId = root.id();
    let start = ms(0);
    let day = 86_400_000;
    let (compile_ms, code_bytes) = (c.compile_ms, c.code_bytes);
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
    let mut world = World::new(c.seed, engine_configs(c), net, c.gossip.clone(), compiler)?;
    let root_rng = Rng::new(c.seed).child(0x7472_6163_6500);
    let breaking = breaking_peers(c);
    let mut peers = Vec::new();
    let mut recorders = Vec::new();
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
        recorders.push(recorder);
        peers.push(PeerRt {
            classes: peer_classes(i).iter().map(HardwareClass::id).collect(),
            functions: (0..c.functions).map(|_| runtime::FnRt::new(c.methods)).collect(),
            rng: root_rng.child(0x7065_6572_0000_0000 | u64::from(i)),
            breaking: breaking.binary_search(&i).is_ok(),
            observed_break_us: None,
        });
    }
    world.start();
    let warmup_us = 3 * world.heartbeat_us();
    while world.queue.peek_time().is_some_and(|t| t < warmup_us) {
        world.step();
    }
    world.introduce_mesh_peers();
    let t0 = world.now_us;
    // No peer restarts here: frames to peers that have the message need no event (after
    // the warm-up, whose last event gives `t0`).
    world.skip_seen_within_us = u64::MAX;
    let mut dur_rng = root_rng.child(0x6475_7261_7469_6f6e);
    let host = Host {
        tenant,
        function_ids: (0..c.functions).map(function_id).collect(),
        base_s: (0..c.functions).map(|_| base_duration_s(&mut dur_rng)).collect(),
        peers,
        recorders,
        counts: Counts::default(),
        recorded: BTreeMap::new(),
        latency_us: Vec::with_capacity(c.invocations.min(1 << 24) as usize),
        ns_latency_us: Vec::with_capacity(c.invocations.min(1 << 24) as usize),
        break_at_us: t0 + c.break_after() * 1_000,
        methods: Zipf::new(c.methods as usize, c.method_zipf_s),
        rng: root_rng.child(0x0063_616c_6c73),
    };
    Ok((world, host))
}

/// Runs the trace scenario. `progress(invocations_done)` is called now and then.
pub fn run(c: &TraceConfig, mut progress: impl FnMut(u64)) -> Result<TraceResult, ignite_core::EngineError> {
    assert!(c.peers > 0 && c.functions > 0 && c.methods > 0 && c.calls > 0);
    assert!(c.break_function < c.functions && c.keep_alive_ms.0 <= c.keep_alive_ms.1);
    let (mut world, mut host) = setup(c)?;
    let t0 = world.now_us;
    let root_rng = Rng::new(c.seed).child(0x7472_6163_6500);
    let mut arrivals = Arrivals::new(&c.arrival_config(), &root_rng, t0);
    let schedule = |world: &mut World, a: Arrival| {
        world.queue.push(
            a.at_us.max(world.now_us),
            Ev::Scenario {
                peer: a.peer,
                tag: INVOKE | u64::from(a.function),
            },
        );
    };
    if c.invocations > 0 {
        schedule(&mut world, arrivals.next_arrival());
    }
    let mut done = 0u64;
    let mut last_invoke_us = t0;
    let mut end_us = if c.invocations == 0 {
        t0 + c.settle_ms * 1_000
    } else {
        u64::MAX
    };
    let mut during = None;
    loop {
        if world.queue.peek_time().is_none_or(|t| t > end_us) {
            break;
        }
        let ev = world.step();
        if ev == Step::Idle {
            break;
        }
        let events = std::mem::take(&mut world.events);
        for (p, e) in events {
            host.on_event(c, p, e);
        }
        let Step::Scenario { peer, tag } = ev else { continue };
        if tag & INVOKE == 0 || done >= c.invocations {
            continue;
        }
        host.invoke(c, &mut world, peer, (tag & 0xffff_ffff) as u32)?;
        done += 1;
        last_invoke_us = world.now_us;
        if done.is_multiple_of(1_000) {
            progress(done);
        }
        if done < c.invocations {
            schedule(&mut world, arrivals.next_arrival());
        } else {
            end_us = world.now_us + c.settle_ms * 1_000;
            during = Some(world.traffic.clone());
            // Containers idle past their keep-alive when traffic ends were evicted by then.
            host.counts.evictions += host
                .peers
                .iter()
                .map(|p| p.idle_past_keep_alive(world.now_us))
                .sum::<u64>();
        }
    }
    progress(done);
    let traffic_seconds = ((last_invoke_us - t0) as f64 / 1e6).max(1e-9);
    let during = during.unwrap_or_else(|| world.traffic.clone());
    let breaking = host.peers.iter().filter(|p| p.breaking).count() as u32;
    Ok(result(c, &world, &host, breaking, t0, traffic_seconds, &during))
}

/// The merged invocation counts of every peer equal the recorded totals.
fn totals_exact(world: &World, host: &Host) -> bool {
    world.engines.iter().all(|e| {
        host.recorded.iter().all(|((f, m, t), v)| {
            e.profile(&host.tenant, &host.function_ids[*f as usize])
                .is_some_and(|view| view.count(MethodId(*m), Tier(*t), Counter::Invocations) == *v)
        })
    })
}

/// The `q` quantile of `v` (sorted in place), µs converted to ms.
fn quantile_ms(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1e3
}

fn result(
    c: &TraceConfig,
    world: &World,
    host: &Host,
    breaking_peers: u32,
    t0: u64,
    traffic_seconds: f64,
    during: &crate::world::Traffic,
) -> TraceResult {
    let n = f64::from(c.peers);
    let names: BTreeMap<ClassId, String> = classes().iter().map(|k| (k.id(), k.level.clone())).collect();
    let mut per_key: BTreeMap<(ignite_core::CodeKey, ClassId, u32), u64> = BTreeMap::new();
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    for (_, key, class, generation) in &world.compiles {
        *per_key.entry((*key, *class, *generation)).or_insert(0) += 1;
        *by_class
            .entry(names.get(class).cloned().unwrap_or_else(|| "other".into()))
            .or_insert(0) += 1;
    }
    let compiles = world.compiles.len() as u64;
    let k = &host.counts;
    let share = |x: u64| {
        if k.cold_starts == 0 {
            0.0
        } else {
            x as f64 / k.cold_starts as f64
        }
    };
    let (mut lat, mut ns_lat) = (host.latency_us.clone(), host.ns_latency_us.clone());
    let exact = totals_exact(world, host);
    TraceResult {
        peers: c.peers,
        functions: c.functions,
        arrivals: c.arrivals,
        invocations: k.invocations,
        events: world.queue.popped(),
        sim_seconds: (world.now_us - t0) as f64 / 1e6,
        traffic_seconds,
        cold_starts: k.cold_starts,
        evictions: k.evictions,
        hot_starts: k.hot_starts,
        hot_start_share: share(k.hot_starts),
        ns_hot_starts: k.ns_hot_starts,
        ns_hot_start_share: share(k.ns_hot_starts),
        method_executions: k.method_executions,
        warm_executions: k.warm,
        ns_warm_executions: k.ns_warm,
        latency_p50_ms: quantile_ms(&mut lat, 0.5),
        latency_p99_ms: quantile_ms(&mut lat, 0.99),
        ns_latency_p50_ms: quantile_ms(&mut ns_lat, 0.5),
        ns_latency_p99_ms: quantile_ms(&mut ns_lat, 0.99),
        compiles,
        compiles_per_key_mean: if per_key.is_empty() {
            0.0
        } else {
            compiles as f64 / per_key.len() as f64
        },
        compiles_by_class: by_class,
        installs: k.installs,
        installs_by_class: k.installs_by_class.clone(),
        uninstalls: k.uninstalls,
        deopts: k.deopts,
        breaking_peers,
        break_at_s: c.break_after() as f64 / 1e3,
        retired: k.retired.len() as u64,
        recompiled_without_speculation: k.recompiled.len() as u64,
        msgs_per_peer_per_s: during.messages as f64 / n / traffic_seconds,
        bytes_per_peer_per_s: during.bytes as f64 / n / traffic_seconds,
        totals_exact: exact,
        checks: Checks {
            installs_runnable: k.unrunnable_installs == 0,
            no_broken_install_after_break: k.broken_installs == 0,
            totals_exact: exact,
        },
    }
}
