//! Python values <-> CBOR values for file and tensor attributes.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use ztensor::Value;

/// Nesting deeper than this is refused (ciborium's decoder stops at 256).
const MAX_DEPTH: usize = 128;

/// Converts a JSON-like Python value (str, int, float, bool, None, bytes,
/// list, tuple, dict, and NumPy scalars) into CBOR.
pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    convert(obj, 0)
}

fn convert(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err("metadata is nested too deeply"));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Text(s.to_cow()?.into_owned()));
    }
    if obj.is_instance_of::<PyInt>() {
        return int_value(obj);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut entries = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            entries.push((convert(&k, depth + 1)?, convert(&v, depth + 1)?));
        }
        return Ok(Value::Map(entries));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let items = obj
            .try_iter()?
            .map(|item| convert(&item?, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Value::Array(items));
    }
    // NumPy scalars and other number-likes.
    if obj.hasattr("__index__")? {
        return int_value(&obj.call_method0("__index__")?);
    }
    if obj.hasattr("__float__")? && !obj.hasattr("__len__")? {
        return Ok(Value::Float(obj.call_method0("__float__")?.extract()?));
    }
    Err(PyTypeError::new_err(format!(
        "cannot store a value of type {} in metadata (use str, int, float, bool, None, bytes, list or dict)",
        obj.get_type().name()?
    )))
}

fn int_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(v) = obj.extract::<i64>() {
        return Ok(Value::Integer(v.into()));
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(Value::Integer(v.into()));
    }
    if let Ok(v) = obj.extract::<i128>() {
        if let Ok(i) = v.try_into() {
            return Ok(Value::Integer(i));
        }
    }
    Err(PyValueError::new_err(format!(
        "integer {} does not fit in 64 bits",
        obj.str()?
    )))
}

/// Converts a CBOR value into the natural Python value.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Integer(i) => i128::from(*i).into_pyobject(py)?.into_any(),
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Text(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (k, v) in entries {
                let key = to_py(py, k)?;
                // Lists are not hashable; use a tuple for such (rare) keys.
                let key = match key.cast::<PyList>() {
                    Ok(l) => PyTuple::new(py, l.iter())?.into_any(),
                    Err(_) => key,
                };
                dict.set_item(key, to_py(py, v)?)?;
            }
            dict.into_any()
        }
        Value::Tag(_, inner) => to_py(py, inner)?,
        _ => py.None().into_bound(py),
    })
}
