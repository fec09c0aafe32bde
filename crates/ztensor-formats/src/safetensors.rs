//! Reader for Hugging Face safetensors files.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON
//! header (tensor name -> dtype, shape, `[begin, end)` offsets into the
//! data section, plus an optional `__metadata__` map of strings) and the
//! data section. The header is parsed and validated by the `safetensors`
//! crate; every tensor then becomes a dense, zero-copy component at
//! `8 + header_len + begin` of the file.
//!
//! Dtypes map onto ztensor's storage dtypes one to one; the fp8 variants
//! are `u8` with their logical type (`F8_E4M3` is `f8_e4m3fn`), and `C64`
//! is `f32` pairs with logical type `complex64`. Dtypes NumPy and PyTorch
//! cannot hold as such (`F4`, `F6_*`, `F8_E8M0`, ...) make that tensor
//! unreadable, with a message; the rest of the file stays readable.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;
use ztensor::{Catalog, Component, DType, Encoding, Entry, TensorInfo, Value};

/// Maps a safetensors dtype onto a storage dtype and logical type.
fn dtype(d: Dtype) -> Result<(DType, Option<&'static str>), String> {
    Ok(match d {
        Dtype::F64 => (DType::F64, None),
        Dtype::F32 => (DType::F32, None),
        Dtype::F16 => (DType::F16, None),
        Dtype::BF16 => (DType::BF16, None),
        Dtype::I64 => (DType::I64, None),
        Dtype::I32 => (DType::I32, None),
        Dtype::I16 => (DType::I16, None),
        Dtype::I8 => (DType::I8, None),
        Dtype::U64 => (DType::U64, None),
        Dtype::U32 => (DType::U32, None),
        Dtype::U16 => (DType::U16, None),
        Dtype::U8 => (DType::U8, None),
        Dtype::BOOL => (DType::Bool, None),
        Dtype::F8_E4M3 => (DType::U8, Some("f8_e4m3fn")),
        Dtype::F8_E5M2 => (DType::U8, Some("f8_e5m2")),
        Dtype::F8_E4M3FNUZ => (DType::U8, Some("f8_e4m3fnuz")),
        Dtype::F8_E5M2FNUZ => (DType::U8, Some("f8_e5m2fnuz")),
        Dtype::C64 => (DType::F32, Some("complex64")),
        other => {
            return Err(format!(
                "safetensors dtype {other:?} is not supported (NumPy and PyTorch have no such element type)"
            ))
        }
    })
}

/// Parses a whole file image.
pub fn parse(bytes: &[u8]) -> Result<Catalog, String> {
    let (header_len, metadata) = read_metadata(bytes)?;
    let file_len = bytes.len() as u64;
    let data_start = (header_len as u64)
        .checked_add(8)
        .filter(|&s| s <= file_len)
        .ok_or("safetensors header runs past the end of the file")?;
    let mut entries = Vec::new();
    for (name, info) in metadata.tensors() {
        let (begin, end) = info.data_offsets;
        let located = (|| {
            let offset = data_start.checked_add(begin as u64)?;
            let length = (end as u64).checked_sub(begin as u64)?;
            offset.checked_add(length).filter(|&e| e <= file_len)?;
            Some((offset, length))
        })();
        let Some((offset, length)) = located else {
            entries.push(Entry::broken(
                name,
                format!("data offsets [{begin}, {end}) lie outside the data section"),
            ));
            continue;
        };
        let (storage, logical) = match dtype(info.dtype) {
            Ok(d) => d,
            Err(e) => {
                entries.push(Entry::broken(name, e));
                continue;
            }
        };
        let component = Component {
            dtype: storage,
            logical_type: logical.map(str::to_string),
            offset,
            length,
            encoding: Encoding::Raw,
            digest: None,
        };
        entries.push(Entry::ok(TensorInfo::dense(
            name,
            info.shape.iter().map(|&d| d as u64).collect(),
            component,
        )));
    }
    let attributes = metadata.metadata().as_ref().map(|m| {
        let sorted: BTreeMap<&String, &String> = m.iter().collect();
        Value::Map(
            sorted
                .into_iter()
                .map(|(k, v)| (Value::Text(k.clone()), Value::Text(v.clone())))
                .collect(),
        )
    });
    Ok(Catalog {
        format: "safetensors",
        version: String::new(),
        attributes,
        entries,
        data_region: (data_start, file_len),
        overlaps_allowed: false,
        skipped_globals: Vec::new(),
    })
}

/// The crate's header parser, with its refusal as the error message.
///
/// It sums the tensors' end offsets with unchecked arithmetic, which a
/// crafted header can overflow (a panic in debug builds); that is caught
/// here and reported as a malformed header. Every offset it returns is
/// checked again by [`parse`].
fn read_metadata(bytes: &[u8]) -> Result<(usize, Metadata), String> {
    match catch_unwind(AssertUnwindSafe(|| SafeTensors::read_metadata(bytes))) {
        Ok(Ok(parsed)) => Ok(parsed),
        Ok(Err(e)) => Err(format!("invalid safetensors header: {e}")),
        Err(_) => Err("invalid safetensors header: its data offsets overflow".into()),
    }
}
