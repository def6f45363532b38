//! IGN: profile and code sharing with the real engine. Fifty peers (one per container) run
//! `ignite-core` engines in a [`World`] built the way the scale scenario builds it; each
//! request records one invocation of the function's only method at the container's current
//! tier; the engines' merged counts cross the tier-2 threshold, one peer is elected and
//! compiles, and each container runs hot from its engine's `Install` of the tier-2 code.
//!
//! Engine settings: tier-2 threshold = `hot_after` (fleet-wide invocations); the tier-1
//! threshold is also `hot_after` (the engine requires `0 < tier1 <= tier2`) but the only
//! hardware class serves tier 2 alone, so a tier-1 threshold opens no election and the
//! engine models exactly one warm→hot compile. Profiles are published every second (the
//! engine's `publish_floor_ms`, the sync interval). The network is the default model
//! (3 zones, 1 ms / 20 ms median links) with every peer's uplink at
//! [`BLOB_BYTES_PER_S`] (100 Mbit/s), the bandwidth CS assumes for code transfer.

use super::params::Workload;
use super::strategies::{BLOB_BYTES_PER_S, CONTAINERS, Outcome, Request};
use crate::gossip::GossipConfig;
use crate::net::NetConfig;
use crate::world::{Ev, Step, World, ms};
use ignite_core::code::{CodeConfig, CompileRequest, CompiledCode, HardwareClass};
use ignite_core::{
    Config, EngineError, Event, FunctionId, MethodId, MethodProfiler, MethodShape, RecorderConfig, Roles,
    TenantCredentials, TenantRoot, TenantSecrets, Thresholds, Tier,
};

/// Interval between a peer's profile publications (the engine's publish floor), ms.
pub const SYNC_INTERVAL_MS: u64 = 1_000;

/// What the IGN run saw besides its [`Outcome`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnRun {
    /// Hot or warm per request, and compile end times.
    pub outcome: Outcome,
    /// Compile requests the world saw (every purpose).
    pub compiles: u64,
    /// Per container, when it installed the tier-2 code (µs after traffic starts), if it
    /// did by the last request.
    pub install_us: Vec<Option<u64>>,
    /// Events the simulator processed.
    pub events: u64,
}

/// Deterministic code bytes for a compile request.
fn sim_code(req: &CompileRequest, size: usize) -> CompiledCode {
    let mut h = blake3::Hasher::new_derive_key("ignite simnet figure5 code");
    h.update(&req.key.function.code);
    h.update(&req.key.method.0.to_le_bytes());
    h.update(&[req.key.tier.0]);
    h.update(&req.class.id().0);
    h.update(&req.generation.to_le_bytes());
    let mut bytes = vec![0u8; size];
    h.finalize_xof().fill(&mut bytes);
    CompiledCode {
        bytes,
        assumptions: Vec::new(),
    }
}

/// Scenario tag of a request event.
const REQUEST: u64 = 1;

/// Runs IGN on `stream` (every request of it) for workload `w`, and stops at the last
/// request.
pub fn run(seed: u64, stream: &[Request], w: &Workload) -> Result<IgnRun, EngineError> {
    let root = TenantRoot::from_secret(blake3::derive_key("simnet figure5 root", &seed.to_le_bytes()));
    let secrets = TenantSecrets::from_seed(&blake3::derive_key("simnet figure5 secrets", &seed.to_le_bytes()));
    let function = FunctionId::from_deployment(&w.name, b"figure5 deployment");
    let class = HardwareClass::new("x86_64", "x86-64-v2", "simnet", "1", [0; 32])
        .and_then(|c| c.for_tiers(&[Tier(2)]))
        .expect("valid class");
    let start = ms(0);
    let day = 86_400_000;
    let configs = (0..CONTAINERS)
        .map(|i| Config {
            seed: seed ^ u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            publish_floor_ms: SYNC_INTERVAL_MS,
            seen_cache: 8_192,
            thresholds: Thresholds {
                tier1: w.hot_after,
                tier2: w.hot_after,
            },
            recorder: RecorderConfig {
                shards: 1,
                receiver_slots: 0,
            },
            code: CodeConfig {
                hardware: vec![class.clone()],
                ..CodeConfig::default()
            },
            ..Config::default()
        })
        .collect();
    let compile_us = w.compile_us();
    let code_bytes = usize::try_from(w.artifact_bytes).unwrap_or(usize::MAX);
    let compiler = Box::new(move |req: &CompileRequest| (sim_code(req, code_bytes), compile_us));
    let net = NetConfig {
        uplink_bytes_per_s: Some(BLOB_BYTES_PER_S),
        ..NetConfig::default()
    };
    let mut world = World::new(seed, configs, net, GossipConfig::default(), compiler)?;
    let shape = MethodShape::default();
    let mut profilers: Vec<[MethodProfiler; 2]> = Vec::new();
    for i in 0..CONTAINERS {
        let creds = TenantCredentials::issue(
            &root,
            secrets.clone(),
            &blake3::derive_key("simnet figure5 node", &u64::from(i).to_le_bytes()),
            Roles::ALL,
            start,
            start.plus_ms(30 * day),
            u64::from(i),
        );
        let (recorder, topic) = world.engines[i as usize].join_tenant(start, creds)?;
        world.subscribe(i, &topic);
        let p = |t: u8| recorder.method(function, MethodId(0), Tier(t), shape);
        profilers.push([p(0)?, p(2)?]);
    }
    world.start();
    // Let meshes form before traffic starts.
    let warmup_us = 3 * world.heartbeat_us();
    while world.queue.peek_time().is_some_and(|t| t < warmup_us) {
        world.step();
    }
    world.introduce_mesh_peers();
    let t0 = world.now_us;
    // No peer restarts here: frames to peers that have the message need no event (after
    // the warm-up, whose last event gives `t0`).
    world.skip_seen_within_us = u64::MAX;
    let mut hot = vec![false; CONTAINERS as usize];
    let mut install_us = vec![None; CONTAINERS as usize];
    let mut outcome = Outcome::default();
    let mut seen_compiles = 0usize;
    if let Some(r) = stream.first() {
        world.queue.push(
            t0 + r.at_us,
            Ev::Scenario {
                peer: r.container,
                tag: REQUEST,
            },
        );
    }
    let mut next = 0usize;
    while next < stream.len() {
        let step = world.step();
        if step == Step::Idle {
            break;
        }
        // Compiles are requested while the world handles an event: they end `compile_us` later.
        for _ in seen_compiles..world.compiles.len() {
            outcome.compiles_done_us.push(world.now_us - t0 + compile_us);
        }
        seen_compiles = world.compiles.len();
        for (p, e) in world.events.drain(..) {
            if let Event::Install(ins) = e
                && ins.manifest.statement.key.tier == Tier(2)
            {
                let p = p as usize;
                if !hot[p] {
                    hot[p] = true;
                    install_us[p] = Some(world.now_us - t0);
                }
            }
        }
        let Step::Scenario { peer, tag: REQUEST } = step else {
            continue;
        };
        let r = stream[next];
        debug_assert_eq!(peer, r.container);
        let is_hot = hot[peer as usize];
        profilers[peer as usize][usize::from(is_hot)].record_invocation();
        outcome.hot.push(is_hot);
        next += 1;
        if let Some(r) = stream.get(next) {
            world.queue.push(
                t0 + r.at_us,
                Ev::Scenario {
                    peer: r.container,
                    tag: REQUEST,
                },
            );
        }
    }
    outcome.compiles_done_us.sort_unstable();
    Ok(IgnRun {
        compiles: world.compiles.len() as u64,
        install_us,
        events: world.queue.popped(),
        outcome,
    })
}
