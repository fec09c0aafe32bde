//! `Handle`: what a native reader object holds, so that `close()` can drop
//! the reader while Python still holds the object (and the arrays it handed
//! out, which keep their own references to the bytes).

use std::sync::{Arc, RwLock};

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;

/// An open reader, or nothing once closed.
pub(crate) struct Handle<T>(RwLock<Option<Arc<T>>>);

impl<T> Handle<T> {
    /// A handle on an open reader.
    pub(crate) fn new(reader: T) -> Self {
        Handle(RwLock::new(Some(Arc::new(reader))))
    }

    /// The reader, or Python's `ValueError` for I/O on a closed file.
    pub(crate) fn get(&self) -> PyResult<Arc<T>> {
        self.0
            .read()
            .expect("lock is never poisoned: no code panics while holding it")
            .clone()
            .ok_or_else(|| PyValueError::new_err("I/O operation on a closed Reader"))
    }

    /// Drops the reader (idempotent); reads already running keep theirs.
    pub(crate) fn close(&self) {
        self.0.write().expect("lock is never poisoned").take();
    }

    /// Whether `close` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.read().expect("lock is never poisoned").is_none()
    }
}
