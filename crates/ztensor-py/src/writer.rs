//! `_Writer`: the native writer. Array bytes are read straight from NumPy
//! memory with the GIL released.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use ztensor::{AtomicFile, Checksum, ComponentData, DType, WriteOptions, Writer};

use crate::cbor;
use crate::errors::{shield, to_py};

enum Target {
    File(Writer<AtomicFile>),
    Memory(Writer<Vec<u8>>),
}

#[pyclass(name = "_Writer", module = "ztensor._ztensor", frozen)]
pub struct PyWriter {
    inner: Mutex<Option<Target>>,
}

/// A C-contiguous NumPy array's memory, borrowed while `owner` is held.
struct ArrayBytes {
    ptr: usize,
    len: usize,
}

impl ArrayBytes {
    /// Reads the array interface of `array` and checks it is C-contiguous.
    fn of(array: &Bound<'_, PyAny>) -> PyResult<ArrayBytes> {
        let contiguous: bool = array
            .getattr("flags")?
            .get_item("C_CONTIGUOUS")?
            .extract()?;
        if !contiguous {
            return Err(PyValueError::new_err("array must be C-contiguous"));
        }
        let interface = array.getattr("__array_interface__")?;
        let (ptr, _readonly): (usize, bool) = interface.get_item("data")?.extract()?;
        let len: usize = array.getattr("nbytes")?.extract()?;
        if ptr == 0 && len > 0 {
            return Err(PyValueError::new_err("array has no data"));
        }
        Ok(ArrayBytes { ptr, len })
    }

    /// # Safety
    /// The array these bytes came from must stay alive (and not be resized)
    /// for as long as the returned slice is used.
    unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: for a live C-contiguous ndarray, `data` points at `nbytes`
        // readable bytes (the caller keeps the array alive).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl PyWriter {
    fn with<T>(&self, f: impl FnOnce(&mut Target) -> PyResult<T>) -> PyResult<T> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| PyValueError::new_err("writer is unusable after an internal error"))?;
        match guard.as_mut() {
            Some(t) => f(t),
            None => Err(PyValueError::new_err(
                "the Writer is already finished or closed",
            )),
        }
    }

    fn take(&self) -> PyResult<Target> {
        self.inner
            .lock()
            .map_err(|_| PyValueError::new_err("writer is unusable after an internal error"))?
            .take()
            .ok_or_else(|| PyValueError::new_err("the Writer is already finished or closed"))
    }
}

#[pymethods]
impl PyWriter {
    /// A writer to `path` (published atomically by `finish`), or in memory when `path` is None.
    #[new]
    #[pyo3(signature = (path, alignment = 64))]
    fn new(path: Option<PathBuf>, alignment: u64) -> PyResult<Self> {
        shield(|| {
            let target = match path {
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
        let value = cbor::from_py(attributes)?;
        self.with(|t| {
            match t {
                Target::File(w) => w.set_attributes(value),
                Target::Memory(w) => w.set_attributes(value),
            }
            .map_err(to_py)
        })
    }

    /// Adds a dense tensor whose bytes are the C-contiguous `array`'s memory.
    #[pyo3(signature = (name, array, dtype, shape, logical_type, level, checksum))]
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        py: Python<'_>,
        name: &str,
        array: &Bound<'_, PyAny>,
        dtype: &str,
        shape: Vec<u64>,
        logical_type: Option<&str>,
        level: Option<i32>,
        checksum: &str,
    ) -> PyResult<()> {
        let dtype = DType::from_name(dtype)
            .ok_or_else(|| PyTypeError::new_err(format!("unsupported dtype {dtype}")))?;
        let checksum = Checksum::parse(checksum).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown checksum {checksum:?}; use 'none', 'crc32c' or 'sha256'"
            ))
        })?;
        let opts = WriteOptions {
            compression: level.map(|l| l.clamp(1, 22)),
            checksum,
        };
        let bytes = ArrayBytes::of(array)?;
        shield(|| {
            self.with(|t| {
                // SAFETY: `array` is borrowed for the whole call, so its
                // memory stays alive while the GIL is released.
                let data = ComponentData {
                    dtype,
                    logical_type,
                    bytes: unsafe { bytes.as_slice() },
                };
                py.detach(|| match t {
                    Target::File(w) => w.add_dense(name, &shape, data, &opts),
                    Target::Memory(w) => w.add_dense(name, &shape, data, &opts),
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
        })
    }

    /// Abandons the file: nothing is published and the temporary is removed.
    fn discard(&self) {
        if let Ok(mut guard) = self.inner.lock() {
            guard.take();
        }
    }

    #[getter]
    fn finished(&self) -> bool {
        self.inner.lock().map(|g| g.is_none()).unwrap_or(true)
    }
}
