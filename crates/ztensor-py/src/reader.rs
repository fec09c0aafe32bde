//! `_Reader`: the native reader, GIL released around every read.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use ztensor::{DType, ReadMode, Reader};

use crate::buffer::Buffer;
use crate::cbor;
use crate::errors::{shield, to_py};
use crate::handle::Handle;
use crate::results::{ArrayRead, TensorInfo};
use crate::slice::PyTensorSlice;

/// One tensor read, with what the Python side needs to wrap it as an array.
pub(crate) fn array_read(
    py: Python<'_>,
    name: String,
    bytes: ztensor::TensorBytes,
    info: &ztensor::TensorInfo,
) -> PyResult<ArrayRead> {
    Ok(ArrayRead {
        buffer: Py::new(py, Buffer::new(bytes))?,
        dtype: info.dtype().map_or("unknown", |d| d.name()),
        logical_type: info.logical_type().map(str::to_string),
        shape: info.shape.clone(),
        name,
    })
}

/// The read mode of the Python `eager` flag: pread instead of a mapping.
pub(crate) fn read_mode(eager: bool) -> ReadMode {
    if eager {
        ReadMode::Eager
    } else {
        ReadMode::Mmap
    }
}

/// Open options from the Python arguments (already normalised to a dtype name).
pub(crate) fn open_options(
    dequantize: Option<&str>,
    strict: bool,
) -> PyResult<ztensor_formats::OpenOptions> {
    let dtype = match dequantize {
        None => None,
        Some("float32") => Some(DType::F32),
        Some("float16") => Some(DType::F16),
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "dequantize must be None, 'float32' or 'float16', not {other:?}"
            )))
        }
    };
    Ok(ztensor_formats::OpenOptions::default()
        .dequantize(dtype)
        .strict(strict))
}

#[pyclass(name = "_Reader", module = "ztensor._ztensor", frozen)]
pub struct PyReader {
    inner: Handle<Reader>,
}

impl PyReader {
    /// A `_Reader` of an already open reader (a remote one).
    pub(crate) fn wrap(reader: Reader) -> Self {
        PyReader {
            inner: Handle::new(reader),
        }
    }

    pub(crate) fn get(&self) -> PyResult<Arc<Reader>> {
        self.inner.get()
    }
}

#[pymethods]
impl PyReader {
    /// Opens a tensor file of any supported format; `eager=True` reads with
    /// pread instead of handing out views of a mapping; `dequantize`
    /// (`"float32"`/`"float16"`) decodes GGUF quantized tensors; `strict`
    /// refuses pickles naming globals the reader does not interpret.
    #[new]
    #[pyo3(signature = (path, eager = false, dequantize = None, strict = false))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        eager: bool,
        dequantize: Option<&str>,
        strict: bool,
    ) -> PyResult<Self> {
        shield(|| {
            let mode = read_mode(eager);
            let options = open_options(dequantize, strict)?;
            let reader = py
                .detach(|| ztensor_formats::open_with_options(&path, mode, &options))
                .map_err(to_py)?;
            Ok(PyReader::wrap(reader))
        })
    }

    /// Reads a file image from bytes (copied once into aligned memory).
    #[staticmethod]
    #[pyo3(signature = (data, dequantize = None, strict = false))]
    fn from_bytes(
        py: Python<'_>,
        data: &Bound<'_, PyBytes>,
        dequantize: Option<&str>,
        strict: bool,
    ) -> PyResult<Self> {
        shield(|| {
            let bytes = data.as_bytes();
            let options = open_options(dequantize, strict)?;
            let reader = py
                .detach(|| ztensor_formats::from_bytes_with_options(bytes, &options))
                .map_err(to_py)?;
            Ok(PyReader::wrap(reader))
        })
    }

    fn close(&self) -> PyResult<()> {
        shield(|| {
            self.inner.close();
            Ok(())
        })
    }

    #[getter]
    fn closed(&self) -> PyResult<bool> {
        shield(|| Ok(self.inner.is_closed()))
    }

    #[getter]
    fn path(&self) -> PyResult<String> {
        shield(|| Ok(self.get()?.path().display().to_string()))
    }

    /// The detected file format (`"zt"`, `"safetensors"`, `"pickle"`, ...).
    #[getter]
    fn format(&self) -> PyResult<&'static str> {
        shield(|| Ok(self.get()?.format()))
    }

    #[getter]
    fn version(&self) -> PyResult<String> {
        shield(|| Ok(self.get()?.version().to_string()))
    }

    /// Pickles: the `module.name` of each global the reader skipped (its
    /// objects were not built); empty for other formats.
    fn skipped_globals(&self) -> PyResult<Vec<String>> {
        shield(|| Ok(self.get()?.skipped_globals().to_vec()))
    }

    /// Names sorted byte-wise.
    fn names(&self) -> PyResult<Vec<String>> {
        shield(|| Ok(self.get()?.names().map(str::to_string).collect()))
    }

    /// Names in the order their data lies in the file.
    fn names_in_file_order(&self) -> PyResult<Vec<String>> {
        shield(|| {
            Ok(self
                .get()?
                .names_in_file_order()
                .map(str::to_string)
                .collect())
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        shield(|| Ok(self.get()?.len()))
    }

    fn contains(&self, name: &str) -> PyResult<bool> {
        shield(|| Ok(self.get()?.contains(name)))
    }

    /// File-level attributes as a dict (empty when the file has none).
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        shield(|| match self.get()?.attributes() {
            Some(v) => cbor::to_py(py, v),
            None => Ok(PyDict::new(py).into_any()),
        })
    }

    /// What the reader knows about one tensor without reading it.
    fn info(&self, py: Python<'_>, name: &str) -> PyResult<TensorInfo> {
        shield(|| {
            let reader = self.get()?;
            let info = reader.info(name).map_err(to_py)?;
            TensorInfo::new(py, info)
        })
    }

    /// Reads dense tensors (all of them, in file order, when `names` is None),
    /// each with everything the Python side needs to wrap it as an array,
    /// in one call.
    #[pyo3(signature = (names, copy))]
    fn read_arrays(
        &self,
        py: Python<'_>,
        names: Option<Vec<String>>,
        copy: bool,
    ) -> PyResult<Vec<ArrayRead>> {
        shield(|| {
            let reader = self.get()?;
            let Some(names) = names else {
                // Everything, in file order: no name to look up.
                let results = py.detach(|| reader.read_all_isolated(copy));
                return results
                    .into_iter()
                    .map(|r| {
                        let (bytes, info) = r.map_err(to_py)?;
                        array_read(py, info.name.clone(), bytes, info)
                    })
                    .collect();
            };
            let results = py.detach(|| {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                reader.read_many_isolated(&refs, copy)
            });
            let mut arrays = Vec::with_capacity(names.len());
            for (name, r) in names.into_iter().zip(results) {
                let bytes = r.map_err(to_py)?;
                let info = reader.info(&name).map_err(to_py)?;
                arrays.push(array_read(py, name, bytes, info)?);
            }
            Ok(arrays)
        })
    }

    /// Reads one component of a tensor of any layout.
    fn read_component(
        &self,
        py: Python<'_>,
        name: &str,
        component: &str,
        copy: bool,
    ) -> PyResult<Buffer> {
        shield(|| {
            let reader = self.get()?;
            let bytes = py
                .detach(|| reader.read_component_isolated(name, component, copy))
                .map_err(to_py)?;
            Ok(Buffer::new(bytes))
        })
    }

    /// The dense tensor `name`, for reading part by part.
    fn slice(&self, name: &str) -> PyResult<PyTensorSlice> {
        shield(|| PyTensorSlice::of(self.get()?, name))
    }

    /// Checks every digest and compressed stream; returns the problems found.
    fn verify(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        shield(|| {
            let reader = self.get()?;
            Ok(py
                .detach(|| reader.verify())
                .into_iter()
                .map(|e| e.to_string())
                .collect())
        })
    }
}
