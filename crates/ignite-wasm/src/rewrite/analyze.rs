//! Site numbering and static-table analysis.

use std::collections::{BTreeMap, BTreeSet};

use wasmparser::types::{EntityType, Types};
use wasmparser::{
    ElementItems, ElementKind, ExternalKind, Operator, Parser, Payload, TableInit, Validator, WasmFeatures,
};

use super::{MAX_INPUT_BYTES, RewriteError};

/// Most element items [`analyze`] records for table 0; a module whose active segments
/// for table 0 hold more is treated as having a non-static table (bounds the memory an
/// untrusted module can make the analysis use).
const MAX_STATIC_ITEMS: u64 = 1 << 20;

/// The sites of a module, numbered module-wide in code order: defined functions in body
/// order, then instructions in order within each body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteMap {
    /// Number of branch sites: every `br_if` and every `if` (one shared numbering,
    /// sites `0..branch_sites`).
    pub branch_sites: u16,
    /// Number of call sites: every `call_indirect` (sites `0..call_sites`).
    pub call_sites: u16,
    /// Number of `loop` instructions.
    pub loops: u32,
    /// The call sites, indexed by call-site number (`calls.len() == call_sites`).
    pub calls: Vec<CallSite>,
    /// For table 0 when it is *static*, the function in each filled slot
    /// (slot index -> function index); empty when table 0 is not static.
    ///
    /// Table 0 is static when it is defined (not imported), not exported, has no
    /// initializer expression, is never the target of `table.set`, `table.grow`,
    /// `table.fill`, `table.copy` (as destination) or `table.init`, the module has no
    /// `elem.drop`, and it is filled only by active element segments with constant
    /// `i32.const` offsets and function items (function indices, `ref.func` or
    /// `ref.null` expressions). Such a table holds exactly these functions for the whole
    /// life of every instance, so a slot index identifies its function.
    pub static_slots: BTreeMap<u32, u32>,
}

/// One `call_indirect` site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSite {
    /// Index (in the function index space, imports first) of the function containing the
    /// call.
    pub function: u32,
    /// The call's type index.
    pub type_index: u32,
    /// The table the call goes through.
    pub table: u32,
}

/// Numbers the sites of `wasm` (see [`SiteMap`]) after validating it.
///
/// Errors when the input is too large, invalid, or has more than `u16::MAX` branch or
/// call sites.
pub fn analyze(wasm: &[u8]) -> Result<SiteMap, RewriteError> {
    Ok(Parsed::new(wasm)?.sites)
}

/// The features accepted in input modules (and checked on output): wasmparser's
/// defaults, without components.
pub(super) fn features() -> WasmFeatures {
    WasmFeatures::default() & !WasmFeatures::COMPONENT_MODEL
}

/// A validated module with what the rewrites need to know about it.
pub(super) struct Parsed {
    /// The sites.
    pub(super) sites: SiteMap,
    /// Whether table 0 is static (its slots are `sites.static_slots`).
    pub(super) table0_static: bool,
    /// Type information from validation.
    pub(super) types: Types,
    /// Number of imported functions (the first defined function's index).
    pub(super) imported_funcs: u32,
    /// Number of globals, imported and defined (the first new global's index).
    pub(super) globals: u32,
    /// The names the module exports.
    pub(super) exports: BTreeSet<String>,
}

impl Parsed {
    /// Validates and analyzes `wasm`.
    pub(super) fn new(wasm: &[u8]) -> Result<Self, RewriteError> {
        if wasm.len() > MAX_INPUT_BYTES {
            return Err(RewriteError::TooLarge {
                size: wasm.len(),
                limit: MAX_INPUT_BYTES,
            });
        }
        let types = Validator::new_with_features(features()).validate_all(wasm)?;
        let (mut imported_funcs, mut imported_tables) = (0u32, 0u32);
        for (_, _, ty) in types.as_ref().core_imports().into_iter().flatten() {
            match ty {
                EntityType::Func(_) | EntityType::FuncExact(_) => imported_funcs += 1,
                EntityType::Table(_) => imported_tables += 1,
                _ => {}
            }
        }
        let globals = types.as_ref().global_count();

        let mut table0 = Table0 {
            static_: imported_tables == 0,
            slots: BTreeMap::new(),
            items: 0,
        };
        let mut exports = BTreeSet::new();
        let mut walk = Walk {
            function: imported_funcs,
            branches: 0,
            sites: SiteMap::default(),
        };

        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::TableSection(reader) => {
                    if let Some(first) = reader.into_iter().next()
                        && imported_tables == 0
                        && matches!(first?.init, TableInit::Expr(_))
                    {
                        table0.static_ = false;
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export?;
                        if export.kind == ExternalKind::Table && export.index == 0 {
                            table0.static_ = false;
                        }
                        exports.insert(export.name.to_owned());
                    }
                }
                Payload::ElementSection(reader) => {
                    for element in reader {
                        table0.element(element?)?;
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let mut ops = body.get_operators_reader()?;
                    while !ops.eof() {
                        let op = ops.read()?;
                        if mutates_table0(&op) {
                            table0.static_ = false;
                        }
                        walk.op(&op)?;
                    }
                    walk.function += 1;
                }
                _ => {}
            }
        }

        let mut sites = walk.sites;
        sites.branch_sites = u16::try_from(walk.branches).map_err(|_| RewriteError::TooManySites { kind: "branch" })?;
        sites.call_sites = u16::try_from(sites.calls.len()).map_err(|_| RewriteError::TooManySites { kind: "call" })?;
        // A module without tables has no static table 0 (and no call_indirect).
        let table0_static = table0.static_ && types.as_ref().table_count() > 0;
        if table0_static {
            sites.static_slots = table0.slots;
        }
        Ok(Self {
            sites,
            table0_static,
            types,
            imported_funcs,
            globals,
            exports,
        })
    }
}

/// Whether `op` can change the contents of table 0 (or drops an element segment).
fn mutates_table0(op: &Operator<'_>) -> bool {
    match *op {
        Operator::TableSet { table }
        | Operator::TableGrow { table }
        | Operator::TableFill { table }
        | Operator::TableInit { table, .. }
        | Operator::TableCopy { dst_table: table, .. } => table == 0,
        Operator::ElemDrop { .. } => true,
        _ => false,
    }
}

/// Site numbering state while walking the code section.
struct Walk {
    /// Index of the function being walked.
    function: u32,
    /// Branch sites seen so far.
    branches: u32,
    /// Call sites and loops seen so far.
    sites: SiteMap,
}

impl Walk {
    fn op(&mut self, op: &Operator<'_>) -> Result<(), RewriteError> {
        match *op {
            Operator::If { .. } | Operator::BrIf { .. } => {
                self.branches += 1;
                if self.branches > u32::from(u16::MAX) {
                    return Err(RewriteError::TooManySites { kind: "branch" });
                }
            }
            Operator::CallIndirect {
                type_index,
                table_index,
            } => {
                if self.sites.calls.len() >= usize::from(u16::MAX) {
                    return Err(RewriteError::TooManySites { kind: "call" });
                }
                self.sites.calls.push(CallSite {
                    function: self.function,
                    type_index,
                    table: table_index,
                });
            }
            Operator::Loop { .. } => self.sites.loops += 1,
            _ => {}
        }
        Ok(())
    }
}

/// What the element section says about table 0.
struct Table0 {
    /// Still possibly static.
    static_: bool,
    /// Slot -> function, for the segments seen so far (later segments overwrite).
    slots: BTreeMap<u32, u32>,
    /// Items recorded so far (bounded by [`MAX_STATIC_ITEMS`]).
    items: u64,
}

impl Table0 {
    fn element(&mut self, element: wasmparser::Element<'_>) -> Result<(), RewriteError> {
        let ElementKind::Active {
            table_index,
            offset_expr,
        } = element.kind
        else {
            // Passive and declared segments only reach a table through `table.init`,
            // which makes it non-static anyway.
            return Ok(());
        };
        if table_index.unwrap_or(0) != 0 || !self.static_ {
            return Ok(());
        }
        let mut ops = offset_expr.get_operators_reader();
        let offset = match (ops.read()?, ops.read()?) {
            (Operator::I32Const { value }, Operator::End) if ops.eof() => value as u32,
            _ => {
                self.static_ = false;
                return Ok(());
            }
        };
        let mut place = |i: u32, function: Option<u32>| -> bool {
            self.items += 1;
            let Some(slot) = offset.checked_add(i) else {
                return false;
            };
            if self.items > MAX_STATIC_ITEMS {
                return false;
            }
            match function {
                Some(f) => self.slots.insert(slot, f),
                None => self.slots.remove(&slot),
            };
            true
        };
        let mut ok = true;
        match element.items {
            ElementItems::Functions(reader) => {
                for (i, f) in (0u32..).zip(reader) {
                    ok = ok && place(i, Some(f?));
                }
            }
            ElementItems::Expressions(_, reader) => {
                for (i, expr) in (0u32..).zip(reader) {
                    let mut ops = expr?.get_operators_reader();
                    let item = match (ops.read()?, ops.read()?) {
                        (Operator::RefFunc { function_index }, Operator::End) if ops.eof() => {
                            Some(Some(function_index))
                        }
                        (Operator::RefNull { .. }, Operator::End) if ops.eof() => Some(None),
                        _ => None,
                    };
                    ok = ok && item.is_some_and(|function| place(i, function));
                }
            }
        }
        if !ok {
            self.static_ = false;
        }
        Ok(())
    }
}
