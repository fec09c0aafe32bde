//! `zt info`: what a file holds, as a table or as JSON.

use std::io::Write;

use serde::Serialize;
use ztensor::{Reader, TensorInfo};

use crate::args::{DequantizeArg, InfoArgs};
use crate::exit;
use crate::util::{self, outln, Failure};

/// The JSON document `zt info --json` prints.
#[derive(Serialize)]
struct FileJson<'a> {
    file: String,
    format: &'static str,
    version: String,
    file_size: u64,
    tensor_count: usize,
    total_bytes: u64,
    stored_bytes: u64,
    /// `.zt` v1 only: data bytes no tensor uses (see `ztensor::space_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_bytes: Option<u64>,
    /// `.zt` v1 written by an append: the file size before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_end: Option<u64>,
    metadata: serde_json::Value,
    /// Pickles: globals whose objects were skipped (see [`skipped_note`]).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    skipped_globals: &'a [String],
    tensors: Vec<TensorJson>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum TensorJson {
    Ok {
        name: String,
        dtype: Option<&'static str>,
        logical_type: Option<String>,
        shape: Vec<u64>,
        layout: String,
        nbytes: u64,
        stored_bytes: u64,
        encoding: String,
        digest: Option<String>,
        components: Vec<ComponentJson>,
        attributes: Option<serde_json::Value>,
    },
    Broken {
        name: String,
        error: String,
    },
}

#[derive(Serialize)]
struct ComponentJson {
    name: String,
    dtype: &'static str,
    logical_type: Option<String>,
    offset: u64,
    length: u64,
    encoding: String,
    digest: Option<String>,
}

pub(crate) fn run(args: &InfoArgs) -> Result<i32, Failure> {
    if crate::sharded::is_sharded(&args.file) {
        return crate::sharded::info(args);
    }
    let input = crate::input::open(
        &args.file,
        ztensor::ReadMode::Mmap,
        &DequantizeArg::options(args.dequantize),
    )?;
    let reader = input.reader;
    let file_size = input.size.ok_or_else(|| {
        Failure::Error(format!("{}: cannot tell its size", util::show(&args.file)))
    })?;
    let rows = rows(&reader);
    let broken = rows.iter().filter(|(_, r)| r.is_err()).count();
    let mut out = std::io::stdout().lock();
    if args.json {
        let (doc, _) = file_json(&args.file, &reader, file_size)?;
        serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| util::stdout_error(e.into()))?;
        outln!(out);
    } else {
        let (total, stored) = totals(&rows);
        let usage = ztensor::space_usage(&reader)?;
        let sizes = (file_size, total, stored);
        print_text(&mut out, &reader, &args.file, sizes, usage, &rows)?;
    }
    out.flush().map_err(util::stdout_error)?;
    drop(out);
    if broken > 0 {
        eprintln!(
            "zt: {broken} of {} tensors cannot be read; run 'zt verify {}' for details",
            rows.len(),
            util::show(&args.file)
        );
        return Ok(exit::PROBLEMS);
    }
    Ok(exit::OK)
}

/// Each tensor in file order, with its description or why it is unreadable.
fn rows(reader: &Reader) -> Vec<(&str, Result<&TensorInfo, String>)> {
    reader
        .names_in_file_order()
        .map(|n| (n, reader.info(n).map_err(|e| broken_message(&e))))
        .collect()
}

/// Decoded and stored bytes of the readable rows.
fn totals(rows: &[(&str, Result<&TensorInfo, String>)]) -> (u64, u64) {
    let readable = || rows.iter().filter_map(|(_, r)| r.as_ref().ok());
    (
        readable().map(|t| util::decoded_bytes(t)).sum(),
        readable().map(|t| util::stored_bytes(t)).sum(),
    )
}

/// The `zt info --json` document of the file at `path` (`file_size` bytes),
/// and how many of its tensors are unreadable. Sharded checkpoints list one
/// per shard.
pub(crate) fn file_json(
    path: &std::path::Path,
    reader: &Reader,
    file_size: u64,
) -> Result<(serde_json::Value, usize), Failure> {
    let rows = rows(reader);
    let (total, stored) = totals(&rows);
    let usage = ztensor::space_usage(reader)?;
    let doc = FileJson {
        file: util::show(path),
        format: reader.format(),
        version: reader.version().to_string(),
        file_size,
        tensor_count: rows.len(),
        total_bytes: total,
        stored_bytes: stored,
        dead_bytes: usage.map(|u| u.dead_bytes),
        previous_end: usage.and_then(|u| u.previous_end),
        metadata: reader.attributes().map_or(
            serde_json::Value::Object(Default::default()),
            util::cbor_to_json,
        ),
        skipped_globals: reader.skipped_globals(),
        tensors: rows.iter().map(|(n, r)| tensor_json(n, r)).collect(),
    };
    let broken = rows.iter().filter(|(_, r)| r.is_err()).count();
    let doc = serde_json::to_value(&doc).map_err(|e| Failure::Error(e.to_string()))?;
    Ok((doc, broken))
}

/// What `zt info` and `zt verify` say about a pickle's globals whose objects
/// were skipped (a file naming code-running globals does not open at all).
pub(crate) fn skipped_note(reader: &Reader) -> Option<String> {
    let skipped = reader.skipped_globals();
    (!skipped.is_empty()).then(|| {
        format!(
            "the pickle names {} global{} the reader does not interpret (never imported or \
             called; their objects are skipped, their tensors read): {}",
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" },
            skipped.join(", ")
        )
    })
}

/// What appends left in a `.zt` file (nothing is printed for other files).
fn print_space(out: &mut impl Write, usage: &ztensor::SpaceUsage) -> Result<(), Failure> {
    if let Some(end) = usage.previous_end {
        outln!(
            out,
            "appended:  yes; the version before the last append is the first {end} bytes"
        );
    }
    if usage.dead_bytes > 0 {
        outln!(
            out,
            "dead:      {} ({} bytes no tensor uses; 'zt compact' reclaims them)",
            util::human(usage.dead_bytes),
            usage.dead_bytes
        );
    }
    Ok(())
}

/// The part of a per-tensor error after the file and tensor names.
fn broken_message(e: &ztensor::Error) -> String {
    match e {
        ztensor::Error::Format { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn tensor_json(name: &str, r: &Result<&TensorInfo, String>) -> TensorJson {
    let info = match r {
        Ok(info) => info,
        Err(m) => {
            return TensorJson::Broken {
                name: name.to_string(),
                error: m.clone(),
            }
        }
    };
    let mut components: Vec<(&String, &ztensor::Component)> = info.components.iter().collect();
    components.sort_by_key(|(_, c)| c.offset);
    let digest = util::digests(info);
    TensorJson::Ok {
        name: name.to_string(),
        dtype: info.dtype().map(|d| d.name()),
        logical_type: info.logical_type().map(str::to_string),
        shape: info.shape.clone(),
        layout: info.layout.to_string(),
        nbytes: util::decoded_bytes(info),
        stored_bytes: util::stored_bytes(info),
        encoding: util::encodings(info),
        digest: (digest != "-").then_some(digest),
        components: components
            .into_iter()
            .map(|(cname, c)| ComponentJson {
                name: cname.clone(),
                dtype: c.dtype.name(),
                logical_type: c.logical_type.clone(),
                offset: c.offset,
                length: c.length,
                encoding: c.encoding.as_str().to_string(),
                digest: c.digest.as_ref().map(util::digest_kind),
            })
            .collect(),
        attributes: info.attributes.as_ref().map(util::cbor_to_json),
    }
}

fn print_text(
    out: &mut impl Write,
    reader: &Reader,
    path: &std::path::Path,
    (file_size, total, stored): (u64, u64, u64),
    usage: Option<ztensor::SpaceUsage>,
    rows: &[(&str, Result<&TensorInfo, String>)],
) -> Result<(), Failure> {
    let format = if reader.version().is_empty() {
        reader.format().to_string()
    } else {
        format!("{} (version {})", reader.format(), reader.version())
    };
    outln!(out, "file:      {}", util::show(path));
    outln!(out, "format:    {format}");
    outln!(
        out,
        "size:      {} ({file_size} bytes)",
        util::human(file_size)
    );
    outln!(out, "tensors:   {}", rows.len());
    outln!(
        out,
        "data:      {} decoded, {} stored",
        util::human(total),
        util::human(stored)
    );
    if let Some(usage) = usage {
        print_space(out, &usage)?;
    }
    match reader.attributes() {
        Some(ztensor::Value::Map(m)) if !m.is_empty() => {
            outln!(out, "metadata:");
            for (k, v) in m {
                let key = match k {
                    ztensor::Value::Text(s) => s.clone(),
                    other => util::cbor_to_json(other).to_string(),
                };
                let value = match v {
                    ztensor::Value::Text(s) => s.clone(),
                    other => util::cbor_to_json(other).to_string(),
                };
                outln!(out, "  {key}: {}", one_line(&value, 200));
            }
        }
        Some(ztensor::Value::Map(_)) | None => outln!(out, "metadata:  none"),
        Some(other) => outln!(out, "metadata:  {}", util::cbor_to_json(other)),
    }
    if let Some(note) = skipped_note(reader) {
        outln!(out, "note:      {note}");
    }
    if rows.is_empty() {
        return Ok(());
    }
    outln!(out);
    let header = [
        "NAME", "TYPE", "SHAPE", "LAYOUT", "STORED", "ENCODING", "DIGEST",
    ];
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|(name, r)| match r {
            Ok(t) => [
                name.to_string(),
                util::type_label(t),
                util::shape(&t.shape),
                t.layout.to_string(),
                util::human(util::stored_bytes(t)),
                util::encodings(t),
                util::digests(t),
            ],
            Err(m) => [
                name.to_string(),
                "UNREADABLE".into(),
                one_line(m, 120),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ],
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 6 {
                s.push_str(cell);
            } else if i == 4 {
                s.push_str(&format!("{cell:>w$}  "));
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    outln!(out, "{}", line(header));
    for row in &table {
        outln!(out, "{}", line(row.each_ref().map(String::as_str)));
    }
    Ok(())
}

/// Collapses whitespace and cuts long values for the text view.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}...")
    } else {
        flat
    }
}
