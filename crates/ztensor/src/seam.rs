//! The format seam: what a reader of a foreign format implements and uses,
//! in one place. `ztensor-formats` builds every reader on these items alone.
//!
//! A reader is a function from a whole file image to a [`Catalog`]: the
//! file's tensors, each an [`Entry`] holding a [`TensorInfo`] (name, shape,
//! [`Layout`], and [`Component`]s: byte ranges of the image with their
//! [`Encoding`] and optional [`Digest`]) or why it cannot be read. The
//! [`Reader`](crate::Reader) then maps or reads the file, checks every range
//! against [`Catalog::data_region`], and serves zero-copy views (over a
//! [`Backing`]), copies, slices and digests for every format alike
//! (`Reader::open_with_parser`, `Reader::from_bytes_with_parser`).
//!
//! Bytes that need decoding (deflate, byte swaps, strides, dequantization)
//! are a [`Transform`] on the component (`Encoding::Transform`): decoded at
//! read time, never at open. A reader bounds every size a hostile header
//! claims: a decoded size against the stored size with
//! [`codec::check_ratio`] / [`codec::MAX_RATIO`], element counts with the
//! checked shape product. Work split over threads runs in
//! [`parallel::install`] (a pool that survives `fork()`).
//!
//! # Adding a format: every place to touch
//!
//! 1. **The parser**, `crates/ztensor-formats/src/<format>.rs` (or a folder):
//!    `pub fn parse(bytes: &[u8], cx: &ParseContext) -> Result<Catalog, _>`,
//!    the one signature of every parser (`cx` holds the path and the open
//!    options). A malformed file fails as a whole; a tensor that cannot be
//!    read is an [`Entry::broken`] naming what is wrong.
//! 2. **A variant of `ztensor_formats::Format` and a row of
//!    `ztensor_formats::TABLE`** (`table.rs`): name, extensions, Cargo
//!    feature, whether `zt convert` writes it, parser. Derived from the
//!    table, nothing else to edit: `Format::ALL`, the extension fallback of
//!    `detect` and its "cannot detect" message, the CLI's list of formats it
//!    reads but does not write, the fuzz target names
//!    (`ztensor_formats::fuzzing::TARGETS`), the error of a build without
//!    the format's feature.
//! 3. **Magic bytes**, if the format has them: `detect` in
//!    `crates/ztensor-formats/src/detect.rs`.
//! 4. **A Cargo feature** in `crates/ztensor-formats/Cargo.toml` (in
//!    `default`, its dependencies optional) and `#[cfg(feature = ...)]` on
//!    the module in `lib.rs`; `scripts/test.sh` checks the build without
//!    any of them.
//! 5. **Fuzzing**: a `[[bin]]` in `fuzz/Cargo.toml`, `fuzz/fuzz_targets/<name>.rs`,
//!    the `TARGETS` of `fuzz/make_seeds.py` and a seed writer there, the
//!    default list of `scripts/fuzz.sh` (the test
//!    `fuzzing::tests::fuzz_lists_agree_with_the_table` fails until they
//!    all name the table's formats).
//! 6. **Tests and docs**: `crates/ztensor-formats/tests/<name>.rs` and
//!    Python tests against the format's own library, bit for bit; the
//!    format lists of `README.md` and `docs/python-api.md`.

pub use crate::catalog::{Catalog, Entry};
pub use crate::digest::Digest;
pub use crate::dtype::DType;
pub use crate::error::{ErrorKind, FormatError};
pub use crate::model::{Component, Components, Encoding, Layout, TensorInfo, Transform, Value};
pub use crate::source::{Backing, SharedBytes};
pub use crate::{codec, parallel};
