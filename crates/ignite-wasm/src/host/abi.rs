//! The byte ABI a deployed module must follow, checked before anything is compiled.

use super::HostError;
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType};

/// Checks that `wasm` follows the byte ABI: exports `memory` (a memory), `input_ptr` and
/// `output_ptr` (immutable i32 globals) and `run` (a function `(i32) -> i32`).
pub fn check_abi(wasm: &[u8]) -> Result<(), HostError> {
    let bad = |e: wasmparser::BinaryReaderError| HostError::Abi(e.to_string());
    let mut func_types: Vec<u32> = Vec::new();
    let mut types: Vec<(Vec<ValType>, Vec<ValType>)> = Vec::new();
    let mut globals: Vec<(ValType, bool)> = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut memories = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(bad)? {
            Payload::TypeSection(r) => {
                for t in r.into_iter_err_on_gc_types() {
                    let f = t.map_err(bad)?;
                    types.push((f.params().to_vec(), f.results().to_vec()));
                }
            }
            Payload::ImportSection(r) => {
                for imp in r.into_imports() {
                    match imp.map_err(bad)?.ty {
                        TypeRef::Func(t) => func_types.push(t),
                        TypeRef::Global(g) => globals.push((g.content_type, g.mutable)),
                        TypeRef::Memory(_) => memories += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    func_types.push(t.map_err(bad)?);
                }
            }
            Payload::MemorySection(r) => memories += r.count(),
            Payload::GlobalSection(r) => {
                for g in r {
                    let g = g.map_err(bad)?;
                    globals.push((g.ty.content_type, g.ty.mutable));
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(bad)?;
                    exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            _ => {}
        }
    }
    let find = |name: &str, kind: ExternalKind| {
        exports
            .iter()
            .find(|(n, k, _)| n == name && *k == kind)
            .map(|(_, _, i)| *i)
            .ok_or_else(|| HostError::Abi(format!("no exported {kind:?} `{name}`")))
    };
    if find("memory", ExternalKind::Memory)? >= memories {
        return Err(HostError::Abi("`memory` out of range".into()));
    }
    for g in ["input_ptr", "output_ptr"] {
        let i = find(g, ExternalKind::Global)? as usize;
        if globals.get(i) != Some(&(ValType::I32, false)) {
            return Err(HostError::Abi(format!("`{g}` must be an immutable i32 global")));
        }
    }
    let run = find("run", ExternalKind::Func)? as usize;
    let ty = func_types.get(run).and_then(|t| types.get(*t as usize));
    if ty != Some(&(vec![ValType::I32], vec![ValType::I32])) {
        return Err(HostError::Abi("`run` must be a function (i32) -> i32".into()));
    }
    Ok(())
}
