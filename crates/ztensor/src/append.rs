//! Adding tensors to an existing `.zt` file in place, crash-safely
//! (docs/format.md section 15).
//!
//! New blobs go after the old end of the file, then a new manifest and
//! footer. Bytes of the old version are never written: readers that have it
//! open, and zero-copy views into it, stay valid, and the old manifest stays
//! behind as dead bytes (see `zt compact`).
//!
//! While an append is under way the file does not end with a footer but
//! with a 16-byte *append trailer*, written by us and never by user data:
//! the old file size (u64 LE), then the magic `ZTAPPEND`. It sits at a
//! 16-byte aligned offset past every byte written so far and is fsynced
//! before any byte below it is written; when a write needs more room, a new
//! trailer further on is written and fsynced first. The commit writes the
//! manifest just below the trailer's final place, fsyncs, and replaces the
//! trailer with the footer in one 16-byte aligned write. So at any kill or
//! power cut the file ends with the old footer (nothing was written yet),
//! the new footer (committed), or a trailer (possibly followed by zero
//! bytes of a size change that became durable before the trailer did),
//! which readers refuse with a message pointing at [`repair`]; `repair`
//! truncates the file back to the size the trailer names, after checking
//! that a complete old version ends there.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::container::{self, LEGACY_MAGIC, MAGIC};
use crate::error::{self, Error, FormatError, Result};
use crate::manifest;
use crate::model::Value;
use crate::writer::Writer;

/// Magic at the end of a file whose append has not finished (the last 8
/// bytes of the append trailer).
pub const APPEND_MAGIC: &[u8; 8] = b"ZTAPPEND";

/// The root manifest key holding the size of the file before the append
/// that wrote the manifest: its first `previous_end` bytes are the previous
/// version, a complete file.
pub const PREVIOUS_END_KEY: &str = "previous_end";

const TRAILER_LEN: u64 = 16;

/// Room made beyond a write when the trailer moves on (at least; it grows
/// with the data appended, so a long append moves it a logarithmic number
/// of times). The gap is a hole in the file until written.
const MIN_ROOM: u64 = 1 << 20;

/// Small writes (padding, small tensors) are gathered up to this size.
const GATHER: usize = 64 << 10;

/// The text readers give for a file ending with an append trailer; `FILE`
/// is replaced by the path where one is known (see [`name_file`]).
pub(crate) const TORN: &str = "torn append: an append to this file did not finish (the appending \
    process was killed, the machine lost power, or the append is still running); the content \
    from before the append is intact: run `zt repair FILE` to restore it";

/// Puts `path` into a parse error that names no file (the torn-append text).
pub(crate) fn name_file(message: String, path: &Path) -> String {
    if message.starts_with("torn append:") {
        message.replace("zt repair FILE", &format!("zt repair {}", path.display()))
    } else {
        message
    }
}

/// The sink of an appending [`Writer`]: writes in place past the old end
/// of the file, keeping the append trailer ahead of every byte written.
/// The file is locked (`flock`) for as long as it is open. Dropped without
/// a commit, it truncates the file back to its old size.
pub struct AppendFile {
    file: File,
    /// Size of the file before the append.
    old_end: u64,
    /// File offset of the next byte written (after `gathered`).
    pos: u64,
    gathered: Vec<u8>,
    /// Offset of the current trailer (the file ends 16 bytes after it).
    trailer_at: Option<u64>,
    committed: bool,
    /// Root manifest keys of the old file that the new manifest keeps.
    root_extra: Vec<(String, Value)>,
}

impl AppendFile {
    // Every change to the file goes through these three (the tests replay them).
    fn pwrite(&self, data: &[u8], at: u64) -> std::io::Result<()> {
        #[cfg(test)]
        tests::record(tests::Op::Write(at, data.to_vec()));
        self.file.write_all_at(data, at)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        #[cfg(test)]
        tests::record(tests::Op::SetLen(len));
        self.file.set_len(len)
    }

    fn sync(&self) -> std::io::Result<()> {
        #[cfg(test)]
        tests::record(tests::Op::Sync);
        self.file.sync_data()
    }

    /// Writes a trailer at `at` (a multiple of 16, past everything written)
    /// and makes it durable before any byte below it is written.
    fn place_trailer(&mut self, at: u64) -> std::io::Result<()> {
        self.pwrite(&trailer(self.old_end), at)?;
        // Set first: if the sync fails, dropping the sink still rolls back.
        self.trailer_at = Some(at);
        self.sync()
    }

    /// Makes sure bytes up to `end` can be written below the trailer.
    fn make_room(&mut self, end: u64) -> std::io::Result<()> {
        if self.trailer_at.is_some_and(|t| end <= t) {
            return Ok(());
        }
        let room = (end - self.old_end).max(MIN_ROOM);
        self.place_trailer(round_up_16(end.saturating_add(room)))
    }

    fn write_at_pos(&mut self, parts: &[&[u8]]) -> std::io::Result<()> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let end = self.pos.checked_add(len).ok_or(ErrorKind::FileTooLarge)?;
        self.make_room(end)?;
        for part in parts {
            self.pwrite(part, self.pos)?;
            self.pos += part.len() as u64;
        }
        Ok(())
    }

    fn flush_gathered(&mut self) -> std::io::Result<()> {
        if !self.gathered.is_empty() {
            let gathered = std::mem::take(&mut self.gathered);
            self.write_at_pos(&[&gathered])?;
            self.gathered = gathered;
            self.gathered.clear();
        }
        Ok(())
    }

    /// Writes `manifest` and the footer and makes them durable. Returns the
    /// new file size.
    fn commit(&mut self, manifest: &[u8]) -> std::io::Result<u64> {
        self.flush_gathered()?;
        let n = manifest.len() as u64;
        // The footer replaces a trailer in one aligned write, so it goes to
        // a multiple of 16; the few bytes between the last blob and the
        // manifest are zero padding, like the padding before blobs.
        let footer_at = round_up_16(self.pos + n);
        let gap = vec![0u8; (footer_at - n - self.pos) as usize];
        let size = footer_at + TRAILER_LEN;
        match self.trailer_at {
            Some(t) if t >= footer_at => {
                if t > footer_at {
                    // Below the current trailer, so no ordering is needed
                    // with the manifest: both are durable before the cut.
                    self.pwrite(&trailer(self.old_end), footer_at)?;
                }
                self.write_at_pos(&[&gap, manifest])?;
                self.sync()?;
                if t > footer_at {
                    self.set_len(size)?;
                    self.trailer_at = Some(footer_at);
                }
            }
            _ => {
                self.place_trailer(footer_at)?;
                self.write_at_pos(&[&gap, manifest])?;
                self.sync()?;
            }
        }
        let mut footer = [0u8; 16];
        footer[..8].copy_from_slice(&n.to_le_bytes());
        footer[8..].copy_from_slice(MAGIC);
        self.pwrite(&footer, footer_at)?;
        self.sync()?;
        self.committed = true;
        Ok(size)
    }
}

impl Write for AppendFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.gathered.len() + buf.len() <= GATHER {
            self.gathered.extend_from_slice(buf);
            return Ok(());
        }
        let gathered = std::mem::take(&mut self.gathered);
        let result = self.write_at_pos(&[&gathered, buf]);
        self.gathered = gathered;
        self.gathered.clear();
        result
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_gathered()
    }
}

impl Drop for AppendFile {
    fn drop(&mut self) {
        if !self.committed && self.trailer_at.is_some() {
            // Abandoned: the old version, exactly. Best effort; if this
            // fails the file keeps its trailer and `repair` does the same.
            if self.set_len(self.old_end).is_ok() {
                let _ = self.sync();
            }
        }
    }
}

impl Writer<AppendFile> {
    /// Opens an existing `.zt` (v1) file to add tensors to it in place.
    ///
    /// [`Writer::add`] and the other `add_*` methods write new tensors
    /// after the old end of the file; [`Writer::remove`] drops a tensor
    /// from the new manifest; [`Writer::set_attributes`] replaces the file
    /// attributes (kept otherwise). [`Writer::<AppendFile>::finish`]
    /// commits. Bytes of the old version are never written, so readers of
    /// it stay valid; until the commit, other readers refuse the file as a
    /// torn append. Dropping the writer unfinished restores the old
    /// version. One appender at a time: the file is locked (`flock`), and a
    /// second appender gets an error of kind `WouldBlock`.
    ///
    /// ```no_run
    /// let mut w = ztensor::Writer::append("model.zt")?;
    /// w.add("adapter.a", &[2], &[0.5f32, 1.5])?;
    /// w.remove("old.head")?;
    /// w.finish()?;
    /// # Ok::<(), ztensor::Error>(())
    /// ```
    pub fn append(path: impl AsRef<Path>) -> Result<Writer<AppendFile>> {
        let path = path.as_ref();
        let file = open_locked(path)?;
        let (size, old) = read_old_version(&file, path)?;
        let (attributes, kept, root_extra) = old;
        let sink = AppendFile {
            file,
            old_end: size,
            pos: size,
            gathered: Vec::new(),
            trailer_at: None,
            committed: false,
            root_extra,
        };
        let mut w = Writer::resume(sink, path.to_path_buf(), size);
        w.attributes = attributes;
        w.kept = kept;
        Ok(w)
    }

    /// Writes the new manifest and footer and makes the file durable.
    /// Returns its new size in bytes.
    pub fn finish(mut self) -> Result<u64> {
        if self.failed {
            return Err(Error::invalid(
                "the writer failed earlier; the file keeps its content from before the append",
            ));
        }
        let mut extra = std::mem::take(&mut self.out.root_extra);
        extra.push((
            PREVIOUS_END_KEY.to_string(),
            Value::Integer(self.out.old_end.into()),
        ));
        let manifest =
            manifest::encode_appended(self.attributes.as_ref(), &self.objects, &self.kept, &extra);
        self.out
            .commit(&manifest)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Names of the tensors of the original file that the new manifest keeps.
    pub fn kept_names(&self) -> impl Iterator<Item = &str> {
        self.kept.keys().map(String::as_str)
    }
}

impl<W: Write> Writer<W> {
    /// Drops a tensor from the manifest to be written: one of the file
    /// being appended to, or one added earlier. Its bytes stay in the file,
    /// unreferenced, until `zt compact`. Adding the name again afterwards
    /// replaces the tensor.
    pub fn remove(&mut self, name: &str) -> Result<()> {
        if self.kept.remove(name).is_some() || self.objects.remove(name).is_some() {
            return Ok(());
        }
        Err(Error::NotFound {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// The file attributes the manifest will hold (for an append, those of
    /// the file unless replaced).
    pub fn attributes(&self) -> Option<&Value> {
        self.attributes.as_ref()
    }
}

type OldVersion = (Option<Value>, BTreeMap<String, Value>, Vec<(String, Value)>);

/// Opens an existing file for reading and writing and takes the one-appender
/// lock: what an append and a repair both start with.
fn open_locked(path: &Path) -> Result<File> {
    // A save may rename a new file over the path between our open and our
    // lock (it takes the lock for its rename, see `atomic`): the file we
    // locked is then the unlinked old one, and we open the path again.
    for _ in 0..8 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        lock_for_append(&file, path)?;
        if crate::atomic::still_at(&file, path).map_err(|e| Error::io(path, e))? {
            return Ok(file);
        }
    }
    Err(Error::io(
        path,
        std::io::Error::new(
            ErrorKind::WouldBlock,
            "the file kept being replaced while opening it to append",
        ),
    ))
}

/// Takes the append lock of `file`, or says who holds it.
fn lock_for_append(file: &File, path: &Path) -> Result<()> {
    crate::atomic::lock(file, libc::LOCK_EX | libc::LOCK_NB).map_err(|e| {
        if e.kind() == ErrorKind::WouldBlock {
            Error::io(
                path,
                std::io::Error::new(
                    ErrorKind::WouldBlock,
                    "another writer is appending to this file or repairing it (it holds \
                     the file's lock); one at a time",
                ),
            )
        } else {
            Error::io(path, e)
        }
    })
}

/// Checks that `file` is a complete `.zt` v1 file and returns its size,
/// attributes, objects (as manifest CBOR) and other root keys.
fn read_old_version(file: &File, path: &Path) -> Result<(u64, OldVersion)> {
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = [0u8; 8];
    let mut tail = [0u8; 16];
    if size >= 16 {
        file.read_exact_at(&mut head, 0)
            .and_then(|_| file.read_exact_at(&mut tail, size - 16))
            .map_err(|e| Error::io(path, e))?;
    }
    if &head == LEGACY_MAGIC {
        return Err(Error::format(
            path,
            "cannot append to a legacy .zt file (format 0.1); convert it first \
             (zt convert IN OUT writes the current format)",
        ));
    }
    if &head == MAGIC && &tail[8..] == APPEND_MAGIC {
        let torn = FormatError::new(error::ErrorKind::TornAppend, name_file(TORN.into(), path));
        return Err(Error::format(path, torn));
    }
    // SAFETY: a private read-only use of the mapping while we hold the
    // append lock; it is dropped before this function returns, before any
    // write. Truncation by another process would raise SIGBUS, the hazard
    // every mapping reader documents.
    let map = unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io(path, e))?;
    let bytes: &[u8] = &map;
    if !bytes.starts_with(MAGIC) {
        return Err(Error::format(
            path,
            "not a .zt file (it does not start with ZTEN1000): only .zt files can be appended to",
        ));
    }
    let catalog = container::parse(bytes).map_err(|m| Error::format(path, m))?;
    let n = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
    let start = (size - 16 - n) as usize;
    let root: Value = ciborium::de::from_reader(&bytes[start..size as usize - 16])
        .map_err(|e| Error::format(path, format!("manifest is not valid CBOR: {e}")))?;
    let Value::Map(root) = root else {
        return Err(Error::format(path, "manifest is not a CBOR map"));
    };
    let mut kept = BTreeMap::new();
    let mut extra = Vec::new();
    for (key, value) in root {
        let Value::Text(key) = key else { continue };
        match key.as_str() {
            "version" | "attributes" | PREVIOUS_END_KEY => {}
            "objects" => {
                let Value::Map(objects) = value else {
                    return Err(Error::format(path, "manifest 'objects' is not a map"));
                };
                for (name, object) in objects {
                    let Value::Text(name) = name else {
                        return Err(Error::format(
                            path,
                            "manifest 'objects' has a key that is not text",
                        ));
                    };
                    // The last of a repeated name wins, as for readers.
                    kept.insert(name, object);
                }
            }
            _ => extra.push((key, value)),
        }
    }
    Ok((size, (catalog.attributes, kept, extra)))
}

fn trailer(old_end: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&old_end.to_le_bytes());
    t[8..].copy_from_slice(APPEND_MAGIC);
    t
}

fn round_up_16(n: u64) -> u64 {
    n.div_ceil(16) * 16
}

/// What [`repair`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The file ends with a complete footer: nothing to do.
    Intact,
    /// An unfinished append was cut off: the file is back to `size` bytes,
    /// its content from before that append; `removed` bytes were dropped.
    RolledBack {
        /// The file's size now.
        size: u64,
        /// How many bytes of the unfinished append were removed.
        removed: u64,
    },
}

/// Restores a file whose append did not finish (a killed process, a power
/// cut) to its content from before the append, by truncating it to the
/// size its append trailer names, once it has checked that a complete
/// `.zt` file ends there. Takes the append lock, so it refuses to touch a
/// file an append is still writing. A file that ends with a complete
/// footer is left alone ([`Repair::Intact`]); any other damage is an error,
/// since no byte of it can be trusted to say where a good version ends.
pub fn repair(path: impl AsRef<Path>) -> Result<Repair> {
    let path = path.as_ref();
    let io = |e| Error::io(path, e);
    let file = open_locked(path)?;
    let size = file.metadata().map_err(io)?.len();
    // A size change can become durable before the bytes written at the new
    // end (a power cut): skip trailing zeros, which no trailer or footer
    // ends with.
    let end = size - trailing_zeros(&file, size).map_err(io)?;
    let mut tail = [0u8; 16];
    if end >= 24 {
        file.read_exact_at(&mut tail, end - 16).map_err(io)?;
    }
    let good_end = if &tail[8..] == APPEND_MAGIC && end % 16 == 0 {
        let old_end = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
        if old_end > end - 16 {
            return Err(Error::format(
                path,
                format!("the append trailer names a size of {old_end} bytes, past its own place"),
            ));
        }
        old_end
    } else if &tail[8..] == MAGIC {
        end
    } else {
        return Err(Error::format(
            path,
            "the file ends neither with a .zt footer nor with the trailer of an unfinished \
             append: it was not damaged by an interrupted append, and zt repair cannot restore it",
        ));
    };
    check_complete(&file, path, good_end)?;
    if good_end == size {
        return Ok(Repair::Intact);
    }
    file.set_len(good_end).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Repair::RolledBack {
        size: good_end,
        removed: size - good_end,
    })
}

/// Errors unless the first `len` bytes of `file` are a complete `.zt` v1 file.
fn check_complete(file: &File, path: &Path, len: u64) -> Result<()> {
    let mut head = [0u8; 8];
    if len >= 24 {
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(path, e))?;
    }
    if &head != MAGIC {
        return Err(Error::format(
            path,
            "not a .zt file (it does not start with ZTEN1000); zt repair restores .zt files only",
        ));
    }
    // SAFETY: a read-only mapping of a file we hold the append lock of,
    // dropped before we change it.
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(file) }
        .map_err(|e| Error::io(path, e))?;
    container::parse(&map).map(drop).map_err(|m| {
        Error::format(
            path,
            format!(
                "the version ending at byte {len} is damaged, so zt repair cannot restore it: {m}"
            ),
        )
    })
}

/// How many zero bytes the first `size` bytes of `file` end with.
fn trailing_zeros(file: &File, size: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut end = size;
    while end > 0 {
        let n = (end.min(buf.len() as u64)) as usize;
        file.read_exact_at(&mut buf[..n], end - n as u64)?;
        match buf[..n].iter().rposition(|&b| b != 0) {
            Some(i) => return Ok(size - (end - n as u64 + i as u64 + 1)),
            None => end -= n as u64,
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    //! Replays the writes of real appends to check every state a kill or a
    //! power cut can leave: it loads as the old or the new version exactly,
    //! or it is refused, and then `repair` restores the old version.

    use std::cell::RefCell;

    use super::*;
    use crate::{Checksum, ComponentData, WriteOptions};

    #[derive(Clone, Debug)]
    pub(super) enum Op {
        Write(u64, Vec<u8>),
        SetLen(u64),
        Sync,
    }

    thread_local! {
        static LOG: RefCell<Option<Vec<Op>>> = const { RefCell::new(None) };
    }

    pub(super) fn record(op: Op) {
        LOG.with(|log| {
            if let Some(ops) = log.borrow_mut().as_mut() {
                ops.push(op);
            }
        });
    }

    fn logged(f: impl FnOnce()) -> Vec<Op> {
        LOG.with(|log| *log.borrow_mut() = Some(Vec::new()));
        f();
        LOG.with(|log| log.borrow_mut().take().unwrap())
    }

    /// Applies `op`; `zeros_only` applies a write's change of size but not its bytes.
    fn apply(state: &mut Vec<u8>, op: &Op, zeros_only: bool) {
        match op {
            Op::Write(at, data) => {
                let (at, end) = (*at as usize, *at as usize + data.len());
                if state.len() < end {
                    state.resize(end, 0);
                }
                if !zeros_only {
                    state[at..end].copy_from_slice(data);
                }
            }
            Op::SetLen(n) => state.resize(*n as usize, 0),
            Op::Sync => {}
        }
    }

    /// Every state: after each operation (a kill), and for a power cut any
    /// subset of the operations since the last sync, in order, each write
    /// either whole or only its change of size.
    fn states(old: &[u8], ops: &[Op]) -> Vec<Vec<u8>> {
        let mut out = vec![old.to_vec()];
        let mut state = old.to_vec();
        for op in ops {
            apply(&mut state, op, false);
            out.push(state.clone());
        }
        let mut durable = old.to_vec();
        for interval in ops.split(|op| matches!(op, Op::Sync)) {
            assert!(
                interval.len() <= 8,
                "too many writes between syncs to enumerate"
            );
            let choices = 3usize.pow(interval.len() as u32);
            for mut pick in 0..choices {
                let mut s = durable.clone();
                for op in interval {
                    match pick % 3 {
                        0 => {}
                        1 => apply(&mut s, op, false),
                        _ => apply(&mut s, op, true),
                    }
                    pick /= 3;
                }
                out.push(s);
            }
            for op in interval {
                apply(&mut durable, op, false);
            }
        }
        out
    }

    fn check_states(old: &[u8], new: &[u8], ops: &[Op]) -> (usize, usize, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.zt");
        let (mut as_old, mut as_new, mut repaired) = (0, 0, 0);
        for state in states(old, ops) {
            assert_eq!(&state[..old.len()], old, "the old bytes changed");
            match container::parse(&state) {
                Ok(_) if state == old => as_old += 1,
                Ok(_) if state == new => as_new += 1,
                Ok(_) => panic!(
                    "a state of {} bytes loads but is neither version",
                    state.len()
                ),
                Err(_) => {
                    std::fs::write(&path, &state).unwrap();
                    let r = repair(&path).unwrap();
                    assert!(matches!(r, Repair::RolledBack { .. }), "{r:?}");
                    assert_eq!(std::fs::read(&path).unwrap(), old);
                    repaired += 1;
                }
            }
        }
        (as_old, as_new, repaired)
    }

    fn old_file(path: &Path) -> Vec<u8> {
        let mut w = Writer::create(path).unwrap();
        w.add("a", &[3], &[1.0f32, 2.0, 3.0]).unwrap();
        let opts = WriteOptions::zstd(3).with_checksum(Checksum::Crc32c);
        w.add_with("b", &[4], &[7i64, 8, 9, 10], &opts).unwrap();
        w.finish().unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn every_kill_or_power_cut_state_is_old_new_or_repairable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.zt");
        let old = old_file(&path);
        let big = vec![3u8; 1_200_000];
        let ops = logged(|| {
            let mut w = Writer::append(&path).unwrap();
            w.add("c", &[2], &[5u16, 6]).unwrap();
            let crc = WriteOptions::raw().with_checksum(Checksum::Sha256);
            w.add_dense("big", &[big.len() as u64], ComponentData::of(&big), &crc)
                .unwrap();
            let bigger = vec![4u8; 2 << 20]; // past that room: the trailer moves
            w.add("bigger", &[bigger.len() as u64], &bigger).unwrap();
            w.remove("a").unwrap();
            w.finish().unwrap();
        });
        let new = std::fs::read(&path).unwrap();
        let syncs = ops.iter().filter(|o| matches!(o, Op::Sync)).count();
        let moves = ops
            .iter()
            .filter(|o| matches!(o, Op::Write(_, d) if d.ends_with(APPEND_MAGIC)))
            .count();
        assert!(
            syncs >= 4 && moves >= 3,
            "{syncs} syncs, {moves} trailers written"
        );
        let (as_old, as_new, repaired) = check_states(&old, &new, &ops);
        assert!(
            as_old >= 1 && as_new >= 1 && repaired > 10,
            "{as_old} {as_new} {repaired}"
        );
    }

    #[test]
    fn metadata_only_and_small_appends_are_safe_too() {
        for tensors in [0usize, 1, 40] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.zt");
            let old = old_file(&path);
            let ops = logged(|| {
                let mut w = Writer::append(&path).unwrap();
                for i in 0..tensors {
                    w.add(&format!("t{i}"), &[1], &[i as u32]).unwrap();
                }
                let attrs = Value::Map(vec![(Value::Text("k".into()), Value::Text("v".into()))]);
                w.set_attributes(attrs).unwrap();
                w.finish().unwrap();
            });
            let new = std::fs::read(&path).unwrap();
            let (as_old, as_new, repaired) = check_states(&old, &new, &ops);
            assert!(
                as_old >= 1 && as_new >= 1 && repaired >= 1,
                "{as_old} {as_new} {repaired}"
            );
        }
    }

    #[test]
    fn an_abandoned_append_leaves_the_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.zt");
        let old = old_file(&path);
        let ops = logged(|| {
            let mut w = Writer::append(&path).unwrap();
            w.add("c", &[70000], &vec![1u8; 70000]).unwrap();
            drop(w);
        });
        assert_eq!(std::fs::read(&path).unwrap(), old);
        let new = old.clone();
        let (_, _, repaired) = check_states(&old, &new, &ops);
        assert!(repaired >= 1);
    }

    #[test]
    fn the_append_encoder_writes_what_the_plain_encoder_does() {
        let mut w = Writer::in_memory();
        let attrs = Value::Map(vec![(Value::Text("z".into()), Value::Float(0.1))]);
        w.set_attributes(attrs).unwrap();
        w.add("x", &[2], &[1u8, 2]).unwrap();
        w.add("é", &[], &[1.5f64]).unwrap();
        let plain = manifest::encode(w.attributes.as_ref(), &w.objects);
        let appended =
            manifest::encode_appended(w.attributes.as_ref(), &w.objects, &BTreeMap::new(), &[]);
        assert_eq!(plain, appended);
    }
}
