//! Counter instrumentation for the profiling tiers.

use wasm_encoder::{BlockType, Encode, Instruction, InstructionSink};
use wasmparser::Operator;

use super::analyze::Parsed;
use super::encode::{Transform, bump, rewrite};
use super::{INSTRUMENT_SLOTS, LOOPS_COUNTER, RewriteError, SiteMap, branch_counter, call_counter};

/// An instrumented module and its sites.
#[derive(Clone, Debug)]
pub struct Instrumented {
    /// The instrumented module.
    pub wasm: Vec<u8>,
    /// The sites of the original (and of the instrumented) module; the instrumentation
    /// adds no sites to the count: its own `if`, `block` and `br_table` instructions are
    /// not sites.
    pub sites: SiteMap,
}

/// Counters per call site: one per slot below [`INSTRUMENT_SLOTS`], then `.other`.
const CALL_COUNTERS: u32 = INSTRUMENT_SLOTS + 1;

/// Instruments `wasm` with exported mutable `i64` counters, appended after the existing
/// globals so that no existing global index moves:
///
/// - [`LOOPS_COUNTER`] counts every entry into any `loop` header (first entry and every
///   back-edge): the increment is the first code inside each loop body;
/// - [`branch_counter`]`(site, taken)` counts, for branch site `site`, the evaluations
///   of its condition that are non-zero (`taken`: `br_if` branches, `if` runs its
///   then-branch) or zero;
/// - [`call_counter`]`(site, Some(k))` counts the calls through call site `site` with
///   table slot index `k` < [`INSTRUMENT_SLOTS`], and `call_counter(site, None)` those
///   with any larger slot index (as unsigned).
///
/// The counters are updated from the condition or slot index copied into a fresh
/// scratch `i32` local (appended after the function's existing locals); the original
/// value stays on the stack for the original instruction, so the module computes
/// exactly what the original computes (including traps) and the counters are the
/// true dynamic counts.
pub fn instrument(wasm: &[u8]) -> Result<Instrumented, RewriteError> {
    let parsed = Parsed::new(wasm)?;
    let sites = parsed.sites.clone();

    let mut counters = vec![LOOPS_COUNTER.to_owned()];
    for site in 0..sites.branch_sites {
        counters.push(branch_counter(site, false));
        counters.push(branch_counter(site, true));
    }
    for site in 0..sites.call_sites {
        counters.extend((0..INSTRUMENT_SLOTS).map(|k| call_counter(site, Some(k))));
        counters.push(call_counter(site, None));
    }
    let loops = parsed.globals;
    let transform = Counting {
        loops,
        branches: loops + 1,
        calls: loops + 1 + 2 * u32::from(sites.branch_sites),
        next_branch: 0,
        next_call: 0,
    };
    let wasm = rewrite(wasm, &parsed, counters, transform)?;
    Ok(Instrumented { wasm, sites })
}

/// The counting transform: global indices of the counters and the site numbering.
struct Counting {
    /// The loop counter.
    loops: u32,
    /// First branch counter (site `s` not taken is `branches + 2 s`, taken `+ 1`).
    branches: u32,
    /// First call counter (site `s` slot `k` is `calls + 9 s + k`, other `k = 8`).
    calls: u32,
    next_branch: u32,
    next_call: u32,
}

impl Transform for Counting {
    fn op(&mut self, op: &Operator<'_>, plain: &Instruction<'_>, scratch: u32, out: &mut Vec<u8>) -> bool {
        match op {
            Operator::Loop { .. } => {
                plain.encode(out);
                bump(&mut InstructionSink::new(out), self.loops);
                false
            }
            Operator::If { .. } | Operator::BrIf { .. } => {
                let not_taken = self.branches + 2 * self.next_branch;
                self.next_branch += 1;
                let mut s = InstructionSink::new(out);
                s.local_tee(scratch).local_get(scratch).if_(BlockType::Empty);
                bump(&mut s, not_taken + 1);
                s.else_();
                bump(&mut s, not_taken);
                s.end();
                plain.encode(out);
                true
            }
            Operator::CallIndirect { .. } => {
                let first = self.calls + CALL_COUNTERS * self.next_call;
                self.next_call += 1;
                let mut s = InstructionSink::new(out);
                // block $done, block $other, block $k7 .. block $k0: br_table jumps to
                // the end of $k (depth k) for slot k < 8, else to the end of $other.
                s.local_tee(scratch);
                for _ in 0..=CALL_COUNTERS {
                    s.block(BlockType::Empty);
                }
                s.local_get(scratch).br_table(0..INSTRUMENT_SLOTS, INSTRUMENT_SLOTS);
                for k in 0..INSTRUMENT_SLOTS {
                    s.end();
                    bump(&mut s, first + k);
                    // Enclosing now: $k+1 .. $k7, $other, $done.
                    s.br(INSTRUMENT_SLOTS - k);
                }
                s.end();
                bump(&mut s, first + INSTRUMENT_SLOTS);
                s.end();
                plain.encode(out);
                true
            }
            _ => {
                plain.encode(out);
                false
            }
        }
    }
}
