//! # ztensor
//!
//! The `.zt` tensor container (format v1, magic `ZTEN1000`): a zero-copy,
//! validating reader and a streaming, atomic writer. [`Writer::append`] adds
//! tensors to an existing file in place, crash-safely (see [`repair`]).
//!
//! ```no_run
//! use ztensor::{Reader, Writer, WriteOptions, Checksum};
//!
//! let mut w = Writer::create("model.zt")?;
//! w.add("embed", &[4, 2], &[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])?;
//! w.add_with("ids", &[3], &[7i64, 8, 9], &WriteOptions::zstd(3).with_checksum(Checksum::Crc32c))?;
//! w.finish()?;
//!
//! let r = Reader::open("model.zt")?;
//! let embed: &[f32] = r.view("embed")?;      // zero-copy, digest-checked
//! let ids: Vec<i64> = r.to_vec("ids")?;      // decompressed
//! # Ok::<(), ztensor::Error>(())
//! ```
//!
//! Every tensor, from `.zt` or (through the foreign readers) any other
//! format, is described by the same [`TensorInfo`]: name, shape, layout and
//! components, each a byte range of the source with its encoding and digest.
//! What a foreign reader implements and uses, and every place a new format
//! touches, is in [`seam`].

#![deny(missing_docs)]

#[cfg(not(all(target_endian = "little", target_pointer_width = "64")))]
compile_error!("ztensor supports 64-bit little-endian targets only");

mod append;
mod atomic;
mod buffer;
mod catalog;
pub mod codec;
mod compact;
mod components;
mod container;
mod digest;
mod dtype;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod legacy;
mod manifest;
mod manifest_fast;
mod model;
pub mod parallel;
mod pipeline;
mod ranged;
mod reader;
pub mod seam;
mod shape;
mod slice;
mod slice_read;
mod source;
mod sparse;
mod validate;
mod writer;

pub use append::{repair, AppendFile, Repair, APPEND_MAGIC, PREVIOUS_END_KEY};
pub use atomic::AtomicFile;
pub use buffer::AlignedBuf;
pub use catalog::{Catalog, Entry};
pub use compact::{compact, remove_tensors, space_usage, Rewritten, SpaceUsage};
pub use container::{is_zt, LEGACY_MAGIC, MAGIC, MAX_MANIFEST};
pub use digest::{Checksum, Digest};
pub use dtype::{
    logical_type, storage_elements_per_item, DType, Element, LogicalType, LOGICAL_TYPES,
};
pub use error::{Error, ErrorKind, FormatError, Result};
pub use manifest::FORMAT_VERSION;
pub use model::{Component, Components, Encoding, Layout, TensorInfo, Transform, Value};
pub use pipeline::DenseItem;
pub use reader::{ReadMode, Reader};
pub use shape::checked_numel;
pub use slice::{Index, Selection, SliceError};
pub use slice_read::TensorSlice;
pub use source::{Backing, RangeSource, SharedBytes, TensorBytes};
pub use writer::{ComponentData, WriteOptions, Writer, DEFAULT_ALIGNMENT, MAX_ALIGNMENT};
