//! `zt verify`: structure, every digest, decoding of every component.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use ztensor::{DType, Digest, Layout, ReadMode, Reader};

use crate::args::VerifyArgs;
use crate::progress::Progress;
use crate::util::{self, outln, Failure};
use crate::{exit, Interrupt};

#[derive(Default)]
struct Counts {
    digests: AtomicU64,
    decoded: AtomicU64,
    bytes: AtomicU64,
}

pub(crate) fn run(args: &VerifyArgs, interrupt: &Interrupt) -> Result<i32, Failure> {
    if crate::sharded::is_sharded(&args.file) {
        return crate::sharded::verify(args, interrupt);
    }
    let shown = util::show(&args.file);
    // Eager: every component is read with pread into a buffer freed right
    // after its check, so memory stays bounded by the largest tensors.
    let options = ztensor_formats::OpenOptions::default();
    let reader = match crate::input::open(&args.file, ReadMode::Eager, &options) {
        Ok(r) => r.reader,
        // The file is there but is not a sound tensor file: that is a finding.
        Err(e @ ztensor::Error::Format { .. }) => {
            let mut out = std::io::stdout().lock();
            outln!(out, "{e}");
            outln!(out, "{shown}: FAILED: the file cannot be opened");
            return Ok(exit::PROBLEMS);
        }
        Err(e) => return Err(e.into()),
    };
    let names: Vec<&str> = reader.names_in_file_order().collect();
    let total: u64 = names
        .iter()
        .filter_map(|n| reader.info(n).ok())
        .map(util::stored_bytes)
        .sum();
    let progress = Progress::bytes("verifying", total, args.quiet);
    let counts = Counts::default();
    let problems: Vec<Vec<String>> = ztensor::parallel::install(|| {
        names
            .par_iter()
            .with_max_len(1)
            .map(|name| {
                if interrupt.is_requested() {
                    return Vec::new();
                }
                progress.tensor(name);
                let found = check_tensor(&reader, name, &counts);
                progress.advance(reader.info(name).map_or(0, util::stored_bytes));
                found
            })
            .collect()
    });
    progress.finish();
    interrupt.check()?;
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    let mut out = std::io::stdout().lock();
    for p in &problems {
        outln!(out, "{p}");
    }
    let digests = counts.digests.load(Ordering::Relaxed);
    let decoded = counts.decoded.load(Ordering::Relaxed);
    let bytes = counts.bytes.load(Ordering::Relaxed);
    if !args.quiet || !problems.is_empty() {
        let tensors = format!(
            "{} tensor{} ({})",
            names.len(),
            plural(names.len() as u64),
            util::human(bytes)
        );
        if problems.is_empty() {
            let mut what = vec![format!("{digests} digest{} verified", plural(digests))];
            if decoded > 0 {
                what.push(format!(
                    "{decoded} encoded component{} decoded",
                    plural(decoded)
                ));
            }
            outln!(out, "{shown}: OK: {tensors}, {}", what.join(", "));
            if digests == 0 && !names.is_empty() && !args.quiet {
                outln!(
                    out,
                    "note: the file has no digests, so bit flips in raw data cannot be detected \
                     (zt convert --checksum crc32c adds them)"
                );
            }
        } else {
            outln!(
                out,
                "{shown}: FAILED: {} problem{} in {tensors}",
                problems.len(),
                plural(problems.len() as u64)
            );
        }
    }
    if let Some(note) = crate::info::skipped_note(&reader).filter(|_| !args.quiet) {
        outln!(out, "note: {note}");
    }
    out.flush().map_err(util::stdout_error)?;
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::PROBLEMS
    })
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Every problem of one tensor, as full messages (file, tensor, what).
fn check_tensor(reader: &Reader, name: &str, counts: &Counts) -> Vec<String> {
    let info = match reader.info(name) {
        Ok(info) => info,
        Err(e) => return vec![e.to_string()],
    };
    let path = util::show(reader.path());
    let mut problems = Vec::new();
    let mut components: Vec<_> = info.components.iter().collect();
    components.sort_by_key(|(_, c)| c.offset);
    for (cname, c) in components {
        if let Some(Digest::Unknown(d)) = &c.digest {
            problems.push(format!(
                "{path}: tensor '{name}': component '{cname}': cannot check a digest of unknown algorithm '{d}'"
            ));
            continue;
        }
        match reader.read_component(name, cname, false) {
            Ok(bytes) => {
                counts
                    .bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if c.digest.is_some() {
                    counts.digests.fetch_add(1, Ordering::Relaxed);
                }
                if util::is_encoded(c) {
                    counts.decoded.fetch_add(1, Ordering::Relaxed);
                }
                if c.dtype == DType::Bool && info.layout == Layout::Dense {
                    if let Some(pos) = bytes.iter().position(|&b| b > 1) {
                        problems.push(format!(
                            "{path}: tensor '{name}': bool data holds byte {} at element {pos} (only 0 and 1 are valid)",
                            bytes[pos]
                        ));
                    }
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems
}
