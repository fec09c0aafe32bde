//! Structural checks run once when a file is opened (format rules 8 and 10).
//!
//! Every failure is local: it marks the offending tensor as unreadable with
//! a message, and the rest of the file stays usable.

use crate::catalog::Entry;
use crate::codec;
use crate::error::FormatError;
use crate::model::{Encoding, Layout, TensorInfo};

/// The widest element of any dtype or logical type (complex128), in bytes.
const MAX_ELEMENT_WIDTH: u64 = 16;

/// Checks every entry against the data region `[data_start, data_end)`.
pub(crate) fn validate(
    entries: &mut [Entry],
    data_start: u64,
    data_end: u64,
    overlaps_allowed: bool,
) {
    for entry in entries.iter_mut() {
        if let Ok(info) = &entry.info {
            if let Err(e) = check_tensor(info, data_start, data_end) {
                entry.info = Err(e);
            }
        }
    }
    if !overlaps_allowed {
        check_overlaps(entries);
    }
}

fn check_tensor(info: &TensorInfo, data_start: u64, data_end: u64) -> Result<(), FormatError> {
    info.numel().ok_or_else(|| {
        format!(
            "shape {:?} has more elements than fit in 64 bits",
            info.shape
        )
    })?;
    // Array libraries size an array by its non-zero dimensions even when
    // another one is 0 (NumPy refuses `[0, 2**40, 2**40]`): a shape no array
    // can take is damage, and an error here, not in the caller's library.
    let span = info
        .shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(MAX_ELEMENT_WIDTH, |acc, &d| acc.checked_mul(d));
    if span.is_none_or(|n| n > i64::MAX as u64) {
        return Err(format!(
            "shape {:?} is too large for any array, even empty",
            info.shape
        )
        .into());
    }
    for (name, c) in &info.components {
        let end = c.offset.checked_add(c.length).ok_or_else(|| {
            format!(
                "component '{name}': offset {} + length {} overflows",
                c.offset, c.length
            )
        })?;
        let inside = if c.length == 0 {
            c.offset <= data_end
        } else {
            c.offset >= data_start && end <= data_end
        };
        if !inside {
            return Err(format!(
                "component '{name}': bytes [{}, {end}) lie outside the data region [{data_start}, {data_end})",
                c.offset
            ).into());
        }
        if let Encoding::Zstd {
            uncompressed_length: Some(u),
        } = c.encoding
        {
            codec::check_ratio(c.length, u)
                .map_err(|e| e.prefixed(format_args!("component '{name}': ")))?;
        }
        // Every component is an array of its dtype (docs/format.md section 11, rule 5).
        let width = c.dtype.size() as u64;
        if let Some(n) = c.decoded_len().filter(|n| n % width != 0) {
            return Err(format!(
                "component '{name}': {n} bytes are not a whole number of {width}-byte {} elements",
                c.dtype.name()
            )
            .into());
        }
    }
    if info.layout == Layout::Dense {
        let data = info
            .components
            .get("data")
            .ok_or("dense tensor has no 'data' component")?;
        let expected = info
            .dense_nbytes()
            .ok_or_else(|| format!("shape {:?} is too large to address", info.shape))?;
        match &data.encoding {
            Encoding::Raw if data.length != expected => {
                return Err(format!(
                    "'data' holds {} bytes but shape {:?} of {} needs {expected}",
                    data.length,
                    info.shape,
                    info.logical_type().unwrap_or(data.dtype.name())
                )
                .into())
            }
            Encoding::Zstd {
                uncompressed_length,
            } => {
                if let Some(u) = uncompressed_length.filter(|&u| u != expected) {
                    return Err(format!(
                        "'data' declares {u} uncompressed bytes but shape {:?} needs {expected}",
                        info.shape
                    )
                    .into());
                }
                codec::check_ratio(data.length, expected).map_err(|e| e.prefixed("'data': "))?;
            }
            Encoding::Transformed(t) if t.decoded_len() != expected => {
                return Err(format!(
                    "'data' decodes to {} bytes but shape {:?} needs {expected}",
                    t.decoded_len(),
                    info.shape
                )
                .into())
            }
            _ => {}
        }
    }
    Ok(())
}

/// Blobs may alias exactly (same offset and length) but never partially overlap.
fn check_overlaps(entries: &mut [Entry]) {
    let mut ranges: Vec<(u64, u64, usize)> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if let Ok(info) = &entry.info {
            for c in info.components.values().filter(|c| c.length > 0) {
                ranges.push((c.offset, c.offset + c.length, i));
            }
        }
    }
    ranges.sort_unstable();
    // Identical ranges form one group (aliases are fine): `(start, end,
    // lo, hi)` owns `ranges[lo..hi]`, a slice rather than a Vec per group,
    // which showed in opens of files of many small tensors.
    let mut groups: Vec<(u64, u64, usize, usize)> = Vec::new();
    for (k, &(start, end, _)) in ranges.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if (g.0, g.1) == (start, end) => g.3 = k + 1,
            _ => groups.push((start, end, k, k + 1)),
        }
    }
    // Sweep by start; `reach` is the group extending furthest so far.
    let mut clashes: Vec<(usize, usize)> = Vec::new();
    let mut reach: Option<usize> = None;
    for g in 0..groups.len() {
        if let Some(r) = reach {
            if groups[g].0 < groups[r].1 {
                clashes.push((g, r));
                if groups[g].1 <= groups[r].1 {
                    continue;
                }
            }
        }
        reach = Some(g);
    }
    // Neither side of a partial overlap can be trusted: all involved become unreadable.
    let owners = |g: usize| ranges[groups[g].2..groups[g].3].iter().map(|r| r.2);
    for (a, b) in clashes {
        let name_of = |g: usize, entries: &[Entry]| entries[ranges[groups[g].2].2].name.clone();
        let (name_a, name_b) = (name_of(a, entries), name_of(b, entries));
        for (g, other) in [(a, &name_b), (b, &name_a)] {
            for i in owners(g) {
                entries[i].info = Err(FormatError::corrupt(if &entries[i].name == other {
                    "two of its components partially overlap".to_string()
                } else {
                    format!("its bytes partially overlap those of tensor '{other}'")
                }));
            }
        }
    }
}
