//! Plain Rust reference implementations: for any input, the exact bytes each module's
//! `run` writes at `output_ptr`.

use std::collections::HashMap;

/// Hash: `h = h * 31 + b` over the bytes, as 8 little-endian bytes.
pub(crate) fn hash(input: &[u8]) -> Vec<u8> {
    input
        .iter()
        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        .to_le_bytes()
        .to_vec()
}

/// The most distinct words the WordCount table stores (2^18 slots, one kept empty).
pub(crate) const WORDCOUNT_MAX_DISTINCT: usize = (1 << 18) - 1;

/// fnv1a64 of the bytes.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// WordCount: total words, distinct words, sum of fnv1a64(word) * count and xor of
/// fnv1a64(word) rotated by count % 64, as four little-endian u64s.
pub(crate) fn wordcount(input: &[u8]) -> Vec<u8> {
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut total = 0u64;
    for word in input.split(|b| !b.is_ascii_alphabetic()) {
        if word.is_empty() {
            continue;
        }
        total += 1;
        let word = word.to_ascii_lowercase();
        if let Some(count) = counts.get_mut(&word) {
            *count += 1;
        } else if counts.len() < WORDCOUNT_MAX_DISTINCT {
            counts.insert(word, 1);
        }
    }
    let (mut sum, mut mix) = (0u64, 0u64);
    for (word, &count) in &counts {
        let h = fnv1a64(word);
        sum = sum.wrapping_add(h.wrapping_mul(count));
        mix ^= h.rotate_left((count % 64) as u32);
    }
    [total, counts.len() as u64, sum, mix]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// The HTML output stops before an item once it is longer than this.
pub(crate) const HTML_OUTPUT_SOFT_LIMIT: usize = 0x3f_e000 - 0x10_0000;

/// Append `text` with & < > " ' escaped.
fn escape(out: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            _ => out.push(b),
        }
    }
}

/// Append a price in cents as `$D,DDD.CC`.
fn price(out: &mut Vec<u8>, cents: u32) {
    let dollars = (cents / 100).to_string();
    out.push(b'$');
    for (i, digit) in dollars.bytes().enumerate() {
        let left = dollars.len() - i;
        if i > 0 && left.is_multiple_of(3) {
            out.push(b',');
        }
        out.push(digit);
    }
    out.extend_from_slice(format!(".{:02}", cents % 100).as_bytes());
}

/// One decoded HTML item record.
struct Item<'a> {
    kind: u8,
    price: u32,
    old_price: u32,
    name: &'a [u8],
    features: [&'a [u8]; 2],
}

/// One piece of a formatter's output.
enum Part {
    /// Literal bytes.
    Lit(&'static [u8]),
    /// The escaped name.
    Name,
    /// The escaped first feature.
    Feature1,
    /// The escaped second feature.
    Feature2,
    /// The price.
    Price,
    /// The old price.
    OldPrice,
    /// The discount in whole percent, rounded down (0 unless the old price is higher).
    Discount,
}

use Part::{Discount, Feature1, Feature2, Lit, Name, OldPrice, Price};

/// The four formatters, by table index (`kind & 3`): plain, sale, featured, compact.
const FORMATTERS: [&[Part]; 4] = [
    &[
        Lit(b"<li class=\"item\"><span class=\"name\">"),
        Name,
        Lit(b"</span> <span class=\"price\">"),
        Price,
        Lit(b"</span><ul><li>"),
        Feature1,
        Lit(b"</li><li>"),
        Feature2,
        Lit(b"</li></ul></li>\n"),
    ],
    &[
        Lit(b"<li class=\"item sale\"><span class=\"name\">"),
        Name,
        Lit(b"</span> <s class=\"old\">"),
        OldPrice,
        Lit(b"</s> <span class=\"price\">"),
        Price,
        Lit(b"</span> <em>-"),
        Discount,
        Lit(b"%</em><ul><li>"),
        Feature1,
        Lit(b"</li><li>"),
        Feature2,
        Lit(b"</li></ul></li>\n"),
    ],
    &[
        Lit(b"<li class=\"item featured\"><strong>"),
        Name,
        Lit(b"</strong> <span class=\"price\">"),
        Price,
        Lit(b"</span><p>"),
        Feature1,
        Lit(b" &middot; "),
        Feature2,
        Lit(b"</p></li>\n"),
    ],
    &[
        Lit(b"<li>"),
        Name,
        Lit(b" - "),
        Price,
        Lit(b" ("),
        Feature1,
        Lit(b", "),
        Feature2,
        Lit(b")</li>\n"),
    ],
];

/// Render one item with the formatter its kind selects (`kind & 3`).
fn render_item(out: &mut Vec<u8>, item: &Item<'_>) {
    for part in FORMATTERS[usize::from(item.kind & 3)] {
        match part {
            Lit(bytes) => out.extend_from_slice(bytes),
            Name => escape(out, item.name),
            Feature1 => escape(out, item.features[0]),
            Feature2 => escape(out, item.features[1]),
            Price => price(out, item.price),
            OldPrice => price(out, item.old_price),
            Discount => {
                let pct = if item.old_price > item.price {
                    u64::from(item.old_price - item.price) * 100 / u64::from(item.old_price)
                } else {
                    0
                };
                out.extend_from_slice(pct.to_string().as_bytes());
            }
        }
    }
}

/// Decode the record at the start of `rest`, or `None` if it does not fit.
fn decode_item(rest: &[u8]) -> Option<(Item<'_>, usize)> {
    let u32_at = |at: usize| u32::from_le_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
    let mut size = 12;
    if rest.len() < size {
        return None;
    }
    let name_len = usize::from(rest[9]);
    size += name_len;
    if rest.len() < size {
        return None;
    }
    let f1_len = usize::from(rest[10 + name_len]);
    size += f1_len;
    if rest.len() < size {
        return None;
    }
    let f2_len = usize::from(rest[11 + name_len + f1_len]);
    size += f2_len;
    if rest.len() < size {
        return None;
    }
    let f1_at = 11 + name_len;
    let f2_at = f1_at + f1_len + 1;
    let item = Item {
        kind: rest[0],
        price: u32_at(1),
        old_price: u32_at(5),
        name: &rest[10..10 + name_len],
        features: [&rest[f1_at..f1_at + f1_len], &rest[f2_at..f2_at + f2_len]],
    };
    Some((item, size))
}

/// HTML: the item list rendered as a `<ul>`, one formatter per item kind.
pub(crate) fn html(input: &[u8]) -> Vec<u8> {
    let mut out = b"<ul class=\"items\">\n".to_vec();
    if input.len() >= 4 {
        let n = u32::from_le_bytes(input[..4].try_into().expect("4 bytes"));
        let mut rest = &input[4..];
        for _ in 0..n {
            if out.len() > HTML_OUTPUT_SOFT_LIMIT {
                break;
            }
            let Some((item, size)) = decode_item(rest) else {
                break;
            };
            render_item(&mut out, &item);
            rest = &rest[size..];
        }
    }
    out.extend_from_slice(b"</ul>\n");
    out
}

/// The thumbnail's side in pixels.
pub(crate) const THUMBNAIL_SIDE: u64 = 200;

/// The source range `[lo, hi)` of output index `i` for a source of `size` pixels.
fn source_range(i: u64, size: u64) -> (u64, u64) {
    let lo = i * size / THUMBNAIL_SIDE;
    let hi = ((i + 1) * size / THUMBNAIL_SIDE).max(lo + 1);
    (lo, hi)
}

/// Thumbnail: the 200x200 box-filtered RGB image, or nothing for an invalid input.
pub(crate) fn thumbnail(input: &[u8]) -> Vec<u8> {
    if input.len() < 8 {
        return Vec::new();
    }
    let w = u64::from(u32::from_le_bytes(input[..4].try_into().expect("4 bytes")));
    let h = u64::from(u32::from_le_bytes(input[4..8].try_into().expect("4 bytes")));
    let pixels = &input[8..];
    if w == 0 || h == 0 || w * h * 3 > pixels.len() as u64 {
        return Vec::new();
    }
    let side = THUMBNAIL_SIDE;
    let mut out = Vec::with_capacity((side * side * 3) as usize);
    for oy in 0..side {
        let (y0, y1) = source_range(oy, h);
        for ox in 0..side {
            let (x0, x1) = source_range(ox, w);
            let mut sums = [0u64; 3];
            for y in y0..y1 {
                let row = ((y * w + x0) * 3) as usize;
                for px in pixels[row..row + ((x1 - x0) * 3) as usize].chunks_exact(3) {
                    for (sum, &v) in sums.iter_mut().zip(px) {
                        *sum += u64::from(v);
                    }
                }
            }
            let area = (x1 - x0) * (y1 - y0);
            out.extend(sums.iter().map(|&s| (s / area) as u8));
        }
    }
    out
}
