//! What a format parser hands the reader: the tensors of a file, described
//! in the shared object model, plus where their bytes may lie.

use crate::error::FormatError;
use crate::model::{TensorInfo, Value};

/// One listed tensor: its description, or why it cannot be read.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Tensor name.
    pub name: String,
    /// The description, or what is wrong with this tensor (kind and message).
    pub info: Result<TensorInfo, FormatError>,
}

impl Entry {
    /// A readable tensor.
    pub fn ok(info: TensorInfo) -> Entry {
        Entry {
            name: info.name.clone(),
            info: Ok(info),
        }
    }

    /// A listed tensor that cannot be read, and why.
    pub fn broken(name: impl Into<String>, problem: impl Into<FormatError>) -> Entry {
        Entry {
            name: name.into(),
            info: Err(problem.into()),
        }
    }
}

/// A parsed file: every format's parser produces one of these.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Format name (`"zt"`, `"safetensors"`, `"pickle"`, ...).
    pub format: &'static str,
    /// Format version string, as the file states it (may be empty).
    pub version: String,
    /// File-level metadata, a CBOR map with text keys.
    pub attributes: Option<Value>,
    /// The tensors, in any order (the reader sorts them by name).
    pub entries: Vec<Entry>,
    /// `[start, end)` byte range every component must lie in.
    pub data_region: (u64, u64),
    /// Whether components may partially overlap (views into one storage in
    /// a PyTorch file do; `.zt` blobs never may).
    pub overlaps_allowed: bool,
    /// Pickle files: the `module.name` of every global the reader does not
    /// interpret, sorted and without repeats. Objects built by them were
    /// skipped (searched for tensors, never called); callers warn about
    /// them or refuse the file. Empty for every other format.
    pub skipped_globals: Vec<String>,
}

impl Catalog {
    /// The `entries` of a file of `format` whose bytes lie in `data_region`,
    /// with what most formats have: no version, no attributes, no skipped
    /// globals, overlaps refused. Set the other fields with struct update
    /// syntax: `Catalog { version, ..Catalog::new("npy", entries, region) }`.
    pub fn new(format: &'static str, entries: Vec<Entry>, data_region: (u64, u64)) -> Catalog {
        Catalog {
            format,
            version: String::new(),
            attributes: None,
            entries,
            data_region,
            overlaps_allowed: false,
            skipped_globals: Vec::new(),
        }
    }
}
