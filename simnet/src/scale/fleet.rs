//! The scale scenario's tenants and per-peer runtimes: credentials, profilers per tenant
//! and method, the tier each peer runs per method, and each peer's life cycle.

use crate::rng::Rng;
use crate::world::{World, ms};
use ignite_core::{
    Counter, FunctionId, MethodId, MethodProfiler, MethodShape, Recorder, RecorderError, Roles, TenantCredentials,
    TenantId, TenantRoot, TenantSecrets, Tier,
};
use std::collections::BTreeMap;

/// The tenants of a run. Tenant `i` sends a share of the invocations proportional to
/// `i + 1` (distinct volumes, so counts leaking from one tenant to another show).
pub(super) struct Tenants {
    roots: Vec<TenantRoot>,
    secrets: Vec<TenantSecrets>,
    /// Tenant ids, by index.
    pub(super) ids: Vec<TenantId>,
    /// Cumulative invocation shares.
    cumulative: Vec<f64>,
}

impl Tenants {
    pub(super) fn new(seed: u64, count: u32) -> Tenants {
        let mut roots = Vec::new();
        let mut secrets = Vec::new();
        for t in 0..u64::from(count.max(1)) {
            // Tenant 0 keeps the single-tenant derivation.
            let s = if t == 0 {
                seed.to_le_bytes().to_vec()
            } else {
                [seed.to_le_bytes(), t.to_le_bytes()].concat()
            };
            roots.push(TenantRoot::from_secret(blake3::derive_key("simnet root", &s)));
            secrets.push(TenantSecrets::from_seed(&blake3::derive_key("simnet secrets", &s)));
        }
        let ids = roots.iter().map(TenantRoot::id).collect();
        let n = roots.len();
        let total = (n * (n + 1) / 2) as f64;
        let mut acc = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                acc += (i + 1) as f64 / total;
                acc
            })
            .collect();
        Tenants {
            roots,
            secrets,
            ids,
            cumulative,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Share of the invocations tenant `i` receives.
    pub(super) fn share(&self, i: usize) -> f64 {
        self.cumulative[i] - if i == 0 { 0.0 } else { self.cumulative[i - 1] }
    }

    /// The tenant of the next invocation (one draw).
    pub(super) fn draw(&self, rng: &mut Rng) -> usize {
        if self.len() == 1 {
            return 0;
        }
        let u = rng.f64();
        self.cumulative.iter().position(|c| u < *c).unwrap_or(self.len() - 1)
    }

    pub(super) fn index(&self, id: &TenantId) -> Option<usize> {
        self.ids.iter().position(|t| t == id)
    }

    /// The credentials of `peer` in tenant `i` (the same on every restart).
    pub(super) fn creds(&self, i: usize, peer: u32) -> TenantCredentials {
        let start = ms(0);
        TenantCredentials::issue(
            &self.roots[i],
            self.secrets[i].clone(),
            &blake3::derive_key("simnet node", &u64::from(peer).to_le_bytes()),
            Roles::ALL,
            start,
            start.plus_ms(30 * 86_400_000),
            u64::from(peer),
        )
    }
}

/// Where a peer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// Not joined yet (a late joiner).
    Pending,
    /// Running.
    Up,
    /// Crashed, restarting later.
    Down,
    /// Left for good.
    Gone,
}

/// A peer's runtime: profilers per tenant and method (one per tier), the tier it runs per
/// tenant and method, and what no sharing would have counted locally.
pub(super) struct PeerRt {
    pub(super) profilers: Vec<Vec<[MethodProfiler; 3]>>,
    pub(super) tier: Vec<Vec<u8>>,
    pub(super) local: Vec<Vec<u64>>,
    pub(super) rng: Rng,
    pub(super) life: Life,
    pub(super) incarnation: u64,
    /// Unpublished invocation counts at the crash, per (tenant, method, tier).
    pub(super) crashed_unpublished: BTreeMap<(usize, u32, u8), u64>,
}

impl PeerRt {
    pub(super) fn new(rng: Rng, tenants: usize, methods: u32) -> PeerRt {
        PeerRt {
            profilers: Vec::new(),
            tier: vec![vec![0; methods as usize]; tenants],
            local: vec![vec![0; methods as usize]; tenants],
            rng,
            life: Life::Pending,
            incarnation: 1,
            crashed_unpublished: BTreeMap::new(),
        }
    }

    /// The host process (re)starts: no code installed, nothing learnt locally.
    pub(super) fn reset_host(&mut self) {
        for t in &mut self.tier {
            t.fill(0);
        }
        for l in &mut self.local {
            l.fill(0);
        }
    }
}

/// Profilers of every method at tiers 0–2.
pub(super) fn profilers(
    recorder: &Recorder,
    function: FunctionId,
    methods: u32,
) -> Result<Vec<[MethodProfiler; 3]>, RecorderError> {
    let shape = MethodShape::default();
    (0..methods)
        .map(|m| {
            let p = |t: u8| recorder.method(function, MethodId(m), Tier(t), shape);
            Ok([p(0)?, p(1)?, p(2)?])
        })
        .collect()
}

/// Joins `peer`'s engine to every tenant, subscribes it and returns its profilers.
pub(super) fn join_all(
    world: &mut World,
    peer: u32,
    tenants: &Tenants,
    function: FunctionId,
    methods: u32,
) -> Result<Vec<Vec<[MethodProfiler; 3]>>, super::ScaleError> {
    let mut out = Vec::new();
    for i in 0..tenants.len() {
        let (recorder, topic) = world.engines[peer as usize].join_tenant(ms(world.now_us), tenants.creds(i, peer))?;
        world.subscribe(peer, &topic);
        out.push(profilers(&recorder, function, methods)?);
    }
    Ok(out)
}

/// Profilers of a restored engine (its tenants are already joined).
pub(super) fn rejoin_restored(
    world: &World,
    peer: u32,
    tenants: &Tenants,
    function: FunctionId,
    methods: u32,
) -> Result<Vec<Vec<[MethodProfiler; 3]>>, super::ScaleError> {
    let mut out = Vec::new();
    for id in &tenants.ids {
        let recorder = world.engines[peer as usize]
            .recorder(id)
            .ok_or_else(|| super::ScaleError::Restart {
                peer,
                reason: "a restored engine lacks a tenant".into(),
            })?;
        out.push(profilers(&recorder, function, methods)?);
    }
    Ok(out)
}

/// Invocation counts `peer`'s engine recorded but has not signed, per (tenant, method, tier).
pub(super) fn unpublished(
    world: &World,
    peer: u32,
    tenants: &Tenants,
    function: FunctionId,
) -> BTreeMap<(usize, u32, u8), u64> {
    let mut out = BTreeMap::new();
    for (i, id) in tenants.ids.iter().enumerate() {
        for ((f, k), v) in world.engines[peer as usize].unpublished(id) {
            if f == function && k.counter == Counter::Invocations {
                *out.entry((i, k.method.0, k.tier.0)).or_insert(0) += v;
            }
        }
    }
    out
}
