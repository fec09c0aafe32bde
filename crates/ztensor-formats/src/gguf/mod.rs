//! Reader for GGUF files (llama.cpp), versions 2 and 3, little-endian.
//!
//! A GGUF file is a header (`"GGUF"`, version, tensor count, key/value
//! count), the key/value metadata, one info record per tensor (name,
//! dimensions innermost first, ggml type, offset into the data section) and
//! the data section, which starts at the next multiple of
//! `general.alignment` (32 by default) after the infos.
//!
//! The metadata becomes the file attributes (a map with text keys; strings
//! as text, arrays as arrays). Plain ggml types (F64/F32/F16/BF16, I8..I64)
//! are typed dense zero-copy tensors with the dimensions reversed to
//! row-major order. Quantized ggml types are exposed as their raw bytes:
//! a `u8` tensor of shape `[nbytes]` whose logical type is the ggml type
//! name (`"q4_k"`), with `{"ggml_type", "original_shape"}` in the tensor's
//! attributes. A tensor with an unknown type id, a size that is not a whole
//! number of blocks, or bytes outside the file is unreadable on its own; the
//! rest of the file stays readable. (gguf-py and llama.cpp refuse the whole
//! file then; so do we when the table looks misread: a type id past any ggml
//! type, or padding before the data section that is not zero.)
//!
//! Opt-in ([`parse`] with `OpenOptions::dequantize`): each quantized
//! tensor whose type has a kernel in [`dequant`] becomes instead a dense
//! F32 (or F16) tensor of its row-major shape, decoded from the same bytes
//! when it is read (so never zero-copy), with attributes `{"ggml_type",
//! "dequantized": true}`. Types without a kernel stay raw bytes.
//!
//! Every count and length is checked against the bytes that remain before
//! anything is allocated, so hostile headers fail cleanly.

use std::collections::HashSet;

use std::sync::Arc;

use ztensor::{Catalog, Component, DType, Encoding, Entry, FormatError, TensorInfo, Value};

use crate::ParseContext;

pub mod dequant;

/// Most dimensions a GGUF tensor may have (`GGML_MAX_DIMS` is 4; some
/// writers allow more, so a little slack).
const MAX_DIMS: u32 = 8;
/// Deepest nesting of metadata arrays accepted.
const MAX_DEPTH: usize = 16;
/// Largest ggml type id taken for a possible (newer) type; ggml has about
/// 40, so a larger one is a misread table (both llama.cpp and gguf-py refuse
/// every unknown type).
const MAX_TYPE_ID: u32 = 1023;

/// Default data-section alignment.
const DEFAULT_ALIGNMENT: u64 = 32;

/// How the elements of a ggml type are stored.
#[derive(Debug, Clone, Copy)]
enum GgmlKind {
    /// One element per storage item of this dtype.
    Plain(DType),
    /// `block_size` elements packed into `type_size` bytes.
    Quantized { block_size: u64, type_size: u64 },
}

/// The ggml type with this id: its lower-case name and storage.
fn ggml_type(id: u32) -> Option<(&'static str, GgmlKind)> {
    use GgmlKind::*;
    let q = |block_size, type_size| Quantized {
        block_size,
        type_size,
    };
    Some(match id {
        0 => ("f32", Plain(DType::F32)),
        1 => ("f16", Plain(DType::F16)),
        2 => ("q4_0", q(32, 18)),
        3 => ("q4_1", q(32, 20)),
        6 => ("q5_0", q(32, 22)),
        7 => ("q5_1", q(32, 24)),
        8 => ("q8_0", q(32, 34)),
        9 => ("q8_1", q(32, 40)),
        10 => ("q2_k", q(256, 84)),
        11 => ("q3_k", q(256, 110)),
        12 => ("q4_k", q(256, 144)),
        13 => ("q5_k", q(256, 176)),
        14 => ("q6_k", q(256, 210)),
        15 => ("q8_k", q(256, 292)),
        16 => ("iq2_xxs", q(256, 66)),
        17 => ("iq2_xs", q(256, 74)),
        18 => ("iq3_xxs", q(256, 98)),
        19 => ("iq1_s", q(256, 50)),
        20 => ("iq4_nl", q(32, 18)),
        21 => ("iq3_s", q(256, 110)),
        22 => ("iq2_s", q(256, 82)),
        23 => ("iq4_xs", q(256, 136)),
        24 => ("i8", Plain(DType::I8)),
        25 => ("i16", Plain(DType::I16)),
        26 => ("i32", Plain(DType::I32)),
        27 => ("i64", Plain(DType::I64)),
        28 => ("f64", Plain(DType::F64)),
        29 => ("iq1_m", q(256, 56)),
        30 => ("bf16", Plain(DType::BF16)),
        34 => ("tq1_0", q(256, 54)),
        35 => ("tq2_0", q(256, 66)),
        39 => ("mxfp4", q(32, 17)),
        40 => ("nvfp4", q(64, 36)),
        41 => ("q1_0", q(128, 18)),
        _ => return None,
    })
}

/// A bounds-checked little-endian reader over the file image.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(FormatError::truncated(format!(
                "truncated GGUF file: {what} needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed byte string.
    fn raw_string(&mut self, what: &str) -> Result<&'a [u8], FormatError> {
        let len = self.u64(what)?;
        self.take(len, what)
    }

    /// A length-prefixed UTF-8 string.
    fn string(&mut self, what: &str) -> Result<String, FormatError> {
        let raw = self.raw_string(what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} is not valid UTF-8").into())
    }

    /// Checks that `count` items of at least `min_size` bytes each can still
    /// fit, before anything is allocated for them.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<(), FormatError> {
        match count.checked_mul(min_size) {
            Some(n) if n <= self.remaining() => Ok(()),
            _ => Err(FormatError::limit(format!(
                "{what} count {count} is larger than the {} bytes left in the file allow",
                self.remaining()
            ))),
        }
    }
}

// GGUF metadata value types.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// The fewest bytes a value of this type takes (`None`: unknown type).
fn min_value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 | T_STRING => 8,
        T_ARRAY => 12,
        _ => return None,
    })
}

/// Reads one metadata value of type `ty`.
fn read_value(
    cur: &mut Cursor<'_>,
    ty: u32,
    depth: usize,
    key: &str,
) -> Result<Value, FormatError> {
    let what = format!("metadata value '{key}'");
    Ok(match ty {
        T_U8 => Value::from(cur.array::<1>(&what)?[0]),
        T_I8 => Value::from(i8::from_le_bytes(cur.array(&what)?)),
        T_U16 => Value::from(u16::from_le_bytes(cur.array(&what)?)),
        T_I16 => Value::from(i16::from_le_bytes(cur.array(&what)?)),
        T_U32 => Value::from(u32::from_le_bytes(cur.array(&what)?)),
        T_I32 => Value::from(i32::from_le_bytes(cur.array(&what)?)),
        T_U64 => Value::from(u64::from_le_bytes(cur.array(&what)?)),
        T_I64 => Value::from(i64::from_le_bytes(cur.array(&what)?)),
        T_F32 => Value::Float(f32::from_le_bytes(cur.array(&what)?) as f64),
        T_F64 => Value::Float(f64::from_le_bytes(cur.array(&what)?)),
        T_BOOL => Value::Bool(cur.array::<1>(&what)?[0] != 0),
        T_STRING => {
            let raw = cur.raw_string(&what)?;
            match std::str::from_utf8(raw) {
                Ok(s) => Value::Text(s.to_string()),
                // Not UTF-8: keep the bytes rather than lose them.
                Err(_) => Value::Bytes(raw.to_vec()),
            }
        }
        T_ARRAY => {
            if depth >= MAX_DEPTH {
                return Err(FormatError::limit(format!(
                    "metadata value '{key}' nests arrays deeper than {MAX_DEPTH} levels"
                )));
            }
            let elem = cur.u32(&what)?;
            let min = min_value_size(elem).ok_or_else(|| {
                format!("metadata value '{key}': unknown array element type {elem}")
            })?;
            let count = cur.u64(&what)?;
            cur.check_count(count, min, &format!("metadata array '{key}' element"))?;
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(read_value(cur, elem, depth + 1, key)?);
            }
            Value::Array(items)
        }
        other => {
            return Err(FormatError::unsupported(format!(
                "metadata value '{key}' has unknown type {other}"
            )))
        }
    })
}

/// The data-section alignment a `general.alignment` value states.
fn alignment(value: &Value) -> Result<u64, FormatError> {
    let n = match value {
        Value::Integer(i) => u64::try_from(i128::from(*i)).ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_power_of_two() => Ok(n),
        _ => Err(format!(
            "general.alignment must be a nonzero power of two integer, got {value:?}"
        )
        .into()),
    }
}

/// One tensor info record, as stored.
struct RawTensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    offset: u64,
}

/// Parses a whole file image; quantized tensors are raw bytes unless
/// `cx.options.dequantize` (F32 or F16) asks for dense arrays of that dtype
/// (for those that have a kernel).
pub fn parse(bytes: &[u8], cx: &ParseContext) -> Result<Catalog, FormatError> {
    let dequantize = cx.options.dequantize;
    if let Some(d) = dequantize.filter(|d| !matches!(d, DType::F32 | DType::F16)) {
        return Err(FormatError::new(
            ztensor::ErrorKind::InvalidArgument,
            format!("GGUF tensors can be dequantized to float32 or float16, not {d}"),
        ));
    }
    let mut cur = Cursor { bytes, pos: 0 };
    if cur.take(4, "magic")? != b"GGUF" {
        return Err("not a GGUF file (bad magic)".into());
    }
    let version = cur.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(FormatError::unsupported(
                "GGUF version 1 is not supported (only versions 2 and 3)",
            ))
        }
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(FormatError::unsupported(
                "big-endian GGUF files are not supported",
            ))
        }
        v => {
            return Err(FormatError::unsupported(format!(
                "unsupported GGUF version {v}"
            )))
        }
    }
    let n_tensors = cur.u64("tensor count")?;
    let n_kv = cur.u64("metadata count")?;

    // Key/value metadata: key (8-byte length + bytes), type u32, value >= 1 byte.
    cur.check_count(n_kv, 13, "metadata key/value")?;
    let mut kv: Vec<(Value, Value)> = Vec::with_capacity(n_kv as usize);
    let mut keys = HashSet::new();
    let mut align = DEFAULT_ALIGNMENT;
    for _ in 0..n_kv {
        let key = cur.string("metadata key")?;
        let ty = cur.u32("metadata value type")?;
        let value = read_value(&mut cur, ty, 0, &key)?;
        if !keys.insert(key.clone()) {
            return Err(format!("duplicate metadata key '{key}'").into());
        }
        if key == "general.alignment" {
            align = alignment(&value)?;
        }
        kv.push((Value::Text(key), value));
    }

    // Tensor infos: name (>= 8), n_dims u32, type u32, offset u64.
    cur.check_count(n_tensors, 24, "tensor info")?;
    let mut raw = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::new();
    for _ in 0..n_tensors {
        let name = cur.string("tensor name")?;
        let n_dims = cur.u32("tensor dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(FormatError::limit(format!(
                "tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS} are allowed)"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(cur.u64("tensor dimension")?);
        }
        let type_id = cur.u32("tensor type")?;
        // An unknown type makes only its tensor unreadable (a newer quant),
        // but a value no ggml type list will reach means the table is
        // misread (a damaged name length or dimension count): every later
        // field and the data section's start would be read from elsewhere.
        if type_id > MAX_TYPE_ID {
            return Err(FormatError::corrupt(format!(
                "tensor '{name}' has ggml type {type_id}: the tensor table is damaged"
            )));
        }
        let offset = cur.u64("tensor offset")?;
        if !names.insert(name.clone()) {
            return Err(format!("duplicate tensor name '{name}'").into());
        }
        raw.push(RawTensor {
            name,
            dims,
            type_id,
            offset,
        });
    }

    let file_len = bytes.len() as u64;
    let header_end = cur.pos as u64;
    // A power of two: rounding up cannot overflow for any real file size.
    let data_start = header_end
        .checked_add(align - 1)
        .ok_or("data section start overflows")?
        & !(align - 1);
    let entries = raw
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            tensor(t, data_start, file_len, dequantize).unwrap_or_else(|e| Entry::broken(name, e))
        })
        .collect::<Vec<_>>();
    // A tensor that fails on its own (an unknown type, data past the end)
    // leaves the others readable, which is safe only if the table was read
    // right: every writer pads the infos with zero bytes, and a table misread
    // by a damaged length or count puts the data section's start elsewhere,
    // its "padding" in the middle of tensor data.
    if entries.iter().any(|e| e.info.is_err()) {
        let padding = usize::try_from(data_start.min(file_len))
            .ok()
            .and_then(|end| bytes.get(cur.pos..end))
            .unwrap_or_default();
        if padding.iter().any(|&b| b != 0) {
            return Err(FormatError::corrupt(
                "a tensor is unreadable and the padding before the data section is not zero: \
                 the tensor table is damaged",
            ));
        }
    }

    Ok(Catalog {
        version: version.to_string(),
        attributes: (!kv.is_empty()).then_some(Value::Map(kv)),
        ..Catalog::new("gguf", entries, (data_start.min(file_len), file_len))
    })
}

/// The attributes and encoding of a quantized tensor read as `out` floats.
fn dequantized(
    kernel: dequant::Kernel,
    n_blocks: u64,
    out: DType,
) -> Result<(Value, Encoding), FormatError> {
    let transform = dequant::Dequantize::new(kernel, n_blocks, out)
        .ok_or_else(|| format!("cannot dequantize to {out}"))?;
    let attributes = Value::Map(vec![
        (
            Value::Text("ggml_type".into()),
            Value::Text(kernel.name.into()),
        ),
        (Value::Text("dequantized".into()), Value::Bool(true)),
    ]);
    Ok((attributes, Encoding::Transformed(Arc::new(transform))))
}

/// Projects one tensor info record onto the object model.
fn tensor(
    t: RawTensor,
    data_start: u64,
    file_len: u64,
    dequantize: Option<DType>,
) -> Result<Entry, FormatError> {
    let (type_name, kind) = ggml_type(t.type_id)
        .ok_or_else(|| FormatError::unsupported(format!("unknown ggml type id {}", t.type_id)))?;
    // GGUF stores the innermost dimension first.
    let shape: Vec<u64> = t.dims.iter().rev().copied().collect();
    let numel = ztensor::checked_numel(&t.dims)
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in 64 bits"))?;
    let offset = data_start
        .checked_add(t.offset)
        .ok_or_else(|| format!("data offset {} overflows", t.offset))?;
    let too_large = || format!("shape {shape:?} of {type_name} is too large to address");
    let text = |s: &str| Value::Text(s.into());
    let (dtype, logical, length, shape, attributes, encoding) = match kind {
        GgmlKind::Plain(dtype) => {
            let length = numel
                .checked_mul(dtype.size() as u64)
                .ok_or_else(too_large)?;
            (dtype, None, length, shape, None, Encoding::Raw)
        }
        GgmlKind::Quantized {
            block_size,
            type_size,
        } => {
            // ggml quantizes rows: the innermost dimension is whole blocks.
            let row = t.dims.first().copied().unwrap_or(1);
            if !numel.is_multiple_of(block_size) || !row.is_multiple_of(block_size) {
                return Err(format!(
                    "shape {shape:?} of {type_name} is not a whole number of {block_size}-element blocks per row"
                )
                .into());
            }
            let n_blocks = numel / block_size;
            let length = n_blocks.checked_mul(type_size).ok_or_else(too_large)?;
            match dequantize.zip(dequant::kernel(type_name)) {
                Some((out, kernel)) => {
                    numel.checked_mul(out.size() as u64).ok_or_else(too_large)?;
                    let (attributes, encoding) = dequantized(kernel, n_blocks, out)?;
                    (out, None, length, shape, Some(attributes), encoding)
                }
                None => {
                    let attributes = Value::Map(vec![
                        (text("ggml_type"), text(type_name)),
                        (
                            text("original_shape"),
                            Value::Array(shape.iter().map(|&d| Value::from(d)).collect()),
                        ),
                    ]);
                    let logical = Some(type_name.to_string());
                    (
                        DType::U8,
                        logical,
                        length,
                        vec![length],
                        Some(attributes),
                        Encoding::Raw,
                    )
                }
            }
        }
    };
    match offset.checked_add(length) {
        Some(end) if end <= file_len && (length == 0 || offset >= data_start) => {}
        _ => {
            return Err(FormatError::truncated(format!(
                "data at offset {} ({length} bytes) lies outside the file's data section",
                t.offset
            )))
        }
    }
    let component = Component {
        dtype,
        logical_type: logical,
        offset,
        length,
        encoding,
        digest: None,
    };
    Ok(Entry::ok(TensorInfo {
        attributes,
        ..TensorInfo::dense(t.name, shape, component)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_the_type_table() {
        let mut with_kernel = 0;
        for id in 0..64 {
            let Some((name, kind)) = ggml_type(id) else {
                continue;
            };
            match (kind, dequant::kernel(name)) {
                (
                    GgmlKind::Quantized {
                        block_size,
                        type_size,
                    },
                    Some(k),
                ) => {
                    assert_eq!(
                        (k.block_size as u64, k.type_size as u64),
                        (block_size, type_size)
                    );
                    assert_eq!(k.name, name);
                    with_kernel += 1;
                }
                (GgmlKind::Plain(_), Some(_)) => panic!("{name} is plain"),
                _ => {}
            }
        }
        assert_eq!(with_kernel, 17);
    }
}
