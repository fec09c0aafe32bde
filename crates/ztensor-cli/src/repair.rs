//! `zt repair`: undo an append that did not finish (see `ztensor::repair`).

use ztensor::Repair;

use crate::args::RepairArgs;
use crate::util::{self, Failure};

pub(crate) fn run(args: &RepairArgs) -> Result<i32, Failure> {
    let file = util::show(&args.file);
    match ztensor::repair(&args.file)? {
        Repair::Intact => {
            if !args.quiet {
                eprintln!("zt: {file} ends with a complete footer; nothing to repair");
            }
        }
        Repair::RolledBack { size, removed } => {
            if !args.quiet {
                eprintln!(
                    "zt: restored {file} to its content from before the unfinished append \
                     ({}, {removed} bytes of the append removed)",
                    util::human(size)
                );
            }
        }
    }
    Ok(crate::exit::OK)
}
