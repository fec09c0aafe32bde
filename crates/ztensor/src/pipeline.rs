//! Saving a batch of dense tensors with zstd on every core: the frames of
//! all the batch's tensors are compressed by the thread pool, in order,
//! while the calling thread writes each finished frame, so the cores stay
//! busy across tensor boundaries (one tensor compresses while the last is
//! written) and frames go to the file as made, never concatenated first.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};

use crate::codec::{self, FRAME_CHUNK};
use crate::digest::Checksum;
use crate::error::{Error, Result};
use crate::model::{Component, Encoding, Layout, TensorInfo};
use crate::writer::{ComponentData, WriteOptions, Writer};

/// One dense tensor of a batch: name, shape and data.
pub type DenseItem<'a> = (&'a str, &'a [u64], ComponentData<'a>);

/// Frames compressed ahead of the one being written, per pool thread: a
/// bound on the memory held by finished frames waiting for their turn.
const AHEAD_PER_THREAD: usize = 4;

/// A frame to compress: which item it belongs to, and its input.
struct Job<'a> {
    item: usize,
    input: &'a [u8],
    /// The item's only frame, made as [`codec::compress`] makes small inputs.
    whole: bool,
}

impl<W: Write> Writer<W> {
    /// Adds dense tensors in order, with the bytes and manifest entries that
    /// [`Writer::add_dense`] called on each would give. Every tensor is
    /// checked before any is written. With compression, the frames of the
    /// whole batch are compressed in parallel while finished ones are
    /// written (see the module documentation).
    pub fn add_dense_many(&mut self, items: &[DenseItem<'_>], opts: &WriteOptions) -> Result<()> {
        let Some(level) = opts.compression else {
            return items
                .iter()
                .try_for_each(|&(name, shape, data)| self.add_dense(name, shape, data, opts));
        };
        let mut names = HashSet::with_capacity(items.len());
        for &(name, shape, data) in items {
            self.check_tensor(name, shape, &Layout::Dense, None, &[("data", data)])?;
            if !names.insert(name) {
                return Err(Error::invalid(format!("duplicate tensor name '{name}'")));
            }
        }
        if self.failed {
            return Err(Error::invalid(
                "the writer failed earlier and cannot continue",
            ));
        }
        let level = codec::clamp_level(level);
        let mut jobs = Vec::new();
        for (item, &(_, _, data)) in items.iter().enumerate() {
            if data.bytes.len() <= FRAME_CHUNK {
                jobs.push(Job {
                    item,
                    input: data.bytes,
                    whole: true,
                });
            } else {
                jobs.extend(data.bytes.chunks(FRAME_CHUNK).map(|input| Job {
                    item,
                    input,
                    whole: false,
                }));
            }
        }
        self.write_frames(items, &jobs, level, opts)
            .inspect_err(|_| self.failed = true)
    }

    /// Compresses `jobs` on the pool and writes them in order on this thread.
    fn write_frames(
        &mut self,
        items: &[DenseItem<'_>],
        jobs: &[Job<'_>],
        level: i32,
        opts: &WriteOptions,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        // How many frames are written: workers stay within a window of it.
        let written = (Mutex::new(0usize), Condvar::new());
        let (tx, rx) = mpsc::channel::<(usize, std::io::Result<Vec<u8>>)>();
        std::thread::scope(|s| {
            let (next, written) = (&next, &written);
            s.spawn(move || {
                crate::parallel::install(|| {
                    let ahead = AHEAD_PER_THREAD * rayon::current_num_threads();
                    rayon::broadcast(|_| loop {
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(j) else { break };
                        let (lock, turn) = written;
                        let done = lock.lock().unwrap_or_else(|e| e.into_inner());
                        let done = turn
                            .wait_while(done, |w| j >= *w + ahead)
                            .unwrap_or_else(|e| e.into_inner());
                        drop(done);
                        let frame = if job.whole {
                            codec::compress_stream(job.input, level)
                        } else {
                            codec::compress_frame(job.input, level)
                        };
                        if tx.send((j, frame)).is_err() {
                            break; // the writer gave up
                        }
                    })
                });
            });
            let result = self.write_in_order(items, jobs, rx, written, opts);
            if result.is_err() {
                // Let waiting workers see that nothing more will be taken.
                next.store(jobs.len(), Ordering::Relaxed);
                *written.0.lock().unwrap_or_else(|e| e.into_inner()) = usize::MAX / 2;
                written.1.notify_all();
            }
            result
        })
    }

    fn write_in_order(
        &mut self,
        items: &[DenseItem<'_>],
        jobs: &[Job<'_>],
        rx: mpsc::Receiver<(usize, std::io::Result<Vec<u8>>)>,
        written: &(Mutex<usize>, Condvar),
        opts: &WriteOptions,
    ) -> Result<()> {
        let mut pending: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut want = 0;
        // The item being written: its offset, and its frames when a digest needs them whole.
        let mut offset = 0;
        let mut gathered: Vec<u8> = Vec::new();
        while want < jobs.len() {
            let frame = match pending.remove(&want) {
                Some(f) => f,
                None => {
                    let (j, frame) = rx
                        .recv()
                        .map_err(|_| Error::invalid("a compression thread stopped unexpectedly"))?;
                    let frame = frame.map_err(|e| Error::io(&self.path, e))?;
                    pending.insert(j, frame);
                    continue;
                }
            };
            let job = &jobs[want];
            let first = want == 0 || jobs[want - 1].item != job.item;
            let last = want + 1 == jobs.len() || jobs[want + 1].item != job.item;
            if first {
                self.pad()?;
                offset = self.pos;
            }
            if opts.checksum != Checksum::None {
                gathered.extend_from_slice(&frame);
            } else {
                self.out
                    .write_all(&frame)
                    .map_err(|e| Error::io(&self.path, e))?;
                self.pos += frame.len() as u64;
            }
            want += 1;
            *written.0.lock().unwrap_or_else(|e| e.into_inner()) = want;
            written.1.notify_all();
            if last {
                let digest = opts.checksum.compute(&gathered);
                if !gathered.is_empty() {
                    self.out
                        .write_all(&gathered)
                        .map_err(|e| Error::io(&self.path, e))?;
                    self.pos += gathered.len() as u64;
                    gathered.clear();
                }
                let (name, shape, data) = items[job.item];
                let component = Component {
                    dtype: data.dtype,
                    logical_type: data.logical_type.map(str::to_string),
                    offset,
                    length: self.pos - offset,
                    encoding: Encoding::Zstd {
                        uncompressed_length: Some(data.bytes.len() as u64),
                    },
                    digest,
                };
                let info = TensorInfo::dense(name, shape.to_vec(), component);
                self.objects.insert(name.to_string(), info);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checksum, Reader};

    fn data(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i / 7 + seed) % 13) as u8).collect()
    }

    /// The batch writes the same bytes as tensors added one by one, and reads back.
    #[test]
    fn batch_matches_one_by_one() {
        let blobs = [
            data(FRAME_CHUNK * 3 + 17, 1),
            data(100, 2),
            Vec::new(),
            data(FRAME_CHUNK, 3),
            data(FRAME_CHUNK * 2 + 4, 4),
        ];
        let names = ["e", "a", "c", "b", "d"];
        let shapes: Vec<[u64; 1]> = blobs.iter().map(|b| [b.len() as u64]).collect();
        let items: Vec<DenseItem<'_>> = blobs
            .iter()
            .zip(&names)
            .zip(&shapes)
            .map(|((b, n), s)| (*n, &s[..], ComponentData::of(b.as_slice())))
            .collect();
        for checksum in [Checksum::None, Checksum::Crc32c] {
            let opts = WriteOptions::zstd(3).with_checksum(checksum);
            let mut one = Writer::in_memory();
            for &(n, s, d) in &items {
                one.add_dense(n, s, d, &opts).unwrap();
            }
            let mut many = Writer::in_memory();
            many.add_dense_many(&items, &opts).unwrap();
            let many = many.finish_into_vec().unwrap();
            assert_eq!(one.finish_into_vec().unwrap(), many);
            let r = Reader::from_bytes(&many).unwrap();
            for (b, n) in blobs.iter().zip(&names) {
                assert_eq!(&r.read(n).unwrap()[..], &b[..]);
            }
        }
    }

    #[test]
    fn bad_items_are_refused_before_anything_is_written() {
        let a = data(10, 0);
        let opts = WriteOptions::zstd(3);
        let mut w = Writer::in_memory();
        let dup = [
            ("x", &[10u64][..], ComponentData::of(a.as_slice())),
            ("x", &[10u64][..], ComponentData::of(a.as_slice())),
        ];
        let e = w.add_dense_many(&dup, &opts).unwrap_err();
        assert!(e.to_string().contains("duplicate tensor name 'x'"), "{e}");
        let short = [("y", &[11u64][..], ComponentData::of(a.as_slice()))];
        let e = w.add_dense_many(&short, &opts).unwrap_err();
        assert!(e.to_string().contains("needs 11 bytes, got 10"), "{e}");
        assert_eq!(w.names().count(), 0);
        w.add_dense_many(&dup[..1], &opts).unwrap();
        assert_eq!(w.names().collect::<Vec<_>>(), ["x"]);
    }
}
