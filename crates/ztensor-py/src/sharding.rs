//! Sharded saves for the Python front ends: the size limit, the shard plan
//! and the crash-safe commit of `ztensor_formats::sharded`, so Python and
//! `zt convert --max-shard-size` share one implementation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use ztensor_formats::sharded::{plan, save};

use crate::errors::{shield, to_py};

/// The shard size limit in bytes from an int or a string like `"5GB"`.
#[derive(FromPyObject)]
pub enum Size {
    /// A number of bytes.
    Bytes(i128),
    /// A number with a unit (`"5GB"`, `"512MiB"`).
    Text(String),
}

/// Parses `max_shard_size=`: a positive int, or a string with a unit.
#[pyfunction]
#[pyo3(name = "_parse_shard_size")]
pub fn parse_shard_size(size: Size) -> PyResult<u64> {
    shield(|| match size {
        Size::Bytes(n) => u64::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
            PyValueError::new_err(format!(
                "max_shard_size must be a positive number of bytes, not {n}"
            ))
        }),
        Size::Text(text) => plan::parse_size(&text).map_err(to_py),
    })
}

/// Each shard's tensor indices for tensors of these byte sizes (in order).
#[pyfunction]
#[pyo3(name = "_plan_shards")]
pub fn plan_shards(sizes: Vec<u64>, max_shard_size: u64) -> PyResult<Vec<Vec<usize>>> {
    shield(|| Ok(plan::plan(&sizes, max_shard_size)))
}

/// A sharded save in progress (`ztensor_formats::sharded::save::ShardedSave`).
#[pyclass(name = "_ShardedSave", module = "ztensor._ztensor", frozen)]
pub struct PyShardedSave {
    inner: save::ShardedSave,
}

#[pymethods]
impl PyShardedSave {
    #[new]
    fn new(target: PathBuf, shards: usize) -> PyResult<Self> {
        shield(|| {
            save::ShardedSave::new(&target, shards)
                .map(|inner| PyShardedSave { inner })
                .map_err(to_py)
        })
    }

    /// The shards' final file names.
    #[getter]
    fn names(&self) -> PyResult<Vec<String>> {
        shield(|| Ok(self.inner.names().to_vec()))
    }

    /// Where to write each shard (final or staging paths).
    #[getter]
    fn paths(&self) -> PyResult<Vec<String>> {
        shield(|| {
            let paths = self.inner.paths();
            Ok(paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect())
        })
    }

    /// The index file's path.
    #[getter]
    fn index_path(&self) -> PyResult<String> {
        shield(|| Ok(self.inner.index_path().to_string_lossy().into_owned()))
    }

    /// Publishes the checkpoint: the index (none for one shard) from
    /// `weight_map`, `total_size` and the metadata's JSON text, then removes
    /// what it replaced.
    #[pyo3(signature = (weight_map, total_size, metadata_json=None))]
    fn commit(
        &self,
        py: Python<'_>,
        weight_map: Option<BTreeMap<String, String>>,
        total_size: u64,
        metadata_json: Option<&str>,
    ) -> PyResult<()> {
        shield(|| {
            let index = weight_map
                .map(|m| save::index_with_metadata(total_size, m, metadata_json))
                .transpose()
                .map_err(to_py)?;
            py.detach(|| self.inner.commit(index.as_ref()))
                .map_err(to_py)
        })
    }

    /// Removes the shards of a failed save.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        shield(|| {
            py.detach(|| self.inner.abort());
            Ok(())
        })
    }
}
