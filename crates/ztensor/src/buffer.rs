//! Owned, page-aligned byte buffers for copied tensor data.
//!
//! Large copies land in memory aligned to a page (2 MiB from 2 MiB): the
//! kernel's `pread` copy runs several times faster into a page-aligned
//! destination than into malloc's page+16 offset. Retired large mappings are
//! pooled, so repeated loads skip first-touch page faults.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Mutex;

use crate::error::{ErrorKind, FormatError};

const SMALL_ALIGN: usize = 64;
const MAP_THRESHOLD: usize = 1 << 20;
const HUGE: usize = 2 << 20;

/// Most bytes of retired huge mappings kept for reuse, unless the
/// environment variable `ZTENSOR_BUFFER_POOL_BYTES` says otherwise (0
/// disables the pool). Pooled pages count in the process's RSS: for
/// [`COOL_AFTER`] as ordinary memory, then as `MADV_FREE` pages until the
/// kernel takes them back under memory pressure.
const DEFAULT_POOL_CAP: usize = 4 << 30;

fn pool_cap() -> usize {
    static CAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var("ZTENSOR_BUFFER_POOL_BYTES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_POOL_CAP)
    })
}

/// Huge mappings of dropped buffers, kept for [`AlignedBuf::for_overwrite`] and
/// [`AlignedBuf::zeroed`].
///
/// A fresh mapping costs a page fault and a zeroed page per 4 KiB touched
/// (about half the time of a 1 GiB copy). A retired mapping stays as it is
/// ("hot") for [`COOL_AFTER`], so that loads repeated in quick succession
/// (evaluation loops, benchmarks) write into resident pages, as malloc's
/// freed heap does. After that a background thread marks it `MADV_FREE`
/// ("cool"): the kernel may then take its pages back under memory pressure,
/// and a later copy reuses what is left. Measured here: a 1 GiB copy into
/// resident pages 0.10 s, into `MADV_FREE`d ones 0.21 s (their first write
/// faults), into fresh ones 0.30-0.60 s.
struct Pool {
    regions: Vec<Region>,
    bytes: usize,
    /// The process whose cooling thread is running, if any (a forked child
    /// inherits the flag but not the thread).
    cooler: Option<u32>,
}

struct Region {
    base: usize,
    size: usize,
    /// When it was retired while still hot; `None` once cooled.
    hot_since: Option<std::time::Instant>,
}

/// How long a retired mapping stays resident before it is handed back to the
/// kernel's discretion.
const COOL_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

static POOL: Mutex<Pool> = Mutex::new(Pool {
    regions: Vec::new(),
    bytes: 0,
    cooler: None,
});

/// Marks a pooled mapping `MADV_FREE`.
fn free_pages(r: &Region) {
    // SAFETY: the range is exactly a pooled mapping we own and do not hand
    // out; after MADV_FREE its contents are unspecified to the next user,
    // which `for_overwrite` allows and `zeroed` overwrites.
    unsafe { libc::madvise(r.base as *mut libc::c_void, r.size, libc::MADV_FREE) };
}

/// Cools every region of the pool at once (when no thread can do it later).
fn cool_all(pool: &mut Pool) {
    for r in pool.regions.iter_mut().filter(|r| r.hot_since.is_some()) {
        free_pages(r);
        r.hot_since = None;
    }
}

/// One round of the cooling thread: regions hot for [`COOL_AFTER`] are taken
/// out of the pool, marked `MADV_FREE` without the lock held (so that a fork
/// or an allocation never waits on a long madvise), and put back cooled.
/// False once nothing is hot any more (the thread then ends).
fn cooling_round() -> bool {
    let due: Vec<Region> = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let (due, keep) = std::mem::take(&mut pool.regions)
            .into_iter()
            .partition(|r| r.hot_since.is_some_and(|t| t.elapsed() >= COOL_AFTER));
        pool.regions = keep; // `bytes` still counts the ones taken out
        due
    };
    due.iter().for_each(free_pages);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.regions.extend(due.into_iter().map(|r| Region {
        hot_since: None,
        ..r
    }));
    if pool.regions.iter().any(|r| r.hot_since.is_some()) {
        return true;
    }
    pool.cooler = None;
    false
}

/// Starts the cooling thread unless it runs in this process; false when it
/// cannot be started.
fn ensure_cooler(pool: &mut Pool) -> bool {
    let me = std::process::id();
    if pool.cooler == Some(me) {
        return true;
    }
    let started = std::thread::Builder::new()
        .name("ztensor-pool".into())
        .spawn(|| {
            std::thread::sleep(COOL_AFTER / 2);
            while cooling_round() {
                std::thread::sleep(COOL_AFTER / 2);
            }
        })
        .is_ok();
    pool.cooler = started.then_some(me);
    started
}

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

/// An owned byte buffer: on the heap and 64-byte aligned below 1 MiB, else
/// an anonymous mapping, page aligned (from 2 MiB: 2 MiB aligned, and kept
/// in a pool for reuse when dropped). [`AlignedBuf::zeroed`] starts zeroed.
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
    /// Allocates `len` zeroed bytes. A pooled mapping is reused and zeroed
    /// by hand (otherwise buffers made here would feed the pool on drop
    /// without ever taking from it); else large buffers come straight from
    /// the kernel, so untouched pages cost nothing and no memset runs.
    pub fn zeroed(len: usize) -> Result<AlignedBuf, FormatError> {
        if let Some(mut buf) = AlignedBuf::from_pool(len) {
            buf.as_mut_slice().fill(0);
            return Ok(buf);
        }
        AlignedBuf::fresh(len)
    }

    /// A buffer whose contents are unspecified (but initialised): for data
    /// that is about to be overwritten in full, such as a `pread` target.
    /// Large ones reuse retired mappings (see `Pool`).
    pub fn for_overwrite(len: usize) -> Result<AlignedBuf, FormatError> {
        AlignedBuf::from_pool(len).map_or_else(|| AlignedBuf::fresh(len), Ok)
    }

    /// Newly allocated zeroed memory: the heap for small buffers, an
    /// anonymous mapping for large ones.
    fn fresh(len: usize) -> Result<AlignedBuf, FormatError> {
        if len == 0 {
            return Ok(AlignedBuf {
                ptr: NonNull::<PageAligned>::dangling().cast(),
                len: 0,
                origin: Origin::Empty,
            });
        }
        if len < MAP_THRESHOLD {
            let layout =
                Layout::from_size_align(len, SMALL_ALIGN).map_err(|e| oom(e.to_string()))?;
            // SAFETY: layout has a non-zero size (len > 0 checked above).
            let raw = unsafe { alloc::alloc_zeroed(layout) };
            let ptr = NonNull::new(raw)
                .ok_or_else(|| oom(format!("out of memory allocating {len} bytes")))?;
            return Ok(AlignedBuf {
                ptr,
                len,
                origin: Origin::Heap(layout),
            });
        }
        Self::mapped(len)
    }

    /// A retired mapping of exactly the size `len` needs, if one is pooled.
    fn from_pool(len: usize) -> Option<AlignedBuf> {
        if len < HUGE {
            return None;
        }
        let size = mapping_size(len).ok()?;
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // Hot regions first: their pages are resident.
        let i = pool
            .regions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.size == size)
            .max_by_key(|(_, r)| r.hot_since.is_some())?
            .0;
        let Region { base, size, .. } = pool.regions.swap_remove(i);
        pool.bytes -= size;
        let start = base.next_multiple_of(HUGE);
        Some(AlignedBuf {
            ptr: NonNull::new(start as *mut u8)?,
            len,
            origin: Origin::Mapped {
                base: base as *mut libc::c_void,
                size,
            },
        })
    }

    fn mapped(len: usize) -> Result<AlignedBuf, FormatError> {
        let huge = len >= HUGE;
        let size = if huge { mapping_size(len)? } else { len };
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
            return Err(oom(format!("out of memory mapping {len} bytes")));
        }
        let start = (base as usize).next_multiple_of(if huge { HUGE } else { 1 });
        // No MADV_HUGEPAGE: measured here, a huge-page fault under memory
        // fragmentation runs direct compaction, which made first copies of
        // 1 GiB take 0.7-1.8 s instead of 0.25 s with 4 KiB pages. The 2 MiB
        // alignment still lets a system with THP "always" use huge pages.
        Ok(AlignedBuf {
            ptr: NonNull::new(start as *mut u8).ok_or_else(|| oom("mmap returned null"))?,
            len,
            origin: Origin::Mapped { base, size },
        })
    }

    /// Copies `bytes` into a new aligned buffer.
    pub fn copy_from(bytes: &[u8]) -> Result<AlignedBuf, FormatError> {
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
            Origin::Mapped { base, size } => {
                if size >= HUGE && retire(base as usize, size) {
                    return;
                }
                // SAFETY: base/size are exactly what mmap returned in `mapped`.
                unsafe { libc::munmap(base, size) };
            }
        }
    }
}

/// Mapping size for a huge buffer: whole huge pages plus one of slack for
/// the 2 MiB alignment, so buffers of similar size share pooled mappings.
fn mapping_size(len: usize) -> Result<usize, FormatError> {
    len.checked_next_multiple_of(HUGE)
        .and_then(|n| n.checked_add(HUGE))
        .ok_or_else(|| oom("allocation size overflows"))
}

fn oom(message: impl Into<String>) -> FormatError {
    FormatError::new(ErrorKind::OutOfMemory, message)
}

/// Offers a huge mapping to the pool; false when the pool is full.
fn retire(base: usize, size: usize) -> bool {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.bytes + size > pool_cap() {
        return false;
    }
    pool.regions.push(Region {
        base,
        size,
        hot_since: Some(std::time::Instant::now()),
    });
    pool.bytes += size;
    if !ensure_cooler(&mut pool) {
        cool_all(&mut pool); // no thread: cool at once
    }
    true
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

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn huge_mappings_are_recycled_for_overwrite() {
        let len = 3 * HUGE + 5;
        let first = AlignedBuf::zeroed(len).unwrap();
        let addr = first.as_ptr() as usize;
        drop(first);
        // Pooled unless the pool was full; no other test uses this size, so
        // no other thread takes it before for_overwrite does.
        let pooled = POOL
            .lock()
            .unwrap()
            .regions
            .iter()
            .any(|r| r.base.next_multiple_of(HUGE) == addr);
        let mut again = AlignedBuf::for_overwrite(len).unwrap();
        assert_eq!(again.len(), len);
        assert_eq!(again.as_ptr() as usize % HUGE, 0);
        if pooled {
            assert_eq!(again.as_ptr() as usize, addr); // the pooled mapping
        }
        again.as_mut_slice().fill(7);
        assert!(again.iter().all(|&b| b == 7));
        // zeroed() may hand out a recycled mapping, but always zeroed.
        drop(again);
        assert!(AlignedBuf::zeroed(len).unwrap().iter().all(|&b| b == 0));
    }

    #[test]
    fn repeated_zeroed_buffers_do_not_grow_the_pool() {
        // Buffers from zeroed() used to feed the pool on drop without ever
        // taking from it: the pool (and RSS) grew to its cap.
        let len = 5 * HUGE + 3;
        let size = mapping_size(len).unwrap();
        let pooled = || {
            let pool = POOL.lock().unwrap();
            pool.regions.iter().filter(|r| r.size == size).count()
        };
        drop(AlignedBuf::zeroed(len).unwrap());
        for _ in 0..8 {
            let mut b = AlignedBuf::zeroed(len).unwrap();
            assert!(b.iter().all(|&x| x == 0));
            b.as_mut_slice().fill(9);
        }
        // Only this test uses this size: one region, reused each time.
        assert!(pooled() <= 1, "{} regions pooled", pooled());
    }

    #[test]
    fn retired_mappings_stay_hot_then_cool_in_the_background() {
        let len = 7 * HUGE + 1; // a size no other test uses
        let size = mapping_size(len).unwrap();
        let hot = || {
            let pool = POOL.lock().unwrap();
            let mine: Vec<bool> = pool
                .regions
                .iter()
                .filter(|r| r.size == size)
                .map(|r| r.hot_since.is_some())
                .collect();
            mine
        };
        drop(AlignedBuf::zeroed(len).unwrap());
        assert_eq!(hot(), [true]);
        // Reused while hot: same pages, and the pool holds none of that size.
        let mut b = AlignedBuf::for_overwrite(len).unwrap();
        assert!(hot().is_empty());
        b.as_mut_slice().fill(3);
        drop(b);
        std::thread::sleep(COOL_AFTER * 2 + std::time::Duration::from_millis(500));
        assert_eq!(hot(), [false], "the cooling thread marks it MADV_FREE");
        assert!(AlignedBuf::zeroed(len).unwrap().iter().all(|&x| x == 0));
    }
}
