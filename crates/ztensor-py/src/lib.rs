//! `ztensor._ztensor`: the native half of the Python package. It exposes the
//! core reader and writer with the GIL released around all I/O and compute;
//! the Python half (dtype mapping, NumPy arrays, the public API) lives in
//! `python/ztensor/`.

use pyo3::prelude::*;

/// Rust's allocations in the extension go to mimalloc: opening a file of
/// tens of thousands of small tensors allocates and frees a few small
/// objects per tensor, and glibc's malloc spent half of that time in its
/// bookkeeping (chunk consolidation on free). Python's own objects and
/// NumPy's buffers keep their allocators.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod append;
mod buffer;
mod cbor;
mod cli;
mod errors;
mod handle;
mod lazy;
mod reader;
mod remote;
mod results;
mod sharded;
mod sharding;
mod slice;
mod wrap;
mod writer;

#[pymodule]
fn _ztensor(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ZTensorError", m.py().get_type::<errors::ZTensorError>())?;
    m.add_class::<buffer::Buffer>()?;
    m.add_class::<reader::PyReader>()?;
    m.add_class::<lazy::PyLazyHdf5>()?;
    m.add_class::<results::ArrayRead>()?;
    m.add_class::<results::TensorInfo>()?;
    m.add_class::<sharded::PyShardedReader>()?;
    m.add_class::<slice::PyTensorSlice>()?;
    m.add_class::<writer::PyWriter>()?;
    m.add_class::<sharding::PyShardedSave>()?;
    m.add_function(wrap_pyfunction!(sharding::parse_shard_size, m)?)?;
    m.add_function(wrap_pyfunction!(sharding::plan_shards, m)?)?;
    m.add_function(wrap_pyfunction!(wrap::wrap_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(remote::open_remote, m)?)?;
    m.add_function(wrap_pyfunction!(remote::is_url, m)?)?;
    m.add_function(wrap_pyfunction!(cli::cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(append::remove_tensors, m)?)?;
    m.add_function(wrap_pyfunction!(errors::panic_for_tests, m)?)?;
    Ok(())
}
