//! A tiered WebAssembly runtime host for Ignite, on wasmtime.
//!
//! Three real tiers in one process: tier 0 runs Pulley bytecode (portable, compiled once
//! for the whole tenant), tier 1 native code from Winch, tier 2 native code from Cranelift,
//! built from a module specialized with the fleet's merged profile. Tiers 1 and 2 are
//! compiled for explicit hardware classes, never for the host's detected CPU.

pub mod calibrate;
pub mod fleet;
pub mod host;
pub mod rewrite;
pub mod tiers;
pub mod workloads;

pub use ignite_core;
