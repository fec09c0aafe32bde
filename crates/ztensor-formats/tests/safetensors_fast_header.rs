//! The fast safetensors header path against the `safetensors` crate's: on
//! well-formed files of every shape of header the fast path reads them and
//! both give the same catalog; on damaged headers (byte flips, truncations,
//! duplicate names, gaps, overlaps, huge numbers, escapes, ...) whatever the
//! fast path accepts the crate accepts too, with the same catalog.

use ztensor::{Catalog, FormatError};
use ztensor_formats::safetensors::{parse_crate_path, parse_fast_path};

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `(name, bits per element)` of every dtype the crate knows.
const DTYPES: &[(&str, usize)] = &[
    ("BOOL", 8),
    ("F4", 4),
    ("F6_E2M3", 6),
    ("F6_E3M2", 6),
    ("U8", 8),
    ("I8", 8),
    ("F8_E5M2", 8),
    ("F8_E4M3", 8),
    ("F8_E8M0", 8),
    ("F8_E4M3FNUZ", 8),
    ("F8_E5M2FNUZ", 8),
    ("I16", 16),
    ("U16", 16),
    ("F16", 16),
    ("BF16", 16),
    ("I32", 32),
    ("U32", 32),
    ("F32", 32),
    ("C64", 64),
    ("F64", 64),
    ("I64", 64),
    ("U64", 64),
];

/// One tensor of a generated header, its offsets already laid out.
struct Tensor {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    offsets: (usize, usize),
}

/// `__metadata__` entries, in the order written.
type Metadata = Option<Vec<(String, String)>>;

/// A valid header: tensors tiling the data section, in a shuffled key
/// order, with or without metadata, padded with spaces as writers pad it.
fn valid(rng: &mut Rng) -> (Vec<Tensor>, Metadata, usize) {
    let names = [
        "a",
        "b.weight",
        "layers.0.bias",
        "layers.10.bias",
        "layers.2.bias",
        "é",
        "tab\\tname",
        "quote\\\"d",
        "\\u00e9scaped",
        "",
        "__meta__",
        "z",
    ];
    let count = rng.below(names.len() + 1);
    let mut tensors = Vec::new();
    let mut end = 0;
    for name in names.iter().take(count) {
        let (dtype, bits) = DTYPES[rng.below(DTYPES.len())];
        let mut shape: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(5)).collect();
        // Whole bytes: F4 needs an even count, F6 a multiple of 4.
        let numel: usize = shape.iter().product();
        if !(numel * bits).is_multiple_of(8) {
            shape.push(4);
        }
        let numel: usize = shape.iter().product();
        let size = numel * bits / 8;
        tensors.push(Tensor {
            name: name.to_string(),
            dtype,
            shape,
            offsets: (end, end + size),
        });
        end += size;
    }
    // Any key order (the crate sorts by offsets).
    for i in (1..tensors.len()).rev() {
        if rng.below(3) == 0 {
            tensors.swap(i, rng.below(i + 1));
        }
    }
    let metadata = match rng.below(3) {
        0 => None,
        1 => Some(vec![]),
        _ => Some(vec![
            ("format".into(), "pt".into()),
            ("note".into(), "h\\u00e9llo \\\"x\\\"".into()),
            ("a".into(), String::new()),
        ]),
    };
    (tensors, metadata, end)
}

fn header_json(tensors: &[Tensor], metadata: &Metadata, pad: bool) -> String {
    let mut parts = Vec::new();
    if let Some(m) = metadata {
        let kv: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
        parts.push(format!("\"__metadata__\":{{{}}}", kv.join(",")));
    }
    for t in tensors {
        let dims: Vec<String> = t.shape.iter().map(usize::to_string).collect();
        parts.push(format!(
            "\"{}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            t.name,
            t.dtype,
            dims.join(","),
            t.offsets.0,
            t.offsets.1
        ));
    }
    let mut json = format!("{{{}}}", parts.join(","));
    if pad {
        while json.len() % 8 != 0 {
            json.push(' ');
        }
    }
    json
}

fn image(header: &[u8], data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend((0..data_len).map(|i| i as u8));
    out
}

/// A catalog as comparable text, entries in name order.
fn normal(c: Result<Catalog, FormatError>) -> Result<String, FormatError> {
    let mut c = c?;
    c.entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(format!(
        "{} {:?} {:?} {:?} {:?}",
        c.format, c.attributes, c.data_region, c.entries, c.skipped_globals
    ))
}

/// Whatever the fast path accepts, the crate accepts alike; returns
/// whether the fast path read the file.
fn agree(bytes: &[u8], what: &str) -> bool {
    let crate_path = normal(parse_crate_path(bytes));
    match parse_fast_path(bytes) {
        None => false,
        Some(fast) => {
            let fast = normal(fast);
            assert!(fast.is_ok(), "{what}: the fast path failed late: {fast:?}");
            assert_eq!(
                fast,
                crate_path,
                "{what}: header {:?}",
                String::from_utf8_lossy(bytes.get(8..).unwrap_or_default())
            );
            true
        }
    }
}

#[test]
fn valid_headers_take_the_fast_path_and_match_the_crate() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for case in 0..600 {
        let (tensors, metadata, data_len) = valid(&mut rng);
        let json = header_json(&tensors, &metadata, case % 2 == 0);
        let file = image(json.as_bytes(), data_len);
        assert!(
            parse_crate_path(&file).is_ok(),
            "case {case}: generator made an invalid file: {json}"
        );
        assert!(
            agree(&file, &format!("case {case}")),
            "case {case}: deferred: {json}"
        );
    }
    // The smallest files: no tensors, empty data section.
    for json in ["{}", "{} ", " {}", "{\"__metadata__\":{}}"] {
        assert!(agree(&image(json.as_bytes(), 0), json), "{json}");
    }
}

/// Textual edits that keep the JSON well-formed but break (or bend) a rule.
const EDITS: &[(&str, &str)] = &[
    ("\"dtype\"", "\"\\u0064type\""),
    ("\"dtype\"", "\"dtype\":\"F32\",\"dtype\""),
    ("\"shape\"", "\"extra\":1,\"shape\""),
    ("\"shape\":[", "\"shape\":[1,"),
    ("\"shape\":[", "\"shape\":[18446744073709551615,"),
    ("\"shape\":[", "\"shape\":[18446744073709551616,"),
    ("\"shape\":[", "\"shape\":[-1,"),
    ("\"shape\":[", "\"shape\":[1.0,"),
    ("\"shape\":[", "\"shape\":[4294967296,4294967296,"),
    ("\"data_offsets\":[", "\"data_offsets\":[1,"),
    ("\"data_offsets\":[0,", "\"data_offsets\":[1,"),
    (
        "\"data_offsets\":[0,",
        "\"data_offsets\":[18446744073709551615,",
    ),
    (
        ",\"data_offsets\"",
        ",\"data_offsets\":[0,0],\"data_offsets\"",
    ),
    ("\"F32\"", "\"f32\""),
    ("\"F32\"", "\"F4\""),
    ("\"U8\"", "\"F8_E4M3\""),
    ("\"U8\"", "\"BOOL\""),
    ("\"I64\"", "\"F64\""),
    ("\"F16\"", "{\"F16\":null}"),
    ("\"__metadata__\":{", "\"__metadata__\":{\"k\":1,"),
    ("\"__metadata__\":{", "\"__metadata__\":{\"format\":\"x\","),
    (
        "\"__metadata__\":{",
        "\"__metadata__\":null,\"__metadata__\":{",
    ),
    ("\"__metadata__\"", "\"__metadata\\u005f_\""),
    ("\"__metadata__\":{", "\"__metadata__\":{\"k\":\"\\ud800\","),
    ("{\"dtype\"", "[\"F32\",[1],[0,4]],\"x\":{\"dtype\""),
    ("\"a\":", "\"b.weight\":"),
    ("\"z\":", "\"a\":"),
    ("\"layers.2.bias\":", "\"layers.0.bias\":"),
    (
        "{",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},",
    ),
    ("{", "{\"__metadata__\":{\"a\":\"b\"},"),
    ("{", "[{"),
    ("}", "}}"),
    ("]", "],"),
    (":", " : "),
    ("\"", "\"\\u0000"),
];

#[test]
fn damaged_headers_are_read_alike_or_left_to_the_crate() {
    let mut rng = Rng(0x0bad_cafe_f00d_0002);
    let mut fast_reads = 0;
    let mut cases = 0;
    for case in 0..400 {
        let (mut tensors, metadata, data_len) = valid(&mut rng);
        let json = header_json(&tensors, &metadata, case % 2 == 0);
        let what = |m: &str| format!("case {case}, {m}");
        // Textual edits at a random occurrence.
        for &(from, to) in EDITS {
            let hits: Vec<usize> = json.match_indices(from).map(|(i, _)| i).collect();
            if hits.is_empty() {
                continue;
            }
            let at = hits[rng.below(hits.len())];
            let edited = format!("{}{}{}", &json[..at], to, &json[at + from.len()..]);
            for data in [data_len, data_len + 4, data_len.saturating_sub(4)] {
                cases += 1;
                fast_reads += agree(&image(edited.as_bytes(), data), &what(to)) as usize;
            }
        }
        // Swapped, shifted and overlapping offsets.
        if tensors.len() >= 2 {
            let (i, j) = (rng.below(tensors.len()), rng.below(tensors.len()));
            let (a, b) = (tensors[i].offsets, tensors[j].offsets);
            tensors[i].offsets = b;
            tensors[j].offsets = a;
            let swapped = header_json(&tensors, &metadata, false);
            cases += 1;
            fast_reads += agree(&image(swapped.as_bytes(), data_len), &what("swap")) as usize;
            tensors[i].offsets = (a.0 + 1, a.1 + 1);
            let gap = header_json(&tensors, &metadata, false);
            for data in [data_len, data_len + 1] {
                cases += 1;
                agree(&image(gap.as_bytes(), data), &what("gap"));
            }
            tensors[i].offsets = (a.0.saturating_sub(1), a.1);
            let overlap = header_json(&tensors, &metadata, false);
            cases += 1;
            agree(&image(overlap.as_bytes(), data_len), &what("overlap"));
        }
        // Byte flips, truncations and wrong lengths of the whole image.
        let file = image(json.as_bytes(), data_len);
        for _ in 0..20 {
            let mut bad = file.clone();
            let at = rng.below(bad.len());
            bad[at] ^= 1 << rng.below(8);
            if rng.below(4) == 0 {
                let at = 8 + rng.below(json.len());
                bad[at] = [0xff, 0xc3, 0x80, b'\\', b'"', b'{', b'0'][rng.below(7)];
            }
            cases += 1;
            fast_reads += agree(&bad, &what("flip")) as usize;
            cases += 1;
            agree(&file[..rng.below(file.len())], &what("truncated"));
        }
        for len in [
            0u64,
            1,
            json.len() as u64 - 1,
            json.len() as u64 + 1,
            u64::MAX,
        ] {
            let mut bad = file.clone();
            bad[..8].copy_from_slice(&len.to_le_bytes());
            cases += 1;
            agree(&bad, &what("header length"));
        }
    }
    // Some damage leaves a valid file (a flipped data byte, a space): the
    // fast path must have read some of them, or this test shows nothing.
    assert!(fast_reads > 0 && cases > 10_000, "{fast_reads} of {cases}");
}
