//! Reader for PyTorch checkpoints (`torch.save`, `torch.jit.save`) and
//! plain pickles of tensors.
//!
//! # What is read
//!
//! * **Zip checkpoints** (torch >= 1.6): `<archive>/data.pkl` plus one
//!   member `<archive>/data/<key>` per storage. Stored members are mapped
//!   zero-copy; deflated members are inflated when read. The archive's
//!   `byteorder` record is honoured (big-endian data is byte-swapped).
//! * **TorchScript archives** (`torch.jit.save`): the module's attributes
//!   in `data.pkl` (parameters and buffers under their `state_dict()`
//!   names) and the tensors of `constants.pkl` as `constants.<i>`.
//! * **Legacy checkpoints** (`_use_new_zipfile_serialization=False`): the
//!   magic-number, protocol and system-info pickles, the main pickle, the
//!   list of storage keys, then each storage as a little-endian `u64`
//!   element count followed by its bytes.
//! * **Plain pickles** (`pickle.dump` of tensors, protocol 3 or later):
//!   each storage is pickled by value (`torch.storage._load_from_bytes` of a
//!   byte string holding a small legacy checkpoint) and is read zero-copy
//!   from inside the pickle. Protocol 2 stores byte strings as latin-1 text,
//!   which is refused for the tensors concerned.
//!
//! # The unpickler
//!
//! A restricted machine written for this job (module `vm`): it builds plain data
//! and interprets only `torch._utils._rebuild_tensor{,_v2,_v3}`,
//! `_rebuild_parameter{,_with_state}`, `torch._tensor._rebuild_from_type_v2`,
//! `collections.OrderedDict`, torch storage types and dtypes, `torch.Size`
//! and a few builtins. Any other callable is never imported nor called: its
//! result is an inert object, searched for tensors like a container. Memo,
//! stack, object count, nesting depth and lengths are bounded.
//!
//! Every global a file's pickles name is recorded and classified (module
//! `globals`): one that can run code or touch the system when unpickled
//! (`os.system`, `builtins.eval`, ...) fails the whole file, even one that
//! is otherwise damaged; the others the reader does not interpret are
//! listed in [`Catalog::skipped_globals`] (or fail the file when strict).
//!
//! # Names
//!
//! Tensors are named by the path of dict keys and list/tuple indices that
//! leads to them, joined with dots (`"layers.0.weight"`), like the
//! safetensors converters. A bare top-level tensor is named `""`, as the
//! reference implementation names it. Keys that are not strings use
//! Python's notation (`state.0.exp_avg`). `nn.Parameter`s and tensor
//! subclasses are unwrapped. Objects that are not interpreted (a whole
//! pickled `nn.Module`, a TorchScript module, a user class) are searched
//! through their state and arguments; an object's `_parameters`,
//! `_buffers` and `_modules` add no name component, so a pickled module
//! yields its `state_dict()` names. A name can appear twice (two dict keys
//! that print alike): the reader then reports both as unreadable.
//!
//! # Views and sharing
//!
//! Every tensor is a view (offset, size, stride) of a storage. A contiguous
//! view is a zero-copy byte range of its storage, so tensors sharing a
//! storage share its bytes; other views (`x.t()`, `x[1:, 2:]`, `expand`)
//! are gathered by a strided transform. Every view is checked against the
//! size of its storage.
//!
//! # Failures
//!
//! Anything wrong with one tensor (an unsupported dtype, a quantized or
//! sparse tensor, a missing storage, a view past its storage) makes that
//! tensor unreadable with a message; the rest of the file stays readable.
//! A pickle that cannot be decoded, or exceeds a limit, fails the file. A
//! checkpoint without tensors opens with zero tensors.

mod globals;
mod torch;
mod vm;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::rc::Rc;

use ztensor::{Catalog, Entry, ErrorKind, FormatError};

use crate::ParseContext;

use torch::{find_tensors, tensor_info, Found, Storage, StorageBytes, TorchHooks};
use vm::{Budget, Value};

/// Largest pickle member decompressed into memory.
const MAX_PICKLE_BYTES: u64 = 4 << 30;
/// The number `torch.save` writes first in a legacy checkpoint
/// (0x1950a86a20f9469cfc6c), as the little-endian bytes of a `LONG1`.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;

/// Where a storage's bytes are, and in which byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Located {
    pub bytes: StorageBytes,
    pub big_endian: bool,
}

/// Parses a whole file image: a torch zip checkpoint or TorchScript
/// archive, a legacy `torch.save` file, or a plain pickle. Globals the
/// reader does not interpret are listed in [`Catalog::skipped_globals`],
/// or, with `cx.options.strict`, refuse the file (as
/// `torch.load(weights_only=True)` does).
///
/// Whatever `strict` says, a file naming a global that can run code or
/// touch the system when unpickled (`os.system`, `builtins.eval`, ...; the
/// list and its sources are in `globals.rs`) is refused with an error that
/// names it. Nothing a pickle names is ever imported or called.
pub fn parse(bytes: &[u8], cx: &ParseContext) -> Result<Catalog, FormatError> {
    let strict = cx.options.strict;
    let zip = bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06");
    let mut budget = Budget::new(if zip { 0 } else { bytes.len() as u64 });
    let parsed = if zip {
        parse_zip(bytes, &mut budget)
    } else {
        parse_pickle_file(bytes, &mut budget)
    };
    let seen = std::mem::take(&mut budget.globals);
    drop(budget);
    // A payload is reported even when the rest of the file is damaged.
    let denied = globals::names(&seen, globals::Class::Denied);
    if !denied.is_empty() {
        let message = globals::denied_message(&denied);
        return Err(FormatError::new(ErrorKind::UnsafePickle, message));
    }
    let (version, entries) = parsed?;
    let skipped_globals = globals::names(&seen, globals::Class::Unknown);
    if strict && !skipped_globals.is_empty() {
        let message = globals::strict_message(&skipped_globals);
        return Err(FormatError::new(ErrorKind::UnsafePickle, message));
    }
    Ok(Catalog {
        version,
        overlaps_allowed: true,
        skipped_globals,
        ..Catalog::new("pickle", entries, (0, bytes.len() as u64))
    })
}

/// Total bytes of tensor names allowed for an input of `len` bytes.
fn name_bytes_limit(len: usize) -> u64 {
    (64 << 20) + 4 * len as u64
}

/// Turns found tensors into entries; `locate` finds a storage's bytes by key.
fn entries(
    found: Vec<Found>,
    mut locate: impl FnMut(&Storage) -> Result<Located, String>,
) -> Vec<Entry> {
    let mut cache: HashMap<*const Storage, Result<Located, String>> = HashMap::new();
    found
        .into_iter()
        .map(|f| {
            let view = match &f.tensor.0 {
                Ok(view) => view,
                Err(m) => return Entry::broken(f.name, m.clone()),
            };
            let loc = match &view.storage.inline {
                Some(r) => r.clone(),
                None => cache
                    .entry(Rc::as_ptr(&view.storage))
                    .or_insert_with(|| locate(&view.storage))
                    .clone(),
            };
            match loc.and_then(|l| tensor_info(&f.name, view, &l)) {
                Ok(info) => Entry::ok(info),
                Err(m) => Entry::broken(f.name, m),
            }
        })
        .collect()
}

// ---------------------------------------------------------------- zip

fn parse_zip(bytes: &[u8], budget: &mut Budget) -> Result<(String, Vec<Entry>), String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    // torch writes every member under one top folder: `<archive>/data.pkl`.
    let pkl = zip
        .file_names_raw()
        .filter(|n| {
            n.strip_suffix(b"data.pkl").is_some_and(|p| {
                p.is_empty() || (p.ends_with(b"/") && p.iter().filter(|&&c| c == b'/').count() == 1)
            })
        })
        .min_by_key(|n| n.len())
        .map(<[u8]>::to_vec)
        .ok_or("the zip archive holds no data.pkl: not a PyTorch checkpoint")?;
    let prefix = String::from_utf8_lossy(&pkl[..pkl.len() - b"data.pkl".len()]).into_owned();
    let big_endian = match small_member(&mut zip, bytes, &format!("{prefix}byteorder"))? {
        None => false,
        Some(b) => match b.trim() {
            "little" => false,
            "big" => true,
            other => return Err(format!("{prefix}byteorder: unknown byte order {other:?}")),
        },
    };
    let version = match small_member(&mut zip, bytes, &format!("{prefix}version"))? {
        Some(v) => v.trim().to_string(),
        None => small_member(&mut zip, bytes, &format!("{prefix}.data/version"))?
            .map(|v| v.trim().to_string())
            .unwrap_or_default(),
    };
    let mut out = Vec::new();
    for (pickle, dir, name_prefix) in [
        ("data.pkl", "data/", ""),
        ("constants.pkl", "constants/", "constants"),
    ] {
        let member = format!("{prefix}{pickle}");
        let Some(index) = zip.index_for_name(&member) else {
            continue;
        };
        let (input, base) = read_member(&mut zip, bytes, index, MAX_PICKLE_BYTES)
            .map_err(|e| format!("{member}: {e}"))?;
        budget.allow(input.len() as u64);
        let mut hooks = TorchHooks::new(&input, base, Some(nested_storage));
        let (root, _) =
            vm::run(&input, &mut hooks, budget).map_err(|e| format!("{member}: {e}"))?;
        let mut found = Vec::new();
        find_tensors(
            &root,
            name_prefix,
            budget,
            hooks.tensors,
            name_bytes_limit(input.len()),
            &mut found,
        )
        .map_err(|e| format!("{member}: {e}"))?;
        drop(root);
        drop(hooks);
        out.extend(entries(found, |s| {
            locate_member(
                &mut zip,
                bytes,
                &format!("{prefix}{dir}{}", s.key),
                big_endian,
            )
        }));
    }
    Ok((version, out))
}

/// The bytes of a small text member (`byteorder`, `version`), if present.
fn small_member<'b>(
    zip: &mut zip::ZipArchive<Cursor<&'b [u8]>>,
    bytes: &'b [u8],
    name: &str,
) -> Result<Option<String>, String> {
    let Some(index) = zip.index_for_name(name) else {
        return Ok(None);
    };
    let (data, _) = read_member(zip, bytes, index, 64).map_err(|e| format!("{name}: {e}"))?;
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

/// A member's whole contents: borrowed from the file (with its absolute
/// offset) when stored, inflated when deflated.
fn read_member<'b>(
    zip: &mut zip::ZipArchive<Cursor<&'b [u8]>>,
    bytes: &'b [u8],
    index: usize,
    limit: u64,
) -> Result<(Cow<'b, [u8]>, Option<u64>), String> {
    let loc = member_bytes(zip, bytes, index)?;
    match loc {
        StorageBytes::Stored { offset, len } => {
            if len > limit {
                return Err(format!("{len} bytes is more than the {limit} allowed"));
            }
            Ok((
                Cow::Borrowed(&bytes[offset as usize..(offset + len) as usize]),
                Some(offset),
            ))
        }
        StorageBytes::Deflated { len, .. } => {
            if len > limit {
                return Err(format!("{len} bytes is more than the {limit} allowed"));
            }
            let file = zip
                .by_index(index)
                .map_err(|e| format!("cannot read: {e}"))?;
            let mut out = Vec::new();
            file.take(len + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("cannot inflate: {e}"))?;
            if out.len() as u64 != len {
                return Err(format!(
                    "inflates to {} bytes, not the {len} declared",
                    out.len()
                ));
            }
            Ok((Cow::Owned(out), None))
        }
    }
}

/// Where a member's data lies, checked against the file.
fn member_bytes(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    bytes: &[u8],
    index: usize,
) -> Result<StorageBytes, String> {
    let file = zip
        .by_index_raw(index)
        .map_err(|e| format!("unreadable archive member: {e}"))?;
    if file.encrypted() {
        return Err("the archive member is encrypted".into());
    }
    crate::zipcheck::check_local_header(bytes, file.header_start(), file.name_raw())?;
    let start = file
        .data_start()
        .ok_or("the archive member has no data offset")?;
    let (compressed, len) = (file.compressed_size(), file.size());
    if start
        .checked_add(compressed)
        .is_none_or(|end| end > bytes.len() as u64)
    {
        return Err(format!(
            "the archive member's {compressed} bytes at offset {start} run past the end of the file ({} bytes)",
            bytes.len()
        ));
    }
    match file.compression() {
        zip::CompressionMethod::Stored => {
            if compressed != len {
                return Err(format!(
                    "a stored archive member declares {len} bytes but holds {compressed}"
                ));
            }
            Ok(StorageBytes::Stored { offset: start, len })
        }
        zip::CompressionMethod::Deflated => {
            if len
                > compressed
                    .saturating_mul(crate::zipcheck::MAX_DEFLATE_RATIO)
                    .saturating_add(64)
            {
                return Err(format!(
                    "{compressed} deflated bytes cannot inflate to the {len} declared (a zip bomb?)"
                ));
            }
            Ok(StorageBytes::Deflated {
                offset: start,
                compressed,
                len,
            })
        }
        other => Err(format!(
            "the archive member is compressed with {other}, which is not supported"
        )),
    }
}

fn locate_member(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    bytes: &[u8],
    name: &str,
    big_endian: bool,
) -> Result<Located, String> {
    let index = zip
        .index_for_name(name)
        .ok_or_else(|| format!("its storage '{name}' is missing from the archive"))?;
    let bytes = member_bytes(zip, bytes, index).map_err(|e| format!("storage '{name}': {e}"))?;
    Ok(Located { bytes, big_endian })
}

// ---------------------------------------------------------------- legacy and plain pickles

fn parse_pickle_file(bytes: &[u8], budget: &mut Budget) -> Result<(String, Vec<Entry>), String> {
    // The first pickle is either a legacy checkpoint's magic number or the
    // whole of a plain pickle (whose storages can only be pickled by value).
    let mut hooks = TorchHooks::new(bytes, Some(0), Some(nested_storage));
    let (first, end) = vm::run(bytes, &mut hooks, budget)?;
    if is_legacy_magic(&first) {
        drop(first);
        let legacy = parse_legacy(bytes, end, 0, budget, true)?;
        let located = legacy.located;
        let missing = legacy.missing;
        let found = entries(legacy.found, |s| {
            located
                .get(&s.key)
                .copied()
                .ok_or_else(|| format!("the data of its storage '{}' is missing: {missing}", s.key))
        });
        return Ok((LEGACY_PROTOCOL.to_string(), found));
    }
    let mut found = Vec::new();
    find_tensors(
        &first,
        "",
        budget,
        hooks.tensors,
        name_bytes_limit(bytes.len()),
        &mut found,
    )?;
    drop(first);
    let out = entries(found, |s| {
        Err(format!(
            "its storage '{}' has no data: the file is a plain pickle, not a torch.save checkpoint",
            s.key
        ))
    });
    Ok((String::new(), out))
}

fn is_legacy_magic(v: &Value) -> bool {
    matches!(v, Value::BigInt(b) if **b == LEGACY_MAGIC)
}

/// The parts of a legacy checkpoint.
struct Legacy {
    /// Tensors of the main pickle (when asked for).
    found: Vec<Found>,
    /// The main pickle's value when it is a bare storage.
    root_storage: Option<Rc<Storage>>,
    /// Storage bytes by key.
    located: HashMap<String, Located>,
    /// Why some storages' data could not be found (if any is missing).
    missing: String,
}

/// Parses the rest of a legacy checkpoint (found at absolute offset
/// `base`) after its magic number, which ends at `pos`.
fn parse_legacy(
    bytes: &[u8],
    mut pos: usize,
    base: u64,
    budget: &mut Budget,
    top_level: bool,
) -> Result<Legacy, String> {
    let nested = if top_level {
        Some(nested_storage as torch::NestedLoader)
    } else {
        None
    };
    let next = |what: &str,
                hooks: &mut TorchHooks<'_>,
                budget: &mut Budget,
                pos: &mut usize|
     -> Result<Value, String> {
        let (v, n) = vm::run(&bytes[*pos..], hooks, budget)
            .map_err(|e| format!("legacy checkpoint, {what} pickle at byte {}: {e}", *pos))?;
        *pos += n;
        Ok(v)
    };
    let mut inert = TorchHooks::new(&[], None, None);
    match next("protocol version", &mut inert, budget, &mut pos)? {
        Value::Int(LEGACY_PROTOCOL) => {}
        Value::Int(v) => return Err(format!("unsupported legacy torch protocol version {v}")),
        other => {
            return Err(format!(
                "legacy checkpoint: the protocol version is a {}",
                other.kind()
            ))
        }
    }
    let mut big_endian = false;
    if let Value::Dict(d) = next("system info", &mut inert, budget, &mut pos)? {
        for (k, v) in d.0.borrow().iter() {
            if let (Value::Str(k), Value::Bool(little)) = (k, v) {
                if &**k == "little_endian" {
                    big_endian = !little;
                }
            }
        }
    }
    let main_at = pos;
    let mut hooks = TorchHooks::new(&bytes[main_at..], Some(base + main_at as u64), nested);
    let root = next("main", &mut hooks, budget, &mut pos)?;
    let mut found = Vec::new();
    let mut root_storage = None;
    if top_level {
        find_tensors(
            &root,
            "",
            budget,
            hooks.tensors,
            name_bytes_limit(bytes.len()),
            &mut found,
        )?;
    } else if let Some(s) = root.native::<Storage>() {
        root_storage = Some(s);
    }
    drop(root);
    let storages = hooks.storages().clone();
    drop(hooks);

    // The list of storage keys, then each storage's records in that order.
    let mut located = HashMap::new();
    let keys = match next("storage keys", &mut inert, budget, &mut pos) {
        Ok(v) => v.items(),
        Err(e) => {
            return Ok(Legacy {
                found,
                root_storage,
                located,
                missing: e,
            })
        }
    };
    let Some(keys) = keys else {
        return Err("legacy checkpoint: the storage keys are not a list".into());
    };
    let mut missing = String::new();
    for key in keys {
        let key = match key {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            other => {
                missing = format!("a storage key is a {}", other.kind());
                break;
            }
        };
        let Some(itemsize) = storages.get(&key).and_then(|s| s.itemsize) else {
            missing = format!(
                "the size of the records after storage '{key}' is unknown (its type is not known)"
            );
            break;
        };
        let Some(count) = bytes.get(pos..pos + 8) else {
            missing = "the file is truncated".into();
            break;
        };
        let count: [u8; 8] = count.try_into().expect("8 bytes");
        let count = if big_endian {
            u64::from_be_bytes(count)
        } else {
            u64::from_le_bytes(count)
        };
        let start = pos as u64 + 8;
        let Some(end) = count
            .checked_mul(itemsize)
            .and_then(|n| n.checked_add(start))
            .filter(|&end| end <= bytes.len() as u64)
        else {
            missing = format!("the file is truncated (storage '{key}' runs past its end)");
            break;
        };
        // As torch.load: a size header other than the pickle's count is
        // damage, and every storage after it would be read from the wrong place.
        if let Some(n) = storages.get(&key).and_then(|s| s.declared) {
            if n != count {
                missing =
                    format!("storage '{key}' holds {count} elements where its pickle declares {n}");
                break;
            }
        }
        located.entry(key).or_insert(Located {
            bytes: StorageBytes::Stored {
                offset: base + start,
                len: end - start,
            },
            big_endian,
        });
        pos = end as usize;
    }
    Ok(Legacy {
        found,
        root_storage,
        located,
        missing,
    })
}

/// The storage held by a legacy checkpoint embedded in a pickle (how
/// `pickle.dumps(tensor)` stores a storage by value), located absolutely.
/// The globals its pickles name are recorded in `outer`.
fn nested_storage(bytes: &[u8], base: u64, outer: &mut Budget) -> Result<Rc<Storage>, String> {
    let mut budget = Budget::new(bytes.len() as u64);
    let legacy = nested_legacy(bytes, base, &mut budget);
    for (m, n) in std::mem::take(&mut budget.globals) {
        outer.note_global(&m, &n)?;
    }
    let legacy = legacy?;
    let s = legacy.root_storage.ok_or("it holds no storage")?;
    let inline = legacy
        .located
        .get(&s.key)
        .copied()
        .ok_or_else(|| format!("its data is missing: {}", legacy.missing));
    Ok(Rc::new(Storage {
        key: s.key.clone(),
        itemsize: s.itemsize,
        dtype: s.dtype.clone(),
        declared: s.declared,
        inline: Some(inline),
    }))
}

/// A nested legacy checkpoint (a storage pickled by value).
fn nested_legacy(bytes: &[u8], base: u64, budget: &mut Budget) -> Result<Legacy, String> {
    let mut inert = TorchHooks::new(&[], None, None);
    let (magic, end) = vm::run(bytes, &mut inert, budget)?;
    if !is_legacy_magic(&magic) {
        return Err("it is not a serialized storage".into());
    }
    parse_legacy(bytes, end, base, budget, false)
}
