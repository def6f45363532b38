//! The runtime host: deploys modules, runs each invocation on the best code installed,
//! feeds the engine its profiles and deopts, compiles when the fleet elects it, and loads
//! code the fleet compiled.
//!
//! # Functions and their code
//! A deployed function is one Wasm module following the byte ABI of
//! [`workloads`](crate::workloads): exports `memory`, i32 globals `input_ptr` and
//! `output_ptr`, and `run(len: i32) -> i32`. wasmtime compiles a whole module at once, so
//! the unit of code is the module: the host sets the function's policy to
//! [`CompileUnit::Whole`]`(`[`MODULE_METHOD`]`)`, and the code keys are
//! (function, [`MODULE_METHOD`], tier).
//!
//! # Counters
//! Method [`MODULE_METHOD`] counts every invocation at the tier that ran it, and carries the
//! instrumented module's profile: loop iterations as back-edges, `br_if`/`if` directions as
//! branch sites, the table slot of every `call_indirect` as the receiver of a call site.
//! Method [`RUN_METHOD`] counts invocations of the `run` export.
//!
//! # Tier-up
//! Deploying asks the fleet for the portable tier-0 code ([`Engine::want_code`]); tiers 1
//! and 2 follow the merged fleet-wide thresholds of the function's policy. A node compiles
//! only when elected ([`Event::Compile`]). One fallback: an invocation that arrives before
//! any code is installed runs on Pulley code this host compiles itself
//! ([`HostStats::local_compiles`]): the first invocation in a fleet has nobody to wait for.
//!
//! New invocations run on the best code installed as soon as it is installed; an
//! invocation already running finishes on the code it started with (`invoke` takes
//! `&mut self`: a host running invocations on several threads holds an `Arc` of the code
//! per invocation).

mod abi;
mod compile;
mod warm;

pub use abi::check_abi;
pub use compile::{monomorphic_sites, required_sites};

use crate::rewrite::{self, Instrumented, RewriteError};
use crate::tiers::{Compiler, TierEngine, TierError};
use ignite_core::code::{ClassId, CompileError, CompileRequest, CompiledCode, HardwareClass, Install, Purpose};
use ignite_core::{
    Assumption, CodeKey, CompileUnit, Engine, EngineError, Event, FunctionId, FunctionPolicy, MethodId, MethodProfiler,
    MethodShape, Recorder, TenantId, Thresholds, Tier, Timestamp,
};
use std::collections::BTreeMap;
use std::time::Instant;
pub use warm::Warm;

/// Instantiates `module` and runs one invocation of the byte ABI on `input` (no profile,
/// no engine): for checking code outside a host.
pub fn run_once(module: &wasmtime::Module, input: &[u8]) -> Result<Vec<u8>, HostError> {
    Warm::new(module, None, &[])?.invoke(input)
}

/// The method whose counters stand for the whole module (and key its code).
pub const MODULE_METHOD: MethodId = MethodId(0);
/// The method counting invocations of the `run` export.
pub const RUN_METHOD: MethodId = MethodId(1);

/// Errors of the host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No function deployed under this id.
    #[error("function not deployed here")]
    UnknownFunction,
    /// The module does not follow the byte ABI.
    #[error("module ABI: {0}")]
    Abi(String),
    /// The module could not be rewritten.
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// wasmtime failed (compile, load or a trap).
    #[error("wasmtime: {0}")]
    Wasmtime(#[from] wasmtime::Error),
    /// A tier could not be built.
    #[error(transparent)]
    Tier(#[from] TierError),
    /// The engine refused a call.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine refused compiled code.
    #[error("compiled code refused: {0}")]
    Compile(#[from] CompileError),
    /// A compile request for a class this host has no engine for.
    #[error("no tier engine for the requested class")]
    UnknownClass,
    /// No code is installed yet and the local fallback is off: retry later.
    #[error("no code installed yet (local fallback off)")]
    NoCode,
}

/// Host settings.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Tier thresholds on merged fleet-wide invocations (HotSpot-like 200 and 5,000).
    pub thresholds: Thresholds,
    /// Distinct nodes whose invocations must count before a threshold fires.
    pub min_contributors: usize,
    /// Observations a call site needs before its profile counts as monomorphic.
    pub monomorphic_min_samples: u64,
    /// Compile Pulley code locally when an invocation finds no code installed.
    pub local_fallback: bool,
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            thresholds: Thresholds::default(),
            min_contributors: 1,
            monomorphic_min_samples: 100,
            local_fallback: true,
        }
    }
}

/// Counts of what the host did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Invocations per tier that ran them.
    pub invocations: [u64; 3],
    /// Modules compiled because the fleet elected this node.
    pub elected_compiles: u64,
    /// Modules compiled to attest another node's code.
    pub attest_compiles: u64,
    /// Pulley modules compiled locally because an invocation found no code (the fallback).
    pub local_compiles: u64,
    /// Code installed from the fleet (or from this node's own compiles).
    pub installs: u64,
    /// Guard misses of specialized code.
    pub deopts: u64,
}

/// What one invocation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The output bytes.
    pub output: Vec<u8>,
    /// The tier that ran it.
    pub tier: Tier,
    /// The generation of the fleet's code that ran it (`None`: the local fallback).
    pub generation: Option<u32>,
    /// Wall time of the call, in microseconds.
    pub micros: u64,
    /// Guard misses of specialized code during the call.
    pub deopts: u64,
}

/// What [`WasmHost::handle_event`] did with an engine event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Compiled and handed to the engine: the manifest (or attestation) hash, compile time.
    Compiled {
        /// The key compiled.
        key: CodeKey,
        /// What the engine returned for it.
        hash: [u8; 32],
        /// Compile wall time in microseconds.
        micros: u64,
    },
    /// Code loaded; new invocations use it when it is the best installed.
    Installed {
        /// The key installed.
        key: CodeKey,
        /// Its generation.
        generation: u32,
        /// Deserialize + instantiate wall time in microseconds.
        micros: u64,
    },
    /// Code unloaded.
    Uninstalled(CodeKey),
    /// Not for this host (another tenant, a function not deployed here, or an event the
    /// host has nothing to do for).
    Ignored,
}

/// Installed code of one tier.
struct Loaded {
    generation: Option<u32>,
    class: ClassId,
    warm: Warm,
}

/// A deployed function.
struct Function {
    wasm: Vec<u8>,
    instrumented: Instrumented,
    /// Module-method profilers by tier (0, 1, 2), and run-export profilers.
    module: [MethodProfiler; 3],
    run: [MethodProfiler; 3],
    code: BTreeMap<Tier, Loaded>,
    /// The fallback's Pulley code, dropped once fleet code is installed.
    local: Option<Loaded>,
}

/// A tiered Wasm host serving one tenant on one node.
pub struct WasmHost {
    tenant: TenantId,
    tiers: Vec<TierEngine>,
    recorder: Recorder,
    config: HostConfig,
    functions: BTreeMap<FunctionId, Function>,
    stats: HostStats,
}

impl std::fmt::Debug for WasmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHost")
            .field("tiers", &self.tiers)
            .field("functions", &self.functions.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl WasmHost {
    /// A host for `tenant` with these tier engines (from
    /// [`tier_engines`](crate::tiers::tier_engines)), recording into the tenant's recorder.
    /// The engine's [`CodeConfig::hardware`](ignite_core::code::CodeConfig::hardware) must
    /// be [`classes`](Self::classes) of the same tiers.
    pub fn new(tenant: TenantId, tiers: Vec<TierEngine>, recorder: Recorder, config: HostConfig) -> WasmHost {
        WasmHost {
            tenant,
            tiers,
            recorder,
            config,
            functions: BTreeMap::new(),
            stats: HostStats::default(),
        }
    }

    /// The classes of `tiers`, best first: what the node's engine announces and accepts.
    pub fn classes(tiers: &[TierEngine]) -> Vec<HardwareClass> {
        tiers.iter().map(|t| t.class.clone()).collect()
    }

    /// What the host did so far.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// The code key of `function` at `tier`.
    pub fn key(function: FunctionId, tier: Tier) -> CodeKey {
        CodeKey {
            function,
            method: MODULE_METHOD,
            tier,
        }
    }

    /// Deploys a module under `name`: instruments it, declares the deployment and the
    /// function's policy to the engine, and asks the fleet for its tier-0 code.
    pub fn deploy(
        &mut self,
        engine: &mut Engine,
        now: Timestamp,
        name: &str,
        wasm: &[u8],
    ) -> Result<FunctionId, HostError> {
        let function = FunctionId::from_deployment(name, wasm);
        if self.functions.contains_key(&function) {
            // Already deployed: keep its code; ask again for tier 0 in case it was lost.
            engine.want_code(now, &self.tenant, Self::key(function, Tier(0)))?;
            return Ok(function);
        }
        check_abi(wasm)?;
        let instrumented = rewrite::instrument(wasm)?;
        let shape = MethodShape {
            branch_sites: instrumented.sites.branch_sites,
            call_sites: instrumented.sites.call_sites,
        };
        let profiler = |method: MethodId, tier: u8, shape: MethodShape| {
            self.recorder
                .method(function, method, Tier(tier), shape)
                .map_err(EngineError::from)
        };
        let module = [
            profiler(MODULE_METHOD, 0, shape)?,
            profiler(MODULE_METHOD, 1, shape)?,
            profiler(MODULE_METHOD, 2, shape)?,
        ];
        let none = MethodShape::default();
        let run = [
            profiler(RUN_METHOD, 0, none)?,
            profiler(RUN_METHOD, 1, none)?,
            profiler(RUN_METHOD, 2, none)?,
        ];
        engine.set_deployment(&self.tenant, function)?;
        engine.set_function_policy(
            &self.tenant,
            function,
            FunctionPolicy {
                thresholds: self.config.thresholds,
                min_contributors: self.config.min_contributors,
                unit: CompileUnit::Whole(MODULE_METHOD),
            },
        )?;
        engine.want_code(now, &self.tenant, Self::key(function, Tier(0)))?;
        // Another deployment of the name is gone (the engine dropped its state too).
        self.functions.retain(|f, _| f.name != function.name);
        self.functions.insert(
            function,
            Function {
                wasm: wasm.to_vec(),
                instrumented,
                module,
                run,
                code: BTreeMap::new(),
                local: None,
            },
        );
        Ok(function)
    }

    /// Runs one invocation of `function` on the best code installed, and records its
    /// profile (instrumented tiers), its latency (fleet code) and its guard misses
    /// (specialized code, reported to the engine as deopts of their assumptions).
    pub fn invoke(
        &mut self,
        engine: &mut Engine,
        function: &FunctionId,
        input: &[u8],
    ) -> Result<Invocation, HostError> {
        let pulley = self.tier_engine(Compiler::Pulley).cloned();
        let f = self.functions.get_mut(function).ok_or(HostError::UnknownFunction)?;
        if f.code.is_empty() && f.local.is_none() {
            if !self.config.local_fallback {
                return Err(HostError::NoCode);
            }
            let te = pulley.ok_or(HostError::UnknownClass)?;
            let module = wasmtime::Module::new(&te.engine, &f.instrumented.wasm)?;
            let warm = Warm::new(&module, Some(&f.instrumented.sites), &[])?;
            f.local = Some(Loaded {
                generation: None,
                class: te.class.id(),
                warm,
            });
            self.stats.local_compiles += 1;
        }
        let (tier, loaded) = match f.code.iter_mut().next_back() {
            Some((t, l)) => (*t, l),
            None => (Tier(0), f.local.as_mut().expect("fallback code present")),
        };
        let started = Instant::now();
        let output = loaded.warm.invoke(input)?;
        let micros = started.elapsed().as_micros() as u64;
        let t = usize::from(tier.0).min(2);
        f.module[t].record_invocation();
        f.run[t].record_invocation();
        loaded.warm.record_profile(&f.module[t]);
        let mut deopts = 0;
        for (assumption, misses) in loaded.warm.take_deopts() {
            deopts += misses;
            engine.record_deopt(&self.tenant, Self::key(*function, tier), &assumption)?;
        }
        if let Some(g) = loaded.generation {
            engine.record_code_runs(&self.tenant, Self::key(*function, tier), g, micros, 1)?;
        }
        self.stats.invocations[t] += 1;
        self.stats.deopts += deopts;
        Ok(Invocation {
            output,
            tier,
            generation: loaded.generation,
            micros,
            deopts,
        })
    }

    /// The tier installed for `function` that new invocations use, if any.
    pub fn current_tier(&self, function: &FunctionId) -> Option<Tier> {
        self.functions.get(function)?.code.keys().next_back().copied()
    }

    fn tier_engine(&self, compiler: Compiler) -> Option<&TierEngine> {
        self.tiers.iter().find(|t| t.compiler == compiler)
    }

    /// Acts on an engine event: compiles when elected ([`Event::Compile`], answered with
    /// [`Engine::compiled`] at once; a host compiling on a thread answers later), loads
    /// installed code ([`Event::Install`]) and unloads withdrawn code ([`Event::Uninstall`]).
    pub fn handle_event(&mut self, engine: &mut Engine, now: Timestamp, event: &Event) -> Result<Handled, HostError> {
        match event {
            Event::Compile(req)
                if req.tenant == self.tenant
                    && (!self.functions.contains_key(&req.key.function) || req.key.method != MODULE_METHOD) =>
            {
                // Elected for a function not deployed here, or for code of a single method
                // (a policy set before this host deployed the function): give it up at once.
                engine.compile_failed(now, &self.tenant, req.id)?;
                Ok(Handled::Ignored)
            }
            Event::Compile(req) if req.tenant == self.tenant => match self.compile(req) {
                Ok((bytes, assumptions, micros)) => {
                    match req.purpose {
                        Purpose::Attest { .. } => self.stats.attest_compiles += 1,
                        _ => self.stats.elected_compiles += 1,
                    }
                    let hash = engine.compiled(now, &self.tenant, req.id, CompiledCode { bytes, assumptions })?;
                    Ok(Handled::Compiled {
                        key: req.key,
                        hash,
                        micros,
                    })
                }
                Err(e) => {
                    // Release the claim at once so the next-ranked node takes over.
                    engine.compile_failed(now, &self.tenant, req.id)?;
                    Err(e)
                }
            },
            Event::Install(install)
                if install.tenant == self.tenant && install.manifest.statement.key.method == MODULE_METHOD =>
            {
                self.install(install)
            }
            Event::Uninstall { tenant, key, .. } if *tenant == self.tenant && key.method == MODULE_METHOD => {
                let removed = self
                    .functions
                    .get_mut(&key.function)
                    .and_then(|f| f.code.remove(&key.tier));
                Ok(match removed {
                    Some(_) => Handled::Uninstalled(*key),
                    None => Handled::Ignored,
                })
            }
            _ => Ok(Handled::Ignored),
        }
    }

    /// Compiles what `req` asks for: the code bytes, the assumptions they rely on, and the
    /// compile wall time in microseconds.
    fn compile(&self, req: &CompileRequest) -> Result<(Vec<u8>, Vec<Assumption>, u64), HostError> {
        let f = self
            .functions
            .get(&req.key.function)
            .ok_or(HostError::UnknownFunction)?;
        let te = self
            .tiers
            .iter()
            .find(|t| t.class.id() == req.class.id() && t.compiler.tier() == req.key.tier)
            .ok_or(HostError::UnknownClass)?;
        let started = Instant::now();
        let (wasm, assumptions) = if req.key.tier < Tier(2) {
            (f.instrumented.wasm.clone(), Vec::new())
        } else {
            let speculations = match (&req.purpose, &req.required) {
                (Purpose::Attest { .. }, Some(required)) => required_sites(required),
                _ => monomorphic_sites(&req.profile, self.config.monomorphic_min_samples, &req.excluded),
            };
            let s = rewrite::specialize(&f.wasm, &speculations)?;
            let assumptions = s
                .guards
                .iter()
                .map(|g| Assumption::MonomorphicCall {
                    site: g.site,
                    target: g.slot,
                })
                .collect();
            (s.wasm, assumptions)
        };
        let bytes = te.compile(&wasm)?;
        Ok((bytes, assumptions, started.elapsed().as_micros() as u64))
    }

    fn install(&mut self, install: &Install) -> Result<Handled, HostError> {
        let m = &install.manifest.statement;
        let Some(f) = self.functions.get_mut(&m.key.function) else {
            return Ok(Handled::Ignored);
        };
        let te = self
            .tiers
            .iter()
            .find(|t| t.class.id() == m.class && t.compiler.tier() == m.key.tier)
            .ok_or(HostError::UnknownClass)?;
        let started = Instant::now();
        // SAFETY: `Module::deserialize` loads native code without validating it. The engine
        // emits `Event::Install` only after checking the manifest's signature chain (a
        // member of this tenant holding the COMPILE role signed it, under a certificate
        // from the tenant's root, not revoked or banned), that the blob's blake3 hash and
        // size match the manifest, that the class is this tier engine's class and runnable
        // here, and (when configured) that `min_attestations` other members compiled the
        // same bytes. What is trusted: any member with the COMPILE role can run native
        // code in this process, with this host's privileges; attestation narrows that to
        // k colluding members. Run one process per tenant. wasmtime itself checks the
        // version, target, ISA flags and tunables of the artifact against `te.engine`.
        let module = unsafe { wasmtime::Module::deserialize(&te.engine, &install.blob)? };
        let sites = (m.key.tier < Tier(2)).then_some(&f.instrumented.sites);
        let warm = Warm::new(&module, sites, &m.assumptions)?;
        let micros = started.elapsed().as_micros() as u64;
        f.code.insert(
            m.key.tier,
            Loaded {
                generation: Some(m.generation),
                class: m.class,
                warm,
            },
        );
        f.local = None;
        self.stats.installs += 1;
        Ok(Handled::Installed {
            key: m.key,
            generation: m.generation,
            micros,
        })
    }

    /// The class and generation of the code installed per tier for `function`.
    pub fn installed(&self, function: &FunctionId) -> BTreeMap<Tier, (ClassId, Option<u32>)> {
        self.functions
            .get(function)
            .map(|f| f.code.iter().map(|(t, l)| (*t, (l.class, l.generation))).collect())
            .unwrap_or_default()
    }
}
