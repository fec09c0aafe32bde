//! # ztensor-cli
//!
//! The `zt` command: inspect, convert, verify and compare tensor files of
//! every format [`ztensor_formats`] reads, and compact or repair `.zt` files.
//!
//! The whole command line lives in this library so that the `zt` binary and
//! the console script of the Python package (`ztensor._ztensor.cli_main`)
//! run the same code:
//!
//! ```no_run
//! let code = ztensor_cli::run(["zt", "info", "model.zt", "--json"]);
//! std::process::exit(code);
//! ```
//!
//! Exit statuses: [`exit::OK`] (0), [`exit::PROBLEMS`] (1: problems found or
//! the command failed), [`exit::USAGE`] (2: bad command line; `zt diff` also
//! uses 2 when a file cannot be read, like `diff(1)`), [`exit::INTERRUPTED`]
//! (130).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;

mod args;
mod compact;
mod convert;
mod diff;
mod filter;
mod info;
mod input;
mod progress;
mod repair;
mod safetensors_out;
mod sharded;
mod util;
mod verify;

/// The exit statuses `zt` uses.
pub mod exit {
    /// Success: the file is sound, the files are identical, the output was written.
    pub const OK: i32 = 0;
    /// Problems found (`verify`, `diff`) or the command failed.
    pub const PROBLEMS: i32 = 1;
    /// The command line is wrong (and, for `zt diff`, a file cannot be read).
    pub const USAGE: i32 = 2;
    /// Stopped by Ctrl-C (128 + SIGINT).
    pub const INTERRUPTED: i32 = 130;
}

/// A request to stop a running command, shared between the command and
/// whoever catches Ctrl-C (a signal handler, or the Python binding's
/// signal-checking loop).
///
/// Commands check it between tensors (and between chunks of a large
/// write); a stopped `convert` removes its temporary output, so nothing is
/// left behind.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    state: Arc<InterruptState>,
}

#[derive(Debug, Default)]
struct InterruptState {
    requested: AtomicBool,
    writing: AtomicBool,
}

impl Interrupt {
    /// A fresh, unset request.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Asks the running command to stop at its next check.
    pub fn request(&self) {
        self.state.requested.store(true, Ordering::SeqCst);
    }

    /// True once [`Interrupt::request`] has been called.
    pub fn is_requested(&self) -> bool {
        self.state.requested.load(Ordering::SeqCst)
    }

    /// True while a command has an unfinished output file open: stopping it
    /// through [`Interrupt::request`] (rather than killing the process)
    /// removes the temporary file.
    pub fn is_writing(&self) -> bool {
        self.state.writing.load(Ordering::SeqCst)
    }

    pub(crate) fn set_writing(&self, writing: bool) {
        self.state.writing.store(writing, Ordering::SeqCst);
    }

    /// `Err(Failure::Interrupted)` once a stop was requested.
    pub(crate) fn check(&self) -> Result<(), util::Failure> {
        if self.is_requested() {
            Err(util::Failure::Interrupted)
        } else {
            Ok(())
        }
    }
}

/// Runs `zt` with `args` (the first item is the program name, as in
/// `std::env::args_os()`) and returns the exit status. Output goes to the
/// process's standard output and standard error.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with(args, &Interrupt::new())
}

/// [`run`] with an [`Interrupt`] that another thread may set to stop the command.
pub fn run_with<I, T>(args: I, interrupt: &Interrupt) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; errors to stderr with 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = match &cli.command {
        args::Command::Info(a) => info::run(a),
        args::Command::Convert(a) => convert::run(a, interrupt),
        args::Command::Verify(a) => verify::run(a, interrupt),
        args::Command::Diff(a) => diff::run(a, interrupt),
        args::Command::Compact(a) => compact::run(a),
        args::Command::Repair(a) => repair::run(a),
    };
    interrupt.set_writing(false);
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
