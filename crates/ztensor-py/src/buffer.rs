//! Tensor bytes handed to Python through the buffer protocol.

use std::os::raw::c_int;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use ztensor::TensorBytes;

use crate::errors::shield;

/// A block of tensor bytes (a view of a mapped file, or an owned aligned
/// copy). `numpy.frombuffer(buffer, dtype)` wraps it without copying; the
/// array keeps the buffer, and so the mapping or allocation, alive.
#[pyclass(frozen, module = "ztensor._ztensor")]
pub struct Buffer {
    bytes: TensorBytes,
}

impl Buffer {
    pub fn new(bytes: TensorBytes) -> Buffer {
        Buffer { bytes }
    }

    /// The number of bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}

#[pymethods]
impl Buffer {
    fn __len__(&self) -> PyResult<usize> {
        shield(|| Ok(self.bytes.len()))
    }

    /// True when the bytes point into the file's private mapping.
    #[getter]
    fn zero_copy(&self) -> PyResult<bool> {
        shield(|| Ok(self.bytes.is_zero_copy()))
    }

    /// Exports the bytes as a writable, C-contiguous unsigned-byte buffer.
    ///
    /// # Safety
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: `view` comes from CPython, as `fill` requires.
        shield(|| unsafe { Self::fill(&slf, view, flags) })
    }
}

impl Buffer {
    /// The body of `__getbuffer__` (kept apart so the panic guard wraps it).
    ///
    /// # Safety
    /// `view` must be a valid `Py_buffer` to fill (CPython's contract).
    unsafe fn fill(slf: &Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let bytes = &slf.get().bytes;
        // SAFETY: `view` is valid (CPython's contract). The pointer stays
        // valid while the exporter lives, and FillInfo stores a new reference
        // to `slf` in view->obj. Exporting it writable is sound for what
        // users can do with it: mapped files are mapped private copy-on-write
        // (writes stay in this process and never reach the file), and owned
        // copies belong to this buffer alone.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                bytes.as_ptr() as *mut std::ffi::c_void,
                bytes.len() as ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::take(slf.py())
                .unwrap_or_else(|| PyBufferError::new_err("cannot export buffer")));
        }
        Ok(())
    }
}
