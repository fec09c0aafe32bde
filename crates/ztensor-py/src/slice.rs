//! `_Slice`: one tensor of an open file, read part by part
//! (`ztensor.safe_open(...).get_slice(name)[index]`).

use std::sync::Arc;

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyEllipsis, PyList, PySlice};
use ztensor::{Index, Reader, Selection, SliceError};

use crate::buffer::Buffer;
use crate::errors::{shield, to_py};
use crate::reader::PyReader;

/// One element of an index as the Python side passes it, already checked:
/// an int, a `slice` of ints or `None`, `Ellipsis`, or a list of ints.
struct PyIndex(Index);

impl<'py> FromPyObject<'_, 'py> for PyIndex {
    type Error = PyErr;

    fn extract(ob: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if ob.is_instance_of::<PyEllipsis>() {
            return Ok(PyIndex(Index::Ellipsis));
        }
        if ob.is_instance_of::<PySlice>() {
            let bound = |attr: &str| -> PyResult<Option<i64>> { ob.getattr(attr)?.extract() };
            return Ok(PyIndex(Index::Range {
                start: bound("start")?,
                stop: bound("stop")?,
                step: bound("step")?,
            }));
        }
        if ob.is_instance_of::<PyList>() {
            return Ok(PyIndex(Index::List(ob.extract()?)));
        }
        Ok(PyIndex(Index::At(ob.extract()?)))
    }
}

/// A tensor of a reader, kept for reading parts of it. It holds the reader
/// itself, so it stays usable after the file object is closed.
#[pyclass(name = "_Slice", module = "ztensor._ztensor", frozen)]
pub struct PyTensorSlice {
    reader: Arc<Reader>,
    /// The tensor's name.
    #[pyo3(get)]
    name: String,
    /// The tensor's shape.
    #[pyo3(get)]
    shape: Vec<u64>,
    /// Storage dtype name (`"float32"`, ...).
    #[pyo3(get)]
    dtype: &'static str,
    /// Logical type (`"f8_e4m3fn"`, `"complex64"`, ...) or None.
    #[pyo3(get, name = "type")]
    logical: Option<String>,
}

#[pymethods]
impl PyTensorSlice {
    /// The tensor `name` of `reader` (KeyError if there is none; ZTensorError
    /// if it cannot be read or is not dense).
    #[new]
    fn new(reader: &PyReader, name: &str) -> PyResult<Self> {
        shield(|| PyTensorSlice::of(reader.get()?, name))
    }

    /// Reads the part `index` selects; returns `(buffer, shape)`. `numpy`
    /// picks NumPy's placement of a list combined with integers (otherwise
    /// PyTorch's). Out-of-range positions and malformed indexes raise
    /// IndexError (a zero step, ValueError).
    fn read(
        &self,
        py: Python<'_>,
        index: Vec<PyIndex>,
        numpy: bool,
    ) -> PyResult<(Buffer, Vec<u64>)> {
        shield(|| {
            let index: Vec<Index> = index.into_iter().map(|i| i.0).collect();
            let sel = if numpy {
                Selection::numpy(&self.shape, &index)
            } else {
                Selection::new(&self.shape, &index)
            }
            .map_err(|e| self.index_error(e))?;
            let bytes = py
                .detach(|| self.reader.read_selection_isolated(&self.name, &sel))
                .map_err(to_py)?;
            Ok((Buffer::new(bytes), sel.shape().to_vec()))
        })
    }
}

impl PyTensorSlice {
    /// The tensor `name` of `reader` (KeyError if there is none; ZTensorError
    /// if it cannot be read or is not dense).
    pub(crate) fn of(reader: Arc<Reader>, name: &str) -> PyResult<Self> {
        let info = reader.info(name).map_err(to_py)?;
        let dtype = info.dtype().map_or("unknown", |d| d.name());
        let logical = info.logical_type().map(str::to_string);
        let shape = info.shape.clone();
        Ok(PyTensorSlice {
            name: name.to_string(),
            reader,
            shape,
            dtype,
            logical,
        })
    }

    fn index_error(&self, e: SliceError) -> PyErr {
        let msg = format!(
            "{e} (tensor '{}' of shape {:?} in {})",
            self.name,
            self.shape,
            self.reader.path().display()
        );
        match e {
            SliceError::ZeroStep => PyValueError::new_err(msg),
            _ => PyIndexError::new_err(msg),
        }
    }
}
