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

/// How many storage elements make one logical element of `logical_type`.
///
/// Complex numbers are stored as (real, imaginary) pairs of their float
/// dtype, with the tensor's shape being the logical (complex) shape. Every
/// other logical type (fp8 variants, or any free-form label) is one storage
/// element per logical element.
pub fn storage_elements_per_item(logical_type: Option<&str>) -> u64 {
    match logical_type {
        Some("complex64") | Some("complex128") => 2,
        _ => 1,
    }
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
        assert_eq!(storage_elements_per_item(None), 1);
    }
}
