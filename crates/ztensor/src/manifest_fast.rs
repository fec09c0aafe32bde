//! Fast path for decoding well-formed v1 manifests.
//!
//! Decoding through a generic CBOR value tree costs several microseconds
//! per tensor, which dominates opening files of many small tensors. This
//! decoder walks the CBOR once with `minicbor`, borrowing strings, and
//! builds the object model directly. It is deliberately strict: on anything
//! unusual (indefinite lengths, tags, unknown keys, unknown dtypes or
//! encodings, missing fields, duplicate names) it gives up and the general decoder in
//! `manifest.rs`, which owns the semantics and the per-tensor errors,
//! decodes the file instead. Attribute values are handed to ciborium.

use minicbor::data::Type;
use minicbor::Decoder;

use crate::digest::Digest;
use crate::dtype::DType;
use crate::manifest::{Entry, Manifest};
use crate::model::{Component, Components, Encoding, Layout, TensorInfo, Value};

/// Decodes a canonical manifest, or `None` to defer to the general decoder.
///
/// Keys no writer emits defer too: skipping their values with minicbor
/// would accept what is not CBOR (it skips a lone `break` byte, which the
/// general decoder rightly refuses), and a file's meaning must not depend
/// on which decoder read it (found by the `cbor` fuzz target).
pub(crate) fn decode(bytes: &[u8]) -> Option<Manifest> {
    let mut d = Decoder::new(bytes);
    let (mut version, mut attributes, mut entries) = (None, None, None);
    for _ in 0..d.map().ok()?? {
        match d.str().ok()? {
            "version" => version = Some(d.str().ok()?.to_string()),
            "attributes" => attributes = text_keyed_map(&mut d, bytes)?,
            "objects" => entries = Some(objects(&mut d, bytes)?),
            // Written by appends (docs/format.md section 15); readers ignore it.
            "previous_end" => {
                d.u64().ok()?;
            }
            _ => return None, // not written by any writer: see `decode`
        }
    }
    // Anything after the item is for the general decoder to report.
    if d.position() != bytes.len() {
        return None;
    }
    Some(Manifest {
        version: version?,
        attributes,
        entries: entries?,
    })
}

fn objects(d: &mut Decoder<'_>, bytes: &[u8]) -> Option<Vec<Entry>> {
    let n = d.map().ok()??;
    let mut entries: Vec<Entry> = Vec::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        let name = d.str().ok()?;
        let info = object(d, bytes, name)?;
        entries.push(Entry {
            name: name.to_string(),
            info: Ok(info),
        });
    }
    // Writers emit names sorted; anything else (or a duplicate) takes the general path.
    if entries
        .windows(2)
        .any(|w| w[0].name.as_bytes() >= w[1].name.as_bytes())
    {
        return None;
    }
    Some(entries)
}

fn object(d: &mut Decoder<'_>, bytes: &[u8], name: &str) -> Option<TensorInfo> {
    let (mut shape, mut layout, mut attributes, mut components) = (None, None, None, None);
    for _ in 0..d.map().ok()?? {
        match d.str().ok()? {
            "shape" => {
                let n = d.array().ok()??;
                let dims = (0..n).map(|_| d.u64().ok()).collect::<Option<Vec<u64>>>()?;
                shape = Some(dims);
            }
            "format" => layout = Some(Layout::parse(d.str().ok()?)),
            "attributes" => attributes = text_keyed_map(d, bytes)?,
            "components" => {
                let mut map = Components::new();
                for _ in 0..d.map().ok()?? {
                    let cname = d.str().ok()?;
                    map.insert(cname.to_string(), component(d)?);
                }
                components = Some(map);
            }
            _ => return None, // not written by any writer: see `decode`
        }
    }
    Some(TensorInfo {
        name: name.to_string(),
        shape: shape?,
        layout: layout?,
        components: components?,
        attributes,
    })
}

fn component(d: &mut Decoder<'_>) -> Option<Component> {
    let (mut dtype, mut logical_type, mut offset, mut length) = (None, None, None, None);
    let (mut uncompressed_length, mut zstd, mut digest) = (None, false, None);
    for _ in 0..d.map().ok()?? {
        match d.str().ok()? {
            "dtype" => dtype = Some(DType::from_manifest_name(d.str().ok()?)?),
            "type" => logical_type = optional_str(d)?.map(str::to_string),
            "offset" => offset = Some(d.u64().ok()?),
            "length" => length = Some(d.u64().ok()?),
            "uncompressed_length" => {
                uncompressed_length = if d.datatype().ok()? == Type::Null {
                    d.null().ok()?;
                    None
                } else {
                    Some(d.u64().ok()?)
                }
            }
            "encoding" => {
                zstd = match d.str().ok()? {
                    "raw" => false,
                    "zstd" => true,
                    _ => return None,
                }
            }
            "digest" => {
                digest = match optional_str(d)? {
                    None => None,
                    Some(text) => Some(Digest::parse(text).ok()?),
                }
            }
            _ => return None, // not written by any writer: see `decode`
        }
    }
    Some(Component {
        dtype: dtype?,
        logical_type,
        offset: offset?,
        length: length?,
        encoding: if zstd {
            Encoding::Zstd {
                uncompressed_length,
            }
        } else {
            Encoding::Raw
        },
        digest,
    })
}

/// `Some(None)` for null, `Some(Some(s))` for text, `None` otherwise.
fn optional_str<'b>(d: &mut Decoder<'b>) -> Option<Option<&'b str>> {
    if d.datatype().ok()? == Type::Null {
        d.null().ok()?;
        return Some(None);
    }
    Some(Some(d.str().ok()?))
}

/// An attribute map (null allowed) decoded into a CBOR value by ciborium,
/// which bounds nesting depth. `Some(None)` for null; `None` to defer.
fn text_keyed_map(d: &mut Decoder<'_>, bytes: &[u8]) -> Option<Option<Value>> {
    if d.datatype().ok()? == Type::Null {
        d.null().ok()?;
        return Some(None);
    }
    let start = d.position();
    d.skip().ok()?;
    let value: Value = ciborium::de::from_reader(&bytes[start..d.position()]).ok()?;
    match &value {
        Value::Map(m) if m.iter().all(|(k, _)| matches!(k, Value::Text(_))) => Some(Some(value)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::decode_general;
    use crate::{Checksum, ComponentData, WriteOptions, Writer};

    fn manifest_of(bytes: &[u8]) -> &[u8] {
        let n = bytes.len();
        let size = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap()) as usize;
        &bytes[n - 16 - size..n - 16]
    }

    #[test]
    fn agrees_with_the_general_decoder() {
        let mut w = Writer::in_memory();
        w.set_attributes(Value::Map(vec![(
            Value::Text("k".into()),
            Value::Array(vec![Value::Float(0.1), Value::Null, Value::Bytes(vec![1])]),
        )]))
        .unwrap();
        w.add("a", &[2, 3], &[1.0f32; 6]).unwrap();
        w.add_with(
            "b",
            &[],
            &[7i64],
            &WriteOptions::zstd(3).with_checksum(Checksum::Sha256),
        )
        .unwrap();
        let values = [1.0f32, 2.0];
        w.add_sparse_coo(
            "s",
            &[4],
            ComponentData::of(&values),
            &[0, 3],
            &WriteOptions::raw().with_checksum(Checksum::Crc32c),
        )
        .unwrap();
        let cplx = ComponentData {
            dtype: DType::F32,
            logical_type: Some("complex64"),
            bytes: &[0; 8],
        };
        w.add_dense("c", &[1], cplx, &WriteOptions::raw()).unwrap();
        let bytes = w.finish_into_vec().unwrap();
        let m = manifest_of(&bytes);
        let fast = decode(m).expect("a writer's manifest takes the fast path");
        let general = decode_general(m).unwrap();
        assert_eq!(fast.version, general.version);
        assert_eq!(fast.attributes, general.attributes);
        let infos = |m: &Manifest| {
            m.entries
                .iter()
                .map(|e| (e.name.clone(), e.info.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(infos(&fast), infos(&general));
    }

    #[test]
    fn defers_on_anything_unusual() {
        let mut w = Writer::in_memory();
        w.add("a", &[1], &[1u8]).unwrap();
        let bytes = w.finish_into_vec().unwrap();
        let m = manifest_of(&bytes).to_vec();
        assert!(decode(&m).is_some());
        let patched = |from: &[u8], to: &[u8]| {
            let at = m.windows(from.len()).position(|w| w == from).unwrap();
            let mut out = m.clone();
            out.splice(at..at + from.len(), to.iter().copied());
            out
        };
        // unknown dtype (same length), unknown encoding-free variants, indefinite map
        assert!(decode(&patched(b"\x62u8", b"\x62q8")).is_none());
        let mut indefinite = m.clone();
        indefinite[0] = 0xbf;
        indefinite.push(0xff);
        assert!(decode(&indefinite).is_none());
    }
}
