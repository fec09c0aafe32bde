//! `zt compact`: rewrite a `.zt` file without the bytes appends left unused.

use crate::args::CompactArgs;
use crate::util::{self, Failure};

pub(crate) fn run(args: &CompactArgs) -> Result<i32, Failure> {
    let input = &args.file;
    let output = args.output.as_ref().unwrap_or(input);
    let before = std::fs::metadata(input)
        .map_err(|e| Failure::Error(format!("{}: {e}", util::show(input))))?
        .len();
    let done = ztensor::compact(input, output, args.alignment)?;
    if !args.quiet {
        eprintln!(
            "zt: wrote {}: {} tensor{}, {} -> {} ({} reclaimed)",
            util::show(output),
            done.tensors,
            if done.tensors == 1 { "" } else { "s" },
            util::human(before),
            util::human(done.size),
            util::human(before.saturating_sub(done.size)),
        );
    }
    Ok(crate::exit::OK)
}
