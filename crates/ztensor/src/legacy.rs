//! Legacy v0.1 files (`ZTEN0001`): footer is only the u64 manifest size and
//! the manifest is a CBOR array of flat tensor records. They are projected
//! into the same model as v1 dense tensors.

use std::collections::BTreeMap;

use ciborium::Value;

use crate::digest::Digest;
use crate::dtype::DType;
use crate::manifest::{as_map, as_u64, field, Entry, Manifest};
use crate::model::{Component, Encoding, TensorInfo};

/// The version string reported for legacy files.
pub const LEGACY_VERSION: &str = "0.1.0";

pub(crate) fn decode(bytes: &[u8]) -> Result<Manifest, String> {
    let root: Value = ciborium::de::from_reader(bytes)
        .map_err(|e| format!("legacy manifest is not valid CBOR: {e}"))?;
    let Value::Array(records) = root else {
        return Err("legacy manifest is not a CBOR array".into());
    };
    let mut by_name = BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        let map = as_map(record).ok_or_else(|| format!("legacy record {i} is not a map"))?;
        let name = match field(map, "name") {
            Some(Value::Text(n)) => n.clone(),
            _ => return Err(format!("legacy record {i} has no text 'name'")),
        };
        // v0.1 sparse records have no defined component structure; every
        // reader (the reference included) has always skipped them.
        if matches!(field(map, "layout"), Some(Value::Text(l)) if l != "dense") {
            continue;
        }
        by_name.insert(name.clone(), decode_record(&name, map));
    }
    Ok(Manifest {
        version: LEGACY_VERSION.to_string(),
        attributes: None,
        entries: by_name
            .into_iter()
            .map(|(name, info)| Entry {
                name,
                info: info.map_err(Into::into),
            })
            .collect(),
    })
}

fn decode_record(name: &str, map: &[(Value, Value)]) -> Result<TensorInfo, String> {
    let dtype = match field(map, "dtype") {
        Some(Value::Text(d)) => {
            DType::from_name(d).ok_or_else(|| format!("unknown legacy dtype '{d}'"))?
        }
        _ => return Err("missing legacy 'dtype'".into()),
    };
    let shape = match field(map, "shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| as_u64(d).ok_or("legacy shape is not a list of non-negative integers"))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("missing legacy 'shape'".into()),
    };
    let offset = field(map, "offset")
        .and_then(as_u64)
        .ok_or("missing legacy 'offset'")?;
    let length = field(map, "size")
        .and_then(as_u64)
        .ok_or("missing legacy 'size'")?;
    let encoding = match field(map, "encoding") {
        None | Some(Value::Null) => Encoding::Raw,
        Some(Value::Text(e)) if e == "raw" => Encoding::Raw,
        Some(Value::Text(e)) if e == "zstd" => Encoding::Zstd {
            uncompressed_length: None,
        },
        Some(other) => return Err(format!("unknown legacy encoding {other:?}")),
    };
    let digest = match field(map, "checksum") {
        Some(Value::Text(d)) => Some(Digest::parse(d)?),
        _ => None,
    };
    let data = Component {
        dtype,
        logical_type: None,
        offset,
        length,
        encoding,
        digest,
    };
    Ok(TensorInfo::dense(name.to_string(), shape, data))
}
