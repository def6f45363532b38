//! A fleet of real engines on the in-memory harness, with hardware classes and a simulated
//! host compiler, for the election and code-artifact tests.

use super::{T0, creds, function, tenant};
use ignite::code::{CodeConfig, HardwareClass};
use ignite::harness::{Cluster, SimHost};
use ignite::{
    ClassId, CodeKey, Config, Engine, Event, FunctionId, Incarnation, MethodId, MethodShape, Recorder, Refusal, Roles,
    TenantId, Tier, Timestamp,
};

/// x86-64-v2, v3 and aarch64 classes of one runtime version.
pub fn classes() -> (HardwareClass, HardwareClass, HardwareClass) {
    let c = |arch: &str, level: &str| HardwareClass::new(arch, level, "sim-runtime", "1.0", [3; 32]).unwrap();
    (
        c("x86_64", "x86-64-v2"),
        c("x86_64", "x86-64-v3"),
        c("aarch64", "aarch64-baseline"),
    )
}

/// What one node of a [`Fleet`] is.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Classes it runs, best first.
    pub hardware: Vec<HardwareClass>,
    /// Its roles.
    pub roles: Roles,
}

/// A fleet of engines of one tenant.
pub struct Fleet {
    pub cluster: Cluster,
    pub tenant: TenantId,
    pub recorders: Vec<Recorder>,
    pub specs: Vec<NodeSpec>,
    pub function: FunctionId,
}

/// The code configuration used by the fleet tests (defaults, small leases for speed).
pub fn code_config(hardware: Vec<HardwareClass>) -> CodeConfig {
    CodeConfig {
        hardware,
        presence_interval_ms: 1_000,
        presence_ttl_ms: 3_500,
        lease_ms: 5_000,
        recompile_backoff_ms: 10_000,
        retire_min_nodes: 3,
        ..CodeConfig::default()
    }
}

impl Fleet {
    /// Engines for `specs`, joined to tenant 1, with a host compiling in `compile_ms`.
    pub fn new(seed: u64, specs: Vec<NodeSpec>, compile_ms: u64, tweak: impl Fn(&mut Config)) -> Fleet {
        let (root, secrets) = tenant(1);
        let mut engines = Vec::new();
        let mut recorders = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let mut config = Config {
                seed: seed ^ i as u64,
                code: code_config(s.hardware.clone()),
                ..Config::default()
            };
            tweak(&mut config);
            let mut e = Engine::new(config, Incarnation(1)).unwrap();
            let (rec, _) = e.join_tenant(T0, creds(&root, &secrets, i as u8 + 1, s.roles)).unwrap();
            engines.push(e);
            recorders.push(rec);
        }
        let mut cluster = Cluster::new(seed, T0, engines);
        cluster.host = Some(SimHost::new(compile_ms));
        Fleet {
            cluster,
            tenant: root.id(),
            recorders,
            specs,
            function: function("hot"),
        }
    }

    /// Records `n` tier-0 invocations of `method` on engine `i`, one receiver type `target`
    /// at call site 0 each time.
    pub fn invoke(&self, i: usize, method: u32, n: u64, target: u32) {
        let p = self.recorders[i]
            .method(
                self.function,
                MethodId(method),
                Tier(0),
                MethodShape {
                    branch_sites: 0,
                    call_sites: 1,
                },
            )
            .unwrap();
        for _ in 0..n {
            p.record_invocation();
            p.record_receiver(0, target);
        }
    }

    /// Runs the cluster for `ms` more milliseconds.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.cluster.now().plus_ms(ms);
        self.cluster.run_until(until);
    }

    /// The key of `method` at `tier` in the fleet's function.
    pub fn key(&self, method: u32, tier: u8) -> CodeKey {
        CodeKey {
            function: self.function,
            method: MethodId(method),
            tier: Tier(tier),
        }
    }

    /// Publish compile requests (not attestations) per (key, class), with the engines asked.
    pub fn publish_compiles(&self) -> std::collections::BTreeMap<(CodeKey, ClassId, u32), Vec<usize>> {
        let mut out: std::collections::BTreeMap<(CodeKey, ClassId, u32), Vec<usize>> = Default::default();
        for (i, _, req) in &self.cluster.compiles {
            if req.purpose == ignite::code::Purpose::Publish {
                out.entry((req.key, req.class.id(), req.generation))
                    .or_default()
                    .push(*i);
            }
        }
        out
    }

    /// Install events per engine: (engine, key, class, generation).
    pub fn installs(&self) -> Vec<(usize, CodeKey, ClassId, u32)> {
        self.cluster
            .events
            .iter()
            .filter_map(|(i, e)| match e {
                Event::Install(ins) => Some((
                    *i,
                    ins.manifest.statement.key,
                    ins.manifest.statement.class,
                    ins.manifest.statement.generation,
                )),
                _ => None,
            })
            .collect()
    }

    /// Refusal events: (engine, key, generation, reason).
    pub fn refusals(&self) -> Vec<(usize, CodeKey, u32, Refusal)> {
        self.cluster
            .events
            .iter()
            .filter_map(|(i, e)| match e {
                Event::Refused {
                    key,
                    generation,
                    reason,
                    ..
                } => Some((*i, *key, *generation, reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// What engine `i` has installed for `key`: (class, generation).
    pub fn installed(&self, i: usize, key: &CodeKey) -> Option<(ClassId, u32)> {
        self.cluster.engines[i]
            .installed(&self.tenant)
            .get(&(key.function, key.method, key.tier))
            .copied()
    }

    /// Current time.
    pub fn now(&self) -> Timestamp {
        self.cluster.now()
    }
}
