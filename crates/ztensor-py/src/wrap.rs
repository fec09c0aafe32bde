//! `wrap_arrays`: the dict of arrays the front ends return, built in one
//! native pass over what `read_arrays` gave (no Python code runs per tensor:
//! with tens of thousands of small tensors, that per-tensor Python is what
//! the load costs).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::errors::ZTensorError;
use crate::results::ArrayRead;

/// What a (storage dtype, logical type) pair turns into, asked of Python
/// once per pair and call.
struct Kind {
    storage: &'static str,
    logical: Option<String>,
    /// The NumPy dtype of the array made over the buffer.
    dtype: Py<PyAny>,
    /// Its item size, to check the buffer against the shape.
    itemsize: usize,
    /// A dtype to reinterpret the converted array as (`.view(...)`), if any.
    view: Option<Py<PyAny>>,
}

/// `{name: array}` in the order of `arrays`. Each array is
/// `numpy.ndarray(shape, dtype, buffer)` over the tensor's buffer (no copy);
/// `dtype_of(storage, logical)` gives its NumPy dtype, or a pair
/// `(dtype, view)`. With `convert` (e.g. `torch.from_numpy`) each array is
/// passed through it, then `.view(view)` when the pair gave one.
#[pyfunction]
#[pyo3(signature = (arrays, dtype_of, convert = None))]
pub fn wrap_arrays<'py>(
    py: Python<'py>,
    arrays: Vec<PyRef<'py, ArrayRead>>,
    dtype_of: &Bound<'py, PyAny>,
    convert: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    crate::errors::shield(|| {
        let ndarray = py.import("numpy")?.getattr("ndarray")?;
        let out = PyDict::new(py);
        let mut kinds: Vec<Kind> = Vec::new();
        for a in &arrays {
            let k = match kinds
                .iter()
                .position(|k| k.storage == a.dtype && k.logical == a.logical_type)
            {
                Some(k) => k,
                None => {
                    kinds.push(kind(dtype_of, a)?);
                    kinds.len() - 1
                }
            };
            let kind = &kinds[k];
            let buffer = a.buffer.bind(py);
            let expected = a
                .shape
                .iter()
                .try_fold(kind.itemsize as u64, |n, &d| n.checked_mul(d));
            let len = buffer.get().len() as u64;
            if expected != Some(len) {
                return Err(ZTensorError::new_err(format!(
                    "tensor '{}': {len} bytes do not hold shape {:?} of {}",
                    a.name, a.shape, a.dtype
                )));
            }
            let shape = PyTuple::new(py, &a.shape)?;
            let mut value = ndarray.call1((shape, kind.dtype.bind(py), buffer))?;
            if let Some(convert) = convert {
                value = convert.call1((value,))?;
                if let Some(view) = &kind.view {
                    value = value.call_method1("view", (view.bind(py),))?;
                }
            }
            out.set_item(PyString::new(py, &a.name), value)?;
        }
        Ok(out)
    })
}

fn kind(dtype_of: &Bound<'_, PyAny>, a: &ArrayRead) -> PyResult<Kind> {
    let got = dtype_of.call1((a.dtype, a.logical_type.as_deref()))?;
    let (dtype, view) = match got.cast::<PyTuple>() {
        Ok(pair) => (pair.get_item(0)?, Some(pair.get_item(1)?)),
        Err(_) => (got, None),
    };
    let itemsize = dtype.getattr("itemsize")?.extract()?;
    Ok(Kind {
        storage: a.dtype,
        logical: a.logical_type.clone(),
        itemsize,
        dtype: dtype.unbind(),
        view: view.filter(|v| !v.is_none()).map(Bound::unbind),
    })
}
