//! Readers whose bytes come from a [`RangeSource`] (a remote object): a
//! batch of tensors is fetched in one call to the source, which merges
//! close ranges and fetches them concurrently, straight into the buffers
//! handed out; digests are checked and encodings decoded afterwards.

use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;

use crate::buffer::AlignedBuf;
use crate::catalog::Catalog;
use crate::error::{Error, FormatError, Result};
use crate::model::{Component, TensorInfo};
use crate::source::{RangeSource, Source, TensorBytes};
use crate::Reader;

/// One tensor of a batch: where its stored bytes go.
struct Slot<'r> {
    idx: usize,
    info: &'r TensorInfo,
    data: &'r Component,
    buf: AlignedBuf,
}

impl Reader {
    /// A reader of the file described by `catalog` (parsed from the bytes
    /// `source` holds), whose tensors are read from `source` on demand.
    /// `path` names the file in messages (a URL).
    pub fn from_range_source(
        path: impl Into<PathBuf>,
        source: Arc<dyn RangeSource>,
        catalog: Catalog,
    ) -> Reader {
        Reader::assemble(path.into(), Source::Ranged(source), catalog)
    }

    /// `read_many` for a ranged source: one batched fetch of every dense
    /// tensor's stored bytes, then digests and decoding in parallel.
    pub(crate) fn read_many_ranged(
        &self,
        src: &dyn RangeSource,
        names: &[&str],
    ) -> Vec<Result<TensorBytes>> {
        let mut slots: Vec<Result<Slot<'_>>> = names.iter().map(|n| self.slot(n)).collect();
        if let Err(e) = self.fetch_slots(src, &mut slots) {
            return names
                .iter()
                .map(|_| Err(Error::io(self.path(), share(&e))))
                .collect();
        }
        crate::parallel::install(|| {
            slots
                .into_par_iter()
                .with_min_len(1)
                .map(|slot| {
                    let s = slot?;
                    let stored = TensorBytes::Owned(s.buf);
                    self.finish(s.idx, s.info, "data", s.data, stored)
                })
                .collect()
        })
    }

    fn slot(&self, name: &str) -> Result<Slot<'_>> {
        let (idx, info) = self.dense(name)?;
        let data = &info.components["data"];
        let buf = AlignedBuf::for_overwrite(data.length as usize).map_err(|m: FormatError| {
            Error::tensor(self.path(), name, m.prefixed("component 'data': "))
        })?;
        Ok(Slot {
            idx,
            info,
            data,
            buf,
        })
    }

    /// Fills every slot's buffer: distinct ranges in one batch, in file
    /// order; a range asked for twice (a name listed twice) copied after.
    fn fetch_slots(
        &self,
        src: &dyn RangeSource,
        slots: &mut [Result<Slot<'_>>],
    ) -> std::io::Result<()> {
        let mut order: Vec<usize> = (0..slots.len())
            .filter(|&i| matches!(&slots[i], Ok(s) if s.data.length > 0))
            .collect();
        let key = |s: &[Result<Slot<'_>>], i: usize| {
            let d = s[i]
                .as_ref()
                .map(|s| s.data)
                .expect("only Ok slots are listed");
            (d.offset, d.length)
        };
        order.sort_by_key(|&i| key(slots, i));
        let mut primary: Vec<usize> = Vec::new();
        let mut copies: Vec<(usize, usize)> = Vec::new(); // (from, to)
        let mut end = 0u64;
        for &i in &order {
            let (offset, length) = key(slots, i);
            match primary.last() {
                Some(&p) if key(slots, p) == (offset, length) => copies.push((p, i)),
                // Overlapping ranges (never in .zt or safetensors) are read alone.
                Some(_) if offset < end => copies.push((usize::MAX, i)),
                _ => {
                    primary.push(i);
                    end = offset + length;
                }
            }
        }
        let mut is_primary = vec![false; slots.len()];
        primary.iter().for_each(|&i| is_primary[i] = true);
        let mut requests: Vec<(u64, &mut [u8])> = slots
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| is_primary[*i])
            .filter_map(|(_, s)| s.as_mut().ok())
            .map(|s| (s.data.offset, s.buf.as_mut_slice()))
            .collect();
        requests.sort_by_key(|(offset, _)| *offset);
        src.read_many(&mut requests)?;
        for (from, to) in copies {
            let Ok(dst) = &slots[to] else { continue };
            let offset = dst.data.offset;
            let mut buf = std::mem::replace(
                &mut slots[to].as_mut().expect("checked").buf,
                AlignedBuf::for_overwrite(0).map_err(std::io::Error::other)?,
            );
            match slots.get(from) {
                Some(Ok(p)) => buf.as_mut_slice().copy_from_slice(p.buf.as_slice()),
                _ => src.read_into(offset, buf.as_mut_slice())?,
            }
            slots[to].as_mut().expect("checked").buf = buf;
        }
        Ok(())
    }
}

/// A copy of a batch's error for each tensor of the batch.
fn share(e: &std::io::Error) -> std::io::Error {
    match e.get_ref().and_then(|x| x.downcast_ref::<FormatError>()) {
        Some(problem) => std::io::Error::other(problem.clone()),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use crate::{
        Checksum, ErrorKind, FormatError, Index, RangeSource, Reader, WriteOptions, Writer,
    };

    /// A file image read by ranges, counting the calls and the bytes read;
    /// `damage` is XORed into the byte at its offset on every read.
    struct Ranges {
        image: Vec<u8>,
        batches: AtomicUsize,
        bytes: AtomicUsize,
        damage: Mutex<Option<u64>>,
        changed: Mutex<bool>,
    }

    impl RangeSource for Ranges {
        fn read_into(&self, offset: u64, dst: &mut [u8]) -> std::io::Result<()> {
            if *self.changed.lock().unwrap() {
                return Err(std::io::Error::other(FormatError::corrupt(
                    "changed on the server",
                )));
            }
            let at = offset as usize;
            dst.copy_from_slice(&self.image[at..at + dst.len()]);
            if let Some(d) = *self.damage.lock().unwrap() {
                if (offset..offset + dst.len() as u64).contains(&d) {
                    dst[(d - offset) as usize] ^= 0xFF;
                }
            }
            self.bytes.fetch_add(dst.len(), Ordering::Relaxed);
            Ok(())
        }

        fn read_many(&self, requests: &mut [(u64, &mut [u8])]) -> std::io::Result<()> {
            self.batches.fetch_add(1, Ordering::Relaxed);
            assert!(requests
                .windows(2)
                .all(|w| w[0].0 + w[0].1.len() as u64 <= w[1].0));
            requests
                .iter_mut()
                .try_for_each(|(o, d)| self.read_into(*o, d))
        }
    }

    fn image() -> Vec<u8> {
        let mut w = Writer::in_memory();
        let a: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let b: Vec<i64> = (0..500).collect();
        w.add("a", &[10, 100], &a).unwrap();
        let zstd = WriteOptions::zstd(3).with_checksum(Checksum::Crc32c);
        w.add_with("b", &[500], &b, &zstd).unwrap();
        w.add_with(
            "c",
            &[4],
            &[1u8, 2, 3, 4],
            &WriteOptions::default().with_checksum(Checksum::Sha256),
        )
        .unwrap();
        w.finish_into_vec().unwrap()
    }

    fn open(image: Vec<u8>) -> (Reader, Arc<Ranges>) {
        let catalog = Reader::parse_zt(&image).unwrap();
        let src = Arc::new(Ranges {
            image,
            batches: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            damage: Mutex::new(None),
            changed: Mutex::new(false),
        });
        (
            Reader::from_range_source("mem://x.zt", src.clone(), catalog),
            src,
        )
    }

    #[test]
    fn reads_match_a_local_reader_in_one_batch() {
        let bytes = image();
        let local = Reader::from_bytes(&bytes).unwrap();
        let (r, src) = open(bytes);
        let names = ["c", "a", "b", "a"];
        let got = r.read_many(&names, false);
        assert_eq!(src.batches.load(Ordering::Relaxed), 1, "one batched fetch");
        for (n, g) in names.iter().zip(got) {
            assert_eq!(
                g.unwrap().as_slice(),
                local.read(n).unwrap().as_slice(),
                "{n}"
            );
        }
        let stored: usize = ["a", "b", "c"]
            .iter()
            .map(|n| r.info(n).unwrap().components["data"].length as usize)
            .sum();
        assert_eq!(
            src.bytes.load(Ordering::Relaxed),
            stored,
            "'a' asked twice, read once"
        );
        assert_eq!(r.to_vec::<i64>("b").unwrap(), (0..500).collect::<Vec<_>>());
        let part = r.read_slice("a", &[Index::At(3)]).unwrap();
        assert_eq!(part.bytes.as_slice(), &local.read("a").unwrap()[1200..1600]);
        assert!(r.verify().is_empty());
        assert!(
            r.view::<f32>("a").is_err(),
            "no zero-copy views of a remote file"
        );
    }

    #[test]
    fn damage_and_change_are_format_errors() {
        let (r, src) = open(image());
        let offset = r.info("b").unwrap().components["data"].offset;
        *src.damage.lock().unwrap() = Some(offset + 1);
        let e = r.read_many(&["b"], false).pop().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
        *src.damage.lock().unwrap() = None;
        *src.changed.lock().unwrap() = true;
        for e in [
            r.read("a").unwrap_err(),
            r.read_many(&["a", "c"], true).pop().unwrap().unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            assert!(
                e.to_string().contains("mem://x.zt") && e.to_string().contains("changed"),
                "{e}"
            );
        }
    }
}
