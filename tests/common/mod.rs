//! Shared helpers for the end-to-end tests: tenants, credentials, engines, and hand-built
//! (possibly malicious) messages made of real signed and sealed bytes.
#![allow(dead_code, unreachable_pub)]

pub mod artifacts;
pub mod code;
pub mod feedback;
pub mod props;
pub mod rx;

use ignite::crypto::{self, SigBytes};
use ignite::profile::StoredDelta;
use ignite::tenancy::SignedCert;
use ignite::wire::{self, Body, DeltaBatch, DeltaWire, Sealer};
use ignite::{
    Config, Counter, CounterKey, Engine, FunctionId, GroupId, Incarnation, MethodId, Roles, TenantCredentials,
    TenantId, TenantRoot, TenantSecrets, Tier, Timestamp,
};

/// Start of virtual time in every test.
pub const T0: Timestamp = Timestamp(1_700_000_000_000);
/// One day in ms.
pub const DAY: u64 = 86_400_000;

/// A tenant: root key and shared secrets, from a seed byte.
pub fn tenant(seed: u8) -> (TenantRoot, TenantSecrets) {
    (
        TenantRoot::from_secret([seed; 32]),
        TenantSecrets::from_seed(&[seed.wrapping_add(100); 32]),
    )
}

/// Credentials for node `node` of a tenant, valid for a day from T0.
pub fn creds(root: &TenantRoot, secrets: &TenantSecrets, node: u8, roles: Roles) -> TenantCredentials {
    TenantCredentials::issue(
        root,
        secrets.clone(),
        &[node; 32],
        roles,
        T0,
        T0.plus_ms(DAY),
        u64::from(node),
    )
}

/// An engine with a fixed seed.
pub fn engine(seed: u64, incarnation: u64) -> Engine {
    Engine::new(
        Config {
            seed,
            ..Config::default()
        },
        Incarnation(incarnation),
    )
    .expect("valid config")
}

/// A test function id.
pub fn function(name: &str) -> FunctionId {
    FunctionId::from_deployment(name, name.as_bytes())
}

/// The node signing key behind `creds` built by [`creds`] with node byte `node`.
pub fn node_key(node: u8) -> ed25519_dalek::SigningKey {
    crypto::key_from_seed(&[node; 32], "node tenant key")
}

/// Parameters of one hand-built delta.
#[derive(Clone, Debug)]
pub struct DeltaSpec {
    pub function: FunctionId,
    pub incarnation: Incarnation,
    pub group: GroupId,
    pub seq: u32,
    pub issued_at: u64,
    pub full: bool,
    pub entries: Vec<(CounterKey, u64)>,
}

impl DeltaSpec {
    /// A delta of `entries` at `seq`, group computed with the default number of groups.
    pub fn new(function: FunctionId, seq: u32, entries: Vec<(CounterKey, u64)>) -> DeltaSpec {
        let group = GroupId::of(entries[0].0.method, Config::default().groups);
        DeltaSpec {
            function,
            incarnation: Incarnation(1),
            group,
            seq,
            issued_at: T0.as_millis(),
            full: false,
            entries,
        }
    }
}

/// Signs a delta with `key` as the holder of `cert` in tenant `root`.
pub fn sign_delta(
    root: &TenantRoot,
    cert: &SignedCert,
    key: &ed25519_dalek::SigningKey,
    spec: &DeltaSpec,
) -> StoredDelta {
    let entries = wire::encode_entries(&spec.entries);
    let signed = wire::signed_delta_bytes(
        &root.id().0,
        &cert.cert.node.0,
        &spec.function,
        spec.incarnation,
        spec.group,
        spec.seq,
        spec.issued_at,
        spec.full,
        &entries,
    );
    let signature = crypto::sign(key, &[], &signed);
    StoredDelta {
        seq: spec.seq,
        issued_at: spec.issued_at,
        full: spec.full,
        entries: entries.into(),
        signature,
    }
}

/// Encodes one signed delta as a batch body and seals it with `secrets`.
pub fn seal_delta(secrets: &TenantSecrets, cert: &SignedCert, spec: &DeltaSpec, delta: &StoredDelta) -> Vec<u8> {
    let body = Body::Deltas(DeltaBatch {
        certs: vec![*cert],
        functions: vec![spec.function],
        deltas: vec![DeltaWire {
            signer: 0,
            function: 0,
            incarnation: spec.incarnation,
            group: spec.group,
            seq: delta.seq,
            issued_at: delta.issued_at,
            full: delta.full,
            entries: &delta.entries,
            signature: delta.signature,
        }],
    });
    Sealer::new(secrets).seal(&body.encode())
}

/// Signs and seals in one go.
pub fn message(
    root: &TenantRoot,
    secrets: &TenantSecrets,
    cert: &SignedCert,
    key: &ed25519_dalek::SigningKey,
    spec: &DeltaSpec,
) -> Vec<u8> {
    let d = sign_delta(root, cert, key, spec);
    seal_delta(secrets, cert, spec, &d)
}

/// A signature with every byte replaced.
pub fn garbage_sig() -> SigBytes {
    SigBytes([0x55; 32], [0x11; 32])
}

/// Merged counters of every function of a tenant.
pub type Totals = std::collections::BTreeMap<(FunctionId, CounterKey), u64>;

/// Every merged counter an engine holds for a tenant.
pub fn merged(engine: &Engine, tenant: &TenantId) -> Totals {
    let mut out = Totals::new();
    for f in engine.functions(tenant) {
        if let Some(view) = engine.profile(tenant, &f) {
            for (k, v) in view.counters() {
                out.insert((f, k), v);
            }
        }
    }
    out
}

/// Per function, method and tier 1 to 5: the engine's `invocations_below` beside the sum of
/// the merged invocation counters of the method below the tier (they must be equal).
pub fn invocations_below_pairs(engine: &Engine, tenant: &TenantId) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for f in engine.functions(tenant) {
        let Some(view) = engine.profile(tenant, &f) else {
            continue;
        };
        let methods: std::collections::BTreeSet<MethodId> = view.counters().keys().map(|k| k.method).collect();
        for m in methods {
            for tier in 1..=5u8 {
                let want: u64 = view
                    .counters()
                    .iter()
                    .filter(|(k, _)| k.method == m && k.counter == Counter::Invocations && k.tier.0 < tier)
                    .map(|(_, v)| *v)
                    .sum();
                out.push((view.invocations_below(m, Tier(tier)), want));
            }
        }
    }
    out
}

/// The tier-0 invocation counter of method `m`.
pub fn inv(m: u32) -> CounterKey {
    CounterKey {
        method: MethodId(m),
        tier: Tier(0),
        counter: Counter::Invocations,
    }
}

/// Drains an engine's outputs, returning the messages it published.
pub fn publishes(e: &mut Engine) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Some(o) = e.poll_output() {
        if let ignite::Output::Publish { bytes, .. } = o {
            v.push(bytes);
        }
    }
    v
}

/// An engine (seed `seed`) that joined tenant `seed` as node 0, with the tenant's root, secrets and topic.
pub fn engine_with_tenant(seed: u8) -> (Engine, ignite::TenantRoot, ignite::TenantSecrets, ignite::TopicId) {
    let (root, secrets) = tenant(seed);
    let mut e = engine(u64::from(seed), 1);
    let (_, topic) = e.join_tenant(T0, creds(&root, &secrets, 0, Roles::ALL)).unwrap();
    (e, root, secrets, topic)
}
