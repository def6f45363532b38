//! Profile-guided specialization: guarded direct calls for monomorphic `call_indirect`.

use std::collections::BTreeMap;

use wasm_encoder::{BlockType, Encode, Instruction, InstructionSink};
use wasmparser::Operator;

use super::analyze::Parsed;
use super::encode::{Transform, bump, rewrite};
use super::{RewriteError, deopt_counter};

/// A profile's claim that call site `site` is monomorphic: it always called table slot
/// `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Speculation {
    /// The call site (see [`super::SiteMap`]).
    pub site: u16,
    /// The table slot it always called.
    pub slot: u32,
}

/// A call site rewritten into a guarded direct call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// The call site.
    pub site: u16,
    /// The slot the guard compares the slot index with.
    pub slot: u32,
    /// The function (index space with imports first) called directly when it matches.
    pub target: u32,
}

/// A specialized module.
#[derive(Clone, Debug)]
pub struct Specialized {
    /// The specialized module.
    pub wasm: Vec<u8>,
    /// The guards applied, by site; each has an exported miss counter
    /// [`deopt_counter`]`(site)`.
    pub guards: Vec<Guard>,
    /// The speculations that could not be applied, with the reason.
    pub skipped: Vec<(Speculation, &'static str)>,
}

/// Specializes `wasm` with `speculations`: each applicable speculation replaces its
/// `call_indirect (type t) (table 0)` with
///
/// ```text
/// local.tee $s                  ;; the slot index, kept in a scratch i32 local
/// i32.const SLOT
/// i32.eq
/// if (type t)                   ;; the call's arguments are the block's parameters
///   call f                      ;; fast path: a direct call Cranelift can inline
/// else
///   global.get $deopt           ;; guard miss: count it
///   i64.const 1
///   i64.add
///   global.set $deopt
///   local.get $s
///   call_indirect (type t) (table 0)   ;; the generic path, unchanged semantics
/// end
/// ```
///
/// where `f` is the function in slot `SLOT`, and `$deopt` is a new exported mutable
/// `i64` global [`deopt_counter`]`(site)`, appended after the existing globals.
///
/// A speculation applies when its site exists, calls through table 0, table 0 is
/// static (see [`super::SiteMap::static_slots`]) and slot `SLOT` holds a function of
/// exactly the call's type. The guard compares the slot *index*, not the table entry
/// (function references cannot be compared without GC); this is exact because a static
/// table never changes, so slot `SLOT` holds `f` for the life of every instance and the
/// fast path calls exactly what `call_indirect` would (and `call_indirect` could not
/// trap there: the slot is in bounds, non-null and of the right type). Another slot that
/// happens to hold `f` takes the generic path and counts as a miss, which is safe. So
/// the module computes the same results as the original for every input, including
/// those that miss the guard (traps included, on the generic path).
///
/// Speculations that cannot apply (unknown site, a table other than 0, table 0 not
/// static, empty slot, function of another type, a second speculation for a site) are
/// skipped and listed in [`Specialized::skipped`].
pub fn specialize(wasm: &[u8], speculations: &[Speculation]) -> Result<Specialized, RewriteError> {
    let parsed = Parsed::new(wasm)?;
    let types = parsed.types.as_ref();
    let mut chosen: BTreeMap<u16, Guard> = BTreeMap::new();
    let mut skipped = Vec::new();
    for &speculation in speculations {
        let Speculation { site, slot } = speculation;
        let reason = match parsed.sites.calls.get(usize::from(site)) {
            None => Some("unknown call site"),
            Some(_) if chosen.contains_key(&site) => Some("another speculation for this site"),
            Some(call) if call.table != 0 => Some("the call site does not use table 0"),
            Some(_) if !parsed.table0_static => Some("table 0 is not static"),
            Some(call) => match parsed.sites.static_slots.get(&slot) {
                None => Some("the slot is empty"),
                Some(&target) if types.core_function_at(target) != types.core_type_at_in_module(call.type_index) => {
                    Some("the slot holds a function of another type")
                }
                Some(&target) => {
                    chosen.insert(site, Guard { site, slot, target });
                    None
                }
            },
        };
        if let Some(reason) = reason {
            skipped.push((speculation, reason));
        }
    }

    let guards: Vec<Guard> = chosen.into_values().collect();
    let counters = guards.iter().map(|g| deopt_counter(g.site)).collect();
    let transform = Guarding {
        guards: (parsed.globals..)
            .zip(&guards)
            .map(|(deopt, g)| (u32::from(g.site), (*g, deopt)))
            .collect(),
        next_call: 0,
    };
    let wasm = rewrite(wasm, &parsed, counters, transform)?;
    Ok(Specialized { wasm, guards, skipped })
}

/// The guarding transform.
struct Guarding {
    /// Call site -> guard and its deopt counter global.
    guards: BTreeMap<u32, (Guard, u32)>,
    next_call: u32,
}

impl Transform for Guarding {
    fn op(&mut self, op: &Operator<'_>, plain: &Instruction<'_>, scratch: u32, out: &mut Vec<u8>) -> bool {
        let Operator::CallIndirect {
            type_index,
            table_index,
        } = *op
        else {
            plain.encode(out);
            return false;
        };
        let site = self.next_call;
        self.next_call += 1;
        let Some(&(guard, deopt)) = self.guards.get(&site) else {
            plain.encode(out);
            return false;
        };
        let mut s = InstructionSink::new(out);
        s.local_tee(scratch)
            .i32_const(guard.slot as i32)
            .i32_eq()
            .if_(BlockType::FunctionType(type_index))
            .call(guard.target)
            .else_();
        bump(&mut s, deopt);
        s.local_get(scratch).call_indirect(table_index, type_index).end();
        true
    }
}
