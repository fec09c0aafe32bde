//! Rewriting a `.zt` file without dead bytes (`zt compact`) or without some
//! of its tensors ([`remove_tensors`]). Kept tensors are copied as stored
//! (same encoding, digest and bytes, digests checked on the way) into a
//! file published atomically, so the output may be the input.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::container::MAGIC;
use crate::error::{Error, ErrorKind, FormatError, Result};
use crate::model::{Component, Components, TensorInfo, Value};
use crate::reader::{ReadMode, Reader};
use crate::writer::{Writer, DEFAULT_ALIGNMENT, MAX_ALIGNMENT};

/// What a rewrite wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Size of the new file in bytes.
    pub size: u64,
    /// Number of tensors in it.
    pub tensors: usize,
}

/// Rewrites the `.zt` file `input` into `output` (which may be the same
/// path) without dead bytes: the data of tensors that appends removed or
/// replaced, and old manifests. Tensors keep their bytes, encoding and
/// digest; blobs are aligned to `alignment`, or by default to the
/// alignment the input was written with (64 when it cannot be told). File and tensor attributes are
/// kept; manifest keys this crate does not know are not.
pub fn compact(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    alignment: Option<u64>,
) -> Result<Rewritten> {
    rewrite(input.as_ref(), output.as_ref(), &BTreeSet::new(), alignment)
}

/// Writes `output` (atomically; it may be `input`) with every tensor of
/// `input` except `names`, copied as stored, as [`compact`] does. Every
/// name must be in the file ([`Error::NotFound`] otherwise, before anything
/// is written).
pub fn remove_tensors(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    names: &[&str],
) -> Result<Rewritten> {
    rewrite(
        input.as_ref(),
        output.as_ref(),
        &names.iter().copied().collect(),
        None,
    )
}

fn rewrite(
    input: &Path,
    output: &Path,
    dropped: &BTreeSet<&str>,
    alignment: Option<u64>,
) -> Result<Rewritten> {
    // Eager: nothing is mapped, so replacing `input` cannot fault a read.
    let reader = Reader::open_with(input, ReadMode::Eager)?;
    for name in dropped {
        reader.info(name).map(drop).or_else(|e| match e {
            Error::NotFound { .. } => Err(e),
            _ => Ok(()), // an unreadable tensor can still be left out
        })?;
    }
    let mut infos = Vec::new();
    for name in reader.names_in_file_order() {
        if !dropped.contains(name) {
            infos.push(reader.info(name).map_err(|e| {
                Error::invalid(format!(
                    "{e}; the rewrite would lose it (leave it out by removing it)"
                ))
            })?);
        }
    }
    let alignment = alignment
        .unwrap_or_else(|| shared_alignment(infos.iter().flat_map(|i| i.components.values())));
    let file = File::open(input).map_err(|e| Error::io(input, e))?;
    let mut w = Writer::create(output)?
        .durable(true)
        .with_alignment(alignment)?;
    if let Some(a) = reader.attributes() {
        w.set_attributes(a.clone())?;
    }
    // Components sharing a blob (tied weights) keep sharing one.
    let mut moved: HashMap<(u64, u64), u64> = HashMap::new();
    for info in &infos {
        let mut components: Vec<(&String, &Component)> = info.components.iter().collect();
        components.sort_by_key(|(_, c)| c.offset);
        let mut stored = Components::new();
        for (cname, c) in components {
            let offset = match moved.get(&(c.offset, c.length)) {
                Some(&offset) => offset,
                None => {
                    let offset = copy_blob(&mut w, &file, input, info, cname, c)?;
                    moved.insert((c.offset, c.length), offset);
                    offset
                }
            };
            stored.insert(
                cname.clone(),
                Component {
                    offset,
                    ..c.clone()
                },
            );
        }
        let copy = TensorInfo {
            components: stored,
            ..(*info).clone()
        };
        w.objects.insert(info.name.clone(), copy);
    }
    let tensors = w.objects.len();
    let size = w.finish()?;
    Ok(Rewritten { size, tensors })
}

/// Copies one stored blob to the writer; returns its new offset.
fn copy_blob<W: Write>(
    w: &mut Writer<W>,
    file: &File,
    input: &Path,
    info: &TensorInfo,
    cname: &str,
    c: &Component,
) -> Result<u64> {
    let mut buf = crate::buffer::AlignedBuf::for_overwrite(c.length as usize)
        .map_err(|m| Error::tensor(input, &info.name, m))?;
    file.read_exact_at(buf.as_mut_slice(), c.offset)
        .map_err(|e| Error::io(input, e))?;
    if let Some(d) = &c.digest {
        d.verify(buf.as_slice()).map_err(|m| {
            let m = FormatError::new(ErrorKind::ChecksumMismatch, m);
            Error::tensor(
                input,
                &info.name,
                m.prefixed(format_args!("component '{cname}': ")),
            )
        })?;
    }
    w.pad()?;
    let offset = w.pos;
    w.out
        .write_all(buf.as_slice())
        .map_err(|e| Error::io(&w.path, e))?;
    w.pos += c.length;
    Ok(offset)
}

/// The alignment the file was written with: a writer puts its first blob
/// at exactly its alignment, so that is the lowest offset when it is a power
/// of two (64 to [`MAX_ALIGNMENT`]) that every offset is a multiple of.
/// Otherwise (the first blobs were removed, say) the default, 64.
fn shared_alignment<'a>(components: impl Iterator<Item = &'a Component>) -> u64 {
    let offsets: Vec<u64> = components.map(|c| c.offset).collect();
    match offsets.iter().min() {
        Some(&first)
            if first.is_power_of_two()
                && (DEFAULT_ALIGNMENT..=MAX_ALIGNMENT).contains(&first)
                && offsets.iter().all(|o| o % first == 0) =>
        {
            first
        }
        _ => DEFAULT_ALIGNMENT,
    }
}

/// How a `.zt` file's bytes are used, for `zt info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceUsage {
    /// Bytes [`compact`] would drop: data no tensor of the current manifest
    /// uses (tensors that appends removed or replaced, old manifests).
    pub dead_bytes: u64,
    /// For a file written by an append, the size of the file before it
    /// (the manifest's `previous_end`).
    pub previous_end: Option<u64>,
}

/// The [`SpaceUsage`] of the `.zt` v1 file `reader` was opened from, or
/// `None` for other files (other formats, legacy `.zt`, in-memory readers).
pub fn space_usage(reader: &Reader) -> Result<Option<SpaceUsage>> {
    let path = reader.path();
    if reader.format() != "zt" {
        return Ok(None);
    }
    let Ok(file) = File::open(path) else {
        return Ok(None);
    };
    let io = |e| Error::io(path, e);
    let size = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 8];
    let mut footer = [0u8; 16];
    if size < 24 {
        return Ok(None);
    }
    file.read_exact_at(&mut head, 0).map_err(io)?;
    file.read_exact_at(&mut footer, size - 16).map_err(io)?;
    if &head != MAGIC || &footer[8..] != MAGIC {
        return Ok(None);
    }
    // Bounds were checked when the reader opened the file.
    let n = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
    let manifest_start = size - 16 - n;
    let mut blobs: Vec<(u64, u64)> = reader
        .tensors()
        .flat_map(|t| t.components.values())
        .map(|c| (c.offset, c.length))
        .collect();
    blobs.sort_unstable();
    blobs.dedup();
    let alignment = shared_alignment(reader.tensors().flat_map(|t| t.components.values()));
    // Where the data of a compacted copy would end.
    let end = blobs.iter().fold(MAGIC.len() as u64, |pos, &(_, len)| {
        pos.div_ceil(alignment) * alignment + len
    });
    let mut manifest = vec![0u8; n as usize];
    file.read_exact_at(&mut manifest, manifest_start)
        .map_err(io)?;
    Ok(Some(SpaceUsage {
        dead_bytes: manifest_start.saturating_sub(end),
        previous_end: previous_end(&manifest),
    }))
}

/// The `previous_end` of a v1 manifest, if it has one.
fn previous_end(manifest: &[u8]) -> Option<u64> {
    let root: Value = ciborium::de::from_reader(manifest).ok()?;
    let map = crate::manifest::as_map(&root)?;
    crate::manifest::field(map, crate::append::PREVIOUS_END_KEY).and_then(crate::manifest::as_u64)
}
