//! Fast path for reading well-formed safetensors headers.
//!
//! The `safetensors` crate parses a header into a `HashMap` through serde's
//! `flatten` (which buffers every value as a generic `Content` tree first),
//! re-sorts it by offset, and hands back yet another `HashMap`: for files of
//! tens of thousands of small tensors that is most of the time of opening
//! them. This reader walks the JSON once with serde_json, straight into a
//! `Vec`, and applies the crate's acceptance rules (`read_metadata` and
//! `Metadata::validate` of safetensors 0.8) itself.
//!
//! It is deliberately strict: on anything unusual (a duplicate name or
//! field, an unknown field or dtype, a tensor written as an array, a
//! `null` metadata, any rule failing) it gives up and the crate reads the
//! file instead, so the crate alone decides what is refused and says why,
//! and a file means the same whichever path read it (a differential test,
//! `tests/safetensors_fast_header.rs`, holds both to that).

use std::fmt;

use safetensors::tensor::{Dtype, TensorInfo};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::Header;

/// The crate's limit on the JSON header (`MAX_HEADER_SIZE` in its `tensor.rs`).
const MAX_HEADER_SIZE: usize = 100_000_000;

/// Reads and validates a header, or `None` to defer to the crate.
pub(super) fn read(bytes: &[u8]) -> Option<Header> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let n = usize::try_from(n).ok().filter(|&n| n <= MAX_HEADER_SIZE)?;
    let text = std::str::from_utf8(bytes.get(8..n.checked_add(8)?)?).ok()?;
    // What serde_json::from_str does: one value, then only whitespace.
    let mut json = serde_json::Deserializer::from_str(text);
    let Parsed {
        mut tensors,
        metadata,
    } = Parsed::deserialize(&mut json).ok()?;
    json.end().ok()?;
    let data_len = data_len(&tensors)?;
    if data_len.checked_add(8)?.checked_add(n)? != bytes.len() {
        return None;
    }
    // Name order, which the reader wants; writers usually emit it already.
    if !tensors.is_sorted_by(|a, b| a.0 <= b.0) {
        tensors.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    // The crate keeps the last of duplicate names: left to it.
    if tensors.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let metadata = match metadata {
        Some(mut m) => {
            m.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if m.windows(2).any(|w| w[0].0 == w[1].0) {
                return None;
            }
            Some(m)
        }
        None => None,
    };
    Some(Header {
        len: n,
        tensors,
        metadata,
    })
}

/// `Metadata::validate`: taken in offset order, the tensors tile the data
/// section from 0 without gaps, each exactly as long as its shape and dtype
/// say. Returns the section's length.
fn data_len(tensors: &[(String, TensorInfo)]) -> Option<usize> {
    let infos = tensors.iter().map(|(_, info)| info);
    if tensors
        .windows(2)
        .all(|w| w[0].1.data_offsets <= w[1].1.data_offsets)
    {
        return tile(infos);
    }
    let mut sorted: Vec<&TensorInfo> = infos.collect();
    sorted.sort_unstable_by_key(|info| info.data_offsets);
    tile(sorted.into_iter())
}

/// [`data_len`] of tensors already in offset order.
fn tile<'a>(infos: impl Iterator<Item = &'a TensorInfo>) -> Option<usize> {
    let mut start = 0usize;
    for info in infos {
        let (s, e) = info.data_offsets;
        if s != start || e < s {
            return None;
        }
        start = e;
        let nbits = info
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))?
            .checked_mul(info.dtype.bitsize())?;
        if nbits % 8 != 0 || e - s != nbits / 8 {
            return None;
        }
    }
    Some(start)
}

/// Any reason to defer; the message is never shown.
fn defer<E: de::Error>() -> E {
    E::custom("defer to the safetensors crate")
}

/// The top-level object, in file order.
struct Parsed {
    tensors: Vec<(String, TensorInfo)>,
    metadata: Option<Vec<(String, String)>>,
}

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ParsedVisitor)
    }
}

struct ParsedVisitor;

impl<'de> Visitor<'de> for ParsedVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a safetensors header")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut tensors = Vec::new();
        let mut metadata = None;
        while let Some(name) = map.next_key::<String>()? {
            if name == "__metadata__" {
                if metadata.is_some() {
                    return Err(defer());
                }
                metadata = Some(map.next_value::<Metadata>()?.0);
            } else {
                tensors.push((name, map.next_value::<Info>()?.0));
            }
        }
        Ok(Parsed { tensors, metadata })
    }
}

/// `__metadata__`: an object of strings (`null`, which the crate reads as
/// no metadata, defers).
struct Metadata(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MetadataVisitor)
    }
}

struct MetadataVisitor;

impl<'de> Visitor<'de> for MetadataVisitor {
    type Value = Metadata;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = map.next_entry::<String, String>()? {
            out.push(entry);
        }
        Ok(Metadata(out))
    }
}

/// One tensor: an object of exactly `dtype`, `shape` and `data_offsets`.
struct Info(TensorInfo);

impl<'de> Deserialize<'de> for Info {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(InfoVisitor)
    }
}

struct InfoVisitor;

impl<'de> Visitor<'de> for InfoVisitor {
    type Value = Info;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tensor description")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Info, A::Error> {
        let (mut dtype_, mut shape, mut offsets) = (None, None, None);
        // Borrowed keys: an escaped one fails here and defers.
        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "dtype" if dtype_.is_none() => {
                    // The crate's own derive: the same spellings, an unknown one deferred.
                    dtype_ = Some(map.next_value::<Dtype>()?);
                }
                "shape" if shape.is_none() => shape = Some(map.next_value::<Vec<usize>>()?),
                "data_offsets" if offsets.is_none() => {
                    offsets = Some(map.next_value::<(usize, usize)>()?);
                }
                _ => return Err(defer()),
            }
        }
        match (dtype_, shape, offsets) {
            (Some(dtype), Some(shape), Some(data_offsets)) => Ok(Info(TensorInfo {
                dtype,
                shape,
                data_offsets,
            })),
            _ => Err(defer()),
        }
    }
}
