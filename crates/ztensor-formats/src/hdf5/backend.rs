//! The seam between the HDF5 projection and the library that walks the
//! file: everything the projection needs, in our own types, so the library
//! (`rust-hdf5` today) can be swapped without touching the projection.

use std::fmt;

use ztensor::Value;

/// How one element of a dataset is stored, as far as we can represent it.
#[derive(Debug, Clone, PartialEq)]
pub enum ElemType {
    /// A two's-complement or unsigned integer of `size` bytes (1, 2, 4, 8).
    Int {
        /// Bytes per element.
        size: u32,
        /// Whether it is signed.
        signed: bool,
        /// Whether it is stored most significant byte first.
        big_endian: bool,
    },
    /// An IEEE float of `size` bytes (2, 4, 8), or bfloat16 (`bf16`).
    Float {
        /// Bytes per element.
        size: u32,
        /// bfloat16 rather than IEEE half (only with `size == 2`).
        bf16: bool,
        /// Whether it is stored most significant byte first.
        big_endian: bool,
    },
    /// h5py's boolean: an enum of int8 with `FALSE = 0`, `TRUE = 1`.
    Bool,
    /// h5py's complex: a compound `{r, i}` of two floats of `part` bytes.
    Complex {
        /// Bytes per part (4 or 8).
        part: u32,
        /// Whether the parts are stored most significant byte first.
        big_endian: bool,
    },
    /// Anything else (strings, other compounds, references...), described.
    Unsupported(String),
}

/// Where a dataset's elements are stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// One block of the file; `offset` is its absolute position when the
    /// library could locate it inside the file (else read through the library).
    Contiguous {
        /// Absolute file offset of the first element, if located.
        offset: Option<u64>,
    },
    /// Inside the object header.
    Compact,
    /// Chunks, possibly filtered; decoded by the library.
    Chunked {
        /// Elements per chunk along each dimension (empty if unknown).
        chunk: Vec<u64>,
    },
    /// Anything else (virtual, external files), described.
    Unsupported(String),
}

/// What the projection needs to know about one dataset.
#[derive(Debug, Clone)]
pub struct DatasetDesc {
    /// Dimensions (empty for a scalar).
    pub shape: Vec<u64>,
    /// Element type.
    pub elem: ElemType,
    /// Storage layout.
    pub storage: Storage,
    /// The dataset's own attributes that could be represented, by name.
    pub attributes: Vec<(String, Value)>,
}

/// An opened HDF5 file, as a library sees it. Every method must turn a
/// failure (or a panic) of the library into an `Err`.
pub trait Hdf5Backend: Send + Sync + fmt::Debug {
    /// Paths of every dataset reachable from the root group, with `/`
    /// between group names; a dataset hard-linked twice is listed twice.
    fn datasets(&self) -> Result<Vec<String>, String>;
    /// Describes the dataset at `path`.
    fn describe(&self, path: &str) -> Result<DatasetDesc, String>;
    /// Fills `out` with the dataset's whole element image in little-endian
    /// byte order (big-endian data swapped): chunks decoded, unwritten parts
    /// holding the fill value. `out` has the size the caller validated from
    /// the description; a library that would produce another size must fail.
    fn read_into(&self, path: &str, out: &mut [u8]) -> Result<(), String>;
    /// The root group's attributes that could be represented, by name.
    fn file_attributes(&self) -> Result<Vec<(String, Value)>, String>;
}
