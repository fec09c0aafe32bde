//! Atomic file replacement: write a hidden temporary sibling, rename it over
//! the target only once complete. A failed or abandoned write removes the
//! temporary and leaves whatever was at the target untouched.

use std::fs::{File, Permissions};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A file being written that appears at its target path only on [`AtomicFile::commit`].
pub struct AtomicFile {
    target: PathBuf,
    tmp: NamedTempFile,
    // Writes go to a second handle of the temporary, not through
    // NamedTempFile, whose errors name the temporary instead of the target.
    out: BufWriter<File>,
    durable: bool,
    written: u64,
    reserved: u64,
}

impl AtomicFile {
    /// Starts writing a temporary file next to `target`. When `target` is a
    /// symbolic link, the file it points to is replaced and the link kept
    /// (as a plain `open(.., "wb")` would), not the link itself.
    pub fn create(target: impl AsRef<Path>) -> std::io::Result<AtomicFile> {
        let target = follow_links(target.as_ref())?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{stem}.");
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(TMP_SUFFIX)
            // The usual mode of a new file (umask applies), not tempfile's private 0600.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(|e| folder_error(&dir, e))?;
        // Our temporary stays locked while we write it, so another writer's
        // clean-up can tell it from one left by a killed process.
        lock(tmp.as_file(), libc::LOCK_EX | libc::LOCK_NB)?;
        remove_stale_temporaries(&dir, &prefix, tmp.path());
        let out = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
        Ok(AtomicFile {
            target,
            tmp,
            out,
            durable: false,
            written: 0,
            reserved: 0,
        })
    }

    /// With `true`, [`AtomicFile::commit`] also fsyncs the file and its
    /// directory, so the new content survives a power failure.
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    /// Allocates disk space for at least `len` bytes up front. Growing a
    /// file block by block while writing is markedly slower on some file
    /// systems; any space not written is trimmed on commit. Best effort:
    /// a file system without `fallocate` just grows as usual.
    pub fn reserve(&mut self, len: u64) {
        if len > self.reserved {
            let fd = std::os::fd::AsRawFd::as_raw_fd(self.tmp.as_file());
            // SAFETY: fd is our open temporary file; posix_fallocate only
            // allocates blocks (it never shrinks or changes written data).
            let rc =
                unsafe { libc::posix_fallocate(fd, 0, len.min(i64::MAX as u64) as libc::off_t) };
            if rc == 0 {
                self.reserved = len;
            }
        }
    }

    /// The path the file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes and renames the temporary over the target.
    pub fn commit(self) -> std::io::Result<()> {
        drop(self.out.into_inner().map_err(|e| e.into_error())?);
        let tmp = self.tmp;
        if self.reserved > self.written {
            tmp.as_file().set_len(self.written)?;
        }
        if self.durable {
            tmp.as_file().sync_all()?;
        }
        // An appender holds the lock of the file it appends to: replacing
        // that file now would let its append land in the unlinked old
        // file, lost. Held through the rename; an appender that takes the
        // lock afterwards finds the path renamed over and reopens it.
        let _old = lock_replaced_file(&self.target)?;
        tmp.persist(&self.target).map_err(|e| e.error)?;
        if self.durable {
            if let Some(dir) = self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }
}

const TMP_SUFFIX: &str = ".tmp";

/// The error of creating the temporary in `dir`, in words about the folder:
/// tempfile's own text names the temporary, a path the user never chose.
fn folder_error(dir: &Path, e: std::io::Error) -> std::io::Error {
    let dir = dir.display();
    let what = match e.kind() {
        ErrorKind::NotFound => format!("the folder {dir} does not exist"),
        ErrorKind::NotADirectory => format!("{dir} is not a folder"),
        ErrorKind::PermissionDenied => {
            format!("no permission to create a file in the folder {dir}")
        }
        kind => format!("cannot create a file in the folder {dir}: {kind}"),
    };
    std::io::Error::new(e.kind(), what)
}

/// The path a chain of symbolic links ends at (it need not exist yet: a
/// dangling link names the file to create). `path` itself when it is not a
/// link. More than 40 hops is a loop (ELOOP), as for the kernel.
fn follow_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&path)?;
                path = match path.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::ELOOP))
}

/// `flock(2)` on `file` (advisory; released when the file is closed).
pub(crate) fn lock(file: &std::fs::File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a file descriptor we own; it only takes an advisory lock.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(file), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Takes the append lock of the file at `target`, if there is one, so that
/// it is not replaced under an appender; `WouldBlock` while one holds it.
/// Best effort beyond that: a target that cannot be opened (none yet, no
/// read permission) has no appender to protect.
fn lock_replaced_file(target: &Path) -> std::io::Result<Option<File>> {
    let Ok(old) = File::open(target) else {
        return Ok(None);
    };
    match lock(&old, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(old)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Err(std::io::Error::new(
            ErrorKind::WouldBlock,
            format!(
                "cannot replace {}: another writer is appending to it or repairing it \
                 (it holds the file's lock); nothing was written",
                target.display()
            ),
        )),
        Err(_) => Ok(None), // a file system without flock: nothing to honour
    }
}

/// Whether `file` is still the file at `path` (not renamed over or removed
/// since it was opened).
pub(crate) fn still_at(file: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (open, named) = (file.metadata()?, std::fs::metadata(path));
    Ok(named.is_ok_and(|n| n.dev() == open.dev() && n.ino() == open.ino()))
}

/// Removes temporaries of the same target left behind by writers that were
/// killed (SIGKILL skips every clean-up). A temporary is stale when nobody
/// holds its lock; one still being written by a live writer is left alone.
fn remove_stale_temporaries(dir: &Path, prefix: &str, ours: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if !name.starts_with(prefix) || !name.ends_with(TMP_SUFFIX) || path == ours {
            continue;
        }
        if let Ok(file) = std::fs::File::open(&path) {
            if lock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
