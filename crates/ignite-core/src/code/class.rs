//! Hardware classes: named, explicit compilation targets.
//!
//! Code is compiled for a class, never for "whatever this CPU has", so every node of a class
//! produces and accepts the same bytes. A class names an architecture, a CPU feature level,
//! a runtime and its version, and the runtime's compatibility hash for that explicit
//! configuration (for wasmtime, `Engine::precompile_compatibility_hash`).

use crate::ids::Tier;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Longest accepted name in a class (architecture, level, runtime, version).
pub const MAX_NAME: usize = 32;

/// The identity of a [`HardwareClass`]: a hash of its canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClassId(pub [u8; 16]);

impl std::fmt::Debug for ClassId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "class:{}", crate::ids::hex(&self.0[..4]))
    }
}

/// A named CPU feature level and the features it requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureLevel {
    /// Architecture the level belongs to.
    pub arch: &'static str,
    /// The level's name.
    pub name: &'static str,
    /// CPU features a machine needs to run code of this level (names as `std::arch`'s
    /// feature detection spells them).
    pub features: &'static [&'static str],
}

const X86_V2: &[&str] = &["cmpxchg16b", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"];
const X86_V3: &[&str] = &[
    "avx",
    "avx2",
    "bmi1",
    "bmi2",
    "cmpxchg16b",
    "f16c",
    "fma",
    "lzcnt",
    "movbe",
    "popcnt",
    "sse3",
    "sse4.1",
    "sse4.2",
    "ssse3",
    "xsave",
];
const X86_V4: &[&str] = &[
    "avx",
    "avx2",
    "avx512bw",
    "avx512cd",
    "avx512dq",
    "avx512f",
    "avx512vl",
    "bmi1",
    "bmi2",
    "cmpxchg16b",
    "f16c",
    "fma",
    "lzcnt",
    "movbe",
    "popcnt",
    "sse3",
    "sse4.1",
    "sse4.2",
    "ssse3",
    "xsave",
];

/// The feature levels this crate knows by name. A class may use another level name, with
/// its features listed explicitly ([`HardwareClass::features`]).
pub const LEVELS: &[FeatureLevel] = &[
    FeatureLevel {
        arch: "x86_64",
        name: "x86-64-v1",
        features: &[],
    },
    FeatureLevel {
        arch: "x86_64",
        name: "x86-64-v2",
        features: X86_V2,
    },
    FeatureLevel {
        arch: "x86_64",
        name: "x86-64-v3",
        features: X86_V3,
    },
    FeatureLevel {
        arch: "x86_64",
        name: "x86-64-v4",
        features: X86_V4,
    },
    FeatureLevel {
        arch: "aarch64",
        name: "aarch64-baseline",
        features: &["neon"],
    },
    // Portable bytecode (an interpreter's target): runs on any CPU.
    FeatureLevel {
        arch: "pulley64",
        name: "portable",
        features: &[],
    },
];

/// A named, explicit compilation target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HardwareClass {
    /// Architecture of the generated code (`x86_64`, `aarch64`, `pulley64`...).
    pub arch: String,
    /// Named CPU feature level (`x86-64-v3`...).
    pub level: String,
    /// CPU features required, sorted. Filled from [`LEVELS`] by [`HardwareClass::new`].
    pub features: Vec<String>,
    /// Runtime identity (`wasmtime-cranelift`, `wasmtime-winch`...).
    pub runtime: String,
    /// Runtime version: code is only accepted by the same version.
    pub runtime_version: String,
    /// The runtime's compatibility hash for this explicit configuration.
    pub compat: [u8; 32],
    /// Tiers this configuration compiles code for, a bit per tier (bit `t` for tier `t`):
    /// e.g. a portable interpreter bytecode class for tier 0 only, an optimizing compiler's
    /// class for tier 2. [`ALL_TIERS`] unless set with [`HardwareClass::for_tiers`].
    pub tiers: u8,
}

/// Every tier, as a [`HardwareClass::tiers`] mask.
pub const ALL_TIERS: u8 = (1 << (Tier::MAX.0 + 1)) - 1;

/// Why a class description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassError {
    /// The level is not in [`LEVELS`] for the architecture: use [`HardwareClass::with_features`].
    #[error("unknown feature level `{level}` for architecture `{arch}`")]
    UnknownLevel {
        /// Architecture.
        arch: String,
        /// Level.
        level: String,
    },
    /// A name is empty or longer than [`MAX_NAME`], or too many features are listed.
    #[error("class field `{0}` is empty or too long")]
    BadField(&'static str),
}

/// What a machine offers: its architecture, CPU features and runtime.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HostCpu {
    /// Architecture (`x86_64`...).
    pub arch: String,
    /// Features the CPU has.
    pub features: BTreeSet<String>,
    /// Runtimes installed, with their versions.
    pub runtimes: BTreeSet<(String, String)>,
}

impl HardwareClass {
    /// A class from a named level of [`LEVELS`].
    pub fn new(
        arch: &str,
        level: &str,
        runtime: &str,
        runtime_version: &str,
        compat: [u8; 32],
    ) -> Result<Self, ClassError> {
        let known = LEVELS
            .iter()
            .find(|l| l.arch == arch && l.name == level)
            .ok_or_else(|| ClassError::UnknownLevel {
                arch: arch.into(),
                level: level.into(),
            })?;
        Self::with_features(arch, level, known.features, runtime, runtime_version, compat)
    }

    /// A class with an explicit feature list (for levels this crate does not name).
    pub fn with_features(
        arch: &str,
        level: &str,
        features: &[&str],
        runtime: &str,
        runtime_version: &str,
        compat: [u8; 32],
    ) -> Result<Self, ClassError> {
        let mut features: Vec<String> = features.iter().map(|f| f.to_string()).collect();
        features.sort();
        features.dedup();
        let class = HardwareClass {
            arch: arch.into(),
            level: level.into(),
            features,
            runtime: runtime.into(),
            runtime_version: runtime_version.into(),
            compat,
            tiers: ALL_TIERS,
        };
        class.validate()?;
        Ok(class)
    }

    /// The same class restricted to `tiers` (its id changes accordingly).
    pub fn for_tiers(mut self, tiers: &[Tier]) -> Result<Self, ClassError> {
        self.tiers = tiers
            .iter()
            .fold(0, |m, t| m | 1u8.checked_shl(u32::from(t.0)).unwrap_or(0));
        if tiers.iter().any(|t| *t > Tier::MAX) {
            return Err(ClassError::BadField("tiers"));
        }
        self.validate()?;
        Ok(self)
    }

    /// Whether this class compiles code for `tier`.
    pub fn serves(&self, tier: Tier) -> bool {
        tier <= Tier::MAX && self.tiers & (1 << tier.0) != 0
    }

    /// Checks every bound (used on classes received from the network too).
    pub fn validate(&self) -> Result<(), ClassError> {
        let ok = |s: &str| !s.is_empty() && s.len() <= MAX_NAME;
        if !ok(&self.arch) {
            return Err(ClassError::BadField("arch"));
        }
        if !ok(&self.level) {
            return Err(ClassError::BadField("level"));
        }
        if !ok(&self.runtime) {
            return Err(ClassError::BadField("runtime"));
        }
        if !ok(&self.runtime_version) {
            return Err(ClassError::BadField("runtime_version"));
        }
        if self.features.len() > 64 || self.features.iter().any(|f| !ok(f)) {
            return Err(ClassError::BadField("features"));
        }
        if self.tiers == 0 || self.tiers & !ALL_TIERS != 0 {
            return Err(ClassError::BadField("tiers"));
        }
        Ok(())
    }

    /// The class's identity.
    pub fn id(&self) -> ClassId {
        let bytes = postcard::to_allocvec(self).expect("class encodes");
        let h = blake3::derive_key("ignite v1 hardware class", &bytes);
        ClassId(h[..16].try_into().expect("16 bytes"))
    }

    /// Whether a machine can run code of this class: same architecture (any for portable
    /// bytecode), every required feature present, and the same runtime version installed.
    pub fn runnable_on(&self, host: &HostCpu) -> bool {
        let arch_ok = self.arch == "pulley64" || self.arch == host.arch;
        arch_ok
            && self.features.iter().all(|f| host.features.contains(f))
            && host
                .runtimes
                .contains(&(self.runtime.clone(), self.runtime_version.clone()))
    }

    /// How demanding the class is (more required features = better code): used to order the
    /// classes a machine can run, best first.
    pub fn rank(&self) -> usize {
        self.features.len()
    }
}

/// The classes of `candidates` a machine can run, best first (most features; ties by id).
pub fn runnable_classes(candidates: &[HardwareClass], host: &HostCpu) -> Vec<HardwareClass> {
    let mut out: Vec<HardwareClass> = candidates.iter().filter(|c| c.runnable_on(host)).cloned().collect();
    out.sort_by(|a, b| b.rank().cmp(&a.rank()).then(a.id().cmp(&b.id())));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(arch: &str, features: &[&str]) -> HostCpu {
        HostCpu {
            arch: arch.into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            runtimes: [("rt".to_string(), "1".to_string())].into_iter().collect(),
        }
    }

    #[test]
    fn a_v3_machine_runs_v2_and_v3_and_prefers_v3() {
        let v2 = HardwareClass::new("x86_64", "x86-64-v2", "rt", "1", [0; 32]).unwrap();
        let v3 = HardwareClass::new("x86_64", "x86-64-v3", "rt", "1", [0; 32]).unwrap();
        let v4 = HardwareClass::new("x86_64", "x86-64-v4", "rt", "1", [0; 32]).unwrap();
        let arm = HardwareClass::new("aarch64", "aarch64-baseline", "rt", "1", [0; 32]).unwrap();
        let all = [v2.clone(), v4.clone(), arm.clone(), v3.clone()];
        let m = host("x86_64", X86_V3);
        assert_eq!(runnable_classes(&all, &m), vec![v3.clone(), v2.clone()]);
        assert!(!v4.runnable_on(&m));
        assert!(!arm.runnable_on(&m));
        // Another runtime version runs nothing.
        let mut old = m.clone();
        old.runtimes = [("rt".to_string(), "0".to_string())].into_iter().collect();
        assert!(runnable_classes(&all, &old).is_empty());
        assert_ne!(v2.id(), v3.id());
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(HardwareClass::new("x86_64", "x86-64-v9", "rt", "1", [0; 32]).is_err());
        let long = "x".repeat(MAX_NAME + 1);
        assert!(HardwareClass::new("x86_64", "x86-64-v2", &long, "1", [0; 32]).is_err());
    }
}
