//! `_LazyHdf5Reader`: an HDF5 file opened without walking it.
//!
//! Opening an HDF5 file with `_Reader` lists and checks every dataset
//! (hundreds of milliseconds for 20,000 of them); h5py opens lazily and
//! looks one name up when asked. This source does the same: opening checks
//! only what is checked before a walk (signature, superblock, truncation),
//! and a question about one name (`info`, `contains`, `read_arrays` of one
//! name, `read_component`, `slice`) is answered by a `_Reader` of that one
//! name (`ztensor_formats::hdf5::parse_one`: the entries the full parse
//! gives the name). The first question about every name (`names`,
//! `__len__`, `attributes`, `verify`, several names at once...) opens the
//! full `_Reader`, which then answers everything. Arrays and slices handed
//! out by either stay valid after `close`.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use ztensor::Reader;
use ztensor_formats::{hdf5, OpenOptions, ParseContext};

use crate::errors::{shield, to_py};
use crate::reader::{open_options, read_mode, PyReader};

#[pyclass(name = "_LazyHdf5Reader", module = "ztensor._ztensor", frozen)]
pub struct PyLazyHdf5 {
    path: PathBuf,
    eager: bool,
    options: OpenOptions,
    /// The superblock version, as `_Reader.version` gives it.
    version: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    closed: bool,
    /// The full reader, once something needed every name.
    full: Option<Py<PyReader>>,
    /// The last one-name reader built, and its name.
    one: Option<(String, Py<PyReader>)>,
}

impl PyLazyHdf5 {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("lock is never poisoned: no code panics while holding it")
    }

    fn open_state(&self) -> PyResult<MutexGuard<'_, State>> {
        let state = self.state();
        if state.closed {
            return Err(PyValueError::new_err("I/O operation on a closed Reader"));
        }
        Ok(state)
    }

    /// An error when closed, as `_Reader` raises it.
    fn check_open(&self) -> PyResult<()> {
        self.open_state().map(drop)
    }

    /// The full reader, opened on first use (the lock is not held while
    /// the file is walked, with the GIL released).
    fn full(&self, py: Python<'_>) -> PyResult<Py<PyReader>> {
        if let Some(full) = &self.open_state()?.full {
            return Ok(full.clone_ref(py));
        }
        let mode = read_mode(self.eager);
        let reader = py
            .detach(|| ztensor_formats::open_with_options(&self.path, mode, &self.options))
            .map_err(to_py)?;
        let reader = Py::new(py, PyReader::wrap(reader))?;
        let mut state = self.open_state()?;
        state.one = None;
        Ok(state.full.get_or_insert(reader).clone_ref(py))
    }

    /// A reader answering for `name`: the full one when it is open, else
    /// one holding only the entries of `name`.
    fn one(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyReader>> {
        {
            let state = self.open_state()?;
            if let Some(full) = &state.full {
                return Ok(full.clone_ref(py));
            }
            if let Some((n, r)) = &state.one {
                if n == name {
                    return Ok(r.clone_ref(py));
                }
            }
        }
        let mode = read_mode(self.eager);
        let reader = py
            .detach(|| {
                let cx = ParseContext::new(Some(&self.path), &self.options);
                Reader::open_with_parser(&self.path, mode, |b| hdf5::parse_one(b, &cx, name))
            })
            .map_err(to_py)?;
        let reader = Py::new(py, PyReader::wrap(reader))?;
        let mut state = self.open_state()?;
        if let Some(full) = &state.full {
            return Ok(full.clone_ref(py));
        }
        state.one = Some((name.to_string(), reader.clone_ref(py)));
        Ok(reader)
    }
}

#[pymethods]
impl PyLazyHdf5 {
    /// Opens an HDF5 file lazily; the arguments are `_Reader`'s. A missing
    /// file, one that is not HDF5 or is truncated is refused here.
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
            let options = open_options(dequantize, strict)?;
            let checked = py
                .detach(|| Reader::open_with_parser(&path, read_mode(eager), hdf5::parse_none))
                .map_err(to_py)?;
            Ok(PyLazyHdf5 {
                version: checked.version().to_string(),
                path,
                eager,
                options,
                state: Mutex::new(State::default()),
            })
        })
    }

    /// Whether the full reader was opened (something needed every name).
    #[getter]
    fn _materialized(&self) -> PyResult<bool> {
        shield(|| Ok(self.state().full.is_some()))
    }

    fn close(&self) -> PyResult<()> {
        shield(|| {
            let mut state = self.state();
            state.closed = true;
            state.full = None;
            state.one = None;
            Ok(())
        })
    }

    #[getter]
    fn closed(&self) -> PyResult<bool> {
        shield(|| Ok(self.state().closed))
    }

    #[getter]
    fn path(&self) -> PyResult<String> {
        shield(|| {
            self.check_open()?;
            Ok(self.path.display().to_string())
        })
    }

    #[getter]
    fn format(&self) -> PyResult<&'static str> {
        shield(|| {
            self.check_open()?;
            Ok("hdf5")
        })
    }

    #[getter]
    fn version(&self) -> PyResult<String> {
        shield(|| {
            self.check_open()?;
            Ok(self.version.clone())
        })
    }

    /// Always empty (pickles only).
    fn skipped_globals(&self) -> PyResult<Vec<String>> {
        shield(|| {
            self.check_open()?;
            Ok(Vec::new())
        })
    }

    fn names(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        shield(|| Ok(self.full(py)?.bind(py).call_method0("names")?.unbind()))
    }

    fn names_in_file_order(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        shield(|| {
            let full = self.full(py)?;
            Ok(full.bind(py).call_method0("names_in_file_order")?.unbind())
        })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        shield(|| self.full(py)?.bind(py).len())
    }

    fn contains(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        shield(|| {
            let one = self.one(py, name)?;
            Ok(one.bind(py).call_method1("contains", (name,))?.unbind())
        })
    }

    fn attributes(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        shield(|| Ok(self.full(py)?.bind(py).call_method0("attributes")?.unbind()))
    }

    fn info(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        shield(|| {
            let one = self.one(py, name)?;
            Ok(one.bind(py).call_method1("info", (name,))?.unbind())
        })
    }

    /// One name: from its own reader; none (all) or several: from the full one.
    #[pyo3(signature = (names, copy))]
    fn read_arrays(
        &self,
        py: Python<'_>,
        names: Option<Vec<String>>,
        copy: bool,
    ) -> PyResult<Py<PyAny>> {
        shield(|| {
            let reader = match names.as_deref() {
                Some([name]) => self.one(py, name)?,
                _ => self.full(py)?,
            };
            let arrays = reader.bind(py).call_method1("read_arrays", (names, copy))?;
            Ok(arrays.unbind())
        })
    }

    fn read_component(
        &self,
        py: Python<'_>,
        name: &str,
        component: &str,
        copy: bool,
    ) -> PyResult<Py<PyAny>> {
        shield(|| {
            let one = self.one(py, name)?;
            let buffer = one
                .bind(py)
                .call_method1("read_component", (name, component, copy))?;
            Ok(buffer.unbind())
        })
    }

    fn slice(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        shield(|| {
            let one = self.one(py, name)?;
            Ok(one.bind(py).call_method1("slice", (name,))?.unbind())
        })
    }

    fn verify(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        shield(|| Ok(self.full(py)?.bind(py).call_method0("verify")?.unbind()))
    }
}
