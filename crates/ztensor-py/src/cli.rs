//! `cli_main`: the `zt` command line run from Python (the `zt` console script).
//!
//! The command runs on a worker thread with the GIL released; this thread
//! waits for it in short slices and checks Python's signals in between, so
//! Ctrl-C stops the command at its next check (a tensor or a 64 MiB chunk):
//! an unfinished output is removed and `KeyboardInterrupt` is raised.

use std::ffi::OsString;
use std::sync::mpsc;
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::{shield, ZTensorError};

/// Runs `zt` with `argv` (`sys.argv`: the program name first) and returns
/// its exit status. Output goes straight to the process's stdout/stderr.
#[pyfunction]
pub fn cli_main(py: Python<'_>, argv: Vec<OsString>) -> PyResult<i32> {
    shield(|| run(py, argv))
}

fn run(py: Python<'_>, argv: Vec<OsString>) -> PyResult<i32> {
    let interrupt = ztensor_cli::Interrupt::new();
    let worker_interrupt = interrupt.clone();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("zt".into())
        .spawn(move || {
            let code = ztensor_cli::run_with(argv, &worker_interrupt);
            let _ = tx.send(code);
        })
        .map_err(|e| ZTensorError::new_err(format!("cannot start the zt thread: {e}")))?;
    let mut pending_signal: Option<PyErr> = None;
    let mut rx = Some(rx);
    loop {
        // The receiver is not Sync: move it into the GIL-free closure and back.
        let receiver = rx
            .take()
            .expect("the receiver is put back after every wait");
        let (received, receiver) = py.detach(move || {
            let r = receiver.recv_timeout(Duration::from_millis(50));
            (r, receiver)
        });
        rx = Some(receiver);
        match received {
            Ok(code) => {
                let _ = worker.join();
                return match pending_signal {
                    Some(err) => Err(err),
                    None => Ok(code),
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if pending_signal.is_none() {
                    if let Err(err) = py.check_signals() {
                        // Ask the command to stop cleanly, then wait for it.
                        interrupt.request();
                        pending_signal = Some(err);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let message = match worker.join() {
                    Err(payload) => ztensor_formats::panic_message(&*payload).to_string(),
                    Ok(()) => "the zt thread ended without a result".into(),
                };
                return Err(ZTensorError::new_err(format!(
                    "internal error in zt (please report): {message}"
                )));
            }
        }
    }
}
