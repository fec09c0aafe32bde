//! `_Reader`: the native reader, GIL released around every read.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use ztensor::{DType, Encoding, ReadMode, Reader, TensorInfo};

use crate::buffer::Buffer;
use crate::cbor;
use crate::errors::{shield, to_py};

/// Open options from the Python arguments (already normalised to a dtype name).
fn open_options(dequantize: Option<&str>, strict: bool) -> PyResult<ztensor_formats::OpenOptions> {
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
    inner: RwLock<Option<Arc<Reader>>>,
}

impl PyReader {
    pub(crate) fn get(&self) -> PyResult<Arc<Reader>> {
        self.inner
            .read()
            .expect("lock is never poisoned: no code panics while holding it")
            .clone()
            .ok_or_else(|| PyValueError::new_err("I/O operation on a closed Reader"))
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
            let mode = if eager {
                ReadMode::Eager
            } else {
                ReadMode::Mmap
            };
            let options = open_options(dequantize, strict)?;
            let reader = py
                .detach(|| ztensor_formats::open_with_options(&path, mode, &options))
                .map_err(to_py)?;
            Ok(PyReader {
                inner: RwLock::new(Some(Arc::new(reader))),
            })
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
            Ok(PyReader {
                inner: RwLock::new(Some(Arc::new(reader))),
            })
        })
    }

    fn close(&self) -> PyResult<()> {
        shield(|| {
            self.inner.write().expect("lock is never poisoned").take();
            Ok(())
        })
    }

    #[getter]
    fn closed(&self) -> PyResult<bool> {
        shield(|| Ok(self.inner.read().expect("lock is never poisoned").is_none()))
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

    /// `(name, shape, dtype, type, format, components, attributes)` of one tensor.
    fn info<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        shield(|| {
            let reader = self.get()?;
            let info = reader.info(name).map_err(to_py)?;
            info_tuple(py, info)
        })
    }

    /// Reads dense tensors (all of them, in file order, when `names` is None)
    /// and returns `(name, buffer, dtype, type, shape)` tuples: everything
    /// the Python side needs to wrap each as an array, in one call.
    #[pyo3(signature = (names, copy))]
    fn read_arrays<'py>(
        &self,
        py: Python<'py>,
        names: Option<Vec<String>>,
        copy: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        shield(|| {
            let reader = self.get()?;
            let names =
                names.unwrap_or_else(|| reader.names_in_file_order().map(str::to_string).collect());
            let results = py.detach(|| {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                reader.read_many_isolated(&refs, copy)
            });
            let list = PyList::empty(py);
            for (name, r) in names.iter().zip(results) {
                let bytes = r.map_err(to_py)?;
                let info = reader.info(name).map_err(to_py)?;
                let dtype = info.dtype().map_or("unknown", |d| d.name());
                let item = (
                    name,
                    Buffer::new(bytes),
                    dtype,
                    info.logical_type(),
                    info.shape.clone(),
                );
                list.append(item.into_pyobject(py)?)?;
            }
            Ok(list)
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

fn info_tuple<'py>(py: Python<'py>, info: &TensorInfo) -> PyResult<Bound<'py, PyAny>> {
    let components = PyDict::new(py);
    for (cname, c) in &info.components {
        let d = PyDict::new(py);
        d.set_item("dtype", c.dtype.name())?;
        d.set_item("type", c.logical_type.as_deref())?;
        d.set_item("offset", c.offset)?;
        d.set_item("length", c.length)?;
        d.set_item("encoding", c.encoding.as_str())?;
        // As in the manifest: only compressed components state it.
        let uncompressed = match &c.encoding {
            Encoding::Raw => None,
            _ => c.decoded_len(),
        };
        d.set_item("uncompressed_length", uncompressed)?;
        d.set_item("digest", c.digest.as_ref().map(|d| d.to_string()))?;
        components.set_item(cname, d)?;
    }
    let attributes = match &info.attributes {
        Some(a) => cbor::to_py(py, a)?,
        None => py.None().into_bound(py),
    };
    let dtype = info.dtype().map_or("unknown", |d| d.name());
    let tuple = (
        info.name.as_str(),
        info.shape.clone(),
        dtype,
        info.logical_type(),
        info.layout.as_str(),
        components,
        attributes,
    );
    Ok(tuple.into_pyobject(py)?.into_any())
}
