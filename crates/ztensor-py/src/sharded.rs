//! `_ShardedReader`: a sharded checkpoint (an index file, or the directory
//! holding one) with the methods of `_Reader`, over
//! `ztensor_formats::sharded::ShardedReader`. The GIL is released around
//! every shard open and read.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use ztensor_formats::sharded::ShardedReader;

use crate::buffer::Buffer;
use crate::cbor;
use crate::errors::{shield, to_py};
use crate::handle::Handle;
use crate::reader::{array_read, open_options, read_mode};
use crate::results::{ArrayRead, TensorInfo};
use crate::slice::PyTensorSlice;

#[pyclass(name = "_ShardedReader", module = "ztensor._ztensor", frozen)]
pub struct PyShardedReader {
    inner: Handle<ShardedReader>,
    /// Shards whose skipped pickle globals were already reported.
    warned: Mutex<HashSet<PathBuf>>,
}

impl PyShardedReader {
    fn get(&self) -> PyResult<Arc<ShardedReader>> {
        self.inner.get()
    }

    /// One `UserWarning` per newly opened pickle shard whose objects of
    /// uninterpreted globals were skipped (the warning `Reader` gives a
    /// single pickle at open; shards open later, when touched).
    fn warn_skipped(&self, py: Python<'_>, reader: &ShardedReader) -> PyResult<()> {
        let mut warned = self.warned.lock().expect("lock is never poisoned");
        for shard in reader.opened() {
            if shard.skipped_globals().is_empty() || !warned.insert(shard.path().to_path_buf()) {
                continue;
            }
            py.import("ztensor._reader")?.call_method1(
                "warn_skipped_globals",
                (
                    shard.path().display().to_string(),
                    shard.skipped_globals().to_vec(),
                ),
            )?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyShardedReader {
    /// Opens the index `path` (an `*.index.json` file, or a directory holding
    /// exactly one); shards open when first touched, each with `eager`,
    /// `dequantize` and `strict` as `_Reader` takes them.
    #[new]
    #[pyo3(signature = (path, eager = false, dequantize = None, strict = false))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        eager: bool,
        dequantize: Option<&str>,
        strict: bool,
    ) -> PyResult<Self> {
        shield(|| {
            let mode = read_mode(eager);
            let options = open_options(dequantize, strict)?;
            let reader = py
                .detach(|| ShardedReader::open(&path, mode, &options))
                .map_err(to_py)?;
            Ok(PyShardedReader {
                inner: Handle::new(reader),
                warned: Mutex::new(HashSet::new()),
            })
        })
    }

    fn close(&self) -> PyResult<()> {
        shield(|| {
            self.inner.close();
            Ok(())
        })
    }

    #[getter]
    fn closed(&self) -> PyResult<bool> {
        shield(|| Ok(self.inner.is_closed()))
    }

    /// The index file's path.
    #[getter]
    fn path(&self) -> PyResult<String> {
        shield(|| Ok(self.get()?.path().display().to_string()))
    }

    /// Always `"sharded"` (each shard has its own format).
    #[getter]
    fn format(&self) -> PyResult<&'static str> {
        shield(|| self.get().map(|_| "sharded"))
    }

    /// Empty: an index has no version.
    #[getter]
    fn version(&self) -> PyResult<String> {
        shield(|| self.get().map(|_| String::new()))
    }

    /// The shard file names, sorted, as the index lists them.
    fn shard_files(&self) -> PyResult<Vec<String>> {
        shield(|| Ok(self.get()?.shard_files().map(str::to_string).collect()))
    }

    /// Empty: skipped pickle globals are reported when each shard opens.
    fn skipped_globals(&self) -> PyResult<Vec<String>> {
        shield(|| self.get().map(|_| Vec::new()))
    }

    /// Names sorted byte-wise, from the index (no shard is opened).
    fn names(&self) -> PyResult<Vec<String>> {
        shield(|| Ok(self.get()?.names().map(str::to_string).collect()))
    }

    /// Names shard by shard, each shard's in file order (opens every shard).
    fn names_in_file_order(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        shield(|| {
            let reader = self.get()?;
            let names = py.detach(|| reader.names_in_file_order()).map_err(to_py)?;
            self.warn_skipped(py, &reader)?;
            Ok(names)
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        shield(|| Ok(self.get()?.len()))
    }

    fn contains(&self, name: &str) -> PyResult<bool> {
        shield(|| Ok(self.get()?.contains(name)))
    }

    /// The index's `metadata` (with `total_size`) as a dict.
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        shield(|| cbor::to_py(py, self.get()?.attributes()))
    }

    /// What the reader knows about one tensor (opens its shard).
    fn info(&self, py: Python<'_>, name: &str) -> PyResult<TensorInfo> {
        shield(|| {
            let reader = self.get()?;
            let shard = py.detach(|| reader.reader_for(name)).map_err(to_py)?;
            self.warn_skipped(py, &reader)?;
            TensorInfo::new(py, shard.info(name).map_err(to_py)?)
        })
    }

    /// Reads dense tensors (all, in `names_in_file_order`, when `names` is
    /// None), shards opened and read in parallel.
    #[pyo3(signature = (names, copy))]
    fn read_arrays(
        &self,
        py: Python<'_>,
        names: Option<Vec<String>>,
        copy: bool,
    ) -> PyResult<Vec<ArrayRead>> {
        shield(|| {
            let reader = self.get()?;
            let names = match names {
                Some(n) => n,
                None => py.detach(|| reader.names_in_file_order()).map_err(to_py)?,
            };
            let results = py.detach(|| {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                reader.read_many_isolated(&refs, copy)
            });
            self.warn_skipped(py, &reader)?;
            let mut arrays = Vec::with_capacity(names.len());
            for (name, r) in names.into_iter().zip(results) {
                let bytes = r.map_err(to_py)?;
                let shard = reader.reader_for(&name).map_err(to_py)?;
                let info = shard.info(&name).map_err(to_py)?;
                arrays.push(array_read(py, name, bytes, info)?);
            }
            Ok(arrays)
        })
    }

    /// Reads one component of a tensor of any layout.
    fn read_component(
        &self,
        py: Python<'_>,
        name: &str,
        component: &str,
        copy: bool,
    ) -> PyResult<Buffer> {
        shield(|| {
            let reader = self.get()?;
            let bytes = py
                .detach(|| {
                    reader
                        .reader_for(name)?
                        .read_component_isolated(name, component, copy)
                })
                .map_err(to_py)?;
            self.warn_skipped(py, &reader)?;
            Ok(Buffer::new(bytes))
        })
    }

    /// The dense tensor `name`, for reading part by part (opens its shard).
    fn slice(&self, py: Python<'_>, name: &str) -> PyResult<PyTensorSlice> {
        shield(|| {
            let reader = self.get()?;
            let shard = py.detach(|| reader.reader_for(name)).map_err(to_py)?;
            self.warn_skipped(py, &reader)?;
            PyTensorSlice::of(shard, name)
        })
    }

    /// Checks every shard (opening each); returns the problems found.
    fn verify(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        shield(|| {
            let reader = self.get()?;
            let problems = py.detach(|| reader.verify());
            self.warn_skipped(py, &reader)?;
            Ok(problems.into_iter().map(|e| e.to_string()).collect())
        })
    }
}
