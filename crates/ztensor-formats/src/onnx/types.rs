//! ONNX element types (`TensorProto.DataType`) and how their values are
//! stored: fixed-width little-endian in `raw_data` / external files, or in
//! one of the typed repeated fields.

use ztensor::DType;

/// Sub-byte packing of an element type in `raw_data` and external files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// One element per `dtype.size()` bytes (times 2 for complex numbers).
    None,
    /// 4-bit or 2-bit elements, first element in the least significant bits;
    /// `signed` elements are two's complement and sign-extended on unpacking.
    Bits { bits: u8, signed: bool },
    /// 6-bit elements: an LSB-first bit stream, 4 elements in 3 bytes.
    Six,
}

/// Which typed repeated field holds the values when there is no `raw_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `float_data` (float, complex64 as pairs).
    Float,
    /// `double_data` (double, complex128 as pairs).
    Double,
    /// `int32_data`: one element each, the bits of 16-bit floats and fp8,
    /// a packed byte of 4-bit / 2-bit elements, a 6-bit code.
    Int32,
    /// `int64_data` (int64).
    Int64,
    /// `uint64_data` (uint32, uint64).
    Uint64,
}

/// How one ONNX element type maps onto the object model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ElemType {
    /// The ONNX name (`"FLOAT16"`), for messages.
    pub name: &'static str,
    /// Storage dtype of one (unpacked) element, or of each half of a complex.
    pub dtype: DType,
    /// Logical type label, as the other front ends name them.
    pub logical: Option<&'static str>,
    /// Storage elements per logical element (2 for complex numbers).
    pub per_item: u64,
    /// Packing in `raw_data`.
    pub packing: Packing,
    /// The typed field that stores it.
    pub field: Field,
}

impl ElemType {
    /// Bytes of the decoded (unpacked) tensor of `numel` elements.
    pub fn decoded_len(&self, numel: u64) -> Option<u64> {
        numel
            .checked_mul(self.per_item)?
            .checked_mul(self.dtype.size() as u64)
    }

    /// Bytes of `numel` elements as `raw_data` stores them (packed).
    pub fn raw_len(&self, numel: u64) -> Option<u64> {
        match self.packing {
            Packing::None => self.decoded_len(numel),
            Packing::Bits { bits, .. } => Some(numel.div_ceil(8 / u64::from(bits))),
            Packing::Six => Some(numel.checked_mul(6)?.div_ceil(8)),
        }
    }

    /// Number of values the typed field holds for `numel` elements.
    pub fn field_count(&self, numel: u64) -> Option<u64> {
        match self.packing {
            Packing::Bits { bits, .. } => Some(numel.div_ceil(8 / u64::from(bits))),
            Packing::None | Packing::Six => numel.checked_mul(self.per_item),
        }
    }
}

/// The element type with this `TensorProto.DataType` code; `Err` says why
/// a tensor of that code cannot be read.
pub(crate) fn elem_type(code: i32) -> Result<ElemType, String> {
    use Field::*;
    let plain = |name, dtype, field| ElemType {
        name,
        dtype,
        logical: None,
        per_item: 1,
        packing: Packing::None,
        field,
    };
    let labelled = |name, dtype, logical, per_item, packing, field| ElemType {
        name,
        dtype,
        logical: Some(logical),
        per_item,
        packing,
        field,
    };
    let bits = |bits, signed| Packing::Bits { bits, signed };
    Ok(match code {
        1 => plain("FLOAT", DType::F32, Float),
        2 => plain("UINT8", DType::U8, Int32),
        3 => plain("INT8", DType::I8, Int32),
        4 => plain("UINT16", DType::U16, Int32),
        5 => plain("INT16", DType::I16, Int32),
        6 => plain("INT32", DType::I32, Int32),
        7 => plain("INT64", DType::I64, Int64),
        8 => return Err("string tensors (data type STRING) are not supported".into()),
        9 => plain("BOOL", DType::Bool, Int32),
        10 => plain("FLOAT16", DType::F16, Int32),
        11 => plain("DOUBLE", DType::F64, Double),
        12 => plain("UINT32", DType::U32, Uint64),
        13 => plain("UINT64", DType::U64, Uint64),
        14 => labelled(
            "COMPLEX64",
            DType::F32,
            "complex64",
            2,
            Packing::None,
            Float,
        ),
        15 => labelled(
            "COMPLEX128",
            DType::F64,
            "complex128",
            2,
            Packing::None,
            Double,
        ),
        16 => plain("BFLOAT16", DType::BF16, Int32),
        17 => labelled(
            "FLOAT8E4M3FN",
            DType::U8,
            "f8_e4m3fn",
            1,
            Packing::None,
            Int32,
        ),
        18 => labelled(
            "FLOAT8E4M3FNUZ",
            DType::U8,
            "f8_e4m3fnuz",
            1,
            Packing::None,
            Int32,
        ),
        19 => labelled("FLOAT8E5M2", DType::U8, "f8_e5m2", 1, Packing::None, Int32),
        20 => labelled(
            "FLOAT8E5M2FNUZ",
            DType::U8,
            "f8_e5m2fnuz",
            1,
            Packing::None,
            Int32,
        ),
        21 => labelled("UINT4", DType::U8, "uint4", 1, bits(4, false), Int32),
        22 => labelled("INT4", DType::I8, "int4", 1, bits(4, true), Int32),
        23 => labelled(
            "FLOAT4E2M1",
            DType::U8,
            "f4_e2m1fn",
            1,
            bits(4, false),
            Int32,
        ),
        24 => labelled(
            "FLOAT8E8M0",
            DType::U8,
            "f8_e8m0fnu",
            1,
            Packing::None,
            Int32,
        ),
        25 => labelled("UINT2", DType::U8, "uint2", 1, bits(2, false), Int32),
        26 => labelled("INT2", DType::I8, "int2", 1, bits(2, true), Int32),
        27 => labelled("FLOAT6E2M3", DType::U8, "f6_e2m3fn", 1, Packing::Six, Int32),
        28 => labelled("FLOAT6E3M2", DType::U8, "f6_e3m2fn", 1, Packing::Six, Int32),
        0 => return Err("the tensor has no data type (UNDEFINED)".into()),
        other => return Err(format!("unknown ONNX data type {other}")),
    })
}

/// Unpacks `packed` (as `raw_data` stores it) into one byte per element.
/// `out.len()` is the element count; `packed` must be exactly long enough.
pub(crate) fn unpack(packing: Packing, packed: &[u8], out: &mut [u8]) -> Result<(), String> {
    let numel = out.len() as u64;
    let need = match packing {
        Packing::None => numel,
        Packing::Bits { bits, .. } => numel.div_ceil(8 / u64::from(bits)),
        Packing::Six => numel.saturating_mul(6).div_ceil(8),
    };
    if packed.len() as u64 != need {
        return Err(format!(
            "packed data holds {} bytes, {numel} elements need {need}",
            packed.len()
        ));
    }
    match packing {
        Packing::None => out.copy_from_slice(packed),
        Packing::Bits { bits, signed } => {
            let per_byte = usize::from(8 / bits);
            let mask = (1u8 << bits) - 1;
            for (i, o) in out.iter_mut().enumerate() {
                let shift = (i % per_byte) as u8 * bits;
                let v = (packed[i / per_byte] >> shift) & mask;
                *o = if signed { sign_extend(v, bits) } else { v };
            }
        }
        Packing::Six => {
            for (i, o) in out.iter_mut().enumerate() {
                let bit = i * 6;
                let lo = u16::from(packed[bit / 8]);
                let hi = packed.get(bit / 8 + 1).map_or(0, |&b| u16::from(b));
                *o = (((hi << 8 | lo) >> (bit % 8)) & 0x3f) as u8;
            }
        }
    }
    Ok(())
}

/// The two's-complement value of the low `bits` bits of `v`, as an i8 byte.
fn sign_extend(v: u8, bits: u8) -> u8 {
    let shift = 8 - bits;
    (((v << shift) as i8) >> shift) as u8
}

/// The little-endian decoded bytes of a typed field's values. `values`
/// holds exactly [`ElemType::field_count`] entries for `numel` elements;
/// the result is [`ElemType::decoded_len`] bytes.
pub(crate) fn decode_int32(et: &ElemType, values: &[i32], numel: u64) -> Vec<u8> {
    match (et.packing, et.dtype) {
        (Packing::Bits { .. }, _) => {
            // Each value holds one packed byte, exactly as raw_data would.
            let packed: Vec<u8> = values.iter().map(|&v| v as u8).collect();
            let mut out = vec![0u8; numel as usize];
            unpack(et.packing, &packed, &mut out).expect("field count was checked");
            out
        }
        (Packing::Six, _) => values.iter().map(|&v| (v & 0x3f) as u8).collect(),
        (_, DType::I32) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        (_, DType::I16 | DType::U16 | DType::F16 | DType::BF16) => values
            .iter()
            .flat_map(|&v| (v as u16).to_le_bytes())
            .collect(),
        (_, DType::Bool) => values.iter().map(|&v| u8::from(v != 0)).collect(),
        // int8, uint8, fp8: the low byte
        _ => values.iter().map(|&v| v as u8).collect(),
    }
}

/// See [`decode_int32`]; `uint64_data` holds uint32 and uint64.
pub(crate) fn decode_uint64(et: &ElemType, values: &[u64]) -> Vec<u8> {
    match et.dtype {
        DType::U32 => values
            .iter()
            .flat_map(|&v| (v as u32).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_or_explains() {
        for code in 0..40 {
            match elem_type(code) {
                Ok(et) => {
                    assert!((1..=28).contains(&code) && code != 8, "{code}");
                    assert_eq!(
                        et.decoded_len(3),
                        Some(3 * et.per_item * et.dtype.size() as u64)
                    );
                }
                Err(m) => assert!(!m.is_empty()),
            }
        }
    }

    #[test]
    fn unpack_nibbles_crumbs_and_sixes() {
        let int4 = elem_type(22).unwrap();
        let mut out = [0u8; 3];
        // -1 and 7 in the first byte (low nibble first), -8 alone in the second
        unpack(int4.packing, &[0x7f, 0x08], &mut out).unwrap();
        assert_eq!(out.map(|b| b as i8), [-1, 7, -8]);
        let uint2 = elem_type(25).unwrap();
        let mut out = [0u8; 5];
        unpack(uint2.packing, &[0b11_10_01_00, 0b10], &mut out).unwrap();
        assert_eq!(out, [0, 1, 2, 3, 2]);
        let int2 = elem_type(26).unwrap();
        let mut out = [0u8; 4];
        unpack(int2.packing, &[0b11_10_01_00], &mut out).unwrap();
        assert_eq!(out.map(|b| b as i8), [0, 1, -2, -1]);
        // 6-bit codes 1, 2, 1 as onnx packs them: 08 84 00
        let f6 = elem_type(27).unwrap();
        let mut out = [0u8; 3];
        unpack(f6.packing, &[0x08, 0x84, 0x00], &mut out).unwrap();
        assert_eq!(out, [8, 16, 8]);
        assert!(unpack(f6.packing, &[0x08, 0x84], &mut out).is_err());
        assert_eq!(f6.raw_len(3), Some(3));
        assert_eq!(f6.raw_len(4), Some(3));
        assert_eq!(int4.raw_len(3), Some(2));
        assert_eq!(uint2.raw_len(5), Some(2));
    }

    #[test]
    fn typed_int32_values_narrow_like_onnx() {
        let f16 = elem_type(10).unwrap();
        assert_eq!(decode_int32(&f16, &[0x3c00], 1), vec![0x00, 0x3c]);
        let b = elem_type(9).unwrap();
        assert_eq!(decode_int32(&b, &[0, 1, 5], 3), vec![0, 1, 1]);
        let i8t = elem_type(3).unwrap();
        assert_eq!(decode_int32(&i8t, &[-1, 127], 2), vec![0xff, 0x7f]);
        let u4 = elem_type(21).unwrap();
        assert_eq!(decode_int32(&u4, &[0x21, 0x01], 3), vec![1, 2, 1]);
        let u32t = elem_type(12).unwrap();
        assert_eq!(decode_uint64(&u32t, &[7]), vec![7, 0, 0, 0]);
    }
}
