//! Reader for Hugging Face safetensors files.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON
//! header (tensor name -> dtype, shape, `[begin, end)` offsets into the
//! data section, plus an optional `__metadata__` map of strings) and the
//! data section. The header is read by a fast path of our own ([`header`])
//! or, for anything it does not expect, parsed and validated by the
//! `safetensors` crate, which owns the refusals and their messages; every
//! tensor then becomes a dense, zero-copy component at
//! `8 + header_len + begin` of the file.
//!
//! Dtypes map onto ztensor's storage dtypes one to one ([`DTYPES`]); the
//! fp8 variants are `u8` with their logical type (`F8_E4M3` is
//! `f8_e4m3fn`), and `C64` is `f32` pairs with logical type `complex64`.
//! `F4` becomes `u8` bytes of logical type `f4_e2m1fn_x2`, two values per
//! byte as PyTorch's `float4_e2m1fn_x2` holds them: safetensors counts
//! 4-bit values along the last dimension, ztensor counts bytes, so the last
//! dimension is halved on reading and doubled on writing ([`zt_shape`],
//! [`safetensors_shape`]). The 6-bit `F6_*` dtypes, which NumPy and
//! PyTorch cannot hold as such, make that tensor unreadable, with a
//! message; the rest of the file stays readable.

mod header;

use std::panic::{catch_unwind, AssertUnwindSafe};

use safetensors::tensor::{Dtype, TensorInfo as StInfo};
use safetensors::SafeTensors;
use ztensor::{Catalog, Component, DType, Encoding, Entry, FormatError, TensorInfo, Value};

use crate::ParseContext;

/// The logical type of safetensors' `F4` in ztensor.
pub const F4_LOGICAL: &str = "f4_e2m1fn_x2";

/// Each safetensors dtype ztensor holds, with its storage dtype and logical type.
pub const DTYPES: [(Dtype, DType, Option<&str>); 20] = [
    (Dtype::F64, DType::F64, None),
    (Dtype::F32, DType::F32, None),
    (Dtype::F16, DType::F16, None),
    (Dtype::BF16, DType::BF16, None),
    (Dtype::I64, DType::I64, None),
    (Dtype::I32, DType::I32, None),
    (Dtype::I16, DType::I16, None),
    (Dtype::I8, DType::I8, None),
    (Dtype::U64, DType::U64, None),
    (Dtype::U32, DType::U32, None),
    (Dtype::U16, DType::U16, None),
    (Dtype::U8, DType::U8, None),
    (Dtype::BOOL, DType::Bool, None),
    (Dtype::F8_E4M3, DType::U8, Some("f8_e4m3fn")),
    (Dtype::F8_E5M2, DType::U8, Some("f8_e5m2")),
    (Dtype::F8_E4M3FNUZ, DType::U8, Some("f8_e4m3fnuz")),
    (Dtype::F8_E5M2FNUZ, DType::U8, Some("f8_e5m2fnuz")),
    (Dtype::F8_E8M0, DType::U8, Some("f8_e8m0fnu")),
    (Dtype::F4, DType::U8, Some(F4_LOGICAL)),
    (Dtype::C64, DType::F32, Some("complex64")),
];

/// Maps a safetensors dtype onto a storage dtype and logical type.
pub fn from_safetensors(d: Dtype) -> Option<(DType, Option<&'static str>)> {
    DTYPES
        .iter()
        .find(|(st, _, _)| *st == d)
        .map(|&(_, storage, logical)| (storage, logical))
}

/// The safetensors dtype of a storage dtype and logical type, if it has one.
pub fn to_safetensors(storage: DType, logical: Option<&str>) -> Option<Dtype> {
    DTYPES
        .iter()
        .find(|(_, s, l)| *s == storage && *l == logical)
        .map(|&(st, _, _)| st)
}

/// The ztensor shape of a safetensors tensor: for `F4`, the last dimension
/// counted in bytes (pairs of values) rather than values.
pub fn zt_shape(d: Dtype, shape: &[usize]) -> Result<Vec<u64>, String> {
    let mut out: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
    if d == Dtype::F4 {
        match out.last_mut() {
            Some(last) if *last % 2 == 0 => *last /= 2,
            _ => {
                return Err(format!(
                    "F4 tensor of shape {shape:?}: ztensor keeps two F4 values per byte \
                     (float4_e2m1fn_x2), which needs an even last dimension"
                ))
            }
        }
    }
    Ok(out)
}

/// The safetensors shape of a ztensor tensor stored as `d`: for `F4`, the
/// last dimension counted in values (twice the bytes).
pub fn safetensors_shape(d: Dtype, shape: &[u64]) -> Result<Vec<usize>, String> {
    let size = |n: u64| usize::try_from(n).map_err(|_| format!("dimension {n} is too large"));
    let mut out = shape
        .iter()
        .map(|&n| size(n))
        .collect::<Result<Vec<_>, _>>()?;
    if d == Dtype::F4 {
        let Some(last) = out.last_mut() else {
            return Err(format!(
                "is a 0-d {F4_LOGICAL} tensor; safetensors' F4 needs a dimension to hold its two values"
            ));
        };
        *last = last
            .checked_mul(2)
            .ok_or_else(|| format!("shape {shape:?} overflows as F4 values"))?;
    }
    Ok(out)
}

/// Maps a safetensors dtype onto a storage dtype and logical type, or why not.
fn dtype(d: Dtype) -> Result<(DType, Option<&'static str>), FormatError> {
    from_safetensors(d).ok_or_else(|| {
        FormatError::unsupported(format!(
            "safetensors dtype {d:?} is not supported (NumPy and PyTorch have no such element type)"
        ))
    })
}

/// A header as both paths read it: tensors (in name order from the fast
/// path, any order from the crate) and metadata sorted by key.
struct Header {
    /// Length of the JSON header in bytes.
    len: usize,
    tensors: Vec<(String, StInfo)>,
    metadata: Option<Vec<(String, String)>>,
}

/// Parses a whole file image (no option concerns safetensors).
pub fn parse(bytes: &[u8], _cx: &ParseContext) -> Result<Catalog, FormatError> {
    let header = match header::read(bytes) {
        Some(h) => h,
        None => crate_header(bytes)?,
    };
    catalog(bytes.len(), header)
}

/// [`parse`] through the fast header path only, `None` where it defers
/// (for the differential test).
#[doc(hidden)]
pub fn parse_fast_path(bytes: &[u8]) -> Option<Result<Catalog, FormatError>> {
    header::read(bytes).map(|h| catalog(bytes.len(), h))
}

/// [`parse`] through the `safetensors` crate only (for the differential test).
#[doc(hidden)]
pub fn parse_crate_path(bytes: &[u8]) -> Result<Catalog, FormatError> {
    catalog(bytes.len(), crate_header(bytes)?)
}

/// The catalog of a file of `file_len` bytes with this header.
fn catalog(file_len: usize, header: Header) -> Result<Catalog, FormatError> {
    let file_len = file_len as u64;
    let data_start = (header.len as u64)
        .checked_add(8)
        .filter(|&s| s <= file_len)
        .ok_or_else(|| {
            FormatError::truncated("safetensors header runs past the end of the file")
        })?;
    let mut entries = Vec::with_capacity(header.tensors.len());
    for (name, info) in header.tensors {
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
        let described = dtype(info.dtype).and_then(|(storage, logical)| {
            let shape = zt_shape(info.dtype, &info.shape).map_err(FormatError::unsupported)?;
            Ok((storage, logical, shape))
        });
        let (storage, logical, shape) = match described {
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
        entries.push(Entry::ok(TensorInfo::dense(name, shape, component)));
    }
    let attributes = header.metadata.map(|m| {
        Value::Map(
            m.into_iter()
                .map(|(k, v)| (Value::Text(k), Value::Text(v)))
                .collect(),
        )
    });
    Ok(Catalog {
        attributes,
        ..Catalog::new("safetensors", entries, (data_start, file_len))
    })
}

/// The crate's header parser, with its refusal as the error message.
///
/// It sums the tensors' end offsets with unchecked arithmetic, which a
/// crafted header can overflow (a panic in debug builds); that is caught
/// here and reported as a malformed header. Every offset it returns is
/// checked again by [`catalog`].
fn crate_header(bytes: &[u8]) -> Result<Header, String> {
    let (len, metadata) = match catch_unwind(AssertUnwindSafe(|| SafeTensors::read_metadata(bytes)))
    {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(e)) => return Err(format!("invalid safetensors header: {e}")),
        Err(_) => return Err("invalid safetensors header: its data offsets overflow".into()),
    };
    let tensors = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.clone()))
        .collect();
    let metadata = metadata.metadata().as_ref().map(|m| {
        let mut sorted: Vec<(String, String)> =
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        sorted.sort_unstable();
        sorted
    });
    Ok(Header {
        len,
        tensors,
        metadata,
    })
}
