//! [`Hdf5Backend`] over the pure-Rust `rust-hdf5` crate (pinned exactly: it
//! is young and large, so every call into it is wrapped in `catch_unwind`
//! and every size it reports is checked by the projection).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rust_hdf5::format::btree_v1::BTreeV1Config;
use rust_hdf5::format::dense_attr::read_dense_attributes;
use rust_hdf5::format::messages::attr_info::AttributeInfoMessage;
use rust_hdf5::format::messages::attribute::AttributeMessage;
use rust_hdf5::format::messages::datatype::{ByteOrder, DatatypeMessage};
use rust_hdf5::format::superblock::{detect_superblock_version, SuperblockV0V1, SuperblockV2V3};
use rust_hdf5::format::{BlockReader, FormatContext, FormatError, FormatResult, UNDEF_ADDR};
use rust_hdf5::{H5Dataset, H5File, H5Type, Hdf5Error, StorageLayout, ViewRefusal};
use ztensor::Value;

use super::backend::{DatasetDesc, ElemType, Hdf5Backend, Storage};
use super::check::{self, Geometry};
use super::message::{ATTRIBUTE, ATTRIBUTE_INFO, SHARED};

/// Most elements of one attribute turned into file or tensor attributes;
/// longer ones are skipped (attributes are metadata, not data).
const MAX_ATTR_ELEMENTS: usize = 4096;

/// Runs a library call, turning its errors and panics into messages.
fn guarded<T>(what: &str, f: impl FnOnce() -> rust_hdf5::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(panic) => Err(format!(
            "{what}: the HDF5 reader failed ({})",
            crate::panic_message(&*panic)
        )),
    }
}

/// A copy of an in-memory image in the temp directory: `rust-hdf5` only
/// opens paths. Removed when dropped (on Unix right after opening).
struct TempCopy(PathBuf);

impl TempCopy {
    fn write(bytes: &[u8]) -> Result<TempCopy, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            ".ztensor-hdf5-{}-{}-{nanos}.h5",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot stage the HDF5 image in {}: {e}", path.display()))?;
        let copy = TempCopy(path);
        std::io::Write::write_all(&mut f, bytes)
            .map_err(|e| format!("cannot stage the HDF5 image: {e}"))?;
        Ok(copy)
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A file opened with `rust-hdf5`.
pub struct RustHdf5 {
    file: H5File,
    /// The root group's attribute messages, decoded from the image at open.
    root_attrs: Vec<AttributeMessage>,
    _temp: Option<TempCopy>,
}

impl fmt::Debug for RustHdf5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RustHdf5")
    }
}

impl RustHdf5 {
    /// Opens the file at `path`, or a temporary copy of `bytes` when there
    /// is no path.
    pub fn open(bytes: &[u8], path: Option<&Path>) -> Result<RustHdf5, String> {
        let (temp, path) = match path {
            Some(p) => (None, p.to_path_buf()),
            None => {
                let t = TempCopy::write(bytes)?;
                let p = t.0.clone();
                (Some(t), p)
            }
        };
        // Best effort: a lock held elsewhere must not make the file
        // unreadable (the library then reads without its own map).
        let file = guarded("cannot open the HDF5 file", || {
            H5File::options().best_effort_locking().open(&path)
        })?;
        #[cfg(unix)]
        let temp = {
            drop(temp); // the open descriptor keeps the data
            None
        };
        let root_attrs = catch_unwind(|| root_attribute_messages(bytes))
            .ok()
            .flatten()
            .unwrap_or_default();
        Ok(RustHdf5 {
            file,
            root_attrs,
            _temp: temp,
        })
    }

    /// The v1 B-tree "K" values of the superblock extension, when it has them.
    pub fn btree_k(&self) -> Option<BTreeV1Config> {
        let k = catch_unwind(AssertUnwindSafe(|| {
            self.file.superblock_extension().btree_k
        }))
        .ok()
        .flatten()?;
        Some(BTreeV1Config {
            sym_leaf_k: k.sym_leaf_k,
            snode_internal_k: k.snode_internal_k,
            chunk_internal_k: k.chunk_internal_k,
        })
    }

    fn dataset(&self, path: &str) -> Result<H5Dataset, String> {
        guarded(&format!("cannot open dataset '{path}'"), || {
            self.file.dataset(path)
        })
    }
}

impl Hdf5Backend for RustHdf5 {
    fn datasets(&self) -> Result<Vec<String>, String> {
        guarded("cannot list the datasets", || Ok(self.file.dataset_names()))
    }

    fn describe(&self, path: &str) -> Result<DatasetDesc, String> {
        let ds = self.dataset(path)?;
        let what = format!("dataset '{path}'");
        let (shape, null, dt, layout) = guarded(&what, || {
            Ok((
                ds.shape(),
                ds.is_null(),
                ds.datatype()?,
                ds.storage_layout()?,
            ))
        })?;
        if null {
            return Err("it has a null dataspace (no shape)".into());
        }
        let elem = elem_type(&dt);
        let storage = match layout {
            StorageLayout::Contiguous => {
                let external = guarded(&what, || ds.external_files())?;
                if external.is_empty() {
                    Storage::Contiguous {
                        offset: locate(&ds, &elem, shape.len()),
                    }
                } else {
                    Storage::Unsupported("its data is in external files".into())
                }
            }
            StorageLayout::Compact => Storage::Compact,
            StorageLayout::Chunked => Storage::Chunked {
                chunk: guarded(&what, || Ok(ds.chunk_dims()))?
                    .unwrap_or_default()
                    .iter()
                    .map(|&d| d as u64)
                    .collect(),
            },
            StorageLayout::Virtual => {
                Storage::Unsupported("it is a virtual dataset (mapped from others)".into())
            }
        };
        let attributes = guarded(&what, || ds.attr_names())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| {
                let attr = guarded(&what, || ds.attr(&name)).ok()?;
                let value = guarded(&what, || {
                    Ok(attr_value(&attr.datatype()?, &attr.read_raw()?, || {
                        attr.read_string()
                    }))
                })
                .ok()??;
                Some((name, value))
            })
            .collect();
        Ok(DatasetDesc {
            shape: shape.iter().map(|&d| d as u64).collect(),
            elem,
            storage,
            attributes,
        })
    }

    fn read_into(&self, path: &str, out: &mut [u8]) -> Result<(), String> {
        let ds = self.dataset(path)?;
        verify_fletcher32(&ds, path)?;
        check_shuffle(&ds, path)?;
        let what = format!("cannot read dataset '{path}'");
        let (dt, width, numel) = guarded(&what, || {
            Ok((ds.datatype()?, ds.element_size(), ds.total_elements()))
        })?;
        let size = numel.checked_mul(width);
        if size != Some(out.len()) {
            return Err(format!(
                "{what}: it holds {numel} elements of {width} bytes, not {} bytes",
                out.len()
            ));
        }
        // Straight into `out` where the library can convert the byte order
        // itself (every plain type); otherwise (big-endian complex, 16-byte
        // elements, an unaligned buffer) through a copy swapped here.
        let direct = match (elem_type(&dt), width) {
            (
                ElemType::Complex {
                    big_endian: true, ..
                },
                _,
            ) => None,
            (_, 1) => Some(guarded(&what, || ds.read_raw_into::<u8>(out))),
            (_, 2) => read_typed::<u16>(&ds, out, &what),
            (_, 4) => read_typed::<u32>(&ds, out, &what),
            (_, 8) => read_typed::<u64>(&ds, out, &what),
            _ => None,
        };
        // A typed read the library refuses (e.g. a byte order it will not
        // convert for that class) falls back to the copy as well.
        if let Some(Ok(())) = direct {
            return Ok(());
        }
        let bytes = guarded(&what, || ds.read_raw_bytes())?;
        if bytes.len() != out.len() {
            return Err(format!(
                "{what}: the HDF5 reader produced {} bytes where {} were expected",
                bytes.len(),
                out.len()
            ));
        }
        out.copy_from_slice(&bytes);
        let swap = match elem_type(&dt) {
            ElemType::Int {
                size,
                big_endian: true,
                ..
            }
            | ElemType::Float {
                size,
                big_endian: true,
                ..
            } => size,
            ElemType::Complex {
                part,
                big_endian: true,
            } => part,
            _ => 1,
        };
        if swap > 1 {
            for elem in out.chunks_exact_mut(swap as usize) {
                elem.reverse();
            }
        }
        Ok(())
    }

    fn file_attributes(&self) -> Result<Vec<(String, Value)>, String> {
        Ok(self
            .root_attrs
            .iter()
            .filter_map(|a| {
                let value = attr_value(&a.datatype, &a.data, || self.file.attr_string(&a.name))?;
                Some((a.name.clone(), value))
            })
            .collect())
    }
}

/// Reads a dataset of `size_of::<T>()`-byte elements straight into `out`
/// (the library swaps big-endian elements to host order); `None` when `out`
/// is not aligned for `T`.
fn read_typed<T: H5Type>(ds: &H5Dataset, out: &mut [u8], what: &str) -> Option<Result<(), String>> {
    // SAFETY: `T` is one of u16/u32/u64 here: plain integers, valid for every
    // bit pattern, so viewing initialised bytes as them (and writing them
    // back) is sound; `align_to_mut` only returns a middle part that is
    // correctly aligned, and we use it only when it covers all of `out`.
    let (head, elems, tail) = unsafe { out.align_to_mut::<T>() };
    if !head.is_empty() || !tail.is_empty() {
        return None;
    }
    Some(guarded(what, || ds.read_raw_into::<T>(elems)))
}

/// Most chunks whose Fletcher-32 checksums are verified in one dataset.
const MAX_VERIFIED_CHUNKS: usize = 1 << 14;

/// HDF5's filter id for Fletcher-32 checksums.
const FILTER_FLETCHER32: u16 = 3;

/// Checks the Fletcher-32 checksum of every stored chunk, which rust-hdf5
/// 0.7.9 strips without checking. Only when it is the last filter of the
/// pipeline (as h5py and libhdf5 place it), where it covers the stored
/// bytes; elsewhere it is stripped unchecked.
fn verify_fletcher32(ds: &H5Dataset, path: &str) -> Result<(), String> {
    let what = format!("dataset '{path}'");
    let filters = guarded(&what, || ds.filters())?;
    let Some(index) = filters.iter().position(|f| f.id == FILTER_FLETCHER32) else {
        return Ok(());
    };
    if index + 1 != filters.len() {
        return Ok(());
    }
    let (shape, chunk) = guarded(&what, || Ok((ds.shape(), ds.chunk_dims())))?;
    let Some(chunk) = chunk.filter(|c| c.len() == shape.len() && c.iter().all(|&d| d > 0)) else {
        return Ok(());
    };
    let grid: Vec<usize> = shape
        .iter()
        .zip(&chunk)
        .map(|(&d, &c)| d.div_ceil(c))
        .collect();
    // Each lookup walks the chunk index, so the walk is bounded; a dataset
    // with more chunks than this is read with its checksums stripped unchecked.
    let cells = grid.iter().try_fold(1usize, |a, &g| a.checked_mul(g));
    if !cells.is_some_and(|n| (1..=MAX_VERIFIED_CHUNKS).contains(&n)) {
        return Ok(());
    }
    let mut coords = vec![0usize; grid.len()];
    loop {
        // A chunk that was never written has nothing to check.
        if let Ok((raw, mask)) = guarded(&what, || ds.read_chunk_raw_at(&coords)) {
            if mask & (1 << index) == 0 && !fletcher32_matches(&raw) {
                return Err(format!(
                    "dataset '{path}': chunk {coords:?} fails its Fletcher-32 checksum"
                ));
            }
        }
        // Odometer over the chunk grid, last dimension fastest.
        let mut k = grid.len();
        loop {
            if k == 0 {
                return Ok(());
            }
            k -= 1;
            coords[k] += 1;
            if coords[k] < grid[k] {
                break;
            }
            coords[k] = 0;
        }
    }
}

/// HDF5's filter id for the byte shuffle.
const FILTER_SHUFFLE: u16 = 2;

/// Checks that a shuffle filter's element size (its client data, which
/// libhdf5 sets from the datatype) is the dataset's: with another one,
/// libhdf5 fails (0) or unshuffles other bytes than rust-hdf5 does.
fn check_shuffle(ds: &H5Dataset, path: &str) -> Result<(), String> {
    let what = format!("dataset '{path}'");
    let (filters, width) = guarded(&what, || Ok((ds.filters()?, ds.element_size())))?;
    for f in filters.iter().filter(|f| f.id == FILTER_SHUFFLE) {
        if let Some(&size) = f.cd_values.first() {
            if size as usize != width {
                return Err(format!(
                    "{what}: its shuffle filter is set for {size}-byte elements, not {width} (damaged)"
                ));
            }
        }
    }
    Ok(())
}

/// Whether the last 4 bytes of `chunk` are the Fletcher-32 sum of the rest,
/// as libhdf5 computes it (16-bit big-endian words) and stores it (little-
/// endian; the byte-reversed form very old files used is accepted too).
fn fletcher32_matches(chunk: &[u8]) -> bool {
    let Some(split) = chunk.len().checked_sub(4) else {
        return false;
    };
    let (data, stored) = chunk.split_at(split);
    let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
    let fold = |x: u32| (x & 0xffff) + (x >> 16);
    let (mut sum1, mut sum2) = (0u32, 0u32);
    for block in data.chunks(720) {
        for word in block.chunks(2) {
            let hi = u32::from(word[0]) << 8;
            // Wrapping, as libhdf5's `uint32_t` arithmetic does.
            sum1 = sum1.wrapping_add(hi | word.get(1).map_or(0, |&b| u32::from(b)));
            sum2 = sum2.wrapping_add(sum1);
        }
        sum1 = fold(sum1);
        sum2 = fold(sum2);
    }
    let sum = (fold(sum2) << 16) | fold(sum1);
    stored == sum || stored == sum.swap_bytes()
}

/// Offset of the superblock: 0, or a power of two from 512 (after a userblock).
pub(super) fn signature_offset(bytes: &[u8]) -> Option<usize> {
    crate::detect::hdf5_signature_offset(bytes)
}

/// What the superblock says: where the HDF5 data ends (measured from the
/// start of the file, userblock included; `None` when undefined), and the
/// layout facts the structural checks need.
pub(super) struct Superblock {
    pub eof: Option<u64>,
    pub geometry: Geometry,
    /// The root group's symbol-table addresses cached in the superblock's
    /// root entry (v0/v1; the library prefers them to the header's).
    pub root_stab: Option<(u64, u64)>,
    /// Whether a superblock extension or driver info block is declared
    /// (they may change the B-tree K values or the addressing).
    pub extended: bool,
}

/// Decodes the superblock; an error when it cannot be decoded.
pub(super) fn superblock(bytes: &[u8]) -> Result<Superblock, String> {
    let base = signature_offset(bytes).ok_or("no superblock signature")?;
    let sb = &bytes[base..];
    let bad = |e: FormatError| format!("cannot decode the superblock: {e}");
    let (eof, root, sizeof_addr, sizeof_size, k, root_stab, extended) =
        match detect_superblock_version(sb).map_err(bad)? {
            0 | 1 => {
                let s = SuperblockV0V1::decode(sb).map_err(bad)?;
                let k = BTreeV1Config {
                    sym_leaf_k: s.sym_leaf_k,
                    snode_internal_k: s.btree_internal_k,
                    chunk_internal_k: s
                        .indexed_storage_k
                        .unwrap_or(BTreeV1Config::default().chunk_internal_k),
                };
                let root = s.root_symbol_table_entry.obj_header_addr;
                (
                    s.end_of_file_address,
                    root,
                    s.sizeof_offsets,
                    s.sizeof_lengths,
                    k,
                    s.root_symbol_table_entry.cached_symbol_table(),
                    s.superblock_extension_address != UNDEF_ADDR
                        || s.driver_info_address != UNDEF_ADDR,
                )
            }
            2 | 3 => {
                let s = SuperblockV2V3::decode(sb).map_err(bad)?;
                let root = s.root_group_object_header_address;
                let k = BTreeV1Config::default();
                (
                    s.end_of_file_address,
                    root,
                    s.sizeof_offsets,
                    s.sizeof_lengths,
                    k,
                    None,
                    s.superblock_extension_address != UNDEF_ADDR,
                )
            }
            v => return Err(format!("superblock version {v} is not supported")),
        };
    Ok(Superblock {
        eof: (eof != UNDEF_ADDR).then_some(eof),
        geometry: Geometry {
            base: base as u64,
            ctx: FormatContext {
                sizeof_addr,
                sizeof_size,
            },
            k,
            root,
        },
        root_stab,
        extended,
    })
}

/// The attribute messages in the root group's object header.
///
/// rust-hdf5 0.7.9 reads the root group's attributes only as strings (a
/// numeric one comes back as its bytes taken for text), so the header is
/// decoded here with the crate's public format codecs, continuation blocks
/// and dense attribute storage included. Best effort: shared attribute
/// messages, and any attribute whose structures do not decode, are skipped.
fn root_attribute_messages(bytes: &[u8]) -> Option<Vec<AttributeMessage>> {
    let geo = superblock(bytes).ok()?.geometry;
    let ctx = geo.ctx;
    let messages = check::header_messages(bytes, geo.base, geo.root, &ctx).ok()?;
    let mut attrs: Vec<AttributeMessage> = messages
        .iter()
        .filter(|m| m.0 == ATTRIBUTE && m.1 & SHARED == 0)
        .filter_map(|m| AttributeMessage::decode(&m.2, &ctx).ok().map(|(a, _)| a))
        .collect();
    // Dense storage (HDF5 moves past 8 attributes of a version-2 header
    // into a fractal heap indexed by a B-tree), named by an attribute-info message.
    for m in messages.iter().filter(|m| m.0 == ATTRIBUTE_INFO) {
        let Ok((info, _)) = AttributeInfoMessage::decode(&m.2, &ctx) else {
            continue;
        };
        let mut reader = ImageReader::new(bytes, geo.base as usize);
        if let Ok(entries) = read_dense_attributes(&info, &ctx, &mut reader) {
            attrs.extend(entries.iter().filter_map(|e| e.decoded().ok().cloned()));
        }
    }
    Some(attrs)
}

/// Reads blocks of the file image for the format codecs (addresses are
/// relative to the superblock, i.e. past any userblock).
pub(super) struct ImageReader<'a> {
    bytes: &'a [u8],
    base: usize,
}

impl<'a> ImageReader<'a> {
    /// A reader of `bytes` whose addresses count from `base`.
    pub(super) fn new(bytes: &'a [u8], base: usize) -> ImageReader<'a> {
        ImageReader { bytes, base }
    }
}

impl BlockReader for ImageReader<'_> {
    fn read_block(&mut self, offset: u64, len: usize) -> FormatResult<Vec<u8>> {
        let start = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(self.base))
            .filter(|&s| s <= self.bytes.len())
            .ok_or(FormatError::BufferTooShort {
                needed: len,
                available: 0,
            })?;
        let end = start.saturating_add(len).min(self.bytes.len());
        Ok(self.bytes[start..end].to_vec())
    }
}

/// Classifies a stored datatype.
pub(super) fn elem_type(dt: &DatatypeMessage) -> ElemType {
    match dt {
        DatatypeMessage::FixedPoint {
            size,
            byte_order,
            signed,
            bit_offset: 0,
            bit_precision,
        } if matches!(size, 1 | 2 | 4 | 8) && u32::from(*bit_precision) == size * 8 => {
            ElemType::Int {
                size: *size,
                signed: *signed,
                big_endian: *byte_order == ByteOrder::BigEndian,
            }
        }
        DatatypeMessage::FloatingPoint {
            size,
            byte_order,
            bit_offset: 0,
            bit_precision,
            exponent_size,
            mantissa_size,
            ..
        } if u32::from(*bit_precision) == size * 8 => {
            let big_endian = *byte_order == ByteOrder::BigEndian;
            match (size, exponent_size, mantissa_size) {
                (2, 5, 10) | (4, 8, 23) | (8, 11, 52) => ElemType::Float {
                    size: *size,
                    bf16: false,
                    big_endian,
                },
                (2, 8, 7) => ElemType::Float {
                    size: 2,
                    bf16: true,
                    big_endian,
                },
                _ => ElemType::Unsupported(format!("non-IEEE floating-point type {dt}")),
            }
        }
        DatatypeMessage::Enum { base, members } => {
            let is_bool = members.len() == 2
                && members.iter().all(|m| {
                    (m.name == "FALSE" && m.value == [0]) || (m.name == "TRUE" && m.value == [1])
                });
            match elem_type(base) {
                ElemType::Int { size: 1, .. } if is_bool => ElemType::Bool,
                int @ ElemType::Int { .. } => int, // an enum reads as its integer codes
                _ => ElemType::Unsupported(format!("enum type {dt}")),
            }
        }
        DatatypeMessage::Compound { size, members } => {
            let parts: Vec<_> = members.iter().map(|m| elem_type(&m.datatype)).collect();
            match (members.as_slice(), parts.as_slice()) {
                (
                    [r, i],
                    [ElemType::Float {
                        size: a,
                        bf16: false,
                        big_endian: ea,
                    }, ElemType::Float {
                        size: b,
                        bf16: false,
                        big_endian: eb,
                    }],
                ) if r.name == "r"
                    && i.name == "i"
                    && a == b
                    && ea == eb
                    && matches!(a, 4 | 8)
                    && r.offset == 0
                    && i.offset == *a
                    && *size == 2 * a =>
                {
                    ElemType::Complex {
                        part: *a,
                        big_endian: *ea,
                    }
                }
                _ => ElemType::Unsupported(format!("compound type {dt}")),
            }
        }
        DatatypeMessage::FixedString { .. } | DatatypeMessage::VarLenString { .. } => {
            ElemType::Unsupported("strings".into())
        }
        other => ElemType::Unsupported(format!("datatype {other}")),
    }
}

/// The absolute file offset of a contiguous dataset's first element, when
/// the library holds the file mapped and the elements are in host byte order.
///
/// rust-hdf5 0.7.9 knows the offset but only shows it in the `Debug` form of
/// a mapped view (`MappedView { offset: N, .. }`), so a one-element view is
/// formatted and parsed; the whole-dataset view must then start at the same
/// address, or the offset is not used (the data is then read through the
/// library instead, which is slower but equally correct).
fn locate(ds: &H5Dataset, elem: &ElemType, ndims: usize) -> Option<u64> {
    match elem {
        ElemType::Int { size: 1, .. } | ElemType::Bool => locate_as::<u8>(ds, ndims),
        ElemType::Int { size: 2, .. } | ElemType::Float { size: 2, .. } => {
            locate_as::<u16>(ds, ndims)
        }
        ElemType::Int { size: 4, .. } | ElemType::Float { size: 4, .. } => {
            locate_as::<u32>(ds, ndims)
        }
        ElemType::Int { size: 8, .. }
        | ElemType::Float { size: 8, .. }
        | ElemType::Complex { part: 4, .. } => locate_as::<u64>(ds, ndims),
        ElemType::Complex { part: 8, .. } => locate_as::<rust_hdf5::Complex64>(ds, ndims),
        _ => None,
    }
}

fn locate_as<T: H5Type + fmt::Debug>(ds: &H5Dataset, ndims: usize) -> Option<u64> {
    let located = guarded("locate", || {
        let one = match ds.read_mapped_slice::<T>(&vec![0; ndims], &vec![1; ndims]) {
            Ok(one) => one,
            // Refused only because the data is not aligned for `T`: the
            // refusal names the offset (the range was checked to lie inside
            // the map before alignment was).
            Err(Hdf5Error::NotViewable(ViewRefusal::Alignment { offset, .. })) => {
                return Ok(Some(offset))
            }
            Err(e) => return Err(e),
        };
        let whole = ds.read_mapped::<T>()?;
        if one.as_ptr() != whole.as_ptr() {
            return Ok(None);
        }
        let text = format!("{one:?}");
        Ok(text
            .strip_prefix("MappedView { offset: ")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok()))
    });
    located.ok().flatten()
}

/// Turns an attribute into a CBOR value: numbers (one, or a flat array of
/// several), text. Anything else is skipped (`None`).
fn attr_value(
    dt: &DatatypeMessage,
    raw: &[u8],
    read_string: impl FnOnce() -> rust_hdf5::Result<String>,
) -> Option<Value> {
    if matches!(
        dt,
        DatatypeMessage::FixedString { .. } | DatatypeMessage::VarLenString { .. }
    ) {
        return read_string().ok().map(Value::Text);
    }
    let (size, kind) = match elem_type(dt) {
        ElemType::Int {
            size,
            signed,
            big_endian,
        } => (size as usize, (Some(signed), big_endian)),
        ElemType::Float {
            size: size @ (4 | 8),
            bf16: false,
            big_endian,
        } => (size as usize, (None, big_endian)),
        ElemType::Bool => (1, (Some(true), false)),
        _ => return None,
    };
    if raw.is_empty() || !raw.len().is_multiple_of(size) || raw.len() / size > MAX_ATTR_ELEMENTS {
        return None;
    }
    let values: Vec<Value> = raw
        .chunks_exact(size)
        .map(|c| {
            let mut b = [0u8; 8];
            if kind.1 {
                for (d, s) in b.iter_mut().zip(c.iter().rev()) {
                    *d = *s;
                }
            } else {
                b[..size].copy_from_slice(c);
            }
            let u = u64::from_le_bytes(b);
            let bool_like = matches!(elem_type(dt), ElemType::Bool);
            match kind.0 {
                _ if bool_like => Value::Bool(u != 0),
                Some(true) => {
                    let shift = 64 - 8 * size as u32;
                    Value::from(((u << shift) as i64) >> shift)
                }
                Some(false) => Value::from(u),
                None if size == 4 => Value::Float(f32::from_bits(u as u32) as f64),
                None => Value::Float(f64::from_bits(u)),
            }
        })
        .collect();
    Some(if values.len() == 1 {
        values.into_iter().next().expect("one value")
    } else {
        Value::Array(values)
    })
}
