//! Owned, page-aligned byte buffers for copied tensor data.
//!
//! Large copies land in memory aligned to a page (2 MiB and `MADV_HUGEPAGE`
//! from 2 MiB): the kernel's `pread` copy runs several times faster into a
//! page-aligned destination than into malloc's page+16 offset, and huge
//! pages cut the first-touch faults that otherwise bound a large copy.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

const SMALL_ALIGN: usize = 64;
const MAP_THRESHOLD: usize = 1 << 20;
const HUGE: usize = 2 << 20;

/// Gives empty buffers a page-aligned dangling pointer.
#[repr(align(4096))]
struct PageAligned;

/// Where a buffer's memory came from, so that it is released the same way.
enum Origin {
    Empty,
    Heap(Layout),
    Mapped {
        base: *mut libc::c_void,
        size: usize,
    },
}

/// A zero-initialised heap buffer: 64-byte aligned, page aligned from
/// 1 MiB, 2 MiB aligned with transparent huge pages from 2 MiB.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    origin: Origin,
}

// SAFETY: AlignedBuf uniquely owns its allocation, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`, like a Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes. Large buffers come straight from the
    /// kernel, so untouched pages cost nothing and no memset runs.
    pub fn zeroed(len: usize) -> Result<AlignedBuf, String> {
        if len == 0 {
            return Ok(AlignedBuf {
                ptr: NonNull::<PageAligned>::dangling().cast(),
                len: 0,
                origin: Origin::Empty,
            });
        }
        if len < MAP_THRESHOLD {
            let layout = Layout::from_size_align(len, SMALL_ALIGN).map_err(|e| e.to_string())?;
            // SAFETY: layout has a non-zero size (len > 0 checked above).
            let raw = unsafe { alloc::alloc_zeroed(layout) };
            let ptr =
                NonNull::new(raw).ok_or_else(|| format!("out of memory allocating {len} bytes"))?;
            return Ok(AlignedBuf {
                ptr,
                len,
                origin: Origin::Heap(layout),
            });
        }
        Self::mapped(len)
    }

    fn mapped(len: usize) -> Result<AlignedBuf, String> {
        let huge = len >= HUGE;
        let slack = if huge { HUGE } else { 0 };
        let size = len.checked_add(slack).ok_or("allocation size overflows")?;
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; failure is reported as MAP_FAILED and checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("out of memory mapping {len} bytes"));
        }
        let start = (base as usize).next_multiple_of(if huge { HUGE } else { 1 });
        if huge {
            // SAFETY: [start, start+len) lies inside the mapping we just
            // made (start - base < HUGE = slack); madvise only changes advice.
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        }
        Ok(AlignedBuf {
            ptr: NonNull::new(start as *mut u8).ok_or("mmap returned null")?,
            len,
            origin: Origin::Mapped { base, size },
        })
    }

    /// Copies `bytes` into a new aligned buffer.
    pub fn copy_from(bytes: &[u8]) -> Result<AlignedBuf, String> {
        let mut buf = AlignedBuf::zeroed(bytes.len())?;
        buf.as_mut_slice().copy_from_slice(bytes);
        Ok(buf)
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised (zeroed) bytes, or
        // dangling-but-aligned with len 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees uniqueness.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Raw pointer to the first byte, for handing the memory to another
    /// runtime (e.g. a NumPy array) that keeps this buffer alive.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        match self.origin {
            Origin::Empty => {}
            // SAFETY: allocated in `zeroed` with exactly this layout.
            Origin::Heap(layout) => unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) },
            // SAFETY: base/size are exactly what mmap returned in `mapped`.
            Origin::Mapped { base, size } => unsafe {
                libc::munmap(base, size);
            },
        }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_zeroing() {
        for len in [0, 1, 4095, 4096, MAP_THRESHOLD, HUGE + 1] {
            let b = AlignedBuf::zeroed(len).unwrap();
            let align = if len >= MAP_THRESHOLD {
                4096
            } else {
                SMALL_ALIGN
            };
            assert_eq!(b.as_ptr() as usize % align, 0);
            assert!(b.iter().all(|&x| x == 0));
        }
        assert_eq!(
            AlignedBuf::zeroed(HUGE).unwrap().as_ptr() as usize % HUGE,
            0
        );
    }
}
