//! Opening tensor files and reading tensors: zero-copy from a private
//! copy-on-write mapping, or copied with `pread` into aligned buffers.
//! `.zt` files are parsed here; every other format by a parser handed to
//! [`Reader::open_with_parser`] (see [`crate::seam`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use crate::buffer::AlignedBuf;
use crate::catalog::{Catalog, Entry};
use crate::codec;
use crate::container;
use crate::dtype::Element;
use crate::error::{Error, ErrorKind, FormatError, Result};
use crate::model::{Component, Encoding, Layout, TensorInfo, Value};
use crate::source::{SharedBytes, Source, SpanMap, TensorBytes};
use crate::validate;

/// How a [`Reader`] gets at the bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Map the file privately (copy-on-write): reads are zero-copy and lazy.
    #[default]
    Mmap,
    /// Never map: every read copies with `pread` into a fresh aligned
    /// buffer. For network file systems, or files that may change.
    Eager,
}

/// An open tensor file: a `.zt` file ([`Reader::open`]), or a file of any
/// format a parser projects into a [`Catalog`] ([`Reader::open_with_parser`];
/// `ztensor_formats::open` detects the format and picks the parser).
///
/// ```no_run
/// let reader = ztensor::Reader::open("model.zt")?;
/// for info in reader.tensors() {
///     println!("{} {:?} {:?}", info.name, info.dtype(), info.shape);
/// }
/// let weights: &[f32] = reader.view("layer.weight")?;
/// # Ok::<(), ztensor::Error>(())
/// ```
pub struct Reader {
    path: PathBuf,
    pub(crate) source: Source,
    format: &'static str,
    version: String,
    attributes: Option<Value>,
    skipped_globals: Vec<String>,
    entries: Vec<Entry>,
    file_order: Vec<usize>,
    /// Per entry, a bit per component whose digest has been verified.
    verified: Vec<AtomicU64>,
    /// What sliced reads keep (frame indexes of zstd tensors).
    pub(crate) slices: crate::slice_read::SliceState,
}

impl Reader {
    /// Opens a file, memory-mapped (copy-on-write).
    pub fn open(path: impl AsRef<Path>) -> Result<Reader> {
        Reader::open_with(path, ReadMode::Mmap)
    }

    /// Opens a `.zt` file with the given [`ReadMode`].
    pub fn open_with(path: impl AsRef<Path>, mode: ReadMode) -> Result<Reader> {
        Reader::open_with_parser(path, mode, container::parse)
    }

    /// Opens a file of any format: `parse` turns the file's bytes into a
    /// [`Catalog`] (foreign-format readers supply their own). The file is
    /// mapped privately for parsing; in [`ReadMode::Eager`] the mapping is
    /// dropped afterwards and reads use `pread`.
    pub fn open_with_parser<E: Into<FormatError>>(
        path: impl AsRef<Path>,
        mode: ReadMode,
        parse: impl FnOnce(&[u8]) -> Result<Catalog, E>,
    ) -> Result<Reader> {
        let path = path.as_ref().to_path_buf();
        let io = |e| Error::io(&path, e);
        let file = File::open(&path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::from_raw_os_error(libc::EISDIR)));
        }
        let map = if meta.len() > 0 {
            // SAFETY: a private (copy-on-write) mapping: our writes never
            // reach the file. If another process truncates the file while
            // it is mapped, touching the lost pages raises SIGBUS; that
            // hazard is inherent to every mmap reader and documented, and
            // ReadMode::Eager exists for files that may change.
            let m = unsafe { memmap2::MmapOptions::new().map_copy(&file) }.map_err(io)?;
            Some(Arc::new(m))
        } else {
            None
        };
        let bytes: &[u8] = map.as_deref().map_or(&[], |m| &m[..]);
        let catalog = parse(bytes).map_err(|m| {
            let m: FormatError = m.into();
            Error::format(&path, m.map_message(|m| crate::append::name_file(m, &path)))
        })?;
        let map = if mode == ReadMode::Mmap { map } else { None };
        Ok(Reader::assemble(path, Source::File { file, map }, catalog))
    }

    /// Parses a `.zt` file image into a [`Catalog`] (the parser `open_with` uses).
    pub fn parse_zt(bytes: &[u8]) -> std::result::Result<Catalog, FormatError> {
        container::parse(bytes)
    }

    /// Reads a `.zt` file held in memory (the bytes are copied once into an aligned buffer).
    pub fn from_bytes(bytes: &[u8]) -> Result<Reader> {
        Reader::from_bytes_with_parser(bytes, container::parse)
    }

    /// Reads a file of any format held in memory, parsed by `parse`.
    pub fn from_bytes_with_parser<E: Into<FormatError>>(
        bytes: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<Catalog, E>,
    ) -> Result<Reader> {
        let path = PathBuf::from("<bytes>");
        let buf = AlignedBuf::copy_from(bytes).map_err(|e| Error::format(&path, e))?;
        let catalog = parse(&buf).map_err(|m| Error::format(&path, m))?;
        Ok(Reader::assemble(
            path,
            Source::Memory(Arc::new(buf)),
            catalog,
        ))
    }

    pub(crate) fn assemble(path: PathBuf, source: Source, catalog: Catalog) -> Reader {
        let mut entries = catalog.entries;
        // Parsers often hand entries over in name order already (the
        // safetensors fast path does): checking is linear, sorting is not.
        if !entries.is_sorted_by(|a, b| a.name <= b.name) {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
        }
        for i in 1..entries.len() {
            if entries[i].name == entries[i - 1].name {
                for j in [i - 1, i] {
                    entries[j].info = Err("the file lists this name more than once".into());
                }
            }
        }
        entries.dedup_by(|a, b| a.name == b.name);
        let (start, end) = catalog.data_region;
        validate::validate(&mut entries, start, end, catalog.overlaps_allowed);
        // Keys computed once, not per comparison (they showed in profiles of
        // files of many small tensors).
        let mut keyed: Vec<((u64, bool), usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let key = e
                    .info
                    .as_ref()
                    .map_or((u64::MAX, true), TensorInfo::file_order_key);
                (key, i)
            })
            .collect();
        keyed.sort_unstable();
        let file_order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
        let verified = entries.iter().map(|_| AtomicU64::new(0)).collect();
        let slices = crate::slice_read::SliceState::new(entries.len());
        Reader {
            path,
            source,
            format: catalog.format,
            version: catalog.version,
            attributes: catalog.attributes,
            skipped_globals: catalog.skipped_globals,
            entries,
            file_order,
            verified,
            slices,
        }
    }

    /// The file's format (`"zt"`, `"safetensors"`, ...).
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// The path the reader was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest's `version` string (`"1.2.0"` for v1, `"0.1.0"` for legacy files).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// File-level attributes (where `metadata=` is stored), a CBOR map.
    pub fn attributes(&self) -> Option<&Value> {
        self.attributes.as_ref()
    }

    /// Pickle files: the `module.name` of each global the reader skipped
    /// because it does not interpret it (see [`Catalog::skipped_globals`]);
    /// empty for other formats.
    pub fn skipped_globals(&self) -> &[String] {
        &self.skipped_globals
    }

    /// Number of tensors listed (including any that are unreadable).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file lists no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when a tensor of that name is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_ok()
    }

    /// Tensor names in byte-wise sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Tensor names in the order their data lies in the file (write order).
    pub fn names_in_file_order(&self) -> impl Iterator<Item = &str> {
        self.file_order
            .iter()
            .map(|&i| self.entries[i].name.as_str())
    }

    /// Descriptions of every readable tensor, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.entries.iter().filter_map(|e| e.info.as_ref().ok())
    }

    /// The description of one tensor; an error if it is missing or unreadable.
    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        let idx = self.lookup(name)?;
        self.entries[idx]
            .info
            .as_ref()
            .map_err(|m| Error::tensor(&self.path, name, m.clone()))
    }

    /// The bytes of a dense tensor: zero-copy when stored raw and mapped,
    /// otherwise a fresh buffer (decompressed if needed). Digests are checked.
    pub fn read(&self, name: &str) -> Result<TensorBytes> {
        self.read_dense(name, false, None)
    }

    /// An owned copy of a dense tensor's bytes, independent of the file.
    pub fn read_copy(&self, name: &str) -> Result<AlignedBuf> {
        match self.read_dense(name, true, None)? {
            TensorBytes::Owned(b) => Ok(b),
            TensorBytes::Shared(s) => {
                AlignedBuf::copy_from(s.as_slice()).map_err(|e| Error::tensor(&self.path, name, e))
            }
        }
    }

    /// Reads many dense tensors in parallel (decompression and copies use every core).
    pub fn read_many(&self, names: &[&str], copy: bool) -> Vec<Result<TensorBytes>> {
        self.read_many_in(names, copy, false)
    }

    /// [`Reader::read_many`] for callers that hand the bytes out as
    /// writable memory (the Python bindings do): the zero-copy results of
    /// this call point into a fresh private mapping of the span they cover,
    /// made for this call, instead of the reader's own mapping. Tensors of
    /// one call that share bytes in the file (tied weights, views of one
    /// torch storage) still share them; a write never shows in what another
    /// call returned, nor in the file. One `mmap` per call; when the kernel
    /// refuses it, the results point into the reader's mapping as usual.
    pub fn read_many_isolated(&self, names: &[&str], copy: bool) -> Vec<Result<TensorBytes>> {
        self.read_many_in(names, copy, !copy)
    }

    /// [`Reader::read_many_isolated`] of every tensor, in file order, each
    /// with its description; no name is looked up (with tens of thousands
    /// of small tensors, lookups were a fifth of a load).
    pub fn read_all_isolated(&self, copy: bool) -> Vec<Result<(TensorBytes, &TensorInfo)>> {
        if let Source::Ranged(_) = &self.source {
            let names: Vec<&str> = self.names_in_file_order().collect();
            let read = self.read_many_in(&names, copy, !copy);
            return read
                .into_iter()
                .zip(&names)
                .map(|(r, n)| Ok((r?, self.info(n)?)))
                .collect();
        }
        let found = self.file_order.iter().map(|&i| self.dense_at(i)).collect();
        let infos: Vec<Option<&TensorInfo>> = self
            .file_order
            .iter()
            .map(|&i| self.entries[i].info.as_ref().ok())
            .collect();
        self.read_found(found, copy, !copy)
            .into_iter()
            .zip(infos)
            .map(|(r, info)| Ok((r?, info.expect("a tensor read has a description"))))
            .collect()
    }

    fn read_many_in(&self, names: &[&str], copy: bool, isolate: bool) -> Vec<Result<TensorBytes>> {
        if let Source::Ranged(src) = &self.source {
            return self.read_many_ranged(&**src, names);
        }
        // Each name is looked up once.
        let found = names.iter().map(|n| self.dense(n)).collect();
        self.read_found(found, copy, isolate)
    }

    /// Reads the dense tensors found (index and description, or the error
    /// that their lookup gave), in parallel.
    fn read_found(
        &self,
        found: Vec<Result<(usize, &TensorInfo)>>,
        copy: bool,
        isolate: bool,
    ) -> Vec<Result<TensorBytes>> {
        let ok = || found.iter().filter_map(|f| f.as_ref().ok());
        let span = if isolate {
            self.map_span(ok().map(|(_, i)| &i.components["data"]))
        } else {
            None
        };
        // Zero-copy reads of raw, digest-free data are cheap per tensor (batch
        // them); copies, digests and decoding are not (spread them out).
        let heavy = copy
            || ok().any(|(_, i)| {
                i.components
                    .values()
                    .any(|c| c.encoding != Encoding::Raw || c.digest.is_some())
            });
        let span = span.as_ref();
        crate::parallel::install(|| {
            found
                .into_par_iter()
                .with_min_len(if heavy { 1 } else { 8 })
                .map(|f| {
                    let (idx, info) = f?;
                    self.fetch(idx, info, "data", &info.components["data"], copy, span)
                })
                .collect()
        })
    }

    /// A fresh private mapping covering the raw ones of `components`.
    fn map_span<'c>(&self, components: impl Iterator<Item = &'c Component>) -> Option<SpanMap> {
        let (start, end) = components
            .filter(|c| c.encoding == Encoding::Raw && c.length > 0)
            .fold((u64::MAX, 0), |(s, e), c| {
                (s.min(c.offset), e.max(c.offset + c.length))
            });
        self.source.map_span(start, end)
    }

    /// One named component of any layout (e.g. `indices` of a CSR tensor).
    pub fn read_component(&self, name: &str, component: &str, copy: bool) -> Result<TensorBytes> {
        self.read_component_in(name, component, copy, false)
    }

    /// [`Reader::read_component`] whose zero-copy result points into a fresh
    /// private mapping, as [`Reader::read_many_isolated`] explains.
    pub fn read_component_isolated(
        &self,
        name: &str,
        component: &str,
        copy: bool,
    ) -> Result<TensorBytes> {
        self.read_component_in(name, component, copy, true)
    }

    fn read_component_in(
        &self,
        name: &str,
        component: &str,
        copy: bool,
        isolated: bool,
    ) -> Result<TensorBytes> {
        let idx = self.lookup(name)?;
        let info = self.info(name)?;
        let c = info.components.get(component).ok_or_else(|| {
            Error::tensor(&self.path, name, format!("has no component '{component}'"))
        })?;
        let span = if isolated && !copy {
            self.map_span(std::iter::once(c))
        } else {
            None
        };
        self.fetch(idx, info, component, c, copy, span.as_ref())
    }

    /// A typed zero-copy slice of a raw dense tensor in a mapped file.
    pub fn view<T: Element>(&self, name: &str) -> Result<&[T]> {
        let info = self.info(name)?;
        let err = |m: String| Error::tensor(&self.path, name, m);
        self.check_element::<T>(info)?;
        let data = &info.components["data"];
        if data.encoding != Encoding::Raw {
            let how = match &data.encoding {
                Encoding::Zstd { .. } => "is compressed".to_string(),
                other => format!("must be decoded ({})", other.as_str()),
            };
            return Err(err(format!(
                "{how}; use to_vec() or read() instead of a zero-copy view"
            )));
        }
        let Some(backing) = self.source.backing() else {
            let why = match self.source {
                Source::Ranged(_) => "the file is remote (read by ranges)",
                _ => "the reader was opened in eager mode",
            };
            return Err(err(format!("{why}; use to_vec() or read()")));
        };
        let bytes = &backing.bytes()[data.offset as usize..(data.offset + data.length) as usize];
        self.check_digest(self.lookup(name)?, info, "data", data, bytes)?;
        check_bools::<T>(bytes).map_err(err)?;
        if !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return Err(err(
                "data is not aligned for a typed view; use to_vec()".into()
            ));
        }
        let n = bytes.len() / std::mem::size_of::<T>();
        let ptr = bytes.as_ptr().cast::<T>();
        drop(backing);
        // SAFETY: `ptr` points into memory owned by `self.source` (the mapping
        // or buffer lives as long as `self`), is aligned for T (checked), and
        // covers exactly n elements (length == numel * size_of::<T>, checked
        // at open). Every bit pattern of a byte is a valid element except for
        // bool, whose bytes `check_bools` has checked to be 0 or 1.
        Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
    }

    /// A dense tensor's values copied into a `Vec`.
    pub fn to_vec<T: Element>(&self, name: &str) -> Result<Vec<T>> {
        let info = self.info(name)?;
        self.check_element::<T>(info)?;
        let bytes = self.read(name)?;
        check_bools::<T>(&bytes).map_err(|m| Error::tensor(&self.path, name, m))?;
        let n = bytes.len() / std::mem::size_of::<T>();
        let mut out: Vec<T> = Vec::with_capacity(n);
        // SAFETY: `out` has capacity for n elements (n * size_of::<T>() ==
        // bytes.len()); byte-wise copy into uninitialised memory is allowed,
        // and the elements are valid (see `view`) before set_len.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            );
            out.set_len(n);
        }
        Ok(out)
    }

    /// Checks every tensor: structure, digests and full decompression.
    /// Returns the problems found (empty when the file is sound).
    pub fn verify(&self) -> Vec<Error> {
        crate::parallel::install(|| self.verify_all())
    }

    fn verify_all(&self) -> Vec<Error> {
        (0..self.entries.len())
            .into_par_iter()
            .flat_map_iter(|idx| {
                let entry = &self.entries[idx];
                let info = match &entry.info {
                    Ok(info) => info,
                    Err(m) => return vec![Error::tensor(&self.path, &entry.name, m.clone())],
                };
                info.components
                    .iter()
                    .filter_map(|(cname, c)| {
                        if let Some(crate::Digest::Unknown(d)) = &c.digest {
                            return Some(Error::tensor(
                                &self.path,
                                &info.name,
                                format!("component '{cname}': cannot verify digest of unknown algorithm '{d}'"),
                            ));
                        }
                        self.fetch(idx, info, cname, c, false, None).err()
                    })
                    .collect()
            })
            .collect()
    }

    pub(crate) fn lookup(&self, name: &str) -> Result<usize> {
        // Entries are sorted by name (byte-wise), so no separate index is kept.
        let found = self.entries.binary_search_by(|e| e.name.as_str().cmp(name));
        found.map_err(|_| Error::NotFound {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    fn check_element<T: Element>(&self, info: &TensorInfo) -> Result<()> {
        let err = |m: String| Error::tensor(&self.path, &info.name, m);
        if info.layout != Layout::Dense {
            return Err(err(format!(
                "has layout {}; read its components instead",
                info.layout
            )));
        }
        let dtype = info.dtype().expect("dense tensors have a data component");
        if dtype != T::DTYPE {
            return Err(err(format!("is {dtype}, not {}", T::DTYPE)));
        }
        Ok(())
    }

    fn read_dense(&self, name: &str, copy: bool, span: Option<&SpanMap>) -> Result<TensorBytes> {
        let (idx, info) = self.dense(name)?;
        self.fetch(idx, info, "data", &info.components["data"], copy, span)
    }

    /// The index and description of a dense tensor; an error for other layouts.
    pub(crate) fn dense(&self, name: &str) -> Result<(usize, &TensorInfo)> {
        self.dense_at(self.lookup(name)?)
    }

    /// [`Reader::dense`] of the entry at `idx`.
    fn dense_at(&self, idx: usize) -> Result<(usize, &TensorInfo)> {
        let entry = &self.entries[idx];
        let name = entry.name.as_str();
        let info = entry
            .info
            .as_ref()
            .map_err(|m| Error::tensor(&self.path, name, m.clone()))?;
        if info.layout != Layout::Dense {
            return Err(Error::tensor(
                &self.path,
                name,
                format!(
                    "has layout {}, not dense; read its components instead",
                    info.layout
                ),
            ));
        }
        Ok((idx, info))
    }

    pub(crate) fn fetch(
        &self,
        idx: usize,
        info: &TensorInfo,
        cname: &str,
        c: &Component,
        copy: bool,
        span: Option<&SpanMap>,
    ) -> Result<TensorBytes> {
        let err = |m: FormatError| self.component_error(info, cname, m);
        let backing = self.source.backing();
        let raw = c.encoding == Encoding::Raw;
        let stored = match backing {
            Some(backing) if !(copy && raw) => {
                // A zero-copy result comes from the call's own mapping, if any.
                let own = span
                    .filter(|_| raw)
                    .and_then(|s| s.bytes(c.offset, c.length));
                TensorBytes::Shared(own.unwrap_or_else(|| {
                    SharedBytes::new(backing, c.offset as usize, c.length as usize)
                }))
            }
            // Copies come from the mapping when there is one: measured here, a
            // memcpy (with the mapping's page faults) beat pread, most on a
            // first load (0.40 s vs 0.63 s per GiB), and no syscall per tensor.
            Some(backing) => {
                let range = c.offset as usize..(c.offset + c.length) as usize;
                let mut buf = AlignedBuf::for_overwrite(c.length as usize).map_err(err)?;
                crate::parallel::copy(buf.as_mut_slice(), &backing.bytes()[range]);
                TensorBytes::Owned(buf)
            }
            _ => {
                let mut buf = AlignedBuf::for_overwrite(c.length as usize).map_err(err)?;
                self.source
                    .read_into(c.offset, buf.as_mut_slice())
                    .map_err(|e| Error::io(&self.path, e))?;
                TensorBytes::Owned(buf)
            }
        };
        self.finish(idx, info, cname, c, stored)
    }

    /// A component's problem as an error naming the file, the tensor and the component.
    fn component_error(&self, info: &TensorInfo, cname: &str, m: FormatError) -> Error {
        Error::tensor(
            &self.path,
            &info.name,
            m.prefixed(format_args!("component '{cname}': ")),
        )
    }

    /// Checks the digest of a component's `stored` bytes and decodes them.
    pub(crate) fn finish(
        &self,
        idx: usize,
        info: &TensorInfo,
        cname: &str,
        c: &Component,
        stored: TensorBytes,
    ) -> Result<TensorBytes> {
        let err = |m: FormatError| self.component_error(info, cname, m);
        self.check_digest(idx, info, cname, c, &stored)?;
        let zstd_expected = match &c.encoding {
            Encoding::Raw => return Ok(stored),
            Encoding::Transformed(t) => {
                let mut out = AlignedBuf::zeroed(t.decoded_len() as usize).map_err(err)?;
                t.decode(&stored, out.as_mut_slice()).map_err(err)?;
                return Ok(TensorBytes::Owned(out));
            }
            Encoding::Zstd { .. } if info.layout == Layout::Dense && cname == "data" => {
                info.dense_nbytes()
            }
            Encoding::Zstd { .. } => c.decoded_len(),
        };
        let out = match zstd_expected {
            Some(n) => {
                let mut out = AlignedBuf::zeroed(n as usize).map_err(err)?;
                codec::decompress_exact(&stored, out.as_mut_slice()).map_err(err)?;
                out
            }
            None => {
                let v = codec::decompress_bounded(&stored, u64::MAX).map_err(err)?;
                let width = c.dtype.size();
                if v.len() % width != 0 {
                    return Err(err(format!(
                        "decodes to {} bytes, not a whole number of {width}-byte {} elements",
                        v.len(),
                        c.dtype.name()
                    )
                    .into()));
                }
                AlignedBuf::copy_from(&v).map_err(err)?
            }
        };
        Ok(TensorBytes::Owned(out))
    }

    /// The bit of `cname` in `verified`, if it has one.
    fn verified_bit(info: &TensorInfo, cname: &str) -> Option<u64> {
        info.components
            .keys()
            .position(|k| k == cname)
            .filter(|&p| p < 64)
            .map(|p| 1u64 << p)
    }

    /// True when `c` has a digest of a known algorithm that no read has checked yet.
    pub(crate) fn digest_pending(
        &self,
        idx: usize,
        info: &TensorInfo,
        cname: &str,
        c: &Component,
    ) -> bool {
        let known = matches!(&c.digest, Some(d) if !matches!(d, crate::Digest::Unknown(_)));
        let bit = Reader::verified_bit(info, cname);
        known && bit.is_none_or(|b| self.verified[idx].load(Ordering::Acquire) & b == 0)
    }

    pub(crate) fn check_digest(
        &self,
        idx: usize,
        info: &TensorInfo,
        cname: &str,
        c: &Component,
        stored: &[u8],
    ) -> Result<()> {
        let Some(digest) = &c.digest else {
            return Ok(());
        };
        let bit = Reader::verified_bit(info, cname);
        if let Some(bit) = bit {
            if self.verified[idx].load(Ordering::Acquire) & bit != 0 {
                return Ok(());
            }
        }
        match digest.verify(stored) {
            Ok(true) => {
                if let Some(bit) = bit {
                    self.verified[idx].fetch_or(bit, Ordering::AcqRel);
                }
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(m) => Err(Error::tensor(
                &self.path,
                &info.name,
                FormatError::new(
                    ErrorKind::ChecksumMismatch,
                    format!("component '{cname}': {m}"),
                ),
            )),
        }
    }
}

/// A Rust `bool` must be 0 or 1; other bytes (which some writers store) are refused.
fn check_bools<T: Element>(bytes: &[u8]) -> Result<(), String> {
    if T::DTYPE == crate::DType::Bool && bytes.iter().any(|&b| b > 1) {
        return Err("bool data holds bytes other than 0 and 1".into());
    }
    Ok(())
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.entries.len())
            .finish_non_exhaustive()
    }
}
