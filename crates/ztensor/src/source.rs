//! Where tensor bytes come from: a file (mapped copy-on-write, or read with
//! `pread`) or a buffer in memory. Zero-copy views keep their source alive.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::buffer::AlignedBuf;

/// Memory that zero-copy views point into. Views hold an `Arc` of it, so
/// the memory lives as long as the longest-lived view.
pub trait Backing: Send + Sync {
    /// The whole source.
    fn bytes(&self) -> &[u8];
}

impl Backing for memmap2::MmapMut {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Backing for AlignedBuf {
    fn bytes(&self) -> &[u8] {
        self.as_slice()
    }
}

/// A byte range of a [`Backing`], kept alive by an `Arc`.
#[derive(Clone)]
pub struct SharedBytes {
    owner: Arc<dyn Backing>,
    start: usize,
    len: usize,
}

impl SharedBytes {
    pub(crate) fn new(owner: Arc<dyn Backing>, start: usize, len: usize) -> SharedBytes {
        assert!(
            start + len <= owner.bytes().len(),
            "range checked by the caller"
        );
        SharedBytes { owner, start, len }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.owner.bytes()[self.start..self.start + self.len]
    }

    /// The memory these bytes live in (for handing to another runtime).
    pub fn owner(&self) -> &Arc<dyn Backing> {
        &self.owner
    }
}

/// Tensor bytes: either a zero-copy view of the source or an owned copy.
pub enum TensorBytes {
    /// Points into the mapped file (private copy-on-write) or the in-memory source.
    Shared(SharedBytes),
    /// A fresh, aligned buffer (copied, or decompressed).
    Owned(AlignedBuf),
}

impl TensorBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            TensorBytes::Shared(s) => s.as_slice(),
            TensorBytes::Owned(b) => b.as_slice(),
        }
    }

    /// True when the bytes point into the source rather than a copy.
    pub fn is_zero_copy(&self) -> bool {
        matches!(self, TensorBytes::Shared(_))
    }
}

impl std::ops::Deref for TensorBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for TensorBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_zero_copy() {
            "shared"
        } else {
            "owned"
        };
        write!(f, "TensorBytes({kind}, {} bytes)", self.len())
    }
}

/// A fresh private mapping of one span of the file, made for the zero-copy
/// results of one read call so that they share writable memory with no other
/// call's results (see [`crate::Reader::read_many_isolated`]).
pub(crate) struct SpanMap {
    map: Arc<memmap2::MmapMut>,
    start: u64,
}

impl SpanMap {
    /// The bytes at file offset `offset`, or `None` outside the span.
    pub(crate) fn bytes(&self, offset: u64, len: u64) -> Option<SharedBytes> {
        let at = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        let len = usize::try_from(len).ok()?;
        (at.checked_add(len)? <= self.map.len())
            .then(|| SharedBytes::new(self.map.clone() as Arc<dyn Backing>, at, len))
    }
}

/// Bytes read by ranges from somewhere other than a local file: an object
/// in a store or a file behind an HTTP server (the `ztensor-remote` crate).
///
/// An error that carries a [`crate::FormatError`] (`io::Error::other(problem)`)
/// reaches the caller as that problem (e.g. the object changed between reads);
/// one of kind `NotFound` as a missing file.
pub trait RangeSource: Send + Sync {
    /// Fills `dst` with the bytes at `offset`, exactly, or fails.
    fn read_into(&self, offset: u64, dst: &mut [u8]) -> std::io::Result<()>;

    /// Fills every `(offset, dst)` pair, which the caller lists in increasing
    /// offset order without overlaps. Sources merge close ranges and fetch
    /// them concurrently; this default reads them one by one.
    fn read_many(&self, requests: &mut [(u64, &mut [u8])]) -> std::io::Result<()> {
        requests
            .iter_mut()
            .try_for_each(|(offset, dst)| self.read_into(*offset, dst))
    }
}

/// The reader's view of its input.
pub(crate) enum Source {
    /// A file; `map` is present in [`crate::ReadMode::Mmap`].
    File {
        file: File,
        map: Option<Arc<memmap2::MmapMut>>,
    },
    /// Bytes already in memory.
    Memory(Arc<AlignedBuf>),
    /// Bytes fetched by ranges when read (a remote object).
    Ranged(Arc<dyn RangeSource>),
}

impl Source {
    /// The memory zero-copy views can point into, if any.
    pub(crate) fn backing(&self) -> Option<Arc<dyn Backing>> {
        match self {
            Source::File { map: Some(m), .. } => Some(m.clone() as Arc<dyn Backing>),
            Source::File { map: None, .. } => None,
            Source::Memory(b) => Some(b.clone() as Arc<dyn Backing>),
            Source::Ranged(_) => None,
        }
    }

    /// A new private mapping of the file bytes `start..end`, when the reader
    /// maps its file (`None` otherwise, for an empty span, or when the
    /// kernel refuses another mapping: callers then use [`Source::backing`]).
    pub(crate) fn map_span(&self, start: u64, end: u64) -> Option<SpanMap> {
        let Source::File { file, map: Some(_) } = self else {
            return None;
        };
        let len = usize::try_from(end.checked_sub(start)?).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: the same kind of mapping as the reader's own (private,
        // copy-on-write: writes never reach the file), of a range that lies
        // inside the file as validated at open. memmap2 aligns `start` down
        // to a page itself, so in-page offsets (and data alignment) are kept.
        // Truncation by another process is the documented SIGBUS hazard of
        // every mapping; ReadMode::Eager avoids it.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(len)
                .map_copy(file)
        }
        .ok()?;
        Some(SpanMap {
            map: Arc::new(map),
            start,
        })
    }

    /// Fills `dst` with the bytes at `offset` (bounds checked by the caller).
    pub(crate) fn read_into(&self, offset: u64, dst: &mut [u8]) -> std::io::Result<()> {
        match self {
            Source::File { file, .. } => {
                crate::parallel::fill(dst, offset, |d, at| file.read_exact_at(d, at))
            }
            Source::Memory(m) => {
                let start = offset as usize;
                crate::parallel::copy(dst, &m.as_slice()[start..start + dst.len()]);
                Ok(())
            }
            Source::Ranged(r) => r.read_into(offset, dst),
        }
    }
}
