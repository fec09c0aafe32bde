//! Appending: a `_Writer` that adds to an existing file in place, and the
//! ztensor 1.2.3 `remove_tensors` (a rewrite without some tensors).

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use ztensor::Writer;

use crate::errors::{shield, to_py};
use crate::writer::Target;

/// The writer behind `Writer(path, mode="a")`.
pub(crate) fn open(path: &Path, alignment: u64) -> PyResult<Target> {
    let w = Writer::append(path)
        .and_then(|w| w.with_alignment(alignment))
        .map_err(to_py)?;
    Ok(Target::Append(w))
}

/// Writes `output` (atomically; it may be `input`) with the tensors of
/// `input` except `names`, each copied as stored. Returns the new size.
#[pyfunction]
#[pyo3(name = "_remove_tensors")]
pub fn remove_tensors(
    py: Python<'_>,
    input: PathBuf,
    output: PathBuf,
    names: Vec<String>,
) -> PyResult<u64> {
    shield(|| {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        py.detach(|| ztensor::remove_tensors(&input, &output, &names))
            .map(|r| r.size)
            .map_err(to_py)
    })
}
