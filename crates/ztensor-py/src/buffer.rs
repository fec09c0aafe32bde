//! Tensor bytes handed to Python through the NumPy array interface.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use ztensor::TensorBytes;

/// A block of tensor bytes (a view of a mapped file, or an owned aligned
/// copy). `numpy.asarray(buffer)` wraps it without copying; the array keeps
/// the buffer, and so the mapping or allocation, alive.
#[pyclass(frozen, module = "ztensor._ztensor")]
pub struct Buffer {
    bytes: TensorBytes,
}

impl Buffer {
    pub fn new(bytes: TensorBytes) -> Buffer {
        Buffer { bytes }
    }
}

#[pymethods]
impl Buffer {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    /// True when the bytes point into the file's private mapping.
    #[getter]
    fn zero_copy(&self) -> bool {
        self.bytes.is_zero_copy()
    }

    /// NumPy array interface, version 3: a writable 1-D uint8 array.
    ///
    /// Writable is sound: mapped files are mapped private copy-on-write
    /// (writes stay in this process), and owned copies belong to this buffer.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("shape", (self.bytes.len(),))?;
        d.set_item("typestr", "|u1")?;
        d.set_item("data", (self.bytes.as_ptr() as usize, false))?;
        d.set_item("version", 3)?;
        Ok(d)
    }
}
