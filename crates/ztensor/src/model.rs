//! The in-memory object model every tensor file is projected into.
//!
//! A tensor is a name, a logical shape, a layout and a set of named
//! components; each component is a byte range of the source plus how those
//! bytes are encoded and checked. `.zt` files map onto it one to one, and
//! the readers of foreign formats produce the same structures, so there is
//! a single read path.

use std::fmt;
use std::sync::Arc;

pub use ciborium::Value;

pub use crate::components::Components;
use crate::digest::Digest;
use crate::dtype::{storage_elements_per_item, DType};
use crate::error::FormatError;

/// How the components of a tensor make up its values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Row-major array in the `data` component.
    Dense,
    /// Compressed sparse rows: `values`, `indices`, `indptr`.
    SparseCsr,
    /// Coordinate list: `values` and dimension-major `coords`.
    SparseCoo,
    /// Group-quantized weights (`packed_weight`, `scales`, `zeros` by convention).
    QuantizedGroup,
    /// Any other layout name; kept as it is.
    Other(String),
}

impl Layout {
    /// The manifest string of this layout.
    pub fn as_str(&self) -> &str {
        match self {
            Layout::Dense => "dense",
            Layout::SparseCsr => "sparse_csr",
            Layout::SparseCoo => "sparse_coo",
            Layout::QuantizedGroup => "quantized_group",
            Layout::Other(s) => s,
        }
    }

    /// Parses a manifest layout string; unknown names become [`Layout::Other`].
    pub fn parse(s: &str) -> Layout {
        match s {
            "dense" => Layout::Dense,
            "sparse_csr" => Layout::SparseCsr,
            "sparse_coo" => Layout::SparseCoo,
            "quantized_group" => Layout::QuantizedGroup,
            other => Layout::Other(other.to_string()),
        }
    }

    /// The component that carries the tensor's element type.
    pub(crate) fn primary_component(&self) -> Option<&'static str> {
        match self {
            Layout::Dense => Some("data"),
            Layout::SparseCsr | Layout::SparseCoo => Some("values"),
            _ => None,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoding step supplied by a foreign-format reader: inflating a zip
/// member, byte-swapping a big-endian array, gathering a strided view...
/// The reader that creates it has validated `decoded_len`.
pub trait Transform: Send + Sync + fmt::Debug {
    /// Short name reported as the component's encoding (e.g. `"deflate"`).
    fn name(&self) -> &str;
    /// Exact size of the decoded bytes.
    fn decoded_len(&self) -> u64;
    /// Decodes the stored bytes into `out`, which is `decoded_len` bytes long.
    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError>;
}

/// How a component's stored bytes turn into its element bytes.
#[derive(Debug, Clone)]
pub enum Encoding {
    /// The stored bytes are the elements.
    Raw,
    /// One or more concatenated zstd frames.
    Zstd {
        /// Declared decoded size, when the file states it.
        uncompressed_length: Option<u64>,
    },
    /// A format-specific decoding step (foreign formats only; never written).
    Transformed(Arc<dyn Transform>),
}

impl PartialEq for Encoding {
    fn eq(&self, other: &Encoding) -> bool {
        match (self, other) {
            (Encoding::Raw, Encoding::Raw) => true,
            (
                Encoding::Zstd {
                    uncompressed_length: a,
                },
                Encoding::Zstd {
                    uncompressed_length: b,
                },
            ) => a == b,
            (Encoding::Transformed(a), Encoding::Transformed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Encoding {
    /// The encoding's name (`"raw"`, `"zstd"`, or the transform's name).
    pub fn as_str(&self) -> &str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Zstd { .. } => "zstd",
            Encoding::Transformed(t) => t.name(),
        }
    }
}

/// One stored array of a tensor: a byte range of the source and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Element type of the stored (decoded) bytes.
    pub dtype: DType,
    /// Logical type label, e.g. `"f8_e4m3fn"` or `"complex64"`.
    pub logical_type: Option<String>,
    /// Absolute offset of the stored bytes in the source.
    pub offset: u64,
    /// Number of stored bytes (compressed size for zstd).
    pub length: u64,
    /// How the stored bytes are encoded.
    pub encoding: Encoding,
    /// Checksum of the stored bytes, if the file has one.
    pub digest: Option<Digest>,
}

impl Component {
    /// The byte size of the decoded component, when it is known without decoding.
    pub fn decoded_len(&self) -> Option<u64> {
        match &self.encoding {
            Encoding::Raw => Some(self.length),
            Encoding::Zstd {
                uncompressed_length,
            } => *uncompressed_length,
            Encoding::Transformed(t) => Some(t.decoded_len()),
        }
    }
}

/// Everything known about one tensor before its data is read.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name (any UTF-8 string).
    pub name: String,
    /// Logical shape; `[]` is a scalar.
    pub shape: Vec<u64>,
    /// How the components make up the values.
    pub layout: Layout,
    /// The stored arrays, by component name (sorted).
    pub components: Components,
    /// Free-form per-tensor attributes (a CBOR map), if any.
    pub attributes: Option<Value>,
}

impl TensorInfo {
    /// A dense tensor whose elements are the single component `data`, with
    /// no attributes (set them with struct update syntax when needed).
    pub fn dense(name: impl Into<String>, shape: Vec<u64>, data: Component) -> TensorInfo {
        let mut components = Components::new();
        components.insert("data".to_string(), data);
        TensorInfo {
            name: name.into(),
            shape,
            layout: Layout::Dense,
            components,
            attributes: None,
        }
    }

    /// Number of logical elements, or `None` if the product overflows `u64`.
    pub fn numel(&self) -> Option<u64> {
        crate::shape::checked_numel(&self.shape)
    }

    /// The component carrying the element type: `data` for dense, `values`
    /// for sparse layouts, else the first component by name.
    pub fn primary(&self) -> Option<(&str, &Component)> {
        if let Some(key) = self.layout.primary_component() {
            if let Some(c) = self.components.get(key) {
                return Some((key, c));
            }
        }
        self.components.iter().next().map(|(k, c)| (k.as_str(), c))
    }

    /// Storage dtype of the primary component.
    pub fn dtype(&self) -> Option<DType> {
        self.primary().map(|(_, c)| c.dtype)
    }

    /// Logical type of the primary component.
    pub fn logical_type(&self) -> Option<&str> {
        self.primary().and_then(|(_, c)| c.logical_type.as_deref())
    }

    /// Decoded byte size of a dense tensor (shape x element width), if it fits `u64`.
    pub fn dense_nbytes(&self) -> Option<u64> {
        let (_, c) = self.primary()?;
        self.numel()?
            .checked_mul(storage_elements_per_item(c.logical_type.as_deref()))?
            .checked_mul(c.dtype.size() as u64)
    }

    /// Sort key recovering write order: the smallest stored offset, with
    /// empty tensors first on a tie (a zero-length blob takes the aligned
    /// position the next blob then starts at).
    pub(crate) fn file_order_key(&self) -> (u64, bool) {
        let offset = self
            .components
            .values()
            .map(|c| c.offset)
            .min()
            .unwrap_or(0);
        let non_empty = self.components.values().any(|c| c.length > 0);
        (offset, non_empty)
    }
}
