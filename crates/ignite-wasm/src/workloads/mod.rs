//! The benchmark workloads, in WAT, with plain Rust reference implementations.
//!
//! Four WebAssembly modules modelled on the serverless benchmark functions of the Ignite
//! paper: [`Workload::Hash`], [`Workload::WordCount`], [`Workload::Html`] and
//! [`Workload::Thumbnail`]. Each comes with a deterministic input generator and a
//! reference implementation that produces the exact bytes the module writes.
//!
//! # ABI (every module)
//!
//! * No imports. MVP instructions plus the sign-extension operators only (no SIMD,
//!   bulk memory, multi-value, reference types or threads), so Pulley, Winch and
//!   Cranelift all run them. Loops are `loop` + `br_if`; no `br_table`.
//! * Exports: `memory`; immutable i32 globals `input_ptr` and `output_ptr`; and
//!   `run (param $len i32) (result i32)`. The host writes the input at `input_ptr`
//!   (growing the memory itself if it does not fit), calls `run(len)` and reads the
//!   returned number of bytes at `output_ptr`.
//! * Layout: [`OUTPUT_PTR`] = 1 MiB, [`INPUT_PTR`] = 4 MiB (the input is last, so the
//!   host grows memory only for the input), scratch below 1 MiB (WordCount's table at
//!   2..4 MiB). The initial memory holds the default input
//!   (see [`Workload::initial_pages`]).
//! * The only table (HTML's) is defined, not exported, filled once by an active element
//!   segment at offset 0 and never modified; its `call_indirect` site is in `run`.
//! * `run` is deterministic and depends only on the input: no mutable globals; the one
//!   piece of state kept in memory (WordCount's hash table) is left empty by every run,
//!   and a run that finds a previous run unfinished (trapped or interrupted) clears it
//!   first, so instances can be reused for any number of invocations.
//! * No input of any length makes `run` write outside its memory; [`Workload::max_input_len`]
//!   gives the largest input for which the result equals [`Workload::reference`].

mod inputs;
mod reference;
#[cfg(test)]
mod tests;
mod words;

pub use inputs::{Mix, hash_input, html_input, thumbnail_input, wordcount_input};

/// Where every module expects its input (the `input_ptr` global): 4 MiB.
pub const INPUT_PTR: u32 = 0x40_0000;

/// Where every module writes its output (the `output_ptr` global): 1 MiB.
pub const OUTPUT_PTR: u32 = 0x10_0000;

/// The words of the default WordCount input.
pub const DEFAULT_WORDCOUNT_WORDS: usize = 35_000;

/// The items of the default HTML input.
pub const DEFAULT_HTML_ITEMS: usize = 300;

/// The KiB of the default Hash input.
pub const DEFAULT_HASH_KIB: usize = 256;

/// The width and height of the default Thumbnail input.
pub const DEFAULT_THUMBNAIL_SIZE: (u32, u32) = (1024, 768);

/// One of the four benchmark workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// Input: any bytes (by default 256 KiB of random bytes). `h: u64 = 0`, then for every
    /// byte `h = h * 31 + b` (wrapping); output: `h` as 8 little-endian bytes. The main
    /// loop takes 8 bytes per iteration, a tail loop the last `len % 8`.
    Hash,
    /// Input: a text (by default 35,000 words from [`wordcount_input`]). Words are maximal
    /// runs of ASCII letters, folded to lower case, counted in an open-addressing table
    /// in linear memory. Output: 32 bytes, little-endian u64s: total words, distinct
    /// words, the wrapping sum over distinct words of `fnv1a64(word) * count`, and the xor
    /// over distinct words of `fnv1a64(word).rotate_left(count % 64)`. The table stores at
    /// most 262,143 distinct words (later new words count only in the total).
    WordCount,
    /// Input: an item list (by default 300 items, [`Mix::Varied`]): item count `n: u32`
    /// LE, then `n` records of `kind: u8, price: u32 LE (cents), old_price: u32 LE
    /// (cents), name_len: u8, name, feature1_len: u8, feature1, feature2_len: u8,
    /// feature2`. Output: `<ul class="items">\n`, one `<li>` per item, `</ul>\n`. Each item
    /// is rendered by the formatter at table index `kind & 3`, called through one
    /// `call_indirect`: 0 plain, 1 sale (old price struck through, discount percent),
    /// 2 featured (name in `<strong>`), 3 compact (one line). Text is HTML-escaped
    /// (`& < > " '`), prices read `$1,234.56`. Rendering stops at a record that does not
    /// fit in the input, or before an item once the output exceeds 3 MiB - 8 KiB - 1 MiB.
    Html,
    /// Input: `width: u32 LE, height: u32 LE`, then `width * height` RGB pixels, row-major
    /// (by default 1024x768 from [`thumbnail_input`]). Output: 200x200 RGB (120,000 bytes,
    /// no header); each output pixel is the integer average (rounded down) of its source
    /// rectangle `[ox * w / 200, (ox + 1) * w / 200) x [oy * h / 200, (oy + 1) * h / 200)`,
    /// widened to one pixel where it would be empty. A zero dimension or missing pixel
    /// bytes give an empty output.
    Thumbnail,
}

impl Workload {
    /// All four workloads.
    pub const ALL: [Workload; 4] = [Workload::Hash, Workload::WordCount, Workload::Html, Workload::Thumbnail];

    /// The workload's short name: "hash", "wordcount", "html" or "thumbnail".
    pub fn name(self) -> &'static str {
        match self {
            Workload::Hash => "hash",
            Workload::WordCount => "wordcount",
            Workload::Html => "html",
            Workload::Thumbnail => "thumbnail",
        }
    }

    /// The module's WAT source.
    pub fn wat(self) -> &'static str {
        match self {
            Workload::Hash => include_str!("hash.wat"),
            Workload::WordCount => include_str!("wordcount.wat"),
            Workload::Html => include_str!("html.wat"),
            Workload::Thumbnail => include_str!("thumbnail.wat"),
        }
    }

    /// The module binary, assembled from [`Workload::wat`].
    pub fn wasm(self) -> Vec<u8> {
        wat::parse_str(self.wat()).expect("workload WAT assembles")
    }

    /// The default input for `seed`: Hash 256 KiB of random bytes, WordCount a
    /// 35,000-word text (about 161 KB), Html 300 items of [`Mix::Varied`] (about 20 KB),
    /// Thumbnail a 1024x768 image (2,359,304 bytes).
    pub fn default_input(self, seed: u64) -> Vec<u8> {
        match self {
            Workload::Hash => hash_input(seed, DEFAULT_HASH_KIB),
            Workload::WordCount => wordcount_input(seed, DEFAULT_WORDCOUNT_WORDS),
            Workload::Html => html_input(seed, DEFAULT_HTML_ITEMS, Mix::Varied),
            Workload::Thumbnail => {
                let (width, height) = DEFAULT_THUMBNAIL_SIZE;
                thumbnail_input(seed, width, height)
            }
        }
    }

    /// The plain Rust result for `input`: the same bytes `run` writes at `output_ptr`
    /// (for inputs up to [`Workload::max_input_len`]).
    pub fn reference(self, input: &[u8]) -> Vec<u8> {
        match self {
            Workload::Hash => reference::hash(input),
            Workload::WordCount => reference::wordcount(input),
            Workload::Html => reference::html(input),
            Workload::Thumbnail => reference::thumbnail(input),
        }
    }

    /// The module's initial memory in 64 KiB pages: 4 MiB plus room for the default
    /// input (Hash and Html 256 KiB, WordCount 512 KiB, Thumbnail 2,368 KiB). A longer
    /// input needs `memory.grow` by the host before `run`.
    pub fn initial_pages(self) -> u32 {
        match self {
            Workload::Hash | Workload::Html => 68,
            Workload::WordCount => 72,
            Workload::Thumbnail => 101,
        }
    }

    /// The longest input whose output is guaranteed to equal [`Workload::reference`]:
    /// WordCount 524,286 bytes (at most 262,143 words, so the table never fills; any
    /// input with fewer distinct words is exact too), the others whatever 32-bit memory
    /// holds past `input_ptr` (4 GiB - 4 MiB). Longer inputs still never make `run`
    /// write outside memory.
    pub fn max_input_len(self) -> usize {
        match self {
            Workload::WordCount => 2 * reference::WORDCOUNT_MAX_DISTINCT,
            _ => (u32::MAX - INPUT_PTR) as usize + 1,
        }
    }
}
