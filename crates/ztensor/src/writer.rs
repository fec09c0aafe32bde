//! Streaming `.zt` writer: tensors go to disk one at a time, in call order,
//! 64-byte aligned; the manifest and footer are written by `finish`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicFile;
use crate::codec;
use crate::container::MAGIC;
use crate::digest::Checksum;
use crate::dtype::{as_bytes, storage_elements_per_item, DType, Element};
use crate::error::{Error, Result};
use crate::manifest;
use crate::model::{Component, Components, Encoding, Layout, TensorInfo, Value};
use crate::sparse;

/// Default blob alignment (every v1 offset is a multiple of it).
pub const DEFAULT_ALIGNMENT: u64 = 64;

/// The largest blob alignment a writer accepts (1 GiB, a huge page). Each
/// blob may be preceded by up to this many bytes of padding, so a larger
/// one would only fill disks.
pub const MAX_ALIGNMENT: u64 = 1 << 30;

/// Blobs larger than this are checksummed on a second core while written.
const PARALLEL_DIGEST: usize = 1 << 20;

/// Per-tensor storage options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOptions {
    /// zstd level 1..=22, or `None` to store raw bytes.
    pub compression: Option<i32>,
    /// Which digest to store for every component.
    pub checksum: Checksum,
}

impl WriteOptions {
    /// Raw bytes, no digest.
    pub fn raw() -> WriteOptions {
        WriteOptions::default()
    }

    /// zstd at `level` (clamped to 1..=22), no digest.
    pub fn zstd(level: i32) -> WriteOptions {
        WriteOptions {
            compression: Some(codec::clamp_level(level)),
            checksum: Checksum::None,
        }
    }

    /// The same options with a digest.
    pub fn with_checksum(self, checksum: Checksum) -> WriteOptions {
        WriteOptions { checksum, ..self }
    }
}

/// One array to store as a component.
#[derive(Debug, Clone, Copy)]
pub struct ComponentData<'a> {
    /// Storage dtype of the bytes.
    pub dtype: DType,
    /// Logical type label (`"f8_e4m3fn"`, `"complex64"`, ...).
    pub logical_type: Option<&'a str>,
    /// Little-endian element bytes.
    pub bytes: &'a [u8],
}

impl<'a> ComponentData<'a> {
    /// A component from typed values.
    pub fn of<T: Element>(values: &'a [T]) -> ComponentData<'a> {
        ComponentData {
            dtype: T::DTYPE,
            logical_type: None,
            bytes: as_bytes(values),
        }
    }
}

/// Writes a `.zt` file.
///
/// ```no_run
/// use ztensor::{Writer, WriteOptions, Checksum};
/// let mut w = Writer::create("out.zt")?;
/// w.add("bias", &[3], &[0.5f32, 1.0, 2.0])?;
/// let opts = WriteOptions::zstd(3).with_checksum(Checksum::Crc32c);
/// w.add_with("ids", &[2, 2], &[1i64, 2, 3, 4], &opts)?;
/// let size = w.finish()?; // atomically replaces out.zt
/// # Ok::<(), ztensor::Error>(())
/// ```
///
/// Dropping a writer without calling `finish` discards everything written.
pub struct Writer<W: Write = AtomicFile> {
    pub(crate) out: W,
    pub(crate) path: PathBuf,
    pub(crate) pos: u64,
    alignment: u64,
    pub(crate) objects: BTreeMap<String, TensorInfo>,
    pub(crate) attributes: Option<Value>,
    pub(crate) failed: bool,
    /// Objects of the file being appended to, carried over verbatim as
    /// manifest CBOR (see `append.rs`); empty for a new file.
    pub(crate) kept: BTreeMap<String, Value>,
}

impl Writer<AtomicFile> {
    /// Starts a file that replaces `path` atomically on [`Writer::finish`].
    pub fn create(path: impl AsRef<Path>) -> Result<Writer<AtomicFile>> {
        let path = path.as_ref();
        let out = AtomicFile::create(path).map_err(|e| Error::io(path, e))?;
        Writer::new(out, path)
    }

    /// Also fsync the file and its directory on finish (survives power loss).
    pub fn durable(mut self, durable: bool) -> Self {
        self.out.set_durable(durable);
        self
    }

    /// Pre-allocates room for `bytes` more bytes of tensor data (a hint that
    /// speeds up large saves; see [`AtomicFile::reserve`]).
    pub fn reserve(&mut self, bytes: u64) {
        self.out.reserve(self.pos.saturating_add(bytes));
    }

    /// Writes the manifest and publishes the file. Returns its size in bytes.
    pub fn finish(self) -> Result<u64> {
        let path = self.path.clone();
        let (size, out) = self.finish_into_inner()?;
        out.commit().map_err(|e| Error::io(path, e))?;
        Ok(size)
    }
}

impl Writer<Vec<u8>> {
    /// A writer that builds the file in memory.
    pub fn in_memory() -> Writer<Vec<u8>> {
        Writer::new(Vec::new(), "<memory>").expect("writing to a Vec cannot fail")
    }

    /// Finishes and returns the file's bytes.
    pub fn finish_into_vec(self) -> Result<Vec<u8>> {
        Ok(self.finish_into_inner()?.1)
    }
}

impl<W: Write> Writer<W> {
    /// A writer over any byte sink; `path` only names it in error messages.
    pub fn new(mut out: W, path: impl AsRef<Path>) -> Result<Writer<W>> {
        let path = path.as_ref().to_path_buf();
        out.write_all(MAGIC).map_err(|e| Error::io(&path, e))?;
        Ok(Writer::resume(out, path, MAGIC.len() as u64))
    }

    /// A writer whose sink already holds `pos` bytes of a file (appends).
    pub(crate) fn resume(out: W, path: PathBuf, pos: u64) -> Writer<W> {
        Writer {
            out,
            path,
            pos,
            alignment: DEFAULT_ALIGNMENT,
            objects: BTreeMap::new(),
            attributes: None,
            failed: false,
            kept: BTreeMap::new(),
        }
    }

    /// Uses a larger power-of-two alignment for the blobs written from now on
    /// (e.g. 4096 for page-aligned data). Must be a multiple of 64.
    pub fn with_alignment(mut self, alignment: u64) -> Result<Self> {
        if !(DEFAULT_ALIGNMENT..=MAX_ALIGNMENT).contains(&alignment) || !alignment.is_power_of_two()
        {
            return Err(Error::invalid(format!(
                "alignment must be a power of two from {DEFAULT_ALIGNMENT} to {MAX_ALIGNMENT} \
                 (1 GiB), not {alignment}"
            )));
        }
        self.alignment = alignment;
        Ok(self)
    }

    /// Sets the file-level attributes: a CBOR map with text keys.
    pub fn set_attributes(&mut self, attributes: Value) -> Result<()> {
        check_attribute_map(&attributes, "file attributes")?;
        self.attributes = Some(attributes);
        Ok(())
    }

    /// Adds a dense tensor from typed values, raw, without digest.
    pub fn add<T: Element>(&mut self, name: &str, shape: &[u64], values: &[T]) -> Result<()> {
        self.add_with(name, shape, values, &WriteOptions::raw())
    }

    /// Adds a dense tensor from typed values with the given options.
    pub fn add_with<T: Element>(
        &mut self,
        name: &str,
        shape: &[u64],
        values: &[T],
        opts: &WriteOptions,
    ) -> Result<()> {
        self.add_dense(name, shape, ComponentData::of(values), opts)
    }

    /// Adds a dense tensor from little-endian bytes.
    pub fn add_dense(
        &mut self,
        name: &str,
        shape: &[u64],
        data: ComponentData<'_>,
        opts: &WriteOptions,
    ) -> Result<()> {
        self.add_tensor(name, shape, Layout::Dense, None, &[("data", data)], opts)
    }

    /// Adds a CSR matrix of shape `[rows, cols]`; indices are stored as `u64`.
    pub fn add_sparse_csr(
        &mut self,
        name: &str,
        shape: [u64; 2],
        values: ComponentData<'_>,
        indices: &[u64],
        indptr: &[u64],
        opts: &WriteOptions,
    ) -> Result<()> {
        let components = [
            ("values", values),
            ("indices", ComponentData::of(indices)),
            ("indptr", ComponentData::of(indptr)),
        ];
        self.add_tensor(name, &shape, Layout::SparseCsr, None, &components, opts)
    }

    /// Adds a COO tensor; `coords` is dimension-major (all row indices, then
    /// all column indices, ...), stored as `u64`.
    pub fn add_sparse_coo(
        &mut self,
        name: &str,
        shape: &[u64],
        values: ComponentData<'_>,
        coords: &[u64],
        opts: &WriteOptions,
    ) -> Result<()> {
        let components = [("values", values), ("coords", ComponentData::of(coords))];
        self.add_tensor(name, shape, Layout::SparseCoo, None, &components, opts)
    }

    /// Adds a tensor of any layout with any named components, written in the
    /// given order. Dense tensors are checked against their shape.
    pub fn add_tensor(
        &mut self,
        name: &str,
        shape: &[u64],
        layout: Layout,
        attributes: Option<Value>,
        components: &[(&str, ComponentData<'_>)],
        opts: &WriteOptions,
    ) -> Result<()> {
        let bad = |m: String| Error::invalid(format!("tensor '{name}': {m}"));
        let widened = sparse::widen_indices(&layout, components).map_err(bad)?;
        let with_wide: Vec<(&str, ComponentData<'_>)>;
        let components = if widened.iter().all(Option::is_none) {
            components
        } else {
            with_wide = components
                .iter()
                .zip(&widened)
                .map(|(&(cname, c), wide)| match wide {
                    Some(bytes) => (
                        cname,
                        ComponentData {
                            dtype: DType::U64,
                            logical_type: None,
                            bytes,
                        },
                    ),
                    None => (cname, c),
                })
                .collect();
            &with_wide
        };
        self.check_tensor(name, shape, &layout, attributes.as_ref(), components)?;
        if self.failed {
            return Err(Error::invalid(
                "the writer failed earlier and cannot continue",
            ));
        }
        let mut stored = Components::new();
        for (cname, data) in components {
            let c = self
                .write_component(data, opts)
                .inspect_err(|_| self.failed = true)?;
            stored.insert(cname.to_string(), c);
        }
        let info = TensorInfo {
            name: name.to_string(),
            shape: shape.to_vec(),
            layout,
            components: stored,
            attributes,
        };
        self.objects.insert(name.to_string(), info);
        Ok(())
    }

    /// Checks a tensor before any of it is written: a new name, attributes
    /// that are a map, components whose bytes fit their dtype and shape.
    pub(crate) fn check_tensor(
        &self,
        name: &str,
        shape: &[u64],
        layout: &Layout,
        attributes: Option<&Value>,
        components: &[(&str, ComponentData<'_>)],
    ) -> Result<()> {
        self.check_new(name)?;
        let bad = |m: String| Error::invalid(format!("tensor '{name}': {m}"));
        if let Some(a) = attributes {
            check_attribute_map(a, &format!("tensor '{name}' attributes"))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (cname, c) in components {
            if !seen.insert(*cname) {
                return Err(bad(format!("component '{cname}' given twice")));
            }
            check_logical_type(c).map_err(|m| bad(format!("component '{cname}': {m}")))?;
            if c.bytes.len() % c.dtype.size() != 0 {
                return Err(bad(format!(
                    "component '{cname}' has {} bytes, not a whole number of {}",
                    c.bytes.len(),
                    c.dtype
                )));
            }
        }
        let numel = crate::shape::checked_numel(shape)
            .ok_or_else(|| bad(format!("shape {shape:?} overflows 64 bits")))?;
        if *layout == Layout::Dense {
            let [("data", data)] = components else {
                return Err(bad(
                    "a dense tensor has exactly one component, 'data'".into()
                ));
            };
            let expected = numel
                .checked_mul(storage_elements_per_item(data.logical_type))
                .and_then(|n| n.checked_mul(data.dtype.size() as u64))
                .ok_or_else(|| bad(format!("shape {shape:?} overflows 64 bits")))?;
            if data.bytes.len() as u64 != expected {
                return Err(bad(format!(
                    "shape {shape:?} of {} needs {expected} bytes, got {}",
                    data.logical_type.unwrap_or(data.dtype.name()),
                    data.bytes.len()
                )));
            }
        }
        match layout {
            Layout::SparseCsr => sparse::check_csr(shape, components).map_err(bad)?,
            Layout::SparseCoo => sparse::check_coo(shape, components).map_err(bad)?,
            _ => {}
        }
        Ok(())
    }

    /// Names of the tensors added so far.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.objects.keys().map(String::as_str)
    }

    /// Writes the manifest and footer and hands back the sink and file size.
    pub fn finish_into_inner(mut self) -> Result<(u64, W)> {
        if self.failed {
            return Err(Error::invalid(
                "the writer failed earlier; nothing was published",
            ));
        }
        let manifest = manifest::encode(self.attributes.as_ref(), &self.objects);
        let io = |e| Error::io(&self.path, e);
        self.out.write_all(&manifest).map_err(io)?;
        self.out
            .write_all(&(manifest.len() as u64).to_le_bytes())
            .map_err(io)?;
        self.out.write_all(MAGIC).map_err(io)?;
        self.out.flush().map_err(io)?;
        Ok((self.pos + manifest.len() as u64 + 16, self.out))
    }

    fn check_new(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid("tensor names must not be empty"));
        }
        if self.objects.contains_key(name) {
            return Err(Error::invalid(format!("duplicate tensor name '{name}'")));
        }
        if self.kept.contains_key(name) {
            return Err(Error::invalid(format!(
                "tensor '{name}' is already in {}; remove it first to replace it",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn write_component(
        &mut self,
        data: &ComponentData<'_>,
        opts: &WriteOptions,
    ) -> Result<Component> {
        self.pad()?;
        let offset = self.pos;
        let (stored, encoding): (Cow<[u8]>, Encoding) = match opts.compression {
            None => (Cow::Borrowed(data.bytes), Encoding::Raw),
            Some(level) => (
                Cow::Owned(
                    codec::compress(data.bytes, level).map_err(|e| Error::io(&self.path, e))?,
                ),
                Encoding::Zstd {
                    uncompressed_length: Some(data.bytes.len() as u64),
                },
            ),
        };
        let out = &mut self.out;
        let (digest, written) = if stored.len() >= PARALLEL_DIGEST {
            // The sink need not be Send, so the digest goes to the helper thread.
            std::thread::scope(|s| {
                let digest = s.spawn(|| opts.checksum.compute(&stored));
                let w = out.write_all(&stored);
                (digest.join().expect("digest computation does not panic"), w)
            })
        } else {
            let w = out.write_all(&stored);
            (opts.checksum.compute(&stored), w)
        };
        written.map_err(|e| Error::io(&self.path, e))?;
        self.pos += stored.len() as u64;
        Ok(Component {
            dtype: data.dtype,
            logical_type: data.logical_type.map(str::to_string),
            offset,
            length: stored.len() as u64,
            encoding,
            digest,
        })
    }

    pub(crate) fn pad(&mut self) -> Result<()> {
        static ZEROS: [u8; 4096] = [0; 4096];
        let mut pad = (self.alignment - self.pos % self.alignment) % self.alignment;
        while pad > 0 {
            let n = pad.min(ZEROS.len() as u64) as usize;
            self.out
                .write_all(&ZEROS[..n])
                .map_err(|e| Error::io(&self.path, e))?;
            pad -= n as u64;
            self.pos += n as u64;
        }
        Ok(())
    }
}

/// Known logical types must sit on their storage dtype.
fn check_logical_type(c: &ComponentData<'_>) -> Result<(), String> {
    let want = match c.logical_type {
        Some("complex64") => DType::F32,
        Some("complex128") => DType::F64,
        Some(t) if t.starts_with("f8_") => DType::U8,
        _ => return Ok(()),
    };
    if c.dtype != want {
        return Err(format!(
            "logical type {} is stored as {want}, not {}",
            c.logical_type.unwrap_or_default(),
            c.dtype
        ));
    }
    Ok(())
}

fn check_attribute_map(value: &Value, what: &str) -> Result<()> {
    match value {
        Value::Map(m) if m.iter().all(|(k, _)| matches!(k, Value::Text(_))) => Ok(()),
        Value::Map(_) => Err(Error::invalid(format!(
            "{what}: every key must be a string"
        ))),
        _ => Err(Error::invalid(format!("{what} must be a map"))),
    }
}
