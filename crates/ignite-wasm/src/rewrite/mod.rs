//! Module rewriting: profiling instrumentation and profile-guided specialization.
//!
//! Three entry points, all over untrusted core WebAssembly modules (validated with
//! [`wasmparser::Validator`] first, at most [`MAX_INPUT_BYTES`] long):
//!
//! - [`analyze`] numbers the module's *sites* ([`SiteMap`]): branch sites (every `br_if`
//!   and every `if`, sharing one numbering), call sites (every `call_indirect`) and loops
//!   (every `loop`), module-wide in code order (defined functions in body order, then
//!   instruction order), and reports the slots of table 0 when that table is *static*.
//! - [`instrument`] builds the copy that tiers 0 (Pulley) and 1 (Winch) run: the same
//!   module plus exported mutable `i64` counter globals, appended after the existing
//!   globals so no existing index moves ([`LOOPS_COUNTER`], [`branch_counter`],
//!   [`call_counter`]).
//! - [`specialize`] builds the copy that tier 2 (Cranelift) runs: every `call_indirect`
//!   the fleet profile found monomorphic ([`Speculation`]) becomes a guarded direct call
//!   with a deoptimization counter ([`deopt_counter`]).
//!
//! Both rewrites re-encode every instruction they do not touch through
//! [`wasm_encoder::reencode`]'s default path, keep custom sections (except stale
//! `.debug_*` DWARF sections, whose code offsets no longer hold), and validate their
//! output before returning it.

mod analyze;
mod encode;
mod instrument;
mod specialize;
#[cfg(test)]
mod tests;

pub use analyze::{CallSite, SiteMap, analyze};
pub use instrument::{Instrumented, instrument};
pub use specialize::{Guard, Specialized, Speculation, specialize};

/// The largest module the rewriter accepts, in bytes (input is untrusted).
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// Table slots counted individually at each instrumented call site; slot indices at or
/// above this (unsigned) are counted together in the `.other` counter.
pub const INSTRUMENT_SLOTS: u32 = 8;

/// Export name of the counter incremented every time any `loop` header is entered (the
/// first entry and every back-edge branch).
pub const LOOPS_COUNTER: &str = "ignite.loops";

/// Export name of the counter of branch site `site` in one direction:
/// `ignite.br.{site}.1` counts non-zero conditions (`br_if` taken, `if` then-branch),
/// `ignite.br.{site}.0` zero conditions (`br_if` not taken, `if` else-branch).
pub fn branch_counter(site: u16, taken: bool) -> String {
    format!("ignite.br.{site}.{}", u8::from(taken))
}

/// Export name of the counter of call site `site` for table slot `slot`:
/// `ignite.ci.{site}.{k}` for `Some(k)` (`k` < [`INSTRUMENT_SLOTS`]), and
/// `ignite.ci.{site}.other` for `None` (every slot index at or above
/// [`INSTRUMENT_SLOTS`]).
pub fn call_counter(site: u16, slot: Option<u32>) -> String {
    match slot {
        Some(k) => format!("ignite.ci.{site}.{k}"),
        None => format!("ignite.ci.{site}.other"),
    }
}

/// Export name of the counter of guard misses (deoptimizations) at guarded call site
/// `site` of a specialized module: `ignite.deopt.{site}`.
pub fn deopt_counter(site: u16) -> String {
    format!("ignite.deopt.{site}")
}

/// Why a module could not be analyzed or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The input is longer than [`MAX_INPUT_BYTES`].
    #[error("module is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Length of the input.
        size: usize,
        /// The limit ([`MAX_INPUT_BYTES`]).
        limit: usize,
    },
    /// The input is not a valid core WebAssembly module.
    #[error("invalid WebAssembly module: {0}")]
    Invalid(#[from] wasmparser::BinaryReaderError),
    /// The module has more sites of one kind than a `u16` site number can name.
    #[error("too many {kind} sites: more than {max}", max = u16::MAX)]
    TooManySites {
        /// `"branch"` or `"call"`.
        kind: &'static str,
    },
    /// The module already exports a name the rewrite needs for a counter.
    #[error("the module already exports `{0}`, a name reserved for a rewrite counter")]
    NameClash(String),
    /// Re-encoding the module failed.
    #[error("re-encoding failed: {0}")]
    Encode(String),
    /// The rewritten module does not validate (for instance a function that already has
    /// the maximum number of locals cannot get a scratch local).
    #[error("the rewritten module does not validate: {0}")]
    Output(wasmparser::BinaryReaderError),
}
