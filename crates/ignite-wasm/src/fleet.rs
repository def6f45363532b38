//! Several Wasm hosts in one process, their engines connected by ignite-core's in-memory
//! network ([`Cluster`]): for the example, the tests and the calibration runs. Every
//! message between engines is a real sealed and signed protocol message; every compile is
//! a real wasmtime compile; every install a real `Module::deserialize`.

use crate::host::{Handled, HostConfig, HostError, Invocation, WasmHost};
use crate::tiers::{TierEngine, TierError, host_cpu, tier_engines};
use ignite_core::code::CodeConfig;
use ignite_core::harness::Cluster;
use ignite_core::{
    Config, Engine, FunctionId, Incarnation, Roles, TenantCredentials, TenantId, TenantRoot, TenantSecrets, Timestamp,
};

/// Virtual start time of every fleet.
pub const START: Timestamp = Timestamp(1_700_000_000_000);

/// Hosts and their engines on an in-memory network.
pub struct Fleet {
    /// The engines and the network between them.
    pub cluster: Cluster,
    /// One host per engine.
    pub hosts: Vec<WasmHost>,
    /// What the hosts did with engine events: (host, what).
    pub log: Vec<(usize, Handled)>,
    /// The tenant.
    pub tenant: TenantId,
    handled: usize,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("hosts", &self.hosts.len())
            .field("log", &self.log.len())
            .finish()
    }
}

/// Errors building or driving a fleet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A host failed.
    #[error("host {0}: {1}")]
    Host(usize, HostError),
    /// A tier failed to build.
    #[error(transparent)]
    Tier(#[from] TierError),
    /// The engine refused its configuration or credentials.
    #[error(transparent)]
    Engine(#[from] ignite_core::EngineError),
}

impl Fleet {
    /// `n` hosts of one tenant on this machine's CPU, with tiers for `levels`
    /// ([`DEFAULT_LEVELS`](crate::tiers::DEFAULT_LEVELS)), `config` for every host and
    /// `tweak` applied to every engine's configuration.
    pub fn new(
        seed: u64,
        n: usize,
        levels: &[(&str, &str)],
        config: HostConfig,
        tweak: impl Fn(&mut Config),
    ) -> Result<Fleet, FleetError> {
        let tiers = tier_engines(&host_cpu(), levels)?;
        Self::with_tiers(seed, n, &tiers, config, tweak)
    }

    /// `n` hosts sharing these tier engines.
    pub fn with_tiers(
        seed: u64,
        n: usize,
        tiers: &[TierEngine],
        config: HostConfig,
        tweak: impl Fn(&mut Config),
    ) -> Result<Fleet, FleetError> {
        let root = TenantRoot::from_secret([7; 32]);
        let secrets = TenantSecrets::from_seed(&[9; 32]);
        let mut engines = Vec::new();
        let mut hosts = Vec::new();
        for i in 0..n {
            let creds = TenantCredentials::issue(
                &root,
                secrets.clone(),
                &[i as u8 + 1; 32],
                Roles::ALL,
                START,
                START.plus_ms(7 * 86_400_000),
                i as u64,
            );
            let mut c = Config {
                seed: seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                code: CodeConfig {
                    hardware: WasmHost::classes(tiers),
                    ..CodeConfig::default()
                },
                ..Config::default()
            };
            tweak(&mut c);
            let mut engine = Engine::new(c, Incarnation(1))?;
            let (recorder, _) = engine.join_tenant(START, creds)?;
            hosts.push(WasmHost::new(root.id(), tiers.to_vec(), recorder, config.clone()));
            engines.push(engine);
        }
        Ok(Fleet {
            cluster: Cluster::new(seed, START, engines),
            hosts,
            log: Vec::new(),
            tenant: root.id(),
            handled: 0,
        })
    }

    /// Current virtual time.
    pub fn now(&self) -> Timestamp {
        self.cluster.now()
    }

    /// Deploys `wasm` as `name` on every host.
    pub fn deploy_all(&mut self, name: &str, wasm: &[u8]) -> Result<FunctionId, FleetError> {
        let mut id = None;
        for i in 0..self.hosts.len() {
            id = Some(self.deploy(i, name, wasm)?);
        }
        id.ok_or(FleetError::Host(0, HostError::UnknownFunction))
    }

    /// Deploys `wasm` as `name` on host `i`.
    pub fn deploy(&mut self, i: usize, name: &str, wasm: &[u8]) -> Result<FunctionId, FleetError> {
        let now = self.now();
        self.hosts[i]
            .deploy(&mut self.cluster.engines[i], now, name, wasm)
            .map_err(|e| FleetError::Host(i, e))
    }

    /// Runs one invocation on host `i`.
    pub fn invoke(&mut self, i: usize, function: &FunctionId, input: &[u8]) -> Result<Invocation, FleetError> {
        self.hosts[i]
            .invoke(&mut self.cluster.engines[i], function, input)
            .map_err(|e| FleetError::Host(i, e))
    }

    /// Advances virtual time by `ms`, in steps of `step_ms`, handing every new engine event
    /// to its host after each step (compiles are answered at once, in virtual time).
    pub fn run_for(&mut self, ms: u64, step_ms: u64) -> Result<(), FleetError> {
        let until = self.now().plus_ms(ms);
        while self.now() < until {
            let next = self.now().plus_ms(step_ms.max(1)).min(until);
            self.cluster.run_until(next);
            self.pump()?;
        }
        Ok(())
    }

    /// Hands the engine events not yet handled to their hosts, until none are left.
    pub fn pump(&mut self) -> Result<(), FleetError> {
        while self.handled < self.cluster.events.len() {
            let (i, event) = self.cluster.events[self.handled].clone();
            self.handled += 1;
            let now = self.now();
            let done = self.hosts[i]
                .handle_event(&mut self.cluster.engines[i], now, &event)
                .map_err(|e| FleetError::Host(i, e))?;
            if done != Handled::Ignored {
                self.log.push((i, done));
            }
            // Answers (manifests, attestations) go out with the next run.
            self.cluster.run_until(now);
        }
        Ok(())
    }
}
