//! The host model of the trace scenario: runs invocations in containers at the tiers the
//! peer's engine installed, records profiles, reports deoptimizations, and watches the
//! engines' events for the checkers.

use super::TraceConfig;
use super::runtime::{Code, PeerRt};
use crate::rng::{Rng, Zipf};
use crate::world::World;
use ignite_core::code::CompileRequest;
use ignite_core::{
    Assumption, AssumptionCheck, CodeKey, CompiledCode, Event, FunctionId, MethodId, Recorder, Refusal, TenantId, Tier,
};
use std::collections::{BTreeMap, BTreeSet};

/// The speculation tier-2 code carries: a monomorphic call site (as the wasm host's
/// specialized modules do), here receiver type 0 at site 0 of every method.
pub const SPECULATION: Assumption = Assumption::MonomorphicCall { site: 0, target: 0 };

/// Deterministic compiled code for a request (the simulated host compiler): bytes derived
/// from the key, class, generation and speculations; tier-2 code carries [`SPECULATION`]
/// unless the request excludes it (known broken).
pub fn sim_code(req: &CompileRequest, size: usize) -> CompiledCode {
    let assumptions = if req.key.tier == Tier(2) && !req.excluded.contains(&SPECULATION) {
        vec![SPECULATION]
    } else {
        Vec::new()
    };
    let mut h = blake3::Hasher::new_derive_key("ignite simnet trace code");
    h.update(&req.key.function.code);
    h.update(&req.key.method.0.to_le_bytes());
    h.update(&[req.key.tier.0, u8::from(assumptions.is_empty())]);
    h.update(&req.class.id().0);
    h.update(&req.generation.to_le_bytes());
    let mut bytes = vec![0u8; size];
    h.finalize_xof().fill(&mut bytes);
    CompiledCode { bytes, assumptions }
}

/// The host's assumption check on a peer that observed the break: the speculation no longer
/// holds for the broken function.
struct Broken {
    function: FunctionId,
}

impl AssumptionCheck for Broken {
    fn check(&self, _: &TenantId, key: &CodeKey, a: &Assumption) -> Result<(), String> {
        if key.function == self.function && *a == SPECULATION {
            Err("a second receiver type reached the call site".into())
        } else {
            Ok(())
        }
    }
}

/// Counts of the host model.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counts {
    pub(crate) invocations: u64,
    pub(crate) cold_starts: u64,
    pub(crate) evictions: u64,
    pub(crate) hot_starts: u64,
    pub(crate) ns_hot_starts: u64,
    pub(crate) method_executions: u64,
    pub(crate) warm: u64,
    pub(crate) ns_warm: u64,
    pub(crate) deopts: u64,
    pub(crate) installs: u64,
    pub(crate) uninstalls: u64,
    /// Installs by class level name.
    pub(crate) installs_by_class: BTreeMap<String, u64>,
    /// Installs of a class the peer cannot run.
    pub(crate) unrunnable_installs: u64,
    /// Installs of code carrying the broken speculation on a peer that had observed the
    /// break.
    pub(crate) broken_installs: u64,
    /// Manifests (function, method, tier, class, generation) refused as retired somewhere.
    pub(crate) retired: BTreeSet<(u32, u32, u8, [u8; 16], u32)>,
    /// (method, tier, class) of the broken function with code of generation > 1 without
    /// the speculation installed somewhere.
    pub(crate) recompiled: BTreeSet<(u32, u8, [u8; 16])>,
}

/// The host model of every peer.
pub(crate) struct Host {
    pub(crate) tenant: TenantId,
    pub(crate) function_ids: Vec<FunctionId>,
    pub(crate) base_s: Vec<f64>,
    pub(crate) peers: Vec<PeerRt>,
    pub(crate) recorders: Vec<Recorder>,
    pub(crate) counts: Counts,
    /// Invocations recorded per (function, method, tier).
    pub(crate) recorded: BTreeMap<(u32, u32, u8), u64>,
    /// Invocation latencies, µs.
    pub(crate) latency_us: Vec<u64>,
    pub(crate) ns_latency_us: Vec<u64>,
    pub(crate) break_at_us: u64,
    pub(crate) methods: Zipf,
    pub(crate) rng: Rng,
}

impl Host {
    fn index_of(&self, f: &FunctionId) -> Option<u32> {
        self.function_ids.iter().position(|x| x == f).map(|i| i as u32)
    }

    /// Handles an engine event of `peer`.
    pub(crate) fn on_event(&mut self, c: &TraceConfig, peer: u32, e: Event) {
        match e {
            Event::Install(ins) => {
                let s = &ins.manifest.statement;
                let Some(fi) = self.index_of(&s.key.function) else {
                    return;
                };
                self.counts.installs += 1;
                *self
                    .counts
                    .installs_by_class
                    .entry(ins.class.level.clone())
                    .or_insert(0) += 1;
                let p = &mut self.peers[peer as usize];
                if !p.classes.contains(&ins.class.id()) || s.class != ins.class.id() {
                    self.counts.unrunnable_installs += 1;
                }
                let carries = s.assumptions.contains(&SPECULATION);
                if fi == c.break_function && carries && p.observed_break_us.is_some() {
                    self.counts.broken_installs += 1;
                }
                if fi == c.break_function && !carries && s.key.tier == Tier(2) && s.generation > 1 {
                    self.counts.recompiled.insert((s.key.method.0, s.key.tier.0, s.class.0));
                }
                let (m, t) = (s.key.method.0 as usize, usize::from(s.key.tier.0.min(2)));
                let f = &mut p.functions[fi as usize];
                if m < f.installed.len() {
                    f.installed[m][t] = Some(Code {
                        class: s.class,
                        generation: s.generation,
                        assumptions: s.assumptions.clone(),
                    });
                    f.refresh(m);
                }
            }
            Event::Uninstall {
                key, class, generation, ..
            } => {
                let Some(fi) = self.index_of(&key.function) else { return };
                self.counts.uninstalls += 1;
                let (m, t) = (key.method.0 as usize, usize::from(key.tier.0.min(2)));
                let f = &mut self.peers[peer as usize].functions[fi as usize];
                if m < f.installed.len() {
                    if f.installed[m][t]
                        .as_ref()
                        .is_some_and(|x| x.class == class && x.generation == generation)
                    {
                        f.installed[m][t] = None;
                    }
                    f.refresh(m);
                }
            }
            Event::Refused {
                key,
                class,
                generation,
                reason: Refusal::Retired { .. },
                ..
            } => {
                if let Some(fi) = self.index_of(&key.function) {
                    self.counts
                        .retired
                        .insert((fi, key.method.0, key.tier.0, class.0, generation));
                }
            }
            _ => {}
        }
    }

    /// Creates the profilers of `function` on `peer` at its first invocation there.
    fn profilers(&mut self, peer: u32, function: u32, methods: u32) -> Result<(), ignite_core::RecorderError> {
        if self.peers[peer as usize].functions[function as usize]
            .profilers
            .is_some()
        {
            return Ok(());
        }
        let rec = &self.recorders[peer as usize];
        let id = self.function_ids[function as usize];
        let shape = ignite_core::MethodShape::default();
        let profilers = (0..methods)
            .map(|m| {
                let p = |t: u8| rec.method(id, MethodId(m), Tier(t), shape);
                Ok([p(0)?, p(1)?, p(2)?])
            })
            .collect::<Result<Vec<_>, ignite_core::RecorderError>>()?;
        self.peers[peer as usize].functions[function as usize].profilers = Some(profilers);
        Ok(())
    }

    /// Runs one invocation of `function` on `peer` at the world's current time.
    pub(crate) fn invoke(
        &mut self,
        c: &TraceConfig,
        world: &mut World,
        peer: u32,
        function: u32,
    ) -> Result<(), ignite_core::EngineError> {
        let now = world.now_us;
        self.profilers(peer, function, c.methods)?;
        let ka = (c.keep_alive_ms.0 * 1_000, c.keep_alive_ms.1 * 1_000);
        let start = self.peers[peer as usize].start(function as usize, now, ka, c.methods as usize);
        self.counts.invocations += 1;
        if start.cold {
            self.counts.cold_starts += 1;
        }
        if start.evicted {
            self.counts.evictions += 1;
        }
        let jitter = self.rng.lognormal_median(1.0, super::arrivals::JITTER_SIGMA);
        let share_us = self.base_s[function as usize] * jitter * 1e6 / f64::from(c.calls);
        let breaks = function == c.break_function && now >= self.break_at_us && self.peers[peer as usize].breaking;
        let (mut lat, mut ns_lat) = (0.0, 0.0);
        let (mut hot, mut ns_hot) = (false, false);
        for _ in 0..c.calls {
            let m = self.methods.sample(&mut self.rng);
            let p = &mut self.peers[peer as usize];
            let f = &mut p.functions[function as usize];
            let cont = f.container.as_mut().expect("started");
            let mut tier = cont.tiers[m];
            if breaks
                && tier == 2
                && f.installed[m][2]
                    .as_ref()
                    .is_some_and(|x| x.assumptions.contains(&SPECULATION))
            {
                // The guard fails: the code deoptimizes, this container falls back to the
                // best lower tier, and the engine hears of it.
                tier = f.best_tier_below(m, 2);
                f.container.as_mut().expect("started").tiers[m] = tier;
                let key = CodeKey {
                    function: self.function_ids[function as usize],
                    method: MethodId(m as u32),
                    tier: Tier(2),
                };
                world.engines[peer as usize].record_deopt(&self.tenant, key, &SPECULATION)?;
                self.counts.deopts += 1;
                if p.observed_break_us.is_none() {
                    p.observed_break_us = Some(now);
                    let check = Broken {
                        function: self.function_ids[function as usize],
                    };
                    world.engines[peer as usize].set_assumption_check(&self.tenant, Box::new(check))?;
                    world.drain(peer);
                }
            }
            let p = &mut self.peers[peer as usize];
            let f = &mut p.functions[function as usize];
            f.profilers.as_ref().expect("created")[m][usize::from(tier)].record_invocation();
            *self.recorded.entry((function, m as u32, tier)).or_insert(0) += 1;
            self.counts.method_executions += 1;
            lat += share_us / c.speedup[usize::from(tier)];
            hot |= tier == 2;
            if tier < 2 {
                self.counts.warm += 1;
            }
            let cont = f.container.as_mut().expect("started");
            let ns_tier = cont.ns_tier(m, &c.thresholds);
            cont.ns_calls[m] += 1;
            ns_lat += share_us / c.speedup[usize::from(ns_tier)];
            ns_hot |= ns_tier == 2;
            if ns_tier < 2 {
                self.counts.ns_warm += 1;
            }
        }
        if start.cold {
            lat += c.cold_init_ms as f64 * 1e3;
            ns_lat += c.cold_init_ms as f64 * 1e3;
            self.counts.hot_starts += u64::from(hot);
            self.counts.ns_hot_starts += u64::from(ns_hot);
        }
        self.latency_us.push(lat.round() as u64);
        self.ns_latency_us.push(ns_lat.round() as u64);
        Ok(())
    }
}
