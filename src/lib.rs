//! # Ignite
//!
//! Serverless runtime nodes of one tenant pool their JIT profiles as signed CRDT counters,
//! so that code can run optimized from a function's first invocation on every node.
//!
//! This facade re-exports the workspace crates:
//! * [`core`] (`ignite-core`): the sans-IO protocol engine, re-exported at the top level too.
//!
//! Start with [`Engine`] and [`Recorder`]; `examples/quickstart.rs` shows three engines of
//! one tenant converging on one merged profile.

pub use ignite_core as core;
pub use ignite_core::*;
