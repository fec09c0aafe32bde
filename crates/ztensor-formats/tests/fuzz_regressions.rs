//! Replays every input the fuzzers crashed on through the fuzz harness:
//! each must now be handled without a panic, a leak or an abort. Inputs
//! live in `tests/fuzz-regressions/<target>/`, one folder per fuzz target
//! (see `fuzz/` and `scripts/fuzz.sh`); file names say what went wrong.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ztensor_formats::fuzzing::{run, Outcome, TARGETS};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("readable folder").path())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn replay(target: &str, path: &Path) -> Outcome {
    let bytes = std::fs::read(path).expect("readable input");
    match catch_unwind(AssertUnwindSafe(|| run(target, &bytes))) {
        Ok(outcome) => outcome,
        Err(payload) => panic!(
            "{target} panicked on {}: {}",
            path.display(),
            ztensor_formats::panic_message(&*payload)
        ),
    }
}

#[test]
fn every_recorded_input_is_handled_without_a_panic() {
    let mut replayed = 0;
    for target in TARGETS {
        for path in inputs(target) {
            replay(target, &path);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression inputs found");
}

#[test]
fn folders_are_named_after_fuzz_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    for entry in std::fs::read_dir(root).expect("the regression folder exists") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            TARGETS.contains(&name.as_str()),
            "unknown target folder {name}"
        );
    }
}
