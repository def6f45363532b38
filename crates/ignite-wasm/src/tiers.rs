//! The three tiers as explicit wasmtime configurations, one per hardware class.
//!
//! | tier | compiler  | target                                    | class                  |
//! |------|-----------|-------------------------------------------|------------------------|
//! | 0    | Pulley    | `pulley64` bytecode, portable across CPUs | `pulley64/portable`    |
//! | 1    | Winch     | native, explicit CPU feature level        | e.g. `x86_64/x86-64-v3` |
//! | 2    | Cranelift | native, explicit CPU feature level, `speed` | e.g. `x86_64/x86-64-v3` |
//!
//! Every configuration names its target triple and enables its CPU features one by one, so
//! wasmtime infers nothing from the host: two nodes with the same class produce the same
//! bytes and accept each other's code. The class's compatibility hash is wasmtime's
//! [`wasmtime::Engine::precompile_compatibility_hash`] (version, target, ISA flags,
//! tunables), so code is only ever offered to engines that can load it; wasmtime checks the
//! same again when it deserializes.

use ignite_core::Tier;
use ignite_core::code::{HardwareClass, HostCpu};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

/// The wasmtime release these tiers are built with (part of every class).
pub const WASMTIME_VERSION: &str = "48";

/// A compiler of one tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Compiler {
    /// Tier 0: Cranelift emitting Pulley bytecode, run by wasmtime's interpreter.
    Pulley,
    /// Tier 1: the single-pass Winch baseline compiler.
    Winch,
    /// Tier 2: the Cranelift optimizing compiler.
    Cranelift,
}

impl Compiler {
    /// Every compiler, by tier.
    pub const ALL: [Compiler; 3] = [Compiler::Pulley, Compiler::Winch, Compiler::Cranelift];

    /// The tier it compiles for.
    pub fn tier(self) -> Tier {
        match self {
            Compiler::Pulley => Tier(0),
            Compiler::Winch => Tier(1),
            Compiler::Cranelift => Tier(2),
        }
    }

    /// The compiler of `tier`.
    pub fn of_tier(tier: Tier) -> Option<Compiler> {
        Compiler::ALL.into_iter().find(|c| c.tier() == tier)
    }

    /// The runtime id in its classes.
    pub fn runtime(self) -> &'static str {
        match self {
            Compiler::Pulley => "wasmtime-pulley",
            Compiler::Winch => "wasmtime-winch",
            Compiler::Cranelift => "wasmtime-cranelift",
        }
    }
}

/// Errors building a tier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// The feature level is not one this host can target.
    #[error("no explicit wasmtime target for `{arch}`/`{level}`")]
    UnknownLevel {
        /// Architecture.
        arch: String,
        /// Level.
        level: String,
    },
    /// wasmtime refused the configuration.
    #[error("wasmtime: {0}")]
    Wasmtime(#[from] wasmtime::Error),
    /// The class description is invalid.
    #[error("class: {0}")]
    Class(#[from] ignite_core::code::class::ClassError),
}

/// Cranelift ISA flags of a named x86-64 feature level (each level adds to the one before).
fn x86_flags(level: &str) -> Option<Vec<&'static str>> {
    const STEPS: [&[&str]; 3] = [
        // x86-64-v2
        &[
            "has_sse3",
            "has_ssse3",
            "has_sse41",
            "has_sse42",
            "has_popcnt",
            "has_cmpxchg16b",
        ],
        // x86-64-v3
        &["has_avx", "has_avx2", "has_bmi1", "has_bmi2", "has_fma", "has_lzcnt"],
        // x86-64-v4
        &["has_avx512f", "has_avx512dq", "has_avx512vl"],
    ];
    let n = match level {
        "x86-64-v1" => 0,
        "x86-64-v2" => 1,
        "x86-64-v3" => 2,
        "x86-64-v4" => 3,
        _ => return None,
    };
    Some(STEPS[..n].concat())
}

/// The explicit wasmtime configuration of `compiler` for `arch`/`level` (`pulley64` /
/// `portable` for the Pulley tier). Nothing is inferred from the host.
pub fn config(compiler: Compiler, arch: &str, level: &str) -> Result<wasmtime::Config, TierError> {
    let unknown = || TierError::UnknownLevel {
        arch: arch.into(),
        level: level.into(),
    };
    let mut c = wasmtime::Config::new();
    match compiler {
        Compiler::Pulley => {
            if (arch, level) != ("pulley64", "portable") {
                return Err(unknown());
            }
            c.target("pulley64")?;
            c.strategy(wasmtime::Strategy::Cranelift);
        }
        Compiler::Winch | Compiler::Cranelift => {
            let (triple, flags) = match arch {
                "x86_64" => ("x86_64-unknown-linux-gnu", x86_flags(level).ok_or_else(unknown)?),
                "aarch64" if level == "aarch64-baseline" => ("aarch64-unknown-linux-gnu", Vec::new()),
                _ => return Err(unknown()),
            };
            c.target(triple)?;
            for f in flags {
                // SAFETY: only named ISA extensions are enabled, and code compiled with them
                // is only installed on machines of this class, which have them
                // (`HardwareClass::runnable_on`); wasmtime also checks the flags against the
                // host when it deserializes.
                unsafe {
                    c.cranelift_flag_enable(f);
                }
            }
            if compiler == Compiler::Winch {
                c.strategy(wasmtime::Strategy::Winch);
            } else {
                c.strategy(wasmtime::Strategy::Cranelift);
                c.cranelift_opt_level(wasmtime::OptLevel::Speed);
            }
        }
    }
    Ok(c)
}

/// Feeds a `Hash` value into blake3: a stable digest of wasmtime's compatibility hash.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let h = self.0.finalize();
        u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A wasmtime engine for one tier and one explicit class: it compiles the tier's code for
/// the class and loads code compiled for it.
#[derive(Clone)]
pub struct TierEngine {
    /// The compiler.
    pub compiler: Compiler,
    /// The class, restricted to the compiler's tier.
    pub class: HardwareClass,
    /// The configured engine.
    pub engine: wasmtime::Engine,
}

impl std::fmt::Debug for TierEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierEngine")
            .field("compiler", &self.compiler)
            .field("arch", &self.class.arch)
            .field("level", &self.class.level)
            .finish()
    }
}

impl TierEngine {
    /// The engine of `compiler` for `arch`/`level`, with its class.
    pub fn new(compiler: Compiler, arch: &str, level: &str) -> Result<TierEngine, TierError> {
        let engine = wasmtime::Engine::new(&config(compiler, arch, level)?)?;
        let mut h = Blake3Hasher(blake3::Hasher::new_derive_key("ignite-wasm compatibility"));
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = *h.0.finalize().as_bytes();
        let class = if compiler == Compiler::Pulley {
            HardwareClass::with_features(arch, level, &[], compiler.runtime(), WASMTIME_VERSION, compat)?
        } else {
            HardwareClass::new(arch, level, compiler.runtime(), WASMTIME_VERSION, compat)?
        }
        .for_tiers(&[compiler.tier()])?;
        Ok(TierEngine {
            compiler,
            class,
            engine,
        })
    }

    /// Compiles a module to a serialized artifact for this class (wasmtime's
    /// `precompile_module`: the same bytes for the same module on every node of the class).
    pub fn compile(&self, wasm: &[u8]) -> Result<Vec<u8>, TierError> {
        Ok(self.engine.precompile_module(wasm)?)
    }
}

/// The CPU this process runs on, with the wasmtime runtimes of this crate: used only to
/// decide which classes it can run, never to choose compilation flags.
pub fn host_cpu() -> HostCpu {
    let mut features = BTreeSet::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($name:tt),*) => {
                $(if std::is_x86_feature_detected!($name) {
                    features.insert($name.to_string());
                })*
            };
        }
        detect!(
            "cmpxchg16b",
            "popcnt",
            "sse3",
            "sse4.1",
            "sse4.2",
            "ssse3",
            "avx",
            "avx2",
            "bmi1",
            "bmi2",
            "f16c",
            "fma",
            "lzcnt",
            "movbe",
            "xsave",
            "avx512bw",
            "avx512cd",
            "avx512dq",
            "avx512f",
            "avx512vl"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            features.insert("neon".to_string());
        }
    }
    HostCpu {
        arch: std::env::consts::ARCH.to_string(),
        features,
        runtimes: Compiler::ALL
            .iter()
            .map(|c| (c.runtime().to_string(), WASMTIME_VERSION.to_string()))
            .collect(),
    }
}

/// The native feature levels a fleet's classes are drawn from, best first. Fewer levels
/// mean fewer compiles per key; each level a machine runs widens where its code is useful.
pub const DEFAULT_LEVELS: &[(&str, &str)] = &[
    ("x86_64", "x86-64-v3"),
    ("x86_64", "x86-64-v2"),
    ("aarch64", "aarch64-baseline"),
];

/// The tier engines a machine runs, best first within each tier: the portable Pulley tier,
/// then Winch and Cranelift for every level of `levels` the CPU can run.
pub fn tier_engines(host: &HostCpu, levels: &[(&str, &str)]) -> Result<Vec<TierEngine>, TierError> {
    let mut out = Vec::new();
    for compiler in [Compiler::Cranelift, Compiler::Winch] {
        for (arch, level) in levels {
            // Whether the CPU runs the level is known before building the engine.
            let probe = HardwareClass::new(arch, level, compiler.runtime(), WASMTIME_VERSION, [0; 32])?;
            if probe.runnable_on(host) {
                out.push(TierEngine::new(compiler, arch, level)?);
            }
        }
    }
    out.push(TierEngine::new(Compiler::Pulley, "pulley64", "portable")?);
    Ok(out)
}
