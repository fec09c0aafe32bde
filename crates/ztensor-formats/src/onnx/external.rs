//! External data: tensor bytes in another file next to the model
//! (`data_location = EXTERNAL`, `external_data` keys `location`, `offset`,
//! `length`).
//!
//! The location must be a relative path without `..` that stays inside the
//! model's directory once symlinks are resolved; the range must lie inside
//! that file. The bytes are read with `pread` when the tensor is read, so
//! nothing of the external file is mapped or held at open time.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component as PathPart, Path, PathBuf};
use std::sync::Arc;

use ztensor::{ErrorKind, FormatError, Transform};

use super::proto::StringStringEntryProto;
use super::types::{unpack, Packing};

/// Where a model's external files may be, and the ones already opened.
pub(crate) struct ExternalFiles<'p> {
    model: Option<&'p Path>,
    /// The model's directory, canonicalized (computed on first use).
    dir: Option<Result<PathBuf, String>>,
    open: HashMap<PathBuf, (Arc<File>, u64)>,
}

/// An external data reference, checked: file, range, and decoding.
#[derive(Debug)]
pub(crate) struct External {
    file: Arc<File>,
    location: String,
    offset: u64,
    length: u64,
    /// Sub-byte packing to undo after reading (`Packing::None`: none).
    packing: Packing,
    decoded_len: u64,
}

impl Transform for External {
    fn name(&self) -> &str {
        "external"
    }

    fn decoded_len(&self) -> u64 {
        self.decoded_len
    }

    fn decode(&self, _stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        let io = |e: std::io::Error| {
            FormatError::new(
                ErrorKind::Io,
                format!(
                    "reading {} bytes at offset {} of external file '{}': {e}",
                    self.length, self.offset, self.location
                ),
            )
        };
        if self.packing == Packing::None {
            if out.len() as u64 != self.length {
                return Err("external data has the wrong size".into());
            }
            return self.file.read_exact_at(out, self.offset).map_err(io);
        }
        let mut packed = vec![0u8; self.length as usize];
        self.file
            .read_exact_at(&mut packed, self.offset)
            .map_err(io)?;
        Ok(unpack(self.packing, &packed, out)?)
    }
}

impl<'p> ExternalFiles<'p> {
    /// External files of the model at `model` (`None`: read from memory).
    pub fn new(model: Option<&'p Path>) -> ExternalFiles<'p> {
        ExternalFiles {
            model,
            dir: None,
            open: HashMap::new(),
        }
    }

    /// Resolves a tensor's `external_data` entries. `stored_len` is the
    /// byte size the tensor needs as stored (packed); `packing` and
    /// `decoded_len` describe what a read produces.
    pub fn resolve(
        &mut self,
        entries: &[StringStringEntryProto],
        stored_len: u64,
        packing: Packing,
        decoded_len: u64,
    ) -> Result<External, String> {
        let (mut location, mut offset, mut length) = (None, None, None);
        for e in entries {
            let value = e.value.as_deref().unwrap_or("");
            match e.key.as_deref().unwrap_or("") {
                "location" => location = Some(value),
                "offset" => offset = Some(number(value, "offset")?),
                "length" => length = Some(number(value, "length")?),
                _ => {} // "checksum" and unknown keys do not change where the bytes are
            }
        }
        let location = location.ok_or("external data has no 'location'")?;
        let (file, size) = self.open(location)?;
        let offset = offset.unwrap_or(0);
        let length = match length {
            Some(n) => n,
            None => size.checked_sub(offset).ok_or_else(|| {
                format!(
                    "external data offset {offset} is past the end of '{location}' ({size} bytes)"
                )
            })?,
        };
        match offset.checked_add(length) {
            Some(end) if end <= size => {}
            _ => {
                return Err(format!(
                    "external data [{offset}, {offset} + {length}) lies outside '{location}' ({size} bytes)"
                ))
            }
        }
        if length != stored_len {
            return Err(format!(
                "external data in '{location}' is {length} bytes but the tensor needs {stored_len}"
            ));
        }
        Ok(External {
            file,
            location: location.to_string(),
            offset,
            length,
            packing,
            decoded_len,
        })
    }

    /// Opens (once) the external file `location`, after checking that it
    /// stays inside the model's directory. Returns the file and its size.
    fn open(&mut self, location: &str) -> Result<(Arc<File>, u64), String> {
        let refuse = |why: &str| format!("external data location '{location}' {why}");
        let rel = Path::new(location);
        if location.is_empty() || location.contains('\0') {
            return Err(refuse("is not a file name"));
        }
        for part in rel.components() {
            match part {
                PathPart::Normal(_) | PathPart::CurDir => {}
                PathPart::ParentDir => return Err(refuse("contains '..'")),
                PathPart::RootDir | PathPart::Prefix(_) => {
                    return Err(refuse("is an absolute path"))
                }
            }
        }
        let dir = self.dir()?;
        let target = dir
            .join(rel)
            .canonicalize()
            .map_err(|e| refuse(&format!("cannot be opened: {e}")))?;
        if !target.starts_with(&dir) {
            return Err(refuse("leads outside the model's directory"));
        }
        if let Some((f, size)) = self.open.get(&target) {
            return Ok((f.clone(), *size));
        }
        let file = File::open(&target).map_err(|e| refuse(&format!("cannot be opened: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| refuse(&format!("cannot be opened: {e}")))?;
        if !meta.is_file() {
            return Err(refuse("is not a regular file"));
        }
        let entry = (Arc::new(file), meta.len());
        self.open.insert(target, entry.clone());
        Ok(entry)
    }

    /// The model's directory, canonicalized.
    fn dir(&mut self) -> Result<PathBuf, String> {
        let model = self.model;
        self.dir
            .get_or_insert_with(|| {
                let model = model.ok_or(
                    "the tensor's data is in an external file, which a model read from memory cannot reach",
                )?;
                let parent = match model.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                parent
                    .canonicalize()
                    .map_err(|e| format!("cannot resolve the model's directory: {e}"))
            })
            .clone()
    }
}

/// A decimal byte count or offset, as `external_data` stores them.
fn number(s: &str, what: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("external data {what} '{s}' is not a byte count"))
}
