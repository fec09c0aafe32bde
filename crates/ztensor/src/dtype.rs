//! Storage dtypes (the closed set of 13 in format v1) and logical types.

use std::fmt;

/// How one stored element is laid out in bytes (always little-endian on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary64.
    F64,
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16: the upper half of an IEEE binary32.
    BF16,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 16-bit integer.
    I16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 64-bit integer.
    U64,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 8-bit integer (also the storage of fp8 logical types).
    U8,
    /// One byte per element, 0 or 1.
    Bool,
}

impl DType {
    /// Every storage dtype, in the order of docs/format.md section 4.
    pub const ALL: [DType; 13] = [
        DType::F64,
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U64,
        DType::U32,
        DType::U16,
        DType::U8,
        DType::Bool,
    ];

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The string the manifest stores (`"f32"`, `"bf16"`, ...).
    pub const fn manifest_name(self) -> &'static str {
        match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U64 => "u64",
            DType::U32 => "u32",
            DType::U16 => "u16",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }

    /// The NumPy-style name users see (`"float32"`, `"bfloat16"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U64 => "uint64",
            DType::U32 => "uint32",
            DType::U16 => "uint16",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Parses a manifest dtype string (case-sensitive, as the format requires).
    pub fn from_manifest_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.manifest_name() == s)
    }

    /// Parses a NumPy-style name (`"float32"`); used by the legacy format and the bindings.
    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A logical type the format defines (docs/format.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogicalType {
    /// The manifest's `type` string (`"f8_e4m3fn"`, `"complex64"`, ...).
    pub name: &'static str,
    /// The storage dtype that holds it.
    pub storage: DType,
    /// How many storage elements make one logical element.
    pub storage_elements: u64,
}

const fn logical(name: &'static str, storage: DType, storage_elements: u64) -> LogicalType {
    LogicalType {
        name,
        storage,
        storage_elements,
    }
}

/// Every logical type the format defines. Other `type` strings are free
/// labels, one storage element per logical element.
///
/// `f4_e2m1fn_x2` is one byte holding two FP4 (E2M1) values, the first in
/// the low nibble, as PyTorch's `float4_e2m1fn_x2`: its shape counts bytes.
/// The other sub-byte types (as ONNX and `ml_dtypes` hold them) keep one
/// value per byte, in the low bits; `int4`/`int2` are sign-extended.
pub const LOGICAL_TYPES: [LogicalType; 15] = [
    logical("f8_e4m3fn", DType::U8, 1),
    logical("f8_e5m2", DType::U8, 1),
    logical("f8_e4m3fnuz", DType::U8, 1),
    logical("f8_e5m2fnuz", DType::U8, 1),
    logical("f8_e8m0fnu", DType::U8, 1),
    logical("f4_e2m1fn_x2", DType::U8, 1),
    logical("f6_e2m3fn", DType::U8, 1),
    logical("f6_e3m2fn", DType::U8, 1),
    logical("f4_e2m1fn", DType::U8, 1),
    logical("int4", DType::I8, 1),
    logical("int2", DType::I8, 1),
    logical("uint4", DType::U8, 1),
    logical("uint2", DType::U8, 1),
    logical("complex64", DType::F32, 2),
    logical("complex128", DType::F64, 2),
];

/// The format's definition of a logical type, if it has one.
pub fn logical_type(name: &str) -> Option<&'static LogicalType> {
    LOGICAL_TYPES.iter().find(|t| t.name == name)
}

/// How many storage elements make one logical element of `logical_type`.
///
/// Complex numbers are stored as (real, imaginary) pairs of their float
/// dtype, with the tensor's shape being the logical (complex) shape. Every
/// other logical type (fp8 variants, packed fp4 pairs, or any free-form
/// label) is one storage element per logical element.
pub fn storage_elements_per_item(logical_type: Option<&str>) -> u64 {
    logical_type
        .and_then(self::logical_type)
        .map_or(1, |t| t.storage_elements)
}

/// Rust element types that map one-to-one onto a storage dtype.
///
/// Implemented for the primitive numbers, `bool` and `half`'s `f16`/`bf16`,
/// which is what makes `reader.view::<f32>("w")` and
/// `writer.add("w", &shape, &values)` type-safe.
pub trait Element: Copy + Send + Sync + 'static + private::Sealed {
    /// The storage dtype holding values of this type.
    const DTYPE: DType;
}

mod private {
    pub trait Sealed {}
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl private::Sealed for $t {}
        impl Element for $t { const DTYPE: DType = DType::$d; }
    )*};
}

element!(
    f64 => F64, f32 => F32, half::f16 => F16, half::bf16 => BF16,
    i64 => I64, i32 => I32, i16 => I16, i8 => I8,
    u64 => U64, u32 => U32, u16 => U16, u8 => U8, bool => Bool,
);

/// Views a slice of elements as its bytes (little-endian hosts only).
pub(crate) fn as_bytes<T: Element>(values: &[T]) -> &[u8] {
    // SAFETY: every `Element` is a plain-old-data type without padding
    // (primitive numbers, bool, half's repr(transparent) u16 wrappers), so
    // its memory is fully initialised and may be read as bytes; the length
    // is the exact byte size of the slice.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_manifest_name(d.manifest_name()), Some(d));
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_manifest_name("F32"), None);
    }

    #[test]
    fn complex_counts_two_storage_elements() {
        assert_eq!(storage_elements_per_item(Some("complex64")), 2);
        assert_eq!(storage_elements_per_item(Some("f8_e4m3fn")), 1);
        assert_eq!(storage_elements_per_item(Some("f4_e2m1fn_x2")), 1);
        assert_eq!(storage_elements_per_item(Some("a free label")), 1);
        assert_eq!(storage_elements_per_item(None), 1);
    }

    #[test]
    fn logical_types_are_unique_and_found() {
        for (i, t) in LOGICAL_TYPES.iter().enumerate() {
            assert_eq!(logical_type(t.name), Some(t));
            assert!(LOGICAL_TYPES[..i].iter().all(|u| u.name != t.name));
        }
        assert_eq!(
            logical_type("f8_e8m0fnu").map(|t| t.storage),
            Some(DType::U8)
        );
        assert_eq!(logical_type("F8_E8M0"), None);
    }
}
