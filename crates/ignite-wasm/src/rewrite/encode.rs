//! The re-encoder both rewrites share: copies a module through
//! [`wasm_encoder::reencode`], lets a [`Transform`] rewrite instructions, appends scratch
//! locals and exported `i64` counter globals.

use wasm_encoder::reencode::{Error, Reencode, utils};
use wasm_encoder::{
    CodeSection, ConstExpr, ExportKind, ExportSection, Function, GlobalSection, GlobalType, Instruction,
    InstructionSink, Module, SectionId, ValType,
};
use wasmparser::types::TypesRef;
use wasmparser::{CompositeInnerType, FunctionBody, Operator, Validator};

use super::RewriteError;
use super::analyze::{Parsed, features};

/// An instruction-level rewrite.
pub(super) trait Transform {
    /// Emits the replacement of `op` (whose plain re-encoding is `plain`) into `out`,
    /// possibly using the function's scratch `i32` local `scratch`; returns whether it
    /// used it.
    fn op(&mut self, op: &Operator<'_>, plain: &Instruction<'_>, scratch: u32, out: &mut Vec<u8>) -> bool;
}

/// Emits `global[g] += 1` for an `i64` global.
pub(super) fn bump(sink: &mut InstructionSink<'_>, g: u32) {
    sink.global_get(g).i64_const(1).i64_add().global_set(g);
}

/// Re-encodes `wasm` (already validated as `parsed`) through `transform`, appending one
/// exported mutable `i64` global (initially 0) per name in `counters`, in order, after
/// the existing globals; validates the result.
pub(super) fn rewrite<T: Transform>(
    wasm: &[u8],
    parsed: &Parsed,
    counters: Vec<String>,
    transform: T,
) -> Result<Vec<u8>, RewriteError> {
    if let Some(name) = counters.iter().find(|n| parsed.exports.contains(*n)) {
        return Err(RewriteError::NameClash(name.clone()));
    }
    let mut rewriter = Rewriter {
        transform,
        types: parsed.types.as_ref(),
        next_function: parsed.imported_funcs,
        first_counter: parsed.globals,
        counters,
        globals_done: false,
        exports_done: false,
    };
    let mut module = Module::new();
    rewriter
        .parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .map_err(|e| match e {
            Error::UserError(e) => e,
            Error::ParseError(e) => RewriteError::Invalid(e),
            other => RewriteError::Encode(other.to_string()),
        })?;
    let out = module.finish();
    Validator::new_with_features(features())
        .validate_all(&out)
        .map_err(RewriteError::Output)?;
    Ok(out)
}

struct Rewriter<'t, T> {
    transform: T,
    types: TypesRef<'t>,
    /// Index of the next function body.
    next_function: u32,
    /// Index of the first counter global.
    first_counter: u32,
    /// Export names of the counter globals.
    counters: Vec<String>,
    globals_done: bool,
    exports_done: bool,
}

impl<T> Rewriter<'_, T> {
    fn add_globals(&self, globals: &mut GlobalSection) {
        for _ in &self.counters {
            globals.global(
                GlobalType {
                    val_type: ValType::I64,
                    mutable: true,
                    shared: false,
                },
                &ConstExpr::i64_const(0),
            );
        }
    }

    fn add_exports(&self, exports: &mut ExportSection) {
        for (index, name) in (self.first_counter..).zip(&self.counters) {
            exports.export(name, ExportKind::Global, index);
        }
    }

    /// Number of parameters of function `function`.
    fn params(&self, function: u32) -> Result<u32, RewriteError> {
        let ty = &self.types[self.types.core_function_at(function)];
        match &ty.composite_type.inner {
            CompositeInnerType::Func(f) => Ok(f.params().len() as u32),
            _ => Err(RewriteError::Encode(format!(
                "function {function} does not have a function type"
            ))),
        }
    }
}

/// Position of a non-custom section in the module's section order.
fn rank(id: SectionId) -> u8 {
    match id {
        SectionId::Custom => 0,
        SectionId::Type => 1,
        SectionId::Import => 2,
        SectionId::Function => 3,
        SectionId::Table => 4,
        SectionId::Memory => 5,
        SectionId::Tag => 6,
        SectionId::Global => 7,
        SectionId::Export => 8,
        SectionId::Start => 9,
        SectionId::Element => 10,
        SectionId::DataCount => 11,
        SectionId::Code => 12,
        SectionId::Data => 13,
    }
}

impl<T: Transform> Reencode for Rewriter<'_, T> {
    type Error = RewriteError;

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: FunctionBody<'_>,
    ) -> Result<(), Error<RewriteError>> {
        let function = self.next_function;
        self.next_function += 1;
        let mut scratch = self.params(function).map_err(Error::UserError)?;
        let mut locals = Vec::new();
        for pair in func.get_locals_reader()? {
            let (count, ty) = pair?;
            scratch = scratch.saturating_add(count);
            locals.push((count, self.val_type(ty)?));
        }
        let mut body = Vec::new();
        let mut used = false;
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            let plain = self.instruction(op.clone())?;
            used |= self.transform.op(&op, &plain, scratch, &mut body);
        }
        if used {
            locals.push((1, ValType::I32));
        }
        let mut f = Function::new(locals);
        f.raw(body);
        code.function(&f);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        utils::parse_global_section(self, globals, section)?;
        self.add_globals(globals);
        self.globals_done = true;
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        utils::parse_export_section(self, exports, section)?;
        self.add_exports(exports);
        self.exports_done = true;
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), Error<RewriteError>> {
        if self.counters.is_empty() {
            return Ok(());
        }
        // Insert the sections the module lacks at their place in the section order.
        let past = |id: SectionId| before.is_none_or(|b| rank(b) > rank(id));
        if !self.globals_done && past(SectionId::Global) {
            let mut globals = GlobalSection::new();
            self.add_globals(&mut globals);
            module.section(&globals);
            self.globals_done = true;
        }
        if !self.exports_done && past(SectionId::Export) {
            let mut exports = ExportSection::new();
            self.add_exports(&mut exports);
            module.section(&exports);
            self.exports_done = true;
        }
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), Error<RewriteError>> {
        // Copied as raw bytes (a malformed name section must not fail the rewrite);
        // DWARF describes code offsets that no longer hold.
        if !section.name().starts_with(".debug_") {
            module.section(&self.custom_section(section)?);
        }
        Ok(())
    }
}
