//! Rewrite tests on real wasmtime engines (Cranelift, Winch, Pulley).

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use wasmtime::{
    Config, Engine, Extern, Func, Global, GlobalType, Instance, Module, Mutability, Store, Strategy, Trap, Val, ValType,
};

use super::*;

/// Nested loops (site 0: inner `br_if`, site 1: outer `br_if`) and data-dependent
/// branches (site 2: `if`, site 3: `br_if` with a value), with params, locals and a
/// sign-extension instruction.
const LOOPS: &str = r#"
(module
  (func (export "nested") (param $n i32) (param $m i32) (result i32)
    (local $i i32) (local $j i32) (local $acc i32)
    (loop $outer
      (local.set $j (i32.const 0))
      (loop $inner
        (local.set $acc (i32.add (local.get $acc) (i32.const 1)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $inner (i32.lt_u (local.get $j) (local.get $m))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $outer (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc))
  (func (export "classify") (param $x i32) (result i32)
    (local $t i64)
    (local.set $t (i64.extend_i32_s (local.get $x)))
    (if (result i32) (i32.and (local.get $x) (i32.const 1))
      (then (i32.wrap_i64 (i64.mul (local.get $t) (i64.const 3))))
      (else
        (block $b (result i32)
          (br_if $b (i32.const 100) (i32.gt_s (local.get $x) (i32.const 5)))
          (drop)
          (i32.extend8_s (i32.add (local.get $x) (i32.const 250)))))))
)
"#;

/// A dispatch table of 10 slots: 0..4 = add, sub, mul, xor (type $bin), 4..7 empty,
/// 7 = neg (type $un), 8 = add, 9 = sub. Call site 0 in `dispatch` (function 5, with
/// params and a local), call site 1 in `unary` (function 6).
const DISPATCH: &str = r#"
(module
  (type $bin (func (param i32 i32) (result i32)))
  (type $un (func (param i32) (result i32)))
  (table 10 funcref)
  (elem (i32.const 0) $add $sub $mul $xor)
  (elem (i32.const 7) $neg $add $sub)
  (func $add (type $bin) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $bin) (i32.sub (local.get 0) (local.get 1)))
  (func $mul (type $bin) (i32.mul (local.get 0) (local.get 1)))
  (func $xor (type $bin) (i32.xor (local.get 0) (local.get 1)))
  (func $neg (type $un) (i32.sub (i32.const 0) (local.get 0)))
  (func (export "dispatch") (param $slot i32) (param $a i32) (param $b i32) (result i32)
    (local $acc i64)
    (local.set $acc (i64.extend_i32_u (local.get $a)))
    (i32.add
      (call_indirect (type $bin) (local.get $a) (local.get $b) (local.get $slot))
      (i32.wrap_i64 (local.get $acc))))
  (func (export "unary") (param $slot i32) (param $a i32) (result i32)
    (call_indirect (type $un) (local.get $a) (local.get $slot)))
)
"#;

/// Multi-value results through `call_indirect` (block type with 2 params, 2 results).
const MULTI: &str = r#"
(module
  (type $pair (func (param i32 i32) (result i32 i32)))
  (table 2 funcref)
  (elem (i32.const 0) $swap $dup)
  (func $swap (type $pair) (local.get 1) (local.get 0))
  (func $dup (type $pair) (local.get 0) (local.get 0))
  (func (export "mv") (param $slot i32) (param $a i32) (param $b i32) (result i32 i32)
    (call_indirect (type $pair) (local.get $a) (local.get $b) (local.get $slot)))
  (func (export "mix") (param $slot i32) (param $a i32) (param $b i32) (result i32)
    (call_indirect (type $pair) (local.get $a) (local.get $b) (local.get $slot))
    (i32.sub))
)
"#;

/// An imported function and an imported global shift the function and global index
/// spaces; a defined global is exported and must keep its index.
const IMPORTS: &str = r#"
(module
  (import "env" "log" (func $log (param i32)))
  (import "env" "base" (global $base i32))
  (type $get (func (result i32)))
  (global $count (mut i32) (i32.const 0))
  (global $k i64 (i64.const 5))
  (table 2 funcref)
  (elem (i32.const 0) $f0 $f1)
  (func $f0 (type $get) (global.get $base))
  (func $f1 (type $get) (i32.wrap_i64 (global.get $k)))
  (func (export "run") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (block $exit
      (loop $l
        (br_if $exit (i32.ge_u (local.get $i) (local.get $n)))
        (call $log (local.get $i))
        (global.set $count (i32.add (global.get $count) (i32.const 1)))
        (local.set $acc
          (i32.add (local.get $acc)
            (call_indirect (type $get) (i32.and (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (i32.add (local.get $acc) (global.get $count)))
  (export "count" (global $count))
)
"#;

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("test module parses")
}

fn cranelift() -> Engine {
    Engine::default()
}

fn winch() -> Engine {
    let mut config = Config::new();
    config.strategy(Strategy::Winch);
    Engine::new(&config).expect("winch engine")
}

fn pulley() -> Engine {
    let mut config = Config::new();
    config.target("pulley64").expect("pulley target");
    Engine::new(&config).expect("pulley engine")
}

/// One instance in its own store, with the values the `IMPORTS` host functions saw.
struct Inst {
    store: Store<()>,
    instance: Instance,
    logged: Arc<Mutex<Vec<i32>>>,
}

impl Inst {
    fn new(engine: &Engine, wasm: &[u8]) -> Self {
        let module = Module::new(engine, wasm).expect("module compiles");
        let mut store = Store::new(engine, ());
        let logged = Arc::new(Mutex::new(Vec::new()));
        let mut imports: Vec<Extern> = Vec::new();
        if module.imports().len() > 0 {
            let log = Arc::clone(&logged);
            let func = Func::wrap(&mut store, move |x: i32| log.lock().unwrap().push(x));
            let global = Global::new(
                &mut store,
                GlobalType::new(ValType::I32, Mutability::Const),
                Val::I32(7),
            )
            .unwrap();
            imports = vec![func.into(), global.into()];
        }
        let instance = Instance::new(&mut store, &module, &imports).expect("instantiates");
        Self {
            store,
            instance,
            logged,
        }
    }

    /// Calls export `name`; results as i64, or the trap.
    fn call(&mut self, name: &str, args: &[i32]) -> Result<Vec<i64>, Trap> {
        let func = self.instance.get_func(&mut self.store, name).unwrap();
        let n = func.ty(&self.store).results().len();
        let args: Vec<Val> = args.iter().map(|&a| Val::I32(a)).collect();
        let mut results = vec![Val::I32(0); n];
        match func.call(&mut self.store, &args, &mut results) {
            Ok(()) => Ok(results
                .iter()
                .map(|v| match v {
                    Val::I32(x) => i64::from(*x),
                    Val::I64(x) => *x,
                    other => panic!("unexpected result {other:?}"),
                })
                .collect()),
            Err(e) => Err(*e.downcast_ref::<Trap>().expect("a trap")),
        }
    }

    fn global(&mut self, name: &str) -> i64 {
        let global = self.instance.get_global(&mut self.store, name);
        let value = global.unwrap().get(&mut self.store);
        value.i64().or(value.i32().map(i64::from)).unwrap()
    }
}

/// Runs every call on the original and on `rewritten`, asserting equal results (or
/// equal traps); returns the rewritten instance for its counters.
fn same_results(engine: &Engine, original: &[u8], rewritten: &[u8], calls: &[(&str, Vec<i32>)]) -> Inst {
    let mut a = Inst::new(engine, original);
    let mut b = Inst::new(engine, rewritten);
    for (name, args) in calls {
        assert_eq!(a.call(name, args), b.call(name, args), "{name}{args:?}");
    }
    assert_eq!(*a.logged.lock().unwrap(), *b.logged.lock().unwrap());
    b
}

fn loops_calls() -> Vec<(&'static str, Vec<i32>)> {
    let mut calls = vec![("nested", vec![3, 4]), ("nested", vec![2, 1])];
    calls.extend((0..10).map(|x| ("classify", vec![x])));
    calls
}

/// Slot sequence for `dispatch`: 5 x slot 0, 2 x 1, 1 x 2, 1 x 3, 3 x other (8, 9, 9).
const SLOTS: [i32; 12] = [0, 1, 2, 3, 0, 0, 8, 9, 1, 0, 0, 9];

fn dispatch_calls(slots: &[i32]) -> Vec<(&'static str, Vec<i32>)> {
    (0..)
        .zip(slots)
        .map(|(i, &slot)| ("dispatch", vec![slot, 10 + i, 3]))
        .collect()
}

#[test]
fn analyze_numbers_sites_in_code_order() {
    let sites = analyze(&wasm(LOOPS)).unwrap();
    assert_eq!((sites.branch_sites, sites.call_sites, sites.loops), (4, 0, 2));
    assert!(sites.calls.is_empty());
    // No table at all: nothing static.
    assert!(sites.static_slots.is_empty());

    let sites = analyze(&wasm(DISPATCH)).unwrap();
    assert_eq!((sites.branch_sites, sites.call_sites, sites.loops), (0, 2, 0));
    assert_eq!(
        sites.calls,
        vec![
            CallSite {
                function: 5,
                type_index: 0,
                table: 0
            },
            CallSite {
                function: 6,
                type_index: 1,
                table: 0
            },
        ]
    );
    let expected = [(0, 0), (1, 1), (2, 2), (3, 3), (7, 4), (8, 0), (9, 1)];
    assert_eq!(sites.static_slots, expected.into_iter().collect());

    let sites = analyze(&wasm(IMPORTS)).unwrap();
    assert_eq!((sites.branch_sites, sites.call_sites, sites.loops), (1, 1, 1));
    assert_eq!(sites.calls[0].function, 3, "imported function comes first");
    assert_eq!(sites.static_slots, [(0, 1), (1, 2)].into_iter().collect());
}

#[test]
fn later_segments_overwrite_and_null_items_empty_slots() {
    let wat = r#"(module
      (type $t (func))
      (table 4 funcref)
      (func $a) (func $b)
      (elem (i32.const 0) $a $a $a)
      (elem (i32.const 1) funcref (ref.func $b) (ref.null func))
      (func (export "go") (param i32) (call_indirect (type $t) (local.get 0))))"#;
    let sites = analyze(&wasm(wat)).unwrap();
    assert_eq!(sites.static_slots, [(0, 0), (1, 1)].into_iter().collect());
}

#[test]
fn instrumented_loops_and_branches_count_exactly() {
    let original = wasm(LOOPS);
    let out = instrument(&original).unwrap();
    assert_eq!(out.sites, analyze(&original).unwrap());
    let mut inst = same_results(&cranelift(), &original, &out.wasm, &loops_calls());

    // nested(3, 4): outer entered 3 times, inner 3 * 4; nested(2, 1): 2 + 2.
    assert_eq!(inst.global(LOOPS_COUNTER), 3 + 12 + 2 + 2);
    // Inner br_if: taken m - 1 times per outer iteration, not taken once.
    assert_eq!(inst.global(&branch_counter(0, true)), 3 * 3);
    assert_eq!(inst.global(&branch_counter(0, false)), 3 + 2);
    // Outer br_if: taken n - 1 times, not taken once per call.
    assert_eq!(inst.global(&branch_counter(1, true)), 2 + 1);
    assert_eq!(inst.global(&branch_counter(1, false)), 2);
    // if on x odd, x in 0..10: then-branch 5, else-branch 5.
    assert_eq!(inst.global(&branch_counter(2, true)), 5);
    assert_eq!(inst.global(&branch_counter(2, false)), 5);
    // br_if on x > 5 for even x: 6, 8 taken; 0, 2, 4 not.
    assert_eq!(inst.global(&branch_counter(3, true)), 2);
    assert_eq!(inst.global(&branch_counter(3, false)), 3);
}

#[test]
fn instrumented_call_sites_count_slots_and_other() {
    let original = wasm(DISPATCH);
    let out = instrument(&original).unwrap();
    let mut calls = dispatch_calls(&SLOTS);
    calls.push(("unary", vec![7, 5]));
    let mut inst = same_results(&cranelift(), &original, &out.wasm, &calls);
    let expect = [5, 2, 1, 1, 0, 0, 0, 0];
    for (k, want) in (0..INSTRUMENT_SLOTS).zip(expect) {
        assert_eq!(inst.global(&call_counter(0, Some(k))), want, "slot {k}");
    }
    assert_eq!(inst.global(&call_counter(0, None)), 3);
    assert_eq!(inst.global(&call_counter(1, Some(7))), 1);
    assert_eq!(inst.global(&call_counter(1, None)), 0);
    // Calls that trap (empty slot, wrong type, out of bounds, negative) trap the same
    // way, and were still counted as calls through their slot.
    let trapping = [("dispatch", vec![4, 1, 1]), ("dispatch", vec![7, 1, 1])];
    let trapping2 = [("dispatch", vec![100, 1, 1]), ("dispatch", vec![-1, 1, 1])];
    let mut inst = same_results(
        &cranelift(),
        &original,
        &out.wasm,
        &[&trapping[..], &trapping2[..]].concat(),
    );
    assert_eq!(inst.global(&call_counter(0, Some(4))), 1);
    assert_eq!(inst.global(&call_counter(0, Some(7))), 1);
    assert_eq!(inst.global(&call_counter(0, None)), 2);
}

#[test]
fn instrumentation_respects_imported_index_spaces() {
    let original = wasm(IMPORTS);
    let out = instrument(&original).unwrap();
    let mut inst = same_results(&cranelift(), &original, &out.wasm, &[("run", vec![5])]);
    assert_eq!(*inst.logged.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(inst.global("count"), 5, "existing global keeps its index");
    assert_eq!(inst.global(LOOPS_COUNTER), 6);
    assert_eq!(inst.global(&branch_counter(0, true)), 1);
    assert_eq!(inst.global(&branch_counter(0, false)), 5);
    assert_eq!(inst.global(&call_counter(0, Some(0))), 3);
    assert_eq!(inst.global(&call_counter(0, Some(1))), 2);
    assert_eq!(inst.call("run", &[0]), Ok(vec![5]));
}

#[test]
fn instrumentation_adds_globals_and_exports_sections_when_absent() {
    // No global, no export section: the counters must create both, in order.
    let original = wasm(
        r#"(module (func (param i32) (result i32)
             (if (result i32) (local.get 0) (then (i32.const 1)) (else (i32.const 2))))
           (start 1)
           (func (drop (call 0 (i32.const 3)))))"#,
    );
    let out = instrument(&original).unwrap();
    let mut inst = Inst::new(&cranelift(), &out.wasm);
    assert_eq!(inst.global(&branch_counter(0, true)), 1);
    assert_eq!(inst.global(&branch_counter(0, false)), 0);
    assert_eq!(inst.global(LOOPS_COUNTER), 0);
}

#[test]
fn multi_value_call_indirect_is_instrumented_and_specialized() {
    let original = wasm(MULTI);
    let calls: Vec<(&str, Vec<i32>)> = vec![
        ("mv", vec![0, 1, 2]),
        ("mv", vec![1, 1, 2]),
        ("mix", vec![0, 5, 9]),
        ("mix", vec![0, 4, 1]),
        ("mv", vec![2, 1, 2]),
    ];
    let out = instrument(&original).unwrap();
    let mut inst = same_results(&cranelift(), &original, &out.wasm, &calls);
    assert_eq!(inst.global(&call_counter(0, Some(0))), 1);
    assert_eq!(inst.global(&call_counter(0, Some(1))), 1);
    assert_eq!(inst.global(&call_counter(0, None)), 0);
    assert_eq!(inst.global(&call_counter(1, Some(0))), 2);

    let spec = specialize(
        &original,
        &[Speculation { site: 0, slot: 0 }, Speculation { site: 1, slot: 0 }],
    )
    .unwrap();
    assert_eq!(spec.guards.len(), 2);
    let mut inst = same_results(&cranelift(), &original, &spec.wasm, &calls);
    assert_eq!(inst.call("mv", &[0, 1, 2]), Ok(vec![2, 1]));
    // mv: slot 1 and slot 2 (out of bounds, traps on the generic path) missed.
    assert_eq!(inst.global(&deopt_counter(0)), 2);
    assert_eq!(inst.global(&deopt_counter(1)), 0);
}

#[test]
fn specialized_monomorphic_and_mixed_inputs() {
    let original = wasm(DISPATCH);
    let spec = specialize(
        &original,
        &[Speculation { site: 0, slot: 0 }, Speculation { site: 1, slot: 7 }],
    )
    .unwrap();
    assert_eq!(
        spec.guards,
        vec![
            Guard {
                site: 0,
                slot: 0,
                target: 0
            },
            Guard {
                site: 1,
                slot: 7,
                target: 4
            },
        ]
    );
    assert!(spec.skipped.is_empty());

    // Monomorphic input: never misses.
    let mono = dispatch_calls(&[0; 6]);
    let mut inst = same_results(&cranelift(), &original, &spec.wasm, &mono);
    assert_eq!(inst.global(&deopt_counter(0)), 0);
    assert_eq!(inst.global(&deopt_counter(1)), 0);

    // Mixed input: every call through another slot misses (including slot 8, which
    // holds the same function as slot 0, and trapping slots).
    let mut calls = dispatch_calls(&SLOTS);
    calls.extend([
        ("dispatch", vec![4, 1, 1]),
        ("dispatch", vec![7, 1, 1]),
        ("dispatch", vec![-1, 1, 1]),
        ("unary", vec![7, 3]),
        ("unary", vec![0, 3]),
    ]);
    let mut inst = same_results(&cranelift(), &original, &spec.wasm, &calls);
    let misses = SLOTS.iter().filter(|&&s| s != 0).count() as i64 + 3;
    assert_eq!(inst.global(&deopt_counter(0)), misses);
    assert_eq!(inst.global(&deopt_counter(1)), 1);
}

#[test]
fn inapplicable_speculations_are_skipped_with_reasons() {
    let original = wasm(DISPATCH);
    let spec = specialize(
        &original,
        &[
            Speculation { site: 9, slot: 0 },
            Speculation { site: 1, slot: 4 },
            Speculation { site: 1, slot: 0 },
            Speculation { site: 0, slot: 2 },
            Speculation { site: 0, slot: 1 },
            Speculation { site: 0, slot: 1000 },
        ],
    )
    .unwrap();
    assert_eq!(
        spec.guards,
        vec![Guard {
            site: 0,
            slot: 2,
            target: 2
        }]
    );
    let reasons: Vec<(u16, u32, &str)> = spec.skipped.iter().map(|(s, r)| (s.site, s.slot, *r)).collect();
    assert_eq!(
        reasons,
        vec![
            (9, 0, "unknown call site"),
            (1, 4, "the slot is empty"),
            (1, 0, "the slot holds a function of another type"),
            (0, 1, "another speculation for this site"),
            (0, 1000, "another speculation for this site"),
        ]
    );
    let mut inst = same_results(&cranelift(), &original, &spec.wasm, &dispatch_calls(&SLOTS));
    assert_eq!(inst.global(&deopt_counter(0)), 11);
    assert!(inst.instance.get_global(&mut inst.store, &deopt_counter(1)).is_none());
}

#[test]
fn specialization_respects_imported_index_spaces() {
    let original = wasm(IMPORTS);
    let spec = specialize(&original, &[Speculation { site: 0, slot: 1 }]).unwrap();
    assert_eq!(
        spec.guards,
        vec![Guard {
            site: 0,
            slot: 1,
            target: 2
        }]
    );
    let mut inst = same_results(&cranelift(), &original, &spec.wasm, &[("run", vec![5])]);
    assert_eq!(inst.global("count"), 5);
    assert_eq!(inst.global(&deopt_counter(0)), 3);
}

#[test]
fn non_static_tables_get_no_guards() {
    let func = r#"
      (type $t (func (result i32)))
      (func $f0 (type $t) (i32.const 10))
      (func $f1 (type $t) (i32.const 11))
      (func (export "go") (param i32) (result i32) (call_indirect (type $t) (local.get 0)))"#;
    let cases = [
        (
            "exported",
            format!("(module (table (export \"t\") 2 funcref) (elem (i32.const 0) $f0 $f1) {func})"),
        ),
        (
            "table.set",
            format!(
                "(module (table 2 funcref) (elem (i32.const 0) $f0 $f1) {func}
                   (func (export \"poke\") (table.set 0 (i32.const 0) (ref.func $f1))))"
            ),
        ),
        (
            "table.grow",
            format!(
                "(module (table 2 funcref) (elem (i32.const 0) $f0 $f1) {func}
                   (func (drop (table.grow 0 (ref.null func) (i32.const 1)))))"
            ),
        ),
        (
            "imported",
            format!("(module (import \"env\" \"t\" (table 2 funcref)) (elem (i32.const 0) $f0 $f1) {func})"),
        ),
        (
            "global offset",
            format!(
                "(module (import \"env\" \"o\" (global i32)) (table 2 funcref)
                   (elem (global.get 0) $f0 $f1) {func})"
            ),
        ),
        (
            "table.init",
            format!(
                "(module (table 2 funcref) (elem (i32.const 0) $f0 $f1) (elem $p func $f1) {func}
                   (func (table.init 0 $p (i32.const 0) (i32.const 0) (i32.const 1))))"
            ),
        ),
    ];
    for (what, wat) in cases {
        let original = wasm(&wat);
        let sites = analyze(&original).unwrap();
        assert_eq!(sites.call_sites, 1, "{what}");
        assert!(sites.static_slots.is_empty(), "{what}");
        let spec = specialize(&original, &[Speculation { site: 0, slot: 0 }]).unwrap();
        assert!(spec.guards.is_empty(), "{what}");
        assert_eq!(spec.skipped[0].1, "table 0 is not static", "{what}");
    }
    // Writing another table leaves table 0 static.
    let wat = format!(
        "(module (table 2 funcref) (table $other 1 funcref) (elem (i32.const 0) $f0 $f1) {func}
           (func (table.set $other (i32.const 0) (ref.func $f1))))"
    );
    let sites = analyze(&wasm(&wat)).unwrap();
    assert_eq!(sites.static_slots, [(0, 0), (1, 1)].into_iter().collect());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(matches!(analyze(b"not wasm at all"), Err(RewriteError::Invalid(_))));
    assert!(matches!(instrument(b""), Err(RewriteError::Invalid(_))));
    let huge = vec![0u8; MAX_INPUT_BYTES + 1];
    assert!(matches!(analyze(&huge), Err(RewriteError::TooLarge { .. })));
    assert!(matches!(instrument(&huge), Err(RewriteError::TooLarge { .. })));
    assert!(matches!(specialize(&huge, &[]), Err(RewriteError::TooLarge { .. })));
    let component = wasm("(component)");
    assert!(matches!(analyze(&component), Err(RewriteError::Invalid(_))));

    let valid = wasm(DISPATCH);
    for cut in [9, valid.len() / 2, valid.len() - 1] {
        let truncated = &valid[..cut];
        assert!(analyze(truncated).is_err(), "cut at {cut}");
        assert!(instrument(truncated).is_err(), "cut at {cut}");
        assert!(specialize(truncated, &[Speculation { site: 0, slot: 0 }]).is_err());
    }
    for cut in 0..valid.len() {
        let _ = analyze(&valid[..cut]);
        let _ = instrument(&valid[..cut]);
    }

    let clash = wasm(r#"(module (func (export "ignite.loops")))"#);
    assert!(analyze(&clash).is_ok());
    let err = instrument(&clash).unwrap_err();
    assert!(
        matches!(err, RewriteError::NameClash(ref n) if n == LOOPS_COUNTER),
        "{err}"
    );
}

#[test]
fn rewrites_run_on_winch_and_pulley() {
    let loops = wasm(LOOPS);
    let dispatch = wasm(DISPATCH);
    let multi = wasm(MULTI);
    let instrumented = instrument(&loops).unwrap();
    let instrumented_dispatch = instrument(&dispatch).unwrap();
    let spec = specialize(&dispatch, &[Speculation { site: 0, slot: 0 }]).unwrap();
    let spec_multi = specialize(&multi, &[Speculation { site: 0, slot: 0 }]).unwrap();
    let multi_calls: Vec<(&str, Vec<i32>)> = vec![("mv", vec![0, 1, 2]), ("mv", vec![1, 3, 4])];
    for (tier, engine) in [("winch", winch()), ("pulley", pulley())] {
        let mut inst = same_results(&engine, &loops, &instrumented.wasm, &loops_calls());
        assert_eq!(inst.global(LOOPS_COUNTER), 19, "{tier}");
        assert_eq!(inst.global(&branch_counter(2, true)), 5, "{tier}");

        let mut inst = same_results(&engine, &dispatch, &instrumented_dispatch.wasm, &dispatch_calls(&SLOTS));
        assert_eq!(inst.global(&call_counter(0, Some(0))), 5, "{tier}");
        assert_eq!(inst.global(&call_counter(0, None)), 3, "{tier}");

        let mut inst = same_results(&engine, &dispatch, &spec.wasm, &dispatch_calls(&SLOTS));
        assert_eq!(inst.global(&deopt_counter(0)), 7, "{tier}");

        let mut inst = same_results(&engine, &multi, &spec_multi.wasm, &multi_calls);
        assert_eq!(inst.global(&deopt_counter(0)), 1, "{tier}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Mutated and truncated modules never make the rewrites panic, and whatever they
    /// accept they turn into a valid module (checked inside each rewrite).
    #[test]
    fn mutated_modules_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = wasm([LOOPS, DISPATCH, MULTI, IMPORTS][which]);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = analyze(&bytes);
        if let Ok(out) = instrument(&bytes) {
            prop_assert!(analyze(&out.wasm).is_ok());
        }
        let speculations = [Speculation { site: 0, slot: 0 }, Speculation { site: 1, slot: 7 }];
        if let Ok(out) = specialize(&bytes, &speculations) {
            prop_assert!(analyze(&out.wasm).is_ok());
        }
    }
}

/// A module with one function made of `n` copies of `local.get 0; br_if 0`.
fn many_branches(n: usize) -> Vec<u8> {
    let mut wat = String::from("(module (func (param i32)");
    for _ in 0..n {
        wat.push_str(" local.get 0 br_if 0");
    }
    wat.push_str("))");
    wasm(&wat)
}

#[test]
fn too_many_sites_is_an_error() {
    let max = usize::from(u16::MAX);
    assert_eq!(analyze(&many_branches(max)).unwrap().branch_sites, u16::MAX);
    // The largest site count still instruments into a valid module.
    let out = instrument(&many_branches(max)).unwrap();
    assert_eq!(out.sites.branch_sites, u16::MAX);
    let err = analyze(&many_branches(max + 1)).unwrap_err();
    assert!(matches!(err, RewriteError::TooManySites { kind: "branch" }), "{err}");
    assert!(instrument(&many_branches(max + 1)).is_err());
}
