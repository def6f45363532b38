//! Deterministic input generators, seeded by their argument (splitmix64; no global RNG,
//! no clock).

use super::words::WORDS;

/// The splitmix64 generator: small, fast and fully determined by its seed.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// An element of `items`, uniformly.
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// `1024 * n_kib` random bytes: the Hash workload's input.
pub fn hash_input(seed: u64, n_kib: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(1024 * n_kib);
    for _ in 0..n_kib * 128 {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out
}

/// An English-like text of exactly `words` words: the WordCount workload's input.
///
/// The text is generated from the embedded list of 496 common English words
/// (most frequent first), each word drawn with a Zipf(1.0) distribution over the list's
/// ranks (probability of rank k proportional to 1/k); it is not a shipped public-domain
/// text. Words are separated mostly by single spaces, sometimes by punctuation
/// (`, . ; ? ! -- /` and quotes), newlines, blank lines or numbers (which are not words);
/// the word after a sentence end is capitalized and about one word in 200 is in upper
/// case, so case folding matters. About 4.6 bytes per word (35,000 words: about 161 KB).
pub fn wordcount_input(seed: u64, words: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut cumulative = Vec::with_capacity(WORDS.len());
    let mut total = 0u64;
    for rank in 1..=WORDS.len() as u64 {
        total += (1u64 << 32) / rank;
        cumulative.push(total);
    }
    let mut out = Vec::with_capacity(words * 6);
    let mut capitalize = true;
    for i in 0..words {
        let r = rng.below(total);
        let word = WORDS[cumulative.partition_point(|&c| c <= r)];
        let shout = rng.below(200) == 0;
        for (j, b) in word.bytes().enumerate() {
            let upper = shout || (capitalize && j == 0);
            out.push(if upper { b.to_ascii_uppercase() } else { b });
        }
        capitalize = false;
        if i + 1 == words {
            out.extend_from_slice(b".\n");
            break;
        }
        match rng.below(100) {
            0..=69 => out.push(b' '),
            70..=79 => out.extend_from_slice(b", "),
            80..=87 => {
                out.extend_from_slice(b". ");
                capitalize = true;
            }
            88..=91 => out.push(b'\n'),
            92..=93 => out.extend_from_slice(b"; "),
            94 => out.extend_from_slice(b" -- "),
            95 => {
                out.extend_from_slice(b"? \"");
                capitalize = true;
            }
            96 => {
                out.extend_from_slice(b"!\" ");
                capitalize = true;
            }
            97 => {
                let number = rng.below(2000);
                out.extend_from_slice(format!(" {number} ").as_bytes());
            }
            98 => out.extend_from_slice(b" / "),
            _ => {
                out.extend_from_slice(b".\n\n");
                capitalize = true;
            }
        }
    }
    out
}

/// The distribution of formatter kinds in an HTML input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mix {
    /// Every item has kind 0 (the plain formatter): the `call_indirect` site always calls
    /// the same target.
    Monomorphic,
    /// Kinds drawn uniformly from all four formatters.
    Varied,
}

const BRANDS: [&str; 12] = [
    "Acme",
    "Northwind",
    "Smith & Sons",
    "O'Neil",
    "Globex",
    "\"Blue\" Label",
    "Initech",
    "Vandelay",
    "Hooli",
    "Stark <Pro>",
    "Umbrella",
    "Wayne",
];

const ADJECTIVES: [&str; 16] = [
    "Compact",
    "Deluxe",
    "Classic",
    "Rugged",
    "Silent",
    "Smart",
    "Portable",
    "Wireless",
    "Ergonomic",
    "Vintage",
    "Solar",
    "Titanium",
    "Foldable",
    "Premium",
    "Mini",
    "Heavy-Duty",
];

const NOUNS: [&str; 16] = [
    "Kettle",
    "Lamp",
    "Backpack",
    "Headphones",
    "Blender",
    "Desk",
    "Chair",
    "Camera",
    "Drill",
    "Toaster",
    "Speaker",
    "Watch",
    "Umbrella",
    "Tent",
    "Grinder",
    "Monitor",
];

const FEATURES: [&str; 20] = [
    "2-year warranty",
    "free shipping",
    "water resistant",
    "ships in 24h",
    "energy class A++",
    "recycled materials",
    "USB-C charging",
    "dishwasher safe",
    "10 > 8 hours battery",
    "salt & pepper finish",
    "works with \"any\" phone",
    "assembly < 5 minutes",
    "made in Portugal",
    "lifetime support",
    "it's quiet",
    "noise cancelling",
    "stainless steel",
    "lightweight",
    "child safe",
    "30-day returns",
];

/// An item list of `items` products: the HTML workload's input (format in the module
/// docs). `mix` decides the formatter kinds; everything else (names, prices, features)
/// depends only on `seed` and the item's position, so two mixes with the same seed
/// differ only in the kind bytes.
pub fn html_input(seed: u64, items: usize, mix: Mix) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut kinds = SplitMix64::new(seed ^ 0x6b69_6e64_7321);
    let mut out = Vec::with_capacity(4 + items * 64);
    out.extend_from_slice(&(items as u32).to_le_bytes());
    for _ in 0..items {
        let kind = match mix {
            Mix::Monomorphic => 0,
            Mix::Varied => kinds.below(4) as u8,
        };
        let mut price = 99 + rng.below(250_000) as u32;
        if rng.below(16) == 0 {
            price *= 100;
        }
        let old_price = price + (u64::from(price) * (5 + rng.below(60)) / 100) as u32;
        let name = format!("{} {} {}", rng.pick(&BRANDS), rng.pick(&ADJECTIVES), rng.pick(&NOUNS));
        out.push(kind);
        out.extend_from_slice(&price.to_le_bytes());
        out.extend_from_slice(&old_price.to_le_bytes());
        for field in [name.as_str(), rng.pick(&FEATURES), rng.pick(&FEATURES)] {
            out.push(field.len() as u8);
            out.extend_from_slice(field.as_bytes());
        }
    }
    out
}

/// A `width` x `height` RGB image with its 8-byte header: the Thumbnail workload's input.
/// Horizontal, vertical and diagonal gradients in the three channels, a few bright
/// discs, plus seeded noise of +-16 per channel.
pub fn thumbnail_input(seed: u64, width: u32, height: u32) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let (w, h) = (u64::from(width), u64::from(height));
    let discs: Vec<(i64, i64, i64)> = (0..4)
        .map(|_| {
            let cx = rng.below(w.max(1)) as i64;
            let cy = rng.below(h.max(1)) as i64;
            let r = 1 + rng.below(w.min(h).max(4) / 4) as i64;
            (cx, cy, r * r)
        })
        .collect();
    let mut out = Vec::with_capacity(8 + (w * h * 3) as usize);
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    for y in 0..h {
        for x in 0..w {
            let noise = rng.next_u64();
            let lit = discs
                .iter()
                .any(|&(cx, cy, r2)| (x as i64 - cx).pow(2) + (y as i64 - cy).pow(2) <= r2);
            let base = [
                x * 255 / (w - 1).max(1),
                y * 255 / (h - 1).max(1),
                (x + y) * 255 / (w + h - 2).max(1),
            ];
            for (c, value) in base.into_iter().enumerate() {
                let value = if lit { 255 - value / 4 } else { value } as i64;
                let jitter = ((noise >> (c * 8)) & 31) as i64 - 16;
                out.push((value + jitter).clamp(0, 255) as u8);
            }
        }
    }
    out
}
