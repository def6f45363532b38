//! The modules against their references on all three wasmtime tiers, plus the ABI checks.

use super::inputs::SplitMix64;
use super::*;
use wasmparser::{ElementKind, Operator, Parser, Payload, Validator, WasmFeatures};
use wasmtime::{Config, Engine, ExternType, Instance, Memory, Module, Mutability, Store, Strategy, TypedFunc, ValType};

/// WordCount's dirty flag and table (see wordcount.wat).
const WORDCOUNT_FLAG: usize = 0x10_0100;
const WORDCOUNT_TABLE: usize = 0x20_0000;

#[derive(Clone, Copy, Debug)]
enum Tier {
    Cranelift,
    Winch,
    Pulley,
}

fn engine(tier: Tier) -> Engine {
    let mut config = Config::new();
    match tier {
        Tier::Cranelift => {
            config.strategy(Strategy::Cranelift);
        }
        Tier::Winch => {
            config.strategy(Strategy::Winch);
        }
        Tier::Pulley => {
            config.target("pulley64").expect("pulley64 target");
        }
    }
    Engine::new(&config).expect("engine")
}

/// One instance of a workload module, driven the way the host drives it.
struct Runner {
    store: Store<()>,
    memory: Memory,
    run: TypedFunc<i32, i32>,
    input_ptr: usize,
    output_ptr: usize,
}

impl Runner {
    fn new(engine: &Engine, workload: Workload) -> Self {
        let module = Module::new(engine, workload.wasm()).expect("module compiles");
        let mut store = Store::new(engine, ());
        let instance = Instance::new(&mut store, &module, &[]).expect("instantiates");
        let memory = instance.get_memory(&mut store, "memory").expect("memory");
        let mut global = |name: &str| {
            let global = instance.get_global(&mut store, name).expect("global");
            global.get(&mut store).unwrap_i32() as u32 as usize
        };
        let (input_ptr, output_ptr) = (global("input_ptr"), global("output_ptr"));
        let run = instance.get_typed_func::<i32, i32>(&mut store, "run").expect("run");
        Runner {
            store,
            memory,
            run,
            input_ptr,
            output_ptr,
        }
    }

    fn run(&mut self, input: &[u8]) -> Vec<u8> {
        let need = self.input_ptr + input.len();
        let have = self.memory.data_size(&self.store);
        if need > have {
            let pages = (need - have).div_ceil(65536) as u64;
            self.memory.grow(&mut self.store, pages).expect("grows");
        }
        self.memory
            .write(&mut self.store, self.input_ptr, input)
            .expect("input fits");
        let len = i32::try_from(input.len()).expect("input under 2 GiB");
        let n = self.run.call(&mut self.store, len).expect("run returns") as u32 as usize;
        let mut out = vec![0; n];
        self.memory
            .read(&self.store, self.output_ptr, &mut out)
            .expect("output in memory");
        out
    }

    fn check(&mut self, workload: Workload, input: &[u8], what: &str) {
        let got = self.run(input);
        let want = workload.reference(input);
        assert!(
            got == want,
            "{} {what}: module output ({} bytes) differs from the reference ({} bytes)",
            workload.name(),
            got.len(),
            want.len()
        );
    }
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// One HTML record.
fn html_record(kind: u8, price: u32, old: u32, fields: [&[u8]; 3]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&price.to_le_bytes());
    out.extend_from_slice(&old.to_le_bytes());
    for field in fields {
        out.push(field.len() as u8);
        out.extend_from_slice(field);
    }
    out
}

/// Inputs besides the default one: edge cases and other sizes.
fn extra_inputs(workload: Workload) -> Vec<(&'static str, Vec<u8>)> {
    match workload {
        Workload::Hash => vec![
            ("empty", Vec::new()),
            ("1 byte", vec![0xff]),
            ("7 bytes", random_bytes(1, 7)),
            ("8 bytes", random_bytes(2, 8)),
            ("9 bytes", random_bytes(3, 9)),
            ("1023 bytes", random_bytes(4, 1023)),
            ("1 KiB", hash_input(5, 1)),
            ("3 KiB", hash_input(6, 3)),
        ],
        Workload::WordCount => vec![
            ("empty", Vec::new()),
            ("separators only", b"  ,.; 123\n\t!".to_vec()),
            ("one letter", b"a".to_vec()),
            ("case folding", b"Hello, HELLO hello! hElLo world".to_vec()),
            ("no trailing separator", b"the cat saw the Cat".to_vec()),
            ("prefix words", b"a an and andes an a AND ands".to_vec()),
            ("non-ASCII", "caf\u{e9} na\u{ef}ve \u{fc}ber cafe".as_bytes().to_vec()),
            ("one word", wordcount_input(7, 1)),
            ("1000 words", wordcount_input(8, 1000)),
            ("random bytes", random_bytes(9, 10_000)),
        ],
        Workload::Html => {
            let mut edge = 3u32.to_le_bytes().to_vec();
            edge.extend(html_record(7, 0, 0, [b"<\"Q&A\">", b"it's", &[b'\''; 255]]));
            edge.extend(html_record(5, 100_000_000, 99, [b"", b"", b""]));
            edge.extend(html_record(
                1,
                u32::MAX,
                u32::MAX,
                [&[b'"'; 255], &[b'&'; 255], &[b'>'; 255]],
            ));
            let truncated = html_input(12, 40, Mix::Varied);
            let mut too_many = html_input(13, 20, Mix::Varied);
            too_many[..4].copy_from_slice(&25u32.to_le_bytes());
            vec![
                ("empty", Vec::new()),
                ("3 bytes", vec![1, 0, 0]),
                ("n = 0", 0u32.to_le_bytes().to_vec()),
                ("100 monomorphic", html_input(10, 100, Mix::Monomorphic)),
                ("500 varied", html_input(11, 500, Mix::Varied)),
                ("escapes and extremes", edge),
                ("truncated record", truncated[..truncated.len() - 17].to_vec()),
                ("count beyond records", too_many),
            ]
        }
        Workload::Thumbnail => {
            let mut short = thumbnail_input(20, 300, 300);
            short.pop();
            let mut zero = thumbnail_input(21, 10, 10);
            zero[..4].copy_from_slice(&0u32.to_le_bytes());
            vec![
                ("empty", Vec::new()),
                ("header only", vec![0; 8]),
                ("zero width", zero),
                ("one pixel short", short),
                ("1x1", thumbnail_input(22, 1, 1)),
                ("3x2", thumbnail_input(23, 3, 2)),
                ("199x201", thumbnail_input(24, 199, 201)),
                ("200x200", thumbnail_input(25, 200, 200)),
                ("401x333", thumbnail_input(26, 401, 333)),
                ("1000x1", thumbnail_input(27, 1000, 1)),
            ]
        }
    }
}

/// Every workload on one tier: default input first, then the others, all on one
/// instance (the host reuses instances), then the default input again.
fn check_tier(tier: Tier) {
    let engine = engine(tier);
    for workload in Workload::ALL {
        let mut runner = Runner::new(&engine, workload);
        let default = workload.default_input(42);
        runner.check(workload, &default, &format!("default input on {tier:?}"));
        for (what, input) in extra_inputs(workload) {
            runner.check(workload, &input, &format!("{what} on {tier:?}"));
        }
        runner.check(workload, &default, &format!("default input again on {tier:?}"));
    }
}

#[test]
fn cranelift_matches_reference() {
    check_tier(Tier::Cranelift);
}

#[test]
fn winch_matches_reference() {
    check_tier(Tier::Winch);
}

#[test]
fn pulley_matches_reference() {
    check_tier(Tier::Pulley);
}

#[test]
fn modules_are_mvp_plus_sign_extension() {
    let features = WasmFeatures::WASM1 | WasmFeatures::SIGN_EXTENSION;
    for workload in Workload::ALL {
        let wasm = workload.wasm();
        Validator::new_with_features(features)
            .validate_all(&wasm)
            .unwrap_or_else(|e| panic!("{} is not MVP + sign-ext: {e}", workload.name()));
    }
}

#[test]
fn modules_have_exactly_the_abi_exports_and_no_imports() {
    let engine = engine(Tier::Cranelift);
    for workload in Workload::ALL {
        let module = Module::new(&engine, workload.wasm()).expect("module compiles");
        assert_eq!(module.imports().count(), 0, "{} imports", workload.name());
        let mut names: Vec<&str> = module.exports().map(|e| e.name()).collect();
        names.sort_unstable();
        assert_eq!(names, ["input_ptr", "memory", "output_ptr", "run"]);
        for export in module.exports() {
            match (export.name(), export.ty()) {
                ("memory", ExternType::Memory(memory)) => {
                    assert!(!memory.is_64() && !memory.is_shared());
                    assert_eq!(memory.minimum(), u64::from(workload.initial_pages()));
                }
                ("input_ptr" | "output_ptr", ExternType::Global(global)) => {
                    assert!(matches!(global.content(), ValType::I32));
                    assert_eq!(global.mutability(), Mutability::Const);
                }
                ("run", ExternType::Func(func)) => {
                    let params: Vec<_> = func.params().collect();
                    let results: Vec<_> = func.results().collect();
                    assert!(matches!(params[..], [ValType::I32]));
                    assert!(matches!(results[..], [ValType::I32]));
                }
                (name, ty) => panic!("{}: unexpected export {name}: {ty:?}", workload.name()),
            }
        }
        let mut runner = Runner::new(&engine, workload);
        assert_eq!(runner.input_ptr, INPUT_PTR as usize);
        assert_eq!(runner.output_ptr, OUTPUT_PTR as usize);
        let pages = runner.memory.size(&runner.store);
        let default = workload.default_input(1);
        assert!(
            INPUT_PTR as usize + default.len() <= pages as usize * 65536,
            "{}: the default input needs memory.grow",
            workload.name()
        );
        runner.check(workload, &default, "default input, seed 1");
    }
}

#[test]
fn modules_use_a_static_table_and_no_br_table_or_grow() {
    for workload in Workload::ALL {
        let wasm = workload.wasm();
        let (mut tables, mut call_indirects, mut loops) = (0, 0, 0);
        for payload in Parser::new(0).parse_all(&wasm) {
            match payload.expect("parses") {
                Payload::TableSection(reader) => tables += reader.count(),
                Payload::ElementSection(reader) => {
                    for element in reader {
                        let element = element.expect("element");
                        let ElementKind::Active {
                            table_index,
                            offset_expr,
                        } = element.kind
                        else {
                            panic!("{}: a non-active element segment", workload.name());
                        };
                        assert!(table_index.unwrap_or(0) == 0);
                        let mut ops = offset_expr.get_operators_reader();
                        assert!(matches!(ops.read(), Ok(Operator::I32Const { value: 0 })));
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let mut ops = body.get_operators_reader().expect("operators");
                    while !ops.eof() {
                        match ops.read().expect("operator") {
                            Operator::CallIndirect { .. } => call_indirects += 1,
                            Operator::Loop { .. } => loops += 1,
                            Operator::BrTable { .. } | Operator::MemoryGrow { .. } => {
                                panic!("{}: br_table or memory.grow", workload.name())
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let html = workload == Workload::Html;
        assert_eq!(tables, u32::from(html), "{} tables", workload.name());
        assert_eq!(call_indirects, u32::from(html), "{}", workload.name());
        assert!(loops > 0, "{} has loops", workload.name());
    }
}

#[test]
fn wordcount_recovers_from_an_unfinished_run() {
    let mut runner = Runner::new(&engine(Tier::Cranelift), Workload::WordCount);
    let input = wordcount_input(3, 2000);
    runner.check(Workload::WordCount, &input, "first run");
    // Pretend a run was interrupted: the flag set and stale slots everywhere.
    let mut garbage = Vec::new();
    for i in 0..4096u32 {
        garbage.extend_from_slice(&(INPUT_PTR + i * 3).to_le_bytes());
        garbage.extend_from_slice(&(i + 1).to_le_bytes());
    }
    for at in [WORDCOUNT_TABLE, WORDCOUNT_TABLE + 0x10_0000, 0x40_0000 - 0x8000] {
        runner.memory.write(&mut runner.store, at, &garbage).unwrap();
    }
    runner
        .memory
        .write(&mut runner.store, WORDCOUNT_FLAG, &1u32.to_le_bytes())
        .unwrap();
    runner.check(Workload::WordCount, &input, "after an unfinished run");
    runner.check(Workload::WordCount, b"a b c", "again");
}

#[test]
fn wordcount_ignores_stale_bytes_after_the_input() {
    let mut runner = Runner::new(&engine(Tier::Cranelift), Workload::WordCount);
    let long = b"alphabet soup, alphabetical alphabets".to_vec();
    runner.check(Workload::WordCount, &long, "long");
    // A prefix that ends inside a word that continues in the stale bytes.
    runner.check(Workload::WordCount, &long[..12], "prefix");
    runner.check(Workload::WordCount, &long[..5], "shorter prefix");
}

#[test]
fn wordcount_many_distinct_words() {
    // 40,000 distinct four-letter words, each twice: many probe collisions.
    let mut text = Vec::new();
    for round in 0..2 {
        for i in 0..40_000u32 {
            let mut v = i * 7919 + round;
            for _ in 0..4 {
                text.push(b'a' + (v % 26) as u8);
                v /= 26;
            }
            text.push(if i % 3 == 0 { b'\n' } else { b' ' });
        }
    }
    let want = Workload::WordCount.reference(&text);
    let mut runner = Runner::new(&engine(Tier::Cranelift), Workload::WordCount);
    assert_eq!(runner.run(&text), want);
    let distinct = u64::from_le_bytes(want[8..16].try_into().unwrap());
    assert!(distinct > 30_000, "{distinct} distinct words");
}

#[test]
fn html_output_stays_below_the_input() {
    // Items whose every byte needs escaping: the output limit must stop rendering.
    let quote = [b'"'; 255];
    let record = html_record(1, 12_345, 99_999, [&quote, &quote, &quote]);
    let mut input = 1000u32.to_le_bytes().to_vec();
    for _ in 0..1000 {
        input.extend_from_slice(&record);
    }
    let mut runner = Runner::new(&engine(Tier::Cranelift), Workload::Html);
    let out = runner.run(&input);
    assert_eq!(out, Workload::Html.reference(&input));
    assert!(out.len() <= (INPUT_PTR - OUTPUT_PTR) as usize);
    assert!(out.len() > reference::HTML_OUTPUT_SOFT_LIMIT);
    assert!(out.ends_with(b"</ul>\n"));
}

#[test]
fn generators_are_deterministic_and_sized() {
    for workload in Workload::ALL {
        assert_eq!(workload.default_input(5), workload.default_input(5));
        assert_ne!(workload.default_input(5), workload.default_input(6));
    }
    assert_eq!(hash_input(1, 256).len(), 256 * 1024);
    assert_eq!(hash_input(1, 0).len(), 0);
    assert!(wordcount_input(1, 0).is_empty());
    assert_eq!(thumbnail_input(1, 1024, 768).len(), 8 + 1024 * 768 * 3);
    let html = html_input(1, 300, Mix::Varied);
    assert_eq!(&html[..4], &300u32.to_le_bytes());
    let mono = html_input(1, 300, Mix::Monomorphic);
    assert_eq!(html.len(), mono.len(), "mixes differ only in kind bytes");
    assert_eq!(
        Workload::Thumbnail.reference(&thumbnail_input(1, 1024, 768)).len(),
        120_000
    );
}

#[test]
fn wordcount_text_is_zipf_over_the_word_list() {
    let text = Workload::WordCount.default_input(9);
    assert!(text.len() <= Workload::WordCount.max_input_len());
    let out = Workload::WordCount.reference(&text);
    let total = u64::from_le_bytes(out[..8].try_into().unwrap());
    let distinct = u64::from_le_bytes(out[8..16].try_into().unwrap());
    assert_eq!(total, DEFAULT_WORDCOUNT_WORDS as u64);
    assert!(distinct > 300 && distinct <= words::WORDS.len() as u64, "{distinct}");
    let lower = text.to_ascii_lowercase();
    let count = |word: &[u8]| lower.split(|b| !b.is_ascii_alphabetic()).filter(|w| *w == word).count() as f64;
    // Zipf(1.0): rank 1 about twice as frequent as rank 2, ten times rank 10.
    let (first, second, tenth) = (count(b"the"), count(b"of"), count(b"that"));
    assert!((1.6..2.5).contains(&(first / second)), "{first} / {second}");
    assert!((7.0..14.0).contains(&(first / tenth)), "{first} / {tenth}");
}

#[test]
fn html_mixes_use_the_formatters() {
    let mono = Workload::Html.reference(&html_input(2, 200, Mix::Monomorphic));
    let varied = Workload::Html.reference(&html_input(2, 200, Mix::Varied));
    let text = |out: &[u8]| String::from_utf8(out.to_vec()).expect("UTF-8");
    let (mono, varied) = (text(&mono), text(&varied));
    assert_eq!(mono.matches("<li class=\"item\">").count(), 200);
    for marker in ["<li class=\"item\">", "item sale", "item featured", "<li>"] {
        assert!(varied.matches(marker).count() > 20, "{marker}");
    }
    assert!(varied.contains("&amp;") && varied.contains("&quot;") && varied.contains("&#39;"));
    assert!(varied.contains(",") && varied.contains("<s class=\"old\">$"));
}
