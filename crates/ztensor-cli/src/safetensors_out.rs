//! Writing safetensors, streaming: the header is computed from the
//! descriptions alone, then each tensor is read, written and dropped.
//!
//! The layout matches the `safetensors` crate's own serializer: tensors
//! sorted by descending dtype (so every tensor stays aligned to its element
//! size) then by name, a JSON header padded with spaces to 8 bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::TensorInfo as StInfo;
use safetensors::Dtype;
use ztensor::{AtomicFile, Layout, Reader, TensorInfo, Value};
use ztensor_formats::safetensors as st_dtypes;

use crate::progress::Progress;
use crate::util::{self, Failure};
use crate::Interrupt;

/// Largest header safetensors readers accept.
const MAX_HEADER: usize = 100_000_000;
/// Data is written in chunks of this size, checking for Ctrl-C in between.
const CHUNK: usize = 64 << 20;

/// The safetensors dtype of a dense tensor, or why it has none.
pub(crate) fn dtype_of(info: &TensorInfo) -> Result<Dtype, String> {
    if info.layout != Layout::Dense {
        return Err(format!(
            "has layout {}; safetensors stores dense tensors only",
            info.layout
        ));
    }
    let Some((_, c)) = info.primary() else {
        return Err("has no data".into());
    };
    let logical = c.logical_type.as_deref();
    st_dtypes::to_safetensors(c.dtype, logical).ok_or_else(|| match logical {
        Some(t) => format!("has type {t}, which safetensors cannot store"),
        None => format!("has dtype {}, which safetensors cannot store", c.dtype),
    })
}

/// File metadata as safetensors' `__metadata__`: strings stay strings,
/// any other value becomes its JSON text.
fn metadata(attributes: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let Value::Map(m) = attributes? else {
        return None;
    };
    let text = |v: &Value| match v {
        Value::Text(s) => s.clone(),
        other => util::cbor_to_json(other).to_string(),
    };
    Some(m.iter().map(|(k, v)| (text(k), text(v))).collect())
}

/// Writes `selected` tensors of `reader` to `out` as safetensors; returns the file size.
pub(crate) fn write(
    reader: &Reader,
    selected: &[&str],
    out: &Path,
    progress: &Progress,
    interrupt: &Interrupt,
    quiet: bool,
) -> Result<u64, Failure> {
    let input = util::show(reader.path());
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    let mut with_attributes = 0;
    for &name in selected {
        let info = reader.info(name)?;
        if name == "__metadata__" {
            problems.push(format!(
                "tensor '{name}': the name is reserved in safetensors"
            ));
            continue;
        }
        let described =
            dtype_of(info).and_then(|d| Ok((d, st_dtypes::safetensors_shape(d, &info.shape)?)));
        match described {
            Ok((dtype, shape)) => entries.push((dtype, name, info, shape)),
            Err(m) => problems.push(format!("tensor '{name}' {m}")),
        }
        if matches!(&info.attributes, Some(Value::Map(m)) if !m.is_empty()) {
            with_attributes += 1;
        }
    }
    if !problems.is_empty() {
        return Err(Failure::Error(format!(
            "cannot write {} as safetensors: {} tensor{} of {input} do not fit:\n  {}\n\
             (leave {} out with --exclude NAME, or convert to .zt)",
            util::show(out),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            util::bullets(&problems),
            if problems.len() == 1 { "it" } else { "them" },
        )));
    }
    if with_attributes > 0 && !quiet {
        progress.println(&format!(
            "zt: warning: per-tensor attributes of {with_attributes} tensor{} are left out \
             (safetensors has no place for them)",
            if with_attributes == 1 { "" } else { "s" }
        ));
    }
    entries.sort_by(|(da, na, _, _), (db, nb, _, _)| db.cmp(da).then(na.cmp(nb)));

    let mut header = String::from("{");
    if let Some(meta) = metadata(reader.attributes()) {
        header.push_str("\"__metadata__\":");
        header.push_str(&json(&meta)?);
    }
    let mut offset = 0usize;
    let mut layout = Vec::with_capacity(entries.len());
    for (dtype, name, info, shape) in entries {
        let nbytes = info.dense_nbytes().ok_or_else(|| {
            Failure::Error(format!(
                "{input}: tensor '{name}': its size overflows 64 bits"
            ))
        })? as usize;
        let st = StInfo {
            dtype,
            shape,
            data_offsets: (offset, offset + nbytes),
        };
        if header.len() > 1 {
            header.push(',');
        }
        header.push_str(&json(name)?);
        header.push(':');
        header.push_str(&json(&st)?);
        layout.push((name, nbytes));
        offset += nbytes;
    }
    header.push('}');
    let padded = header.len().next_multiple_of(8);
    if padded > MAX_HEADER {
        return Err(Failure::Error(format!(
            "cannot write {} as safetensors: its header would be {padded} bytes, over the \
             {MAX_HEADER}-byte limit of safetensors readers",
            util::show(out)
        )));
    }
    while header.len() < padded {
        header.push(' ');
    }

    let io = |e: std::io::Error| Failure::Error(format!("{}: {e}", util::show(out)));
    let mut file = AtomicFile::create(out).map_err(io)?;
    interrupt.set_writing(true);
    file.write_all(&(padded as u64).to_le_bytes()).map_err(io)?;
    file.write_all(header.as_bytes()).map_err(io)?;
    for (name, nbytes) in layout {
        interrupt.check()?;
        progress.tensor(name);
        let data = reader.read(name)?;
        if data.len() != nbytes {
            return Err(Failure::Error(format!(
                "{input}: tensor '{name}': read {} bytes, its shape needs {nbytes}",
                data.len()
            )));
        }
        for chunk in data.chunks(CHUNK) {
            interrupt.check()?;
            file.write_all(chunk).map_err(io)?;
            progress.advance(chunk.len() as u64);
        }
    }
    interrupt.check()?;
    file.commit().map_err(io)?;
    Ok(8 + padded as u64 + offset as u64)
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::Error(format!("encoding the header: {e}")))
}
