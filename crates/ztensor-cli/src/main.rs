//! The `zt` binary: a thin shell around [`ztensor_cli::run_with`].

use ztensor_cli::{exit, Interrupt};

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
