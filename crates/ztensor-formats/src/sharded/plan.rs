//! Planning a sharded save: how large a shard may be ([`parse_size`]),
//! which tensors go in which shard ([`plan`]), and the names of the shards
//! and the index ([`shard_names`], [`index_name`]). The Hugging Face rules,
//! so that the same state dict and limit give the same grouping and names.

use ztensor::{Error, Result};

/// Decimal and binary size units, upper-cased (`"5GB"` = 5 * 10^9 bytes,
/// `"5GiB"` = 5 * 2^30).
const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KIB", 1 << 10),
    ("MIB", 1 << 20),
    ("GIB", 1 << 30),
    ("TIB", 1 << 40),
];

/// Parses a shard size limit: a number of bytes, optionally with a unit,
/// case-insensitive and with optional spaces (`"5GB"`, `"1.5 gb"`,
/// `"512MiB"`, `"1000"`). A fraction rounds down to whole bytes, as
/// `huggingface_hub.serialization.parse_size_to_int` does. Zero, signs,
/// exponents and unknown units are refused.
pub fn parse_size(text: &str) -> Result<u64> {
    let invalid = |why: &str| {
        Error::InvalidArgument(format!(
            "invalid shard size {text:?}: {why} (write bytes as a whole number, or with a unit: \
             KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. \"5GB\")"
        ))
    };
    let s = text.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = (s[..split].trim_end(), s[split..].to_ascii_uppercase());
    let multiplier = match UNITS.iter().find(|(name, _)| *name == unit) {
        Some(&(_, m)) => m,
        None if unit.is_empty() => 1,
        None => return Err(invalid(&format!("unknown unit {:?}", &s[split..]))),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return Err(invalid("not a number"));
    }
    // Exact decimal arithmetic: value = digits / 10^scale.
    let scale = fraction.len() as u32;
    let bytes = format!("{whole}{fraction}")
        .parse::<u128>()
        .ok()
        .zip(10u128.checked_pow(scale))
        .and_then(|(n, div)| n.checked_mul(u128::from(multiplier)).map(|p| p / div))
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| invalid("too large"))?;
    if bytes == 0 {
        return Err(invalid("a shard must be allowed at least 1 byte"));
    }
    Ok(bytes)
}

/// Groups tensors of the given byte sizes (in key order) into shards of at
/// most `max_shard_size` bytes; returns each shard's tensor indices.
///
/// Greedy in key order, as `huggingface_hub`'s
/// `split_state_dict_into_shards_factory`: a tensor that would tip the
/// current shard over the limit starts a new one, and a tensor larger than
/// the limit goes alone into a shard of its own, numbered where it is met
/// (the shard being filled continues after it). No tensors: one empty shard.
pub fn plan(sizes: &[u64], max_shard_size: u64) -> Vec<Vec<usize>> {
    let mut shards = Vec::new();
    let (mut current, mut current_size) = (Vec::new(), 0u128);
    for (i, &size) in sizes.iter().enumerate() {
        if size > max_shard_size {
            shards.push(vec![i]);
            continue;
        }
        if current_size + u128::from(size) > u128::from(max_shard_size) {
            shards.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current.push(i);
        current_size += u128::from(size);
    }
    if !current.is_empty() || shards.is_empty() {
        shards.push(current);
    }
    shards
}

/// `filename` split before its extension: `("model", ".zt")`; a name
/// without one (or a hidden name like `.zt`) has an empty extension.
fn stem_and_extension(filename: &str) -> (&str, &str) {
    match filename.rfind('.') {
        Some(i) if i > 0 => filename.split_at(i),
        _ => (filename, ""),
    }
}

/// The name of shard `i` (0-based) of `n`: `model-00001-of-00004.zt` for
/// `model.zt`, five digits as in Hugging Face's checkpoints.
pub fn shard_name(filename: &str, i: usize, n: usize) -> String {
    let (stem, ext) = stem_and_extension(filename);
    format!("{stem}-{:05}-of-{n:05}{ext}", i + 1)
}

/// The names of the `n` shards of `filename`.
pub fn shard_names(filename: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| shard_name(filename, i, n)).collect()
}

/// The index file of `filename`: `model.zt.index.json` for `model.zt`.
pub fn index_name(filename: &str) -> String {
    format!("{filename}{}", super::INDEX_SUFFIX)
}

/// Whether `name` is the name of some shard of `filename`, of any count
/// (`model-00002-of-00003.zt` for `model.zt`).
pub fn is_shard_of(name: &str, filename: &str) -> bool {
    let (stem, ext) = stem_and_extension(filename);
    let five_digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix(stem)
        .and_then(|rest| rest.strip_suffix(ext))
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.split_once("-of-"))
        .is_some_and(|(i, n)| five_digits(i) && five_digits(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_hugging_face_units() {
        for (text, bytes) in [
            ("5GB", 5_000_000_000),
            ("5GiB", 5 << 30),
            (" 5 gb ", 5_000_000_000),
            ("1.5GB", 1_500_000_000),
            ("0.5KB", 500),
            ("1.0001KB", 1000),
            ("10KiB", 10_240),
            ("3MiB", 3 << 20),
            ("2TB", 2_000_000_000_000),
            ("1TiB", 1 << 40),
            ("7MB", 7_000_000),
            ("100", 100),
            ("100B", 100),
            (".5MB", 500_000),
            ("2.", 2),
        ] {
            assert_eq!(parse_size(text).unwrap(), bytes, "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_refused_naming_the_text() {
        for (text, why) in [
            ("", "not a number"),
            ("GB", "not a number"),
            ("-5GB", "not a number"),
            ("+5GB", "not a number"),
            ("1e3MB", "unknown unit \"e3MB\""),
            ("5 G B", "unknown unit \"G B\""),
            ("5PB", "unknown unit \"PB\""),
            ("5Gb!", "unknown unit"),
            ("1.2.3GB", "not a number"),
            ("0GB", "at least 1 byte"),
            ("0.0001KB", "at least 1 byte"),
            ("99999999999TB", "too large"),
            ("184467440737095516160", "too large"),
        ] {
            let e = parse_size(text).unwrap_err();
            assert_eq!(e.kind(), ztensor::ErrorKind::InvalidArgument);
            let msg = e.to_string();
            assert!(msg.contains(&format!("{text:?}")), "{msg}");
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn plans_are_greedy_in_key_order() {
        // The example of huggingface_hub's docstring: 6, 6, 2, 6, 2, 2 GB
        // under 10 GB give [6], [6+2], [6+2+2].
        assert_eq!(
            plan(&[6, 6, 2, 6, 2, 2], 10),
            [vec![0], vec![1, 2], vec![3, 4, 5]]
        );
        // A tensor over the limit is alone, numbered where it is met; the
        // shard being filled continues after it.
        assert_eq!(plan(&[1, 20, 2, 9], 10), [vec![1], vec![0, 2], vec![3]]);
        assert_eq!(plan(&[4, 4, 4], 100), [vec![0, 1, 2]]);
        assert_eq!(plan(&[10, 10], 10), [vec![0], vec![1]]);
        assert_eq!(plan(&[0, 0, 5, 0], 5), [vec![0, 1, 2, 3]]);
        assert_eq!(plan(&[], 5), [Vec::<usize>::new()]);
        assert_eq!(
            plan(&[u64::MAX, 1, u64::MAX], u64::MAX),
            [vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn names_follow_the_hugging_face_pattern() {
        assert_eq!(
            shard_names("model.zt", 2),
            ["model-00001-of-00002.zt", "model-00002-of-00002.zt"]
        );
        assert_eq!(shard_name("a.b.zt", 9, 12), "a.b-00010-of-00012.zt");
        assert_eq!(shard_name("weights", 0, 1), "weights-00001-of-00001");
        assert_eq!(index_name("model.zt"), "model.zt.index.json");
        assert!(is_shard_of("model-00002-of-00003.zt", "model.zt"));
        assert!(!is_shard_of("model-0002-of-00003.zt", "model.zt"));
        assert!(!is_shard_of("model-00002-of-00003.safetensors", "model.zt"));
        assert!(!is_shard_of("model.zt", "model.zt"));
        assert!(!is_shard_of("model-00002-of-00003.zt.bak", "model.zt"));
        assert!(!is_shard_of("other-00001-of-00002.zt", "model.zt"));
    }
}
