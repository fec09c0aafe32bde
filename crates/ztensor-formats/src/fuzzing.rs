//! What a fuzz target does with an input: open it as a user would and read
//! everything. The fuzz targets (`fuzz/`) and the fuzz regression tests
//! (`tests/fuzz_regressions.rs`) both run this, so a crash input found by
//! one reproduces in the other. Not a stable API.

use ztensor::{Layout, Reader, TensorBytes};

use crate::{Format, ParseContext, TABLE};

/// The fuzz target names, in the order `scripts/fuzz.sh` runs them: one per
/// format of [`TABLE`], named after it, plus `cbor` (after `zt`) for the
/// `.zt` manifest decoders on their own. `fuzz/Cargo.toml`, `fuzz/fuzz_targets/`,
/// `fuzz/make_seeds.py` and `scripts/fuzz.sh` list the same names (a test
/// checks them).
pub const TARGETS: [&str; TABLE.len() + 1] = {
    let mut targets = ["cbor"; TABLE.len() + 1];
    targets[0] = TABLE[0].name;
    let mut i = 1;
    while i < TABLE.len() {
        targets[i + 1] = TABLE[i].name;
        i += 1;
    }
    targets
};

/// What [`exercise`] saw, for tests to assert on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The file parsed (some of its tensors may still be unreadable).
    pub opened: bool,
    /// Tensors listed.
    pub tensors: usize,
    /// Tensors (or components of non-dense tensors) read without error.
    pub reads: usize,
    /// Bytes those reads returned.
    pub bytes: u64,
    /// Problems `verify()` reported.
    pub problems: usize,
    /// Tensors not read because they declare more than [`READ_CAP`] bytes.
    pub skipped: usize,
}

/// Tensors declaring more decoded bytes than this are listed but not read:
/// a few-KB input may legitimately declare hundreds of MB (fill values,
/// compressible chunks, within each format's validated bounds), and the
/// fuzzer would spend its time and RSS limit allocating instead of exploring.
/// The Python memory-bound test covers such sizes.
pub const READ_CAP: u64 = 64 << 20;

/// Runs the fuzz target `target` (one of [`TARGETS`]) on `input`.
///
/// # Panics
/// On an unknown target name, and wherever [`exercise`] panics.
pub fn run(target: &str, input: &[u8]) -> Outcome {
    let format = match target {
        "cbor" => {
            let tensors = ztensor::fuzzing::decode_manifest(input).unwrap_or(0);
            return Outcome {
                opened: tensors > 0,
                tensors,
                ..Outcome::default()
            };
        }
        // Every other target is named after its format.
        _ => Format::ALL
            .into_iter()
            .find(|f| f.name() == target)
            .unwrap_or_else(|| panic!("unknown fuzz target {target:?}")),
    };
    exercise(format, input)
}

/// Parses `input` as `format` into a [`Reader`], then reads every tensor
/// zero-copy and copied (every component for non-dense layouts) and
/// verifies the file, checking that these agree with each other.
///
/// # Panics
/// When the reads disagree: a zero-copy read and a copy of one tensor
/// differ, a dense read's size is not the shape's, or `verify()` reports
/// nothing although a read failed. (Crashes inside the library surface as
/// panics or aborts on their own.)
pub fn exercise(format: Format, input: &[u8]) -> Outcome {
    let Ok(reader) =
        Reader::from_bytes_with_parser(input, |b| format.parse(b, &ParseContext::default()))
    else {
        return Outcome::default();
    };
    let mut out = Outcome {
        opened: true,
        tensors: reader.len(),
        ..Outcome::default()
    };
    let _ = reader.attributes();
    assert_eq!(reader.names_in_file_order().count(), reader.len());
    let mut failed = false;
    let names: Vec<String> = reader.names().map(str::to_string).collect();
    for name in &names {
        let Ok(info) = reader.info(name) else {
            failed = true;
            continue;
        };
        let declared = info
            .components
            .values()
            .map(|c| c.decoded_len().unwrap_or(c.length))
            .chain(info.dense_nbytes())
            .max()
            .unwrap_or(0);
        if declared > READ_CAP {
            out.skipped += 1;
            continue;
        }
        let reads: Vec<_> = if info.layout == Layout::Dense {
            let expected = info.dense_nbytes();
            let copy = reader.read_copy(name).map(TensorBytes::Owned);
            vec![(reader.read(name), copy, expected)]
        } else {
            info.components
                .keys()
                .map(|c| {
                    let copy = reader.read_component(name, c, true);
                    (reader.read_component(name, c, false), copy, None)
                })
                .collect()
        };
        for (view, copy, expected) in reads {
            match (view, copy) {
                (Ok(view), Ok(copy)) => {
                    assert!(
                        view[..] == copy[..],
                        "{name}: zero-copy read and copy differ"
                    );
                    if let Some(n) = expected {
                        assert_eq!(
                            view.len() as u64,
                            n,
                            "{name}: dense size is not the shape's"
                        );
                    }
                    out.reads += 1;
                    out.bytes += view.len() as u64;
                }
                (Err(_), Err(_)) => failed = true,
                (view, copy) => panic!(
                    "{name}: read and read_copy disagree: {:?} vs {:?}",
                    view.err(),
                    copy.err()
                ),
            }
        }
    }
    if out.skipped > 0 {
        return out; // verify() would decode the skipped tensors too
    }
    out.problems = reader.verify().len();
    assert!(
        !failed || out.problems > 0,
        "a read failed but verify() found nothing"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_names_a_format_or_cbor() {
        for target in TARGETS {
            // An unknown name would panic; an empty input holds no tensors.
            assert_eq!(run(target, b"").tensors, 0, "{target}");
        }
        assert_eq!(TARGETS[..2], ["zt", "cbor"]);
    }

    /// The lists outside this crate that name the fuzz targets agree with
    /// [`TARGETS`] (they cannot read the table themselves).
    #[test]
    fn fuzz_lists_agree_with_the_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
        let want: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();

        let manifest = read("fuzz/Cargo.toml");
        let bins: Vec<String> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "ztensor-fuzz")
            .map(str::to_string)
            .collect();
        assert_eq!(bins, want, "fuzz/Cargo.toml [[bin]] names");

        let mut files: Vec<String> = std::fs::read_dir(root.join("fuzz/fuzz_targets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut sorted: Vec<String> = want.iter().map(|t| format!("{t}.rs")).collect();
        sorted.sort();
        assert_eq!(files, sorted, "fuzz/fuzz_targets/");
        for t in TARGETS {
            let body = read(&format!("fuzz/fuzz_targets/{t}.rs"));
            assert!(
                body.contains(&format!("run(\"{t}\"")),
                "{t}.rs runs another target"
            );
        }

        let quoted: Vec<String> = want.iter().map(|t| format!("\"{t}\"")).collect();
        let seeds = format!("TARGETS = ({})", quoted.join(", "));
        assert!(
            read("fuzz/make_seeds.py").contains(&seeds),
            "fuzz/make_seeds.py: {seeds}"
        );
        let script = format!("targets=({})", want.join(" "));
        assert!(
            read("scripts/fuzz.sh").contains(&script),
            "scripts/fuzz.sh: {script}"
        );
    }
}
