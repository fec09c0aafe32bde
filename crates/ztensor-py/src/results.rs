//! Named results of `_Reader`, so the Python side reads fields by name
//! instead of unpacking positional tuples.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use ztensor::Encoding;

use crate::buffer::Buffer;
use crate::cbor;

/// One dense tensor read by `_Reader.read_arrays`: everything the Python
/// side needs to wrap it as an array.
#[pyclass(module = "ztensor._ztensor", frozen, get_all)]
pub struct ArrayRead {
    /// The tensor's name.
    pub name: String,
    /// Its bytes (a view of the file's mapping, or an owned copy).
    pub buffer: Py<Buffer>,
    /// Its storage dtype name (`"float32"`, ...).
    pub dtype: &'static str,
    /// Its logical type (`"complex64"`, `"f8_e4m3fn"`, ...), if any.
    pub logical_type: Option<String>,
    /// Its shape in logical elements.
    pub shape: Vec<u64>,
}

/// What `_Reader.info` knows about one tensor without reading it.
#[pyclass(module = "ztensor._ztensor", frozen, get_all)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Its shape in logical elements.
    pub shape: Vec<u64>,
    /// The storage dtype name of its primary component (`"unknown"` if none).
    pub dtype: &'static str,
    /// The logical type of its primary component, if any.
    pub logical_type: Option<String>,
    /// Its layout (`"dense"`, `"sparse_csr"`, ...).
    pub layout: String,
    /// Component name -> dict of `dtype`, `type`, `offset`, `length`,
    /// `encoding`, `uncompressed_length` and `digest`.
    pub components: Py<PyDict>,
    /// Its attributes (a dict), or None.
    pub attributes: Option<Py<PyAny>>,
}

impl TensorInfo {
    /// The Python view of a core tensor description.
    pub fn new(py: Python<'_>, info: &ztensor::TensorInfo) -> PyResult<TensorInfo> {
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
            Some(a) => Some(cbor::to_py(py, a)?.unbind()),
            None => None,
        };
        Ok(TensorInfo {
            name: info.name.clone(),
            shape: info.shape.clone(),
            dtype: info.dtype().map_or("unknown", |d| d.name()),
            logical_type: info.logical_type().map(str::to_string),
            layout: info.layout.as_str().to_string(),
            components: components.unbind(),
            attributes,
        })
    }
}
