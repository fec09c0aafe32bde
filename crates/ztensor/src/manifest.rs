//! The CBOR manifest: decoding into the object model (one tensor's defects
//! stay that tensor's) and encoding byte-compatibly with the reference writer.

use std::collections::BTreeMap;

use ciborium::Value;
use serde::Serialize;

use crate::digest::Digest;
use crate::dtype::DType;
use crate::model::{Component, Components, Encoding, Layout, TensorInfo};

/// The `version` string every v1 writer stores.
pub const FORMAT_VERSION: &str = "1.2.0";

pub(crate) use crate::catalog::Entry;

/// A decoded manifest.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub version: String,
    pub attributes: Option<Value>,
    pub entries: Vec<Entry>,
}

/// Decodes v1 manifest bytes. Errors here make the whole file unreadable;
/// defects of one object only mark that entry.
pub(crate) fn decode(bytes: &[u8]) -> Result<Manifest, String> {
    if let Some(manifest) = crate::manifest_fast::decode(bytes) {
        return Ok(manifest);
    }
    decode_general(bytes)
}

/// The general decoder: any well-formed CBOR, per-tensor errors.
pub(crate) fn decode_general(bytes: &[u8]) -> Result<Manifest, String> {
    let mut rest = bytes;
    let root: Value = ciborium::de::from_reader(&mut rest)
        .map_err(|e| format!("manifest is not valid CBOR: {e}"))?;
    // The manifest is one CBOR item that fills its region (docs/format.md
    // section 2): bytes left over mean a damaged length or count inside it.
    if !rest.is_empty() {
        return Err(format!(
            "manifest is damaged: {} bytes follow its CBOR item",
            rest.len()
        ));
    }
    let root = as_map(&root).ok_or("manifest is not a CBOR map")?;
    let version = match field(root, "version") {
        Some(Value::Text(v)) => v.clone(),
        Some(_) => return Err("manifest 'version' is not text".into()),
        None => return Err("manifest has no 'version'".into()),
    };
    let attributes = optional_map(root, "attributes").map_err(|e| format!("manifest {e}"))?;
    let objects = match field(root, "objects") {
        Some(Value::Map(m)) => m,
        Some(_) => return Err("manifest 'objects' is not a map".into()),
        None => return Err("manifest has no 'objects'".into()),
    };
    let mut by_name: BTreeMap<String, Result<TensorInfo, String>> = BTreeMap::new();
    for (key, value) in objects {
        let Value::Text(name) = key else {
            return Err("manifest 'objects' has a key that is not text".into());
        };
        // Like the reference, a name listed twice keeps its last entry.
        by_name.insert(name.clone(), decode_object(name, value));
    }
    let entries = by_name
        .into_iter()
        .map(|(name, info)| Entry {
            name,
            info: info.map_err(Into::into),
        })
        .collect();
    Ok(Manifest {
        version,
        attributes,
        entries,
    })
}

fn decode_object(name: &str, value: &Value) -> Result<TensorInfo, String> {
    let map = as_map(value).ok_or("manifest entry is not a map")?;
    let shape = match field(map, "shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| {
                as_u64(d).ok_or_else(|| {
                    format!(
                        "shape {} is not a list of non-negative integers",
                        show(value, "shape")
                    )
                })
            })
            .collect::<Result<Vec<u64>, String>>()?,
        _ => return Err("missing or invalid 'shape'".into()),
    };
    let layout = match field(map, "format") {
        Some(Value::Text(f)) => Layout::parse(f),
        _ => return Err("missing or invalid 'format'".into()),
    };
    let attributes = optional_map(map, "attributes")?;
    let components = match field(map, "components") {
        Some(Value::Map(m)) => m,
        _ => return Err("missing or invalid 'components'".into()),
    };
    let mut parsed = Components::new();
    for (key, value) in components {
        let Value::Text(cname) = key else {
            return Err("a component name is not text".into());
        };
        let c = decode_component(value).map_err(|e| format!("component '{cname}': {e}"))?;
        parsed.insert(cname.clone(), c);
    }
    Ok(TensorInfo {
        name: name.to_string(),
        shape,
        layout,
        components: parsed,
        attributes,
    })
}

fn decode_component(value: &Value) -> Result<Component, String> {
    let map = as_map(value).ok_or("not a map")?;
    let dtype = match field(map, "dtype") {
        Some(Value::Text(d)) => {
            DType::from_manifest_name(d).ok_or_else(|| format!("unknown dtype '{d}'"))?
        }
        _ => return Err("missing or invalid 'dtype'".into()),
    };
    let logical_type = optional_text(map, "type")?;
    let offset = required_u64(map, "offset")?;
    let length = required_u64(map, "length")?;
    let uncompressed_length = match field(map, "uncompressed_length") {
        None | Some(Value::Null) => None,
        Some(v) => Some(as_u64(v).ok_or("'uncompressed_length' is not a non-negative integer")?),
    };
    let encoding = match field(map, "encoding") {
        None => Encoding::Raw,
        Some(Value::Text(e)) if e == "raw" => Encoding::Raw,
        Some(Value::Text(e)) if e == "zstd" => Encoding::Zstd {
            uncompressed_length,
        },
        Some(Value::Text(e)) => return Err(format!("unknown encoding '{e}'")),
        Some(_) => return Err("'encoding' is not text".into()),
    };
    let digest = optional_text(map, "digest")?
        .map(|d| Digest::parse(&d))
        .transpose()?;
    Ok(Component {
        dtype,
        logical_type,
        offset,
        length,
        encoding,
        digest,
    })
}

/// Encodes a manifest exactly as the reference writer does: schema maps in
/// struct-field order, name-keyed maps in byte-wise key order, optional
/// fields omitted, shortest-width integers and floats (ciborium + serde, as
/// the reference; the structs below borrow, so no intermediate tree is built).
pub(crate) fn encode(
    attributes: Option<&Value>,
    objects: &BTreeMap<String, TensorInfo>,
) -> Vec<u8> {
    let root = RootOut {
        version: FORMAT_VERSION,
        attributes: attributes.map(sorted_top_level),
        objects: Sorted(objects, ObjectOut::from),
    };
    let mut out = Vec::new();
    ciborium::ser::into_writer(&root, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Encodes the manifest of an append: `objects` are the tensors written
/// now, `kept` the objects carried over from the file (their CBOR, as it
/// was), and `extra` root keys written after `objects` (docs/format.md
/// section 15). With nothing kept and no extra keys, the bytes are those of
/// [`encode`].
pub(crate) fn encode_appended(
    attributes: Option<&Value>,
    objects: &BTreeMap<String, TensorInfo>,
    kept: &BTreeMap<String, Value>,
    extra: &[(String, Value)],
) -> Vec<u8> {
    let mut all: BTreeMap<&str, ObjectAny<'_>> = kept
        .iter()
        .map(|(name, v)| (name.as_str(), ObjectAny::Kept(v)))
        .collect();
    all.extend(
        objects
            .iter()
            .map(|(name, info)| (name.as_str(), ObjectAny::New(ObjectOut::from(info)))),
    );
    let root = AppendedRoot {
        attributes: attributes.map(sorted_top_level),
        objects: all,
        extra,
    };
    let mut out = Vec::new();
    ciborium::ser::into_writer(&root, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// An entry of `objects`: described by the writer, or carried over.
#[derive(Serialize)]
#[serde(untagged)]
enum ObjectAny<'a> {
    New(ObjectOut<'a>),
    Kept(&'a Value),
}

/// The root map of an append (a hand-written `Serialize`: its extra keys
/// are not fields, and a flattened map would be indefinite-length CBOR).
struct AppendedRoot<'a> {
    attributes: Option<Value>,
    objects: BTreeMap<&'a str, ObjectAny<'a>>,
    extra: &'a [(String, Value)],
}

impl Serialize for AppendedRoot<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let n = 2 + usize::from(self.attributes.is_some()) + self.extra.len();
        let mut map = s.serialize_map(Some(n))?;
        map.serialize_entry("version", FORMAT_VERSION)?;
        if let Some(a) = &self.attributes {
            map.serialize_entry("attributes", a)?;
        }
        map.serialize_entry("objects", &self.objects)?;
        for (key, value) in self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct RootOut<'a> {
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Value>,
    objects: Sorted<'a, BTreeMap<String, TensorInfo>, TensorInfo, ObjectOut<'a>>,
}

/// A name-keyed map serialized straight from a map in name order (the
/// writer's `BTreeMap`, a tensor's `Components`), each value converted as
/// it is written (building another map first showed in profiles of saves
/// of many small tensors). Same bytes as a `BTreeMap`.
struct Sorted<'a, M, V, O>(&'a M, fn(&'a V) -> O);

impl<'a, M, V: 'a, O: Serialize> Serialize for Sorted<'a, M, V, O>
where
    &'a M: IntoIterator<Item = (&'a String, &'a V)>,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.into_iter().map(|(k, v)| (k.as_str(), (self.1)(v))))
    }
}

#[derive(Serialize)]
struct ObjectOut<'a> {
    shape: &'a [u64],
    format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Value>,
    components: Sorted<'a, Components, Component, ComponentOut<'a>>,
}

#[derive(Serialize)]
struct ComponentOut<'a> {
    dtype: &'static str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    logical_type: Option<&'a str>,
    offset: u64,
    length: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    uncompressed_length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

impl<'a> From<&'a TensorInfo> for ObjectOut<'a> {
    fn from(info: &'a TensorInfo) -> Self {
        ObjectOut {
            shape: &info.shape,
            format: info.layout.as_str(),
            attributes: info.attributes.as_ref().map(sorted_top_level),
            components: Sorted(&info.components, ComponentOut::from),
        }
    }
}

impl<'a> From<&'a Component> for ComponentOut<'a> {
    fn from(c: &'a Component) -> Self {
        let (uncompressed_length, encoding) = match &c.encoding {
            Encoding::Raw => (None, None),
            Encoding::Zstd {
                uncompressed_length,
            } => (*uncompressed_length, Some("zstd")),
            Encoding::Transformed(t) => {
                unreachable!("the writer never stores a '{}' component", t.name())
            }
        };
        ComponentOut {
            dtype: c.dtype.manifest_name(),
            logical_type: c.logical_type.as_deref(),
            offset: c.offset,
            length: c.length,
            uncompressed_length,
            encoding,
            digest: c.digest.as_ref().map(ToString::to_string),
        }
    }
}

/// Top-level attribute maps are `BTreeMap<String, _>` in the reference, so
/// their keys come out sorted byte-wise; nested values keep the caller's order.
fn sorted_top_level(value: &Value) -> Value {
    match value {
        Value::Map(entries) => {
            let mut entries = entries.clone();
            entries.sort_by(|(a, _), (b, _)| match (a, b) {
                (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
                _ => std::cmp::Ordering::Equal,
            });
            Value::Map(entries)
        }
        other => other.clone(),
    }
}

pub(crate) fn as_map(v: &Value) -> Option<&[(Value, Value)]> {
    match v {
        Value::Map(m) => Some(m),
        _ => None,
    }
}

pub(crate) fn field<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    // Last one wins, as with serde's derive on duplicate keys.
    map.iter()
        .rev()
        .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
        .map(|(_, v)| v)
}

pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn required_u64(map: &[(Value, Value)], key: &str) -> Result<u64, String> {
    field(map, key)
        .and_then(as_u64)
        .ok_or_else(|| format!("missing or invalid '{key}' (need a non-negative integer)"))
}

fn optional_text(map: &[(Value, Value)], key: &str) -> Result<Option<String>, String> {
    match field(map, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Text(t)) => Ok(Some(t.clone())),
        Some(_) => Err(format!("'{key}' is not text")),
    }
}

fn optional_map(map: &[(Value, Value)], key: &str) -> Result<Option<Value>, String> {
    match field(map, key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Map(m)) => {
            if m.iter().any(|(k, _)| !matches!(k, Value::Text(_))) {
                return Err(format!("'{key}' has a key that is not text"));
            }
            Ok(Some(v.clone()))
        }
        Some(_) => Err(format!("'{key}' is not a map")),
    }
}

fn show(map: &Value, key: &str) -> String {
    as_map(map)
        .and_then(|m| field(m, key))
        .map(|v| format!("{v:?}"))
        .unwrap_or_default()
}
