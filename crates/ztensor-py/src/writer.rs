//! `_Writer`: the native writer. Array bytes are read straight from NumPy
//! memory with the GIL released.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use ztensor::{
    AppendFile, AtomicFile, Checksum, ComponentData, DType, Layout, WriteOptions, Writer,
};

use crate::cbor;
use crate::errors::{shield, to_py, ZTensorError};

pub(crate) enum Target {
    File(Writer<AtomicFile>),
    Memory(Writer<Vec<u8>>),
    /// Adding to an existing file in place (see `append.rs`).
    Append(Writer<AppendFile>),
}

#[pyclass(name = "_Writer", module = "ztensor._ztensor", frozen)]
pub struct PyWriter {
    inner: Mutex<Option<Target>>,
}

/// The memory of a C-contiguous object exporting the buffer protocol,
/// pinned (numpy refuses to resize an exported array) until dropped.
struct ArrayBytes(PyUntypedBuffer);

impl ArrayBytes {
    fn of(array: &Bound<'_, PyAny>) -> PyResult<ArrayBytes> {
        let buf = PyUntypedBuffer::get(array)?;
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err("array must be C-contiguous"));
        }
        Ok(ArrayBytes(buf))
    }

    fn as_slice(&self) -> &[u8] {
        if self.0.len_bytes() == 0 {
            return &[];
        }
        // SAFETY: a C-contiguous exported buffer is `len_bytes` readable
        // bytes at `buf_ptr`, valid until the export is released (on drop).
        unsafe { std::slice::from_raw_parts(self.0.buf_ptr() as *const u8, self.0.len_bytes()) }
    }
}

/// Batches smaller than this are not worth a `fallocate` call.
const RESERVE_FROM: u64 = 16 << 20;

fn options(level: Option<i32>, checksum: &str) -> PyResult<WriteOptions> {
    let checksum = Checksum::parse(checksum).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown checksum {checksum:?}; use 'none', 'crc32c' or 'sha256'"
        ))
    })?;
    Ok(WriteOptions {
        compression: level.map(ztensor::codec::clamp_level),
        checksum,
    })
}

/// One tensor for `add_many`, as the Python side prepared it.
#[derive(FromPyObject)]
pub struct ArrayItem<'py> {
    #[pyo3(item(0))]
    name: String,
    #[pyo3(item(1))]
    array: Bound<'py, PyAny>,
    #[pyo3(item(2))]
    dtype: String,
    #[pyo3(item(3))]
    shape: Vec<u64>,
    #[pyo3(item(4))]
    logical_type: Option<String>,
}

impl PyWriter {
    fn with<T>(&self, f: impl FnOnce(&mut Target) -> PyResult<T>) -> PyResult<T> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| ZTensorError::new_err("writer is unusable after an internal error"))?;
        match guard.as_mut() {
            Some(t) => f(t),
            None => Err(ZTensorError::new_err(
                "the Writer is already finished or closed",
            )),
        }
    }

    fn take(&self) -> PyResult<Target> {
        self.inner
            .lock()
            .map_err(|_| ZTensorError::new_err("writer is unusable after an internal error"))?
            .take()
            .ok_or_else(|| ZTensorError::new_err("the Writer is already finished or closed"))
    }
}

#[pymethods]
impl PyWriter {
    /// A writer to `path` (published atomically by `finish`), or in memory
    /// when `path` is None; with `append`, adding to the existing file `path`.
    #[new]
    #[pyo3(signature = (path, alignment = 64, append = false))]
    fn new(path: Option<PathBuf>, alignment: u64, append: bool) -> PyResult<Self> {
        shield(|| {
            let target = match path {
                Some(p) if append => crate::append::open(&p, alignment)?,
                Some(p) => Target::File(
                    Writer::create(&p)
                        .map_err(to_py)?
                        .with_alignment(alignment)
                        .map_err(to_py)?,
                ),
                None => Target::Memory(
                    Writer::in_memory()
                        .with_alignment(alignment)
                        .map_err(to_py)?,
                ),
            };
            Ok(PyWriter {
                inner: Mutex::new(Some(target)),
            })
        })
    }

    fn set_attributes(&self, attributes: &Bound<'_, PyAny>) -> PyResult<()> {
        shield(|| {
            let value = cbor::from_py(attributes)?;
            self.with(|t| {
                match t {
                    Target::File(w) => w.set_attributes(value),
                    Target::Memory(w) => w.set_attributes(value),
                    Target::Append(w) => w.set_attributes(value),
                }
                .map_err(to_py)
            })
        })
    }

    /// Adds dense tensors, in order, each given as `(name, array, dtype,
    /// shape, logical_type)` where `array` is C-contiguous and its memory
    /// holds the little-endian storage bytes. One call for many tensors, so
    /// the GIL is released once.
    #[pyo3(signature = (items, level, checksum))]
    fn add_many(
        &self,
        py: Python<'_>,
        items: Vec<ArrayItem<'_>>,
        level: Option<i32>,
        checksum: &str,
    ) -> PyResult<()> {
        shield(|| {
            let opts = options(level, checksum)?;
            let prepared = items
                .iter()
                .map(|item| {
                    let dtype = DType::from_name(&item.dtype).ok_or_else(|| {
                        PyTypeError::new_err(format!("unsupported dtype {}", item.dtype))
                    })?;
                    Ok((item, dtype, ArrayBytes::of(&item.array)?))
                })
                .collect::<PyResult<Vec<_>>>()?;
            let jobs: Vec<(&str, &[u64], ComponentData<'_>)> = prepared
                .iter()
                .map(|(item, dtype, bytes)| {
                    let data = ComponentData {
                        dtype: *dtype,
                        logical_type: item.logical_type.as_deref(),
                        bytes: bytes.as_slice(),
                    };
                    (item.name.as_str(), item.shape.as_slice(), data)
                })
                .collect();
            // Raw data of known size: reserve the disk space up front.
            let raw_bytes: u64 = jobs
                .iter()
                .map(|(_, _, d)| d.bytes.len() as u64 + ztensor::DEFAULT_ALIGNMENT)
                .sum();
            self.with(|t| {
                if let (Target::File(w), None) = (&mut *t, opts.compression) {
                    if raw_bytes > RESERVE_FROM {
                        w.reserve(raw_bytes);
                    }
                }
                py.detach(|| match t {
                    Target::File(w) => w.add_dense_many(&jobs, &opts),
                    Target::Memory(w) => w.add_dense_many(&jobs, &opts),
                    Target::Append(w) => w.add_dense_many(&jobs, &opts),
                })
                .map_err(to_py)
            })
        })
    }

    /// Adds a tensor of any layout (`"sparse_csr"`, `"sparse_coo"`,
    /// `"quantized_group"`, ...) from `(component, array, dtype, logical_type)`
    /// items, written in order.
    #[pyo3(signature = (name, shape, layout, components, level, checksum, attributes = None))]
    #[allow(clippy::too_many_arguments)]
    fn add_object(
        &self,
        py: Python<'_>,
        name: &str,
        shape: Vec<u64>,
        layout: &str,
        components: Vec<(String, Bound<'_, PyAny>, String, Option<String>)>,
        level: Option<i32>,
        checksum: &str,
        attributes: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        shield(|| {
            let opts = options(level, checksum)?;
            let attributes = attributes.map(|a| cbor::from_py(&a)).transpose()?;
            let prepared = components
                .iter()
                .map(|(cname, array, dtype, logical)| {
                    let dtype = DType::from_name(dtype).ok_or_else(|| {
                        PyTypeError::new_err(format!("unsupported dtype {dtype}"))
                    })?;
                    Ok((
                        cname.as_str(),
                        dtype,
                        logical.as_deref(),
                        ArrayBytes::of(array)?,
                    ))
                })
                .collect::<PyResult<Vec<_>>>()?;
            let parts: Vec<(&str, ComponentData<'_>)> = prepared
                .iter()
                .map(|(cname, dtype, logical_type, bytes)| {
                    let data = ComponentData {
                        dtype: *dtype,
                        logical_type: *logical_type,
                        bytes: bytes.as_slice(),
                    };
                    (*cname, data)
                })
                .collect();
            let layout = Layout::parse(layout);
            self.with(|t| {
                py.detach(|| match t {
                    Target::File(w) => {
                        w.add_tensor(name, &shape, layout, attributes, &parts, &opts)
                    }
                    Target::Memory(w) => {
                        w.add_tensor(name, &shape, layout, attributes, &parts, &opts)
                    }
                    Target::Append(w) => {
                        w.add_tensor(name, &shape, layout, attributes, &parts, &opts)
                    }
                })
                .map_err(to_py)
            })
        })
    }

    /// Writes the manifest; publishes the file and returns its size, or
    /// returns the bytes for an in-memory writer.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        shield(|| match self.take()? {
            Target::File(w) => Ok(py
                .detach(|| w.finish())
                .map_err(to_py)?
                .into_pyobject(py)?
                .into_any()),
            Target::Memory(w) => {
                let bytes = py.detach(|| w.finish_into_vec()).map_err(to_py)?;
                Ok(PyBytes::new(py, &bytes).into_any())
            }
            Target::Append(w) => Ok(py
                .detach(|| w.finish())
                .map_err(to_py)?
                .into_pyobject(py)?
                .into_any()),
        })
    }

    /// Drops a tensor from the manifest to be written (see `Writer::remove`).
    fn remove(&self, name: &str) -> PyResult<()> {
        shield(|| {
            self.with(|t| {
                match t {
                    Target::File(w) => w.remove(name),
                    Target::Memory(w) => w.remove(name),
                    Target::Append(w) => w.remove(name),
                }
                .map_err(to_py)
            })
        })
    }

    /// Abandons the file: nothing is published and the temporary is
    /// removed (an append is undone: the file is back to its old size).
    fn discard(&self) -> PyResult<()> {
        shield(|| {
            if let Ok(mut guard) = self.inner.lock() {
                guard.take();
            }
            Ok(())
        })
    }

    #[getter]
    fn finished(&self) -> PyResult<bool> {
        shield(|| Ok(self.inner.lock().map(|g| g.is_none()).unwrap_or(true)))
    }
}
