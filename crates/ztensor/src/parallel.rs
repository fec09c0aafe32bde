//! Parallel work: a thread pool that survives `fork()`, and big copies
//! split into chunks that both cores share.
//!
//! `Reader::read_many` already spreads tensors over threads, but tensor sizes
//! are uneven (a 125 MiB embedding next to 8 MiB projections): copied whole,
//! the last big tensor runs on one core while the other idles. Splitting
//! every large copy into chunks lets rayon's work stealing keep both busy
//! (measured on the tail of a 1 GiB `load_file(copy=True)` on 2 cores).

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

/// Runs `f` (and every rayon parallel iterator inside it) on this process's
/// thread pool. Every parallel section of zTensor goes through here.
///
/// rayon's global pool does not survive `fork()`: a child process (a
/// PyTorch DataLoader worker, a multiprocessing "fork" worker) inherits the
/// pool's bookkeeping but not its threads, and its first parallel iterator
/// waits forever. So the pool is per process: a forked child builds its own
/// on first use (the parent's, whose threads it lacks, is left untouched).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);
    let me = std::process::id();
    let pool = {
        let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some((pid, pool)) if *pid == me => Some(pool.clone()),
            _ => {
                let built = rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("ztensor-{i}"))
                    .build()
                    .ok()
                    .map(Arc::new);
                if let Some(pool) = &built {
                    // The parent's pool, if any, must not be dropped here:
                    // dropping it would signal threads this process lacks.
                    std::mem::forget(slot.replace((me, pool.clone())));
                }
                built
            }
        }
    };
    match pool {
        Some(pool) => pool.install(f),
        None => f(), // no threads to be had: run on this one (rayon's global pool)
    }
}

/// Copies smaller than this stay on the calling thread.
const SPLIT_ABOVE: usize = 8 << 20;
/// Size of each parallel piece.
const CHUNK: usize = 4 << 20;

/// `dst.copy_from_slice(src)`, in parallel chunks when large.
pub(crate) fn copy(dst: &mut [u8], src: &[u8]) {
    if dst.len() <= SPLIT_ABOVE {
        dst.copy_from_slice(src);
        return;
    }
    install(|| {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s))
    });
}

/// Fills `dst` from `read_at(piece, offset)`, in parallel chunks when large.
pub(crate) fn fill<E: Send>(
    dst: &mut [u8],
    offset: u64,
    read_at: impl Fn(&mut [u8], u64) -> Result<(), E> + Sync,
) -> Result<(), E> {
    if dst.len() <= SPLIT_ABOVE {
        return read_at(dst, offset);
    }
    install(|| {
        dst.par_chunks_mut(CHUNK)
            .enumerate()
            .try_for_each(|(i, d)| read_at(d, offset + (i * CHUNK) as u64))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_copies_match_plain_ones() {
        for n in [0, 1, SPLIT_ABOVE, SPLIT_ABOVE + 1, 3 * CHUNK + 17] {
            let src: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let mut dst = vec![0u8; n];
            copy(&mut dst, &src);
            assert_eq!(dst, src);
            let mut filled = vec![0u8; n];
            fill(&mut filled, 5, |d, off| -> Result<(), ()> {
                let start = off as usize - 5;
                d.copy_from_slice(&src[start..start + d.len()]);
                Ok(())
            })
            .unwrap();
            assert_eq!(filled, src);
        }
    }
}
