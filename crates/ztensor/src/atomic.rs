//! Atomic file replacement: write a hidden temporary sibling, rename it over
//! the target only once complete. A failed or abandoned write removes the
//! temporary and leaves whatever was at the target untouched.

use std::fs::Permissions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A file being written that appears at its target path only on [`AtomicFile::commit`].
pub struct AtomicFile {
    target: PathBuf,
    out: BufWriter<NamedTempFile>,
    durable: bool,
}

impl AtomicFile {
    /// Starts writing a temporary file next to `target`.
    pub fn create(target: impl AsRef<Path>) -> std::io::Result<AtomicFile> {
        let target = target.as_ref().to_path_buf();
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{stem}."))
            .suffix(".tmp")
            // The usual mode of a new file (umask applies), not tempfile's private 0600.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            target,
            out: BufWriter::with_capacity(1 << 20, tmp),
            durable: false,
        })
    }

    /// With `true`, [`AtomicFile::commit`] also fsyncs the file and its
    /// directory, so the new content survives a power failure.
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    /// The path the file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes and renames the temporary over the target.
    pub fn commit(self) -> std::io::Result<()> {
        let tmp = self.out.into_inner().map_err(|e| e.into_error())?;
        if self.durable {
            tmp.as_file().sync_all()?;
        }
        tmp.persist(&self.target).map_err(|e| e.error)?;
        if self.durable {
            if let Some(dir) = self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
