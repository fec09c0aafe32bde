//! Mapping core errors to Python exceptions, and keeping panics out of Python.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyKeyError, PyOSError, PyValueError};
use pyo3::prelude::*;

// A RuntimeError (still an Exception): code written for ztensor 1.2.3 and
// safetensors catches RuntimeError for corrupt files and misuse.
pyo3::create_exception!(
    ztensor,
    ZTensorError,
    pyo3::exceptions::PyRuntimeError,
    "A tensor file's content is invalid, a tensor in it cannot be read, or a writer is misused."
);

/// Converts a core error into the exception a Python user expects, by its
/// kind: `Io` is an `OSError` (its subclass chosen by errno), `NotFound` a
/// `KeyError`, `InvalidArgument` a `ValueError`, and every problem with a
/// file's content (corrupt, truncated, checksum mismatch, unsupported,
/// limit exceeded, torn append, unsafe pickle, ...) a `ZTensorError`.
pub fn to_py(err: ztensor::Error) -> PyErr {
    match err {
        ztensor::Error::Io { path, source } => {
            match source.raw_os_error().or_else(|| errno_of(source.kind())) {
                // OSError(errno, strerror, filename) picks the right subclass
                // (FileNotFoundError, IsADirectoryError, PermissionError, ...).
                Some(code) => {
                    PyOSError::new_err((code, strip_os_suffix(&source), path.display().to_string()))
                }
                None => PyOSError::new_err(format!("{}: {source}", path.display())),
            }
        }
        ztensor::Error::NotFound { path, name } => {
            PyKeyError::new_err(format!("no tensor named '{name}' in {}", path.display()))
        }
        ztensor::Error::InvalidArgument(m) => PyValueError::new_err(m),
        // Every kind a `Format` error carries, including an `Io` kind from a
        // read inside a decoding step (the file at fault is the tensor file).
        e @ ztensor::Error::Format { .. } => ZTensorError::new_err(e.to_string()),
    }
}

/// Some wrappers (e.g. the temp-file crate) drop the OS error code; recover
/// it from the kind so Python still raises the specific OSError subclass.
fn errno_of(kind: std::io::ErrorKind) -> Option<i32> {
    use std::io::ErrorKind::*;
    Some(match kind {
        NotFound => 2,
        PermissionDenied => 13,
        AlreadyExists => 17,
        NotADirectory => 20,
        IsADirectory => 21,
        WouldBlock => 11, // EAGAIN, BlockingIOError: another process holds a lock
        _ => return None,
    })
}

fn strip_os_suffix(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Runs `f`, turning a panic (a bug, never expected) into a ZTensorError
/// instead of letting pyo3 raise a `BaseException`.
pub fn shield<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(ZTensorError::new_err(format!(
            "internal error (please report): {}",
            ztensor_formats::panic_message(&*payload)
        )))
    })
}

/// Panics inside the same guard every entry point uses: the test suite
/// calls it to prove a panic reaches Python as a `ZTensorError` and the
/// process survives. Hidden (underscore name), never used by the package.
#[pyfunction]
#[pyo3(name = "_panic_for_tests")]
pub fn panic_for_tests(message: &str) -> PyResult<()> {
    shield(|| panic!("{message}"))
}
