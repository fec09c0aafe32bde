//! Reader for HDF5 files (`.h5`, `.hdf5`).
//!
//! The file is walked by a library behind [`Hdf5Backend`] (the pure-Rust
//! `rust-hdf5`, see `library.rs`); this module projects what it reports onto
//! the object model:
//!
//! - every dataset is a tensor named by its path with `.` between groups
//!   (`grp/sub/x` → `grp.sub.x`); a dataset hard-linked under several names
//!   appears under each (the same bytes, an exact alias);
//! - integers of 1-8 bytes, IEEE float16/32/64 (and bfloat16), h5py's bool
//!   enum (→ `bool`) and h5py's complex compound `{r, i}` (→ `float32` /
//!   `float64` with logical type `complex64` / `complex128`), either byte
//!   order; any other enum reads as its integer codes. Strings, other
//!   compounds, variable-length data, references, null dataspaces, virtual
//!   and external datasets make that tensor unreadable on its own;
//! - a contiguous little-endian dataset whose place in the file is known is a
//!   zero-copy range of the mapped file; everything else (chunked and
//!   filtered data, compact data, never-written data, big-endian data) is
//!   decoded when the tensor is read, by the library, through a
//!   [`Transform`] with an empty stored range: opening stays cheap;
//! - the root group's attributes become the file attributes, each dataset's
//!   attributes its tensor attributes (numbers, flat numeric arrays, text;
//!   other attribute types are skipped).
//!
//! Hostile files: a file shorter than its superblock's end-of-file address
//! is refused (truncated); the structural checks libhdf5 makes and the
//! library does not (addresses past the end, chunk B-tree keys, extents,
//! member order; see `check.rs`) make the datasets they concern unreadable;
//! every library call is panic-contained; a decoded size is
//! refused when it exceeds [`MAX_EXPANSION`] times the file size (a
//! contiguous range must lie inside the file). Fletcher-32 chunk checksums
//! are verified (for datasets of up to 16384 chunks; beyond that they are
//! stripped unchecked).
//!
//! One dataset can be projected without walking the file ([`parse_one`],
//! `lookup.rs`): its name is looked up down the group B-trees, as libhdf5
//! does, and anything but a plain contiguous dataset falls back to [`parse`].
//!
//! Like libhdf5, the library holds a shared lock on the file (best effort)
//! for as long as a tensor may still need it, i.e. while the reader is open
//! and has library-decoded tensors: a writer that honours HDF5 file locks
//! (h5py in `"w"`/`"a"` mode) cannot open the file meanwhile.

mod backend;
mod check;
mod library;
mod lookup;
mod message;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use ztensor::{
    Catalog, Component, DType, Encoding, Entry, FormatError, TensorInfo, Transform, Value,
};

use crate::ParseContext;

pub use backend::{DatasetDesc, ElemType, Hdf5Backend, Storage};
pub use lookup::{parse_none, parse_one};

/// The largest decoded size accepted for data the library decodes, as a
/// multiple of the file size (the same ratio `.zt` allows zstd): chunked
/// and fill-valued datasets can legitimately be much larger than the file,
/// but a few hostile header bytes must not claim terabytes.
pub const MAX_EXPANSION: u64 = ztensor::codec::MAX_RATIO;

/// Size a chunk may reach beyond the dataset's own size (64 MiB).
const MAX_CHUNK_SLACK: u64 = 64 << 20;

/// Parses a whole file image; `cx.path` is the file it came from, if any
/// (the library reopens it by path; an image without one is staged in a
/// temporary file). With `cx.hdf5_backend`, that library walks the file
/// instead, and the structural checks (which concern the built-in library)
/// are skipped.
pub fn parse(bytes: &[u8], cx: &ParseContext) -> Result<Catalog, FormatError> {
    if let Some(backend) = &cx.hdf5_backend {
        return Ok(project(bytes, Arc::clone(backend), &HashMap::new())?);
    }
    let (superblock, version) = opened(bytes)?;
    let backend = library::RustHdf5::open(bytes, cx.path)?;
    let mut geometry = superblock.geometry;
    if let Some(k) = backend.btree_k() {
        geometry.k = k;
    }
    // Pure code over the image, but the codecs are young: a panic is no verdict.
    let problems =
        catch_unwind(AssertUnwindSafe(|| check::problems(bytes, &geometry))).unwrap_or_default();
    let mut catalog = project(bytes, Arc::new(backend), &problems)?;
    catalog.version = version;
    Ok(catalog)
}

/// The checks made of a file before anything is walked: an HDF5 signature,
/// a superblock that decodes, and, as libhdf5 checks, a file at least as
/// long as the superblock says (else truncated: the library would read the
/// missing chunks as never written, i.e. as fill values). Returns the
/// superblock and its version as the catalog states it (0 for h5py's
/// default, 2 or 3 with newer libvers).
fn opened(bytes: &[u8]) -> Result<(library::Superblock, String), FormatError> {
    let Some(at) = library::signature_offset(bytes) else {
        return Err("not an HDF5 file (no superblock signature)".into());
    };
    let superblock = library::superblock(bytes)?;
    if let Some(eof) = superblock.eof {
        let len = bytes.len() as u64;
        if len < eof {
            return Err(FormatError::truncated(format!(
                "the file is truncated: it has {len} bytes but its superblock says the HDF5 data ends at byte {eof}"
            )));
        }
    }
    let version = bytes.get(at + 8).map_or(String::new(), u8::to_string);
    Ok((superblock, version))
}

/// The 8 bytes an HDF5 superblock starts with.
pub use crate::detect::HDF5_SIGNATURE as SIGNATURE;

/// Where HDF5 looks for the superblock: offset 0, then after a userblock of
/// 512, 1024, 2048, ... bytes.
pub use crate::detect::hdf5_superblock_offsets as superblock_offsets;

/// Whether `bytes` hold an HDF5 superblock signature where HDF5 looks for
/// one (offset 0, or after a userblock of 512, 1024, 2048... bytes).
pub fn has_signature(bytes: &[u8]) -> bool {
    library::signature_offset(bytes).is_some()
}

/// Projects a file opened by `backend` (whose image is `bytes`), with the
/// problems [`check::problems`] found, by object path.
fn project(
    bytes: &[u8],
    backend: Arc<dyn Hdf5Backend>,
    problems: &HashMap<String, String>,
) -> Result<Catalog, String> {
    let file_len = bytes.len() as u64;
    let entries = backend
        .datasets()?
        .into_iter()
        .map(|path| {
            let name = path.trim_start_matches('/').replace('/', ".");
            if let Some(problem) = check::problem_of(problems, &path) {
                return Entry::broken(name, problem.to_string());
            }
            backend
                .describe(&path)
                .and_then(|desc| tensor(&name, &path, desc, file_len, &backend))
                .unwrap_or_else(|e| Entry::broken(name, e))
        })
        .collect();
    // File attributes are best effort: a broken one must not hide the tensors.
    let mut attributes = backend.file_attributes().unwrap_or_default();
    attributes.sort_by(|a, b| a.0.cmp(&b.0)); // h5py lists them by name too
    Ok(Catalog {
        attributes: (!attributes.is_empty()).then(|| text_map(attributes)),
        ..Catalog::new("hdf5", entries, (0, file_len))
    })
}

fn text_map(items: Vec<(String, Value)>) -> Value {
    Value::Map(
        items
            .into_iter()
            .map(|(k, v)| (Value::Text(k), v))
            .collect(),
    )
}

/// Projects one dataset onto the object model.
fn tensor(
    name: &str,
    path: &str,
    desc: DatasetDesc,
    file_len: u64,
    backend: &Arc<dyn Hdf5Backend>,
) -> Result<Entry, String> {
    // (dtype, logical type, bytes per element, whether stored big-endian)
    let (dtype, logical, itemsize, big_endian) = match &desc.elem {
        ElemType::Int {
            size,
            signed,
            big_endian,
        } => {
            let dtype = match (size, signed) {
                (1, true) => DType::I8,
                (2, true) => DType::I16,
                (4, true) => DType::I32,
                (8, true) => DType::I64,
                (1, false) => DType::U8,
                (2, false) => DType::U16,
                (4, false) => DType::U32,
                (8, false) => DType::U64,
                _ => return Err(format!("{size}-byte integers are not supported")),
            };
            (dtype, None, *size, *big_endian)
        }
        ElemType::Float {
            size,
            bf16,
            big_endian,
        } => {
            let dtype = match (size, bf16) {
                (2, false) => DType::F16,
                (2, true) => DType::BF16,
                (4, false) => DType::F32,
                (8, false) => DType::F64,
                _ => return Err(format!("{size}-byte floats are not supported")),
            };
            (dtype, None, *size, *big_endian)
        }
        ElemType::Bool => (DType::Bool, None, 1, false),
        ElemType::Complex { part, big_endian } => {
            let (dtype, logical) = match part {
                4 => (DType::F32, "complex64"),
                8 => (DType::F64, "complex128"),
                _ => {
                    return Err(format!(
                        "complex numbers of {part}-byte parts are not supported"
                    ))
                }
            };
            (dtype, Some(logical.to_string()), 2 * part, *big_endian)
        }
        ElemType::Unsupported(what) => {
            return Err(format!("HDF5 {what} cannot be read as a tensor"))
        }
    };
    if let Storage::Unsupported(why) = &desc.storage {
        return Err(format!("cannot read it: {why}"));
    }
    let shape = desc.shape;
    let nbytes = ztensor::checked_numel(&shape)
        .and_then(|n| n.checked_mul(u64::from(itemsize)))
        .ok_or_else(|| format!("shape {shape:?} is too large to address"))?;

    let (offset, length, encoding) = match desc.storage {
        _ if nbytes == 0 => (0, 0, Encoding::Raw),
        Storage::Contiguous {
            offset: Some(offset),
        } if !big_endian => {
            match offset.checked_add(nbytes) {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(format!(
                        "its {nbytes} bytes at offset {offset} lie outside the {file_len}-byte file"
                    ))
                }
            }
            (offset, nbytes, Encoding::Raw)
        }
        _ => {
            let limit = file_len.max(1).saturating_mul(MAX_EXPANSION);
            if nbytes > limit {
                return Err(format!(
                    "shape {shape:?} declares {nbytes} bytes, more than {MAX_EXPANSION} times the {file_len}-byte file"
                ));
            }
            // The library allocates a whole chunk to decode one, whatever
            // the dataset's size: a chunk may exceed the dataset (unlimited
            // dimensions) but not absurdly.
            if let Storage::Chunked { chunk } = &desc.storage {
                let chunk_bytes =
                    ztensor::checked_numel(chunk).and_then(|n| n.checked_mul(u64::from(itemsize)));
                let chunk_limit = nbytes.max(MAX_CHUNK_SLACK).min(limit);
                if chunk_bytes.is_none_or(|n| n > chunk_limit) {
                    return Err(format!(
                        "its chunks of {chunk:?} elements are too large for a {nbytes}-byte dataset in a {file_len}-byte file"
                    ));
                }
            }
            let read = LibraryRead {
                backend: Arc::clone(backend),
                path: path.to_string(),
                len: nbytes,
            };
            (0, 0, Encoding::Transformed(Arc::new(read)))
        }
    };
    let component = Component {
        dtype,
        logical_type: logical,
        offset,
        length,
        encoding,
        digest: None,
    };
    Ok(Entry::ok(TensorInfo {
        attributes: (!desc.attributes.is_empty()).then(|| text_map(desc.attributes)),
        ..TensorInfo::dense(name.to_string(), shape, component)
    }))
}

/// Reads a dataset through the library when the tensor is read (chunked,
/// filtered, compact, unwritten or big-endian data); its stored range is
/// empty.
#[derive(Debug)]
struct LibraryRead {
    backend: Arc<dyn Hdf5Backend>,
    path: String,
    len: u64,
}

impl Transform for LibraryRead {
    fn name(&self) -> &str {
        "hdf5"
    }

    fn decoded_len(&self) -> u64 {
        self.len
    }

    fn decode(&self, _stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        if out.len() as u64 != self.len {
            return Err("output buffer has the wrong size".into());
        }
        Ok(self.backend.read_into(&self.path, out)?)
    }
}
