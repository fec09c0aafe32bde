//! One `TensorProto` (or `SparseTensorProto`) projected onto the object
//! model: where its bytes are (a range of the file for `raw_data`, decoded
//! values for typed fields, another file for external data) and how to
//! decode them.

use std::sync::Arc;

use prost::bytes::Bytes;
use ztensor::{Component, DType, Encoding, Layout, TensorInfo, Value};

use super::external::ExternalFiles;
use super::proto::{SparseTensorProto, StringStringEntryProto, TensorProto};
use super::transforms::{Decoded, SparseCoords, Unpack};
use super::types::{decode_int32, decode_uint64, elem_type, ElemType, Field, Packing};

/// Most dimensions a sparse tensor may have: its coordinates take
/// rank x 8 bytes per value, so the rank bounds their memory.
const MAX_SPARSE_RANK: usize = 32;

/// What every tensor of one file shares: the file image and its external files.
pub(crate) struct Context<'a, 'p> {
    /// The whole file image that was decoded.
    pub image: &'a [u8],
    /// External data files next to the model.
    pub external: ExternalFiles<'p>,
}

/// The stored data of one tensor: a component and its element count.
struct Data {
    component: Component,
    numel: u64,
}

/// A dense tensor named `name`.
pub(crate) fn dense(
    ctx: &mut Context<'_, '_>,
    name: &str,
    t: TensorProto,
) -> Result<TensorInfo, String> {
    let shape = dims(&t.dims)?;
    let attributes = tensor_attributes(&t);
    let data = data(ctx, t, &shape)?;
    Ok(TensorInfo {
        attributes,
        ..TensorInfo::dense(name.to_string(), shape, data.component)
    })
}

/// A sparse tensor named `name`, as a `sparse_coo` object: `values` as
/// stored, `coords` the indices turned dimension-major u64.
pub(crate) fn sparse(
    ctx: &mut Context<'_, '_>,
    name: &str,
    s: SparseTensorProto,
) -> Result<TensorInfo, String> {
    let shape = dims(&s.dims)?;
    if shape.len() > MAX_SPARSE_RANK {
        return Err(format!(
            "sparse tensor has {} dimensions (at most {MAX_SPARSE_RANK} are supported)",
            shape.len()
        ));
    }
    let numel = product(&shape)?;
    let values = s.values.ok_or("sparse tensor has no values")?;
    let indices = s.indices.ok_or("sparse tensor has no indices")?;
    let attributes = tensor_attributes(&values);
    let values = {
        let vshape = dims(&values.dims)?;
        if vshape.len() != 1 {
            return Err(format!("sparse values have shape {vshape:?}, not [nnz]"));
        }
        data(ctx, values, &vshape).map_err(|e| format!("sparse values: {e}"))?
    };
    let nnz = values.numel;
    if nnz > numel {
        return Err(format!("{nnz} sparse values for {numel} elements"));
    }
    let ishape = dims(&indices.dims)?;
    let linear = match ishape.as_slice() {
        [n] if *n == nnz => true,
        [n, r] if *n == nnz && *r == shape.len() as u64 => false,
        _ => {
            return Err(format!(
                "sparse indices have shape {ishape:?}, expected [{nnz}] or [{nnz}, {}]",
                shape.len()
            ))
        }
    };
    if indices.data_type != Some(7) {
        return Err("sparse indices must be INT64".into());
    }
    let indices = data(ctx, indices, &ishape).map_err(|e| format!("sparse indices: {e}"))?;
    // What SparseCoords::decoded_len computes, checked once here.
    nnz.checked_mul(shape.len() as u64 * 8)
        .ok_or("sparse coordinates are too large to address")?;
    let coords = SparseCoords {
        dims: shape.clone(),
        nnz,
        linear,
    };
    let mut component = indices.component;
    component.dtype = DType::U64;
    component.encoding = match component.encoding {
        Encoding::Raw => Encoding::Transformed(Arc::new(coords)),
        Encoding::Transformed(first) => {
            Encoding::Transformed(Arc::new(crate::transforms::Chain(vec![
                first,
                Arc::new(coords),
            ])))
        }
        Encoding::Zstd { .. } => unreachable!("ONNX data is never zstd"),
    };
    Ok(TensorInfo {
        name: name.to_string(),
        shape,
        layout: Layout::SparseCoo,
        components: ztensor::Components::from([
            ("values".to_string(), values.component),
            ("coords".to_string(), component),
        ]),
        attributes,
    })
}

/// The shape, refusing negative dimensions.
fn dims(dims: &[i64]) -> Result<Vec<u64>, String> {
    dims.iter()
        .map(|&d| u64::try_from(d).map_err(|_| format!("dimension {d} in {dims:?} is negative")))
        .collect()
}

fn product(shape: &[u64]) -> Result<u64, String> {
    ztensor::checked_numel(shape)
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in 64 bits"))
}

/// Where a tensor's values are and how to decode them.
fn data(ctx: &mut Context<'_, '_>, mut t: TensorProto, shape: &[u64]) -> Result<Data, String> {
    let et = elem_type(t.data_type.unwrap_or(0))?;
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let numel = product(shape)?;
    let too_large = || format!("shape {shape:?} of {} is too large to address", et.name);
    let decoded_len = et.decoded_len(numel).ok_or_else(too_large)?;
    let raw_len = et.raw_len(numel).ok_or_else(too_large)?;
    let component = |offset, length, encoding| Component {
        dtype: et.dtype,
        logical_type: et.logical.map(str::to_string),
        offset,
        length,
        encoding,
        digest: None,
    };
    let unpack = || {
        Encoding::Transformed(Arc::new(Unpack {
            packing: et.packing,
            numel,
        }))
    };

    if let Some(l @ 2..) | Some(l @ ..0) = t.data_location {
        return Err(format!("unknown data_location {l}"));
    }
    let component = if t.data_location == Some(1) {
        let ext = ctx
            .external
            .resolve(&t.external_data, raw_len, et.packing, decoded_len)?;
        component(0, 0, Encoding::Transformed(Arc::new(ext)))
    } else if let Some(raw) = &t.raw_data {
        if raw.len() as u64 != raw_len {
            return Err(format!(
                "raw_data holds {} bytes but shape {shape:?} of {} needs {raw_len}",
                raw.len(),
                et.name
            ));
        }
        let (offset, length) = range_in(ctx.image, raw)
            .ok_or("raw_data does not lie in the file image (internal error)")?;
        let encoding = match et.packing {
            Packing::None => Encoding::Raw,
            _ => unpack(),
        };
        component(offset, length, encoding)
    } else {
        let bytes =
            typed(&et, &mut t, numel).map_err(|m| format!("{}: {m}", field_name(et.field)))?;
        debug_assert_eq!(bytes.len() as u64, decoded_len);
        component(0, 0, Encoding::Transformed(Arc::new(Decoded(bytes))))
    };
    Ok(Data { component, numel })
}

fn field_name(f: Field) -> &'static str {
    match f {
        Field::Float => "float_data",
        Field::Double => "double_data",
        Field::Int32 => "int32_data",
        Field::Int64 => "int64_data",
        Field::Uint64 => "uint64_data",
    }
}

/// Decodes the values of the typed field `et` uses (prost has already
/// parsed the varints), after checking their count against the shape, so
/// the result is never larger than a small multiple of the field's bytes.
fn typed(et: &ElemType, t: &mut TensorProto, numel: u64) -> Result<Vec<u8>, String> {
    let want = et.field_count(numel).ok_or("element count overflows")?;
    let check = |have: usize| {
        if have as u64 != want {
            Err(format!(
                "holds {have} values but {numel} elements of {} need {want}",
                et.name
            ))
        } else {
            Ok(())
        }
    };
    Ok(match et.field {
        Field::Float => {
            check(t.float_data.len())?;
            std::mem::take(&mut t.float_data)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        Field::Double => {
            check(t.double_data.len())?;
            std::mem::take(&mut t.double_data)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        Field::Int64 => {
            check(t.int64_data.len())?;
            std::mem::take(&mut t.int64_data)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        Field::Int32 => {
            check(t.int32_data.len())?;
            decode_int32(et, &std::mem::take(&mut t.int32_data), numel)
        }
        Field::Uint64 => {
            check(t.uint64_data.len())?;
            decode_uint64(et, &std::mem::take(&mut t.uint64_data))
        }
    })
}

/// The file offset and length of `part`, a slice of `image` made by
/// decoding `image` with prost: found by address, since prost hands out
/// `Bytes` that point into the buffer it decodes. `None` if it does not.
fn range_in(image: &[u8], part: &Bytes) -> Option<(u64, u64)> {
    if part.is_empty() {
        return Some((0, 0));
    }
    let start = (part.as_ptr() as usize).checked_sub(image.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= image.len()).then_some((start as u64, part.len() as u64))
}

/// `doc_string` and `metadata_props` of a tensor, when it has them.
fn tensor_attributes(t: &TensorProto) -> Option<Value> {
    let mut map = Vec::new();
    if let Some(doc) = t.doc_string.as_deref().filter(|d| !d.is_empty()) {
        map.push((Value::Text("doc_string".into()), Value::Text(doc.into())));
    }
    if !t.metadata_props.is_empty() {
        map.push((
            Value::Text("metadata_props".into()),
            string_map(&t.metadata_props),
        ));
    }
    (!map.is_empty()).then_some(Value::Map(map))
}

/// `StringStringEntryProto`s as a CBOR map (text keys, text values).
pub(crate) fn string_map(entries: &[StringStringEntryProto]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|e| {
                (
                    Value::Text(e.key.clone().unwrap_or_default()),
                    Value::Text(e.value.clone().unwrap_or_default()),
                )
            })
            .collect(),
    )
}
