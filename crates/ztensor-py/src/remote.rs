//! `_open_remote`: a `_Reader` of a `.zt` or `.safetensors` file at a URL
//! (`s3://`, `gs://`, `az://`, `abfs://`, `http://`, `https://`), built on
//! the `ztensor-remote` crate; the open (one or two range requests) runs
//! with the GIL released.

use std::collections::HashMap;

use pyo3::prelude::*;

use crate::errors::shield;
use crate::reader::PyReader;

/// True when `path` is a URL the remote reader opens.
#[pyfunction]
#[pyo3(name = "_is_url")]
pub fn is_url(path: &str) -> PyResult<bool> {
    shield(|| Ok(cfg!(feature = "remote") && url_scheme(path)))
}

#[cfg(feature = "remote")]
fn url_scheme(path: &str) -> bool {
    ztensor_remote::is_url(path)
}

#[cfg(not(feature = "remote"))]
fn url_scheme(_path: &str) -> bool {
    false
}

/// Opens the file at `url`; `storage_options` (str -> str) configure the
/// store and the fetches (see `ztensor_remote::RemoteOptions::from_pairs`).
#[pyfunction]
#[pyo3(name = "_open_remote", signature = (url, storage_options = None))]
pub fn open_remote(
    py: Python<'_>,
    url: &str,
    storage_options: Option<HashMap<String, String>>,
) -> PyResult<PyReader> {
    shield(|| open(py, url, storage_options.unwrap_or_default()))
}

#[cfg(feature = "remote")]
fn open(py: Python<'_>, url: &str, options: HashMap<String, String>) -> PyResult<PyReader> {
    use crate::errors::to_py;
    let mut pairs: Vec<(String, String)> = options.into_iter().collect();
    pairs.sort(); // the same configuration whatever the dict's order
    let options = ztensor_remote::RemoteOptions::from_pairs(pairs).map_err(to_py)?;
    let reader = py
        .detach(|| ztensor_remote::open(url, &options))
        .map_err(to_py)?;
    Ok(PyReader::wrap(reader))
}

#[cfg(not(feature = "remote"))]
fn open(_py: Python<'_>, url: &str, _options: HashMap<String, String>) -> PyResult<PyReader> {
    Err(crate::errors::ZTensorError::new_err(format!(
        "{url}: this build of ztensor has no remote reading (the 'remote' feature)"
    )))
}
