//! Helpers shared by the integration tests: hand-built files.
#![allow(dead_code)]

use ciborium::Value;

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

pub fn int(v: u64) -> Value {
    Value::Integer(v.into())
}

pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

/// A component map with the given fields.
pub fn component(dtype: &str, offset: u64, length: u64) -> Vec<(&'static str, Value)> {
    vec![
        ("dtype", text(dtype)),
        ("offset", int(offset)),
        ("length", int(length)),
    ]
}

pub fn object(shape: &[u64], format: &str, components: Vec<(&str, Value)>) -> Value {
    map(vec![
        (
            "shape",
            Value::Array(shape.iter().map(|&d| int(d)).collect()),
        ),
        ("format", text(format)),
        ("components", map(components)),
    ])
}

/// Assembles a v1 file: magic, `data` placed at offset 64, then the manifest.
pub fn v1_file(data: &[u8], objects: Vec<(&str, Value)>) -> Vec<u8> {
    let manifest = map(vec![("version", text("1.2.0")), ("objects", map(objects))]);
    v1_file_with_manifest(data, &manifest)
}

pub fn v1_file_with_manifest(data: &[u8], manifest: &Value) -> Vec<u8> {
    let mut out = b"ZTEN1000".to_vec();
    out.resize(64, 0);
    out.extend_from_slice(data);
    let mut cbor = Vec::new();
    ciborium::ser::into_writer(manifest, &mut cbor).unwrap();
    out.extend_from_slice(&cbor);
    out.extend_from_slice(&(cbor.len() as u64).to_le_bytes());
    out.extend_from_slice(b"ZTEN1000");
    out
}

/// A dense object whose `data` component is `dtype` at `[offset, offset + length)`.
pub fn dense(shape: &[u64], dtype: &str, offset: u64, length: u64) -> Value {
    object(
        shape,
        "dense",
        vec![("data", map(component(dtype, offset, length)))],
    )
}
