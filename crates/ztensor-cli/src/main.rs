//! The `zt` binary: a thin shell around [`ztensor_cli::run_with`].

use ztensor_cli::{exit, Interrupt};

/// mimalloc, as in the Python extension: files of tens of thousands of
/// small tensors make a few small allocations per tensor, where glibc's
/// malloc bookkeeping cost as much as the parsing.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let interrupt = Interrupt::new();
    let handler = interrupt.clone();
    // Ctrl-C while an output is being written asks the command to stop and
    // remove its temporary file; otherwise (or at a second Ctrl-C) exit now.
    let _ = ctrlc::set_handler(move || {
        if handler.is_writing() && !handler.is_requested() {
            handler.request();
        } else {
            eprintln!("zt: interrupted");
            std::process::exit(exit::INTERRUPTED);
        }
    });
    std::process::exit(ztensor_cli::run_with(std::env::args_os(), &interrupt));
}
