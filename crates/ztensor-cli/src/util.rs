//! Shared helpers: failures and their exit codes, sizes, labels, JSON.

use std::path::Path;

use ztensor::{Encoding, TensorInfo, Value};

use crate::exit;

/// Why a command stopped early.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command line asks for something impossible (exit 2).
    Usage(String),
    /// The command failed (exit 1).
    Error(String),
    /// Exit with this status without printing anything (e.g. a closed pipe).
    Quiet(i32),
    /// Ctrl-C (exit 130).
    Interrupted,
}

impl Failure {
    /// Prints the failure to stderr and returns its exit status.
    pub(crate) fn report(self) -> i32 {
        match self {
            Failure::Usage(m) => {
                eprintln!("zt: error: {m}");
                eprintln!("Run 'zt --help' for usage.");
                exit::USAGE
            }
            Failure::Error(m) => {
                eprintln!("zt: error: {m}");
                exit::PROBLEMS
            }
            Failure::Quiet(code) => code,
            Failure::Interrupted => {
                eprintln!("zt: interrupted");
                exit::INTERRUPTED
            }
        }
    }
}

impl From<ztensor::Error> for Failure {
    fn from(e: ztensor::Error) -> Failure {
        Failure::Error(e.to_string())
    }
}

/// Maps an error writing standard output: a closed pipe (`zt info | head`)
/// ends the command quietly.
pub(crate) fn stdout_error(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::Quiet(exit::PROBLEMS)
    } else {
        Failure::Error(format!("writing to standard output: {e}"))
    }
}

/// `writeln!` to a stdout handle, mapping errors with [`stdout_error`].
macro_rules! outln {
    ($w:expr) => {
        writeln!($w).map_err($crate::util::stdout_error)?
    };
    ($w:expr, $($arg:tt)*) => {
        writeln!($w, $($arg)*).map_err($crate::util::stdout_error)?
    };
}
pub(crate) use outln;

/// A byte count for people: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `[2, 3]`; `[]` for a scalar.
pub(crate) fn shape(shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The element type people know the tensor by: the logical type when there
/// is one (`complex64`, `f8_e4m3fn`), else the storage dtype (`float32`).
pub(crate) fn type_label(info: &TensorInfo) -> String {
    match info.primary() {
        Some((_, c)) => c
            .logical_type
            .clone()
            .unwrap_or_else(|| c.dtype.name().to_string()),
        None => "-".to_string(),
    }
}

/// Bytes of the tensor once decoded (all components).
pub(crate) fn decoded_bytes(info: &TensorInfo) -> u64 {
    if info.layout == ztensor::Layout::Dense {
        if let Some(n) = info.dense_nbytes() {
            return n;
        }
    }
    info.components
        .values()
        .map(|c| c.decoded_len().unwrap_or(c.length))
        .sum()
}

/// Bytes the tensor occupies in the file (all components).
pub(crate) fn stored_bytes(info: &TensorInfo) -> u64 {
    info.components.values().map(|c| c.length).sum()
}

/// Distinct encodings of the components, e.g. `raw`, `zstd`, `raw+zstd`.
pub(crate) fn encodings(info: &TensorInfo) -> String {
    let mut names: Vec<&str> = info
        .components
        .values()
        .map(|c| c.encoding.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "-".into()
    } else {
        names.join("+")
    }
}

/// The digest algorithm of a component (`crc32c`, `sha256`, or the unknown name).
pub(crate) fn digest_kind(d: &ztensor::Digest) -> String {
    match d {
        ztensor::Digest::Crc32c(_) => "crc32c".into(),
        ztensor::Digest::Crc32(_) => "crc32".into(),
        ztensor::Digest::Sha256(_) => "sha256".into(),
        ztensor::Digest::Unknown(s) => s.split(':').next().unwrap_or(s).to_string(),
    }
}

/// Distinct digest kinds of the components; `-` when there is none.
pub(crate) fn digests(info: &TensorInfo) -> String {
    let mut names: Vec<String> = info
        .components
        .values()
        .map(|c| {
            c.digest
                .as_ref()
                .map_or_else(|| "-".to_string(), digest_kind)
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.len() > 1 {
        names.retain(|n| n != "-");
        names.push("partial".into());
    }
    names.join("+")
}

/// True when any component needs decoding (not stored raw).
pub(crate) fn is_encoded(c: &ztensor::Component) -> bool {
    c.encoding != Encoding::Raw
}

/// A CBOR value as JSON: integers that do not fit 64 bits, non-finite
/// floats and byte strings become strings; tags are dropped.
pub(crate) fn cbor_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Integer(i) => {
            let n = i128::from(*i);
            if let Ok(u) = u64::try_from(n) {
                J::from(u)
            } else if let Ok(s) = i64::try_from(n) {
                J::from(s)
            } else {
                J::String(n.to_string())
            }
        }
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or_else(|| J::String(f.to_string()), J::Number)
        }
        Value::Text(s) => J::String(s.clone()),
        Value::Bytes(b) => J::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::Array(a) => J::Array(a.iter().map(cbor_to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Text(s) => s.clone(),
                        other => cbor_to_json(other).to_string(),
                    };
                    (key, cbor_to_json(v))
                })
                .collect(),
        ),
        Value::Tag(_, inner) => cbor_to_json(inner),
        _ => J::Null,
    }
}

/// A path as shown in messages.
pub(crate) fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Wraps a core error that lacks the file name (writer argument errors)
/// with the output path.
pub(crate) fn with_output(out: &Path, e: ztensor::Error) -> Failure {
    match e {
        ztensor::Error::InvalidArgument(m) => Failure::Error(format!("{}: {m}", show(out))),
        other => Failure::Error(other.to_string()),
    }
}

/// Up to 20 lines of a list, then a count of the rest.
pub(crate) fn bullets(items: &[String]) -> String {
    let mut shown: Vec<&str> = items.iter().take(20).map(String::as_str).collect();
    let more;
    if items.len() > 20 {
        more = format!("... and {} more", items.len() - 20);
        shown.push(&more);
    }
    shown.join("\n  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
        assert_eq!(human(u64::MAX), "16384.0 PiB");
        assert_eq!(shape(&[]), "[]");
        assert_eq!(shape(&[2, 3]), "[2, 3]");
    }

    #[test]
    fn cbor_values_become_json() {
        let v = Value::Map(vec![
            (Value::Text("s".into()), Value::Text("x".into())),
            (Value::Text("n".into()), Value::Integer((-5).into())),
            (Value::Text("big".into()), Value::Integer(u64::MAX.into())),
            (Value::Text("f".into()), Value::Float(0.5)),
            (Value::Text("nan".into()), Value::Float(f64::NAN)),
            (Value::Text("b".into()), Value::Bytes(vec![0xde, 0xad])),
            (
                Value::Integer(1.into()),
                Value::Array(vec![Value::Bool(true), Value::Null]),
            ),
            (
                Value::Text("t".into()),
                Value::Tag(1, Box::new(Value::Integer(7.into()))),
            ),
        ]);
        assert_eq!(
            cbor_to_json(&v),
            serde_json::json!({
                "s": "x", "n": -5, "big": u64::MAX, "f": 0.5, "nan": "NaN",
                "b": "dead", "1": [true, null], "t": 7
            })
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let items: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let s = bullets(&items);
        assert_eq!(s.lines().count(), 21);
        assert!(s.ends_with("... and 5 more"));
        assert_eq!(bullets(&items[..2]), "0\n  1");
    }
}
