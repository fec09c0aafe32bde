//! Readers whose bytes come from a [`RangeSource`] (a remote object). A
//! batch of tensors is fetched group by group, in file order, each group
//! in one call to the source, which merges close ranges and fetches them
//! concurrently, straight into the buffers handed out. Digests are checked
//! and encodings decoded one group behind the fetches, so decoding overlaps
//! the network.

use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;

use crate::buffer::AlignedBuf;
use crate::catalog::Catalog;
use crate::error::{Error, FormatError, Result};
use crate::model::{Component, Encoding, TensorInfo};
use crate::source::{RangeSource, Source, TensorBytes};
use crate::Reader;

/// One tensor of a batch: where its stored bytes go.
struct Slot<'r> {
    idx: usize,
    info: &'r TensorInfo,
    data: &'r Component,
    buf: AlignedBuf,
}

/// A slot, or why the tensor cannot be read, with its place in the batch.
type Placed<'r> = (usize, Result<Slot<'r>>);

/// Bounds of a group's size when there is decoding or checking to overlap.
const GROUP_MIN: u64 = 32 << 20;
const GROUP_MAX: u64 = 256 << 20;

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

    /// `read_many` for a ranged source: the stored bytes fetched in groups
    /// on one thread while this one checks and decodes the groups fetched.
    pub(crate) fn read_many_ranged(
        &self,
        src: &dyn RangeSource,
        names: &[&str],
    ) -> Vec<Result<TensorBytes>> {
        let mut slots: Vec<Placed<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (i, self.slot(n)))
            .collect();
        slots.sort_by_key(|(_, s)| span(s));
        let mut out: Vec<Option<Result<TensorBytes>>> = names.iter().map(|_| None).collect();
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            scope.spawn(move || {
                for mut group in groups(slots) {
                    let fetched = fetch_group(src, &mut group);
                    if tx.send((group, fetched)).is_err() {
                        break;
                    }
                }
            });
            for (group, fetched) in rx {
                for (i, r) in self.finish_group(group, fetched) {
                    out[i] = Some(r);
                }
            }
        });
        out.into_iter()
            .map(|r| r.expect("every name of the batch is answered"))
            .collect()
    }

    /// Checks and decodes a fetched group, in parallel.
    fn finish_group(
        &self,
        group: Vec<Placed<'_>>,
        fetched: std::io::Result<()>,
    ) -> Vec<(usize, Result<TensorBytes>)> {
        crate::parallel::install(|| {
            group
                .into_par_iter()
                .with_min_len(1)
                .map(|(i, slot)| {
                    let r = slot.and_then(|s| match &fetched {
                        Err(e) => Err(Error::io(self.path(), share(e))),
                        Ok(()) => {
                            let stored = TensorBytes::Owned(s.buf);
                            self.finish(s.idx, s.info, "data", s.data, stored)
                        }
                    });
                    (i, r)
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
}

/// The file bytes a slot's tensor is stored in (`(0, 0)` for none).
fn span(slot: &Result<Slot<'_>>) -> (u64, u64) {
    slot.as_ref()
        .map_or((0, 0), |s| (s.data.offset, s.data.length))
}

/// Splits slots sorted by offset into groups fetched one after the other:
/// one group when nothing needs checking or decoding (nothing to overlap),
/// else groups of about an eighth of the bytes (32 MiB to 256 MiB), never
/// splitting ranges that overlap.
fn groups(slots: Vec<Placed<'_>>) -> Vec<Vec<Placed<'_>>> {
    let work = slots.iter().any(|(_, s)| {
        s.as_ref()
            .is_ok_and(|s| s.data.encoding != Encoding::Raw || s.data.digest.is_some())
    });
    let total: u64 = slots.iter().map(|(_, s)| span(s).1).sum();
    let target = if work {
        (total / 8).clamp(GROUP_MIN, GROUP_MAX)
    } else {
        u64::MAX
    };
    let (mut out, mut current, mut bytes, mut end) = (Vec::new(), Vec::new(), 0u64, 0u64);
    for placed in slots {
        let (offset, length) = span(&placed.1);
        if bytes >= target && offset >= end {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        end = end.max(offset + length);
        bytes += length;
        current.push(placed);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Fills a group's buffers (sorted by offset): distinct ranges in one call
/// to the source; a range asked for twice (a name listed twice) copied after.
fn fetch_group(src: &dyn RangeSource, slots: &mut [Placed<'_>]) -> std::io::Result<()> {
    let mut primary: Vec<usize> = Vec::new();
    let mut copies: Vec<(Option<usize>, usize)> = Vec::new(); // (from, to)
    let mut end = 0u64;
    for i in 0..slots.len() {
        let (offset, length) = span(&slots[i].1);
        if slots[i].1.is_err() || length == 0 {
            continue;
        }
        match primary.last() {
            Some(&p) if span(&slots[p].1) == (offset, length) => copies.push((Some(p), i)),
            // Overlapping ranges (never in .zt or safetensors) are read alone.
            Some(_) if offset < end => copies.push((None, i)),
            _ => {
                primary.push(i);
                end = offset + length;
            }
        }
    }
    let mut requests: Vec<(u64, &mut [u8])> = Vec::with_capacity(primary.len());
    let mut next = primary.iter().peekable();
    for (i, (_, slot)) in slots.iter_mut().enumerate() {
        if next.peek() == Some(&&i) {
            next.next();
            let s = slot.as_mut().expect("only readable slots are primary");
            requests.push((s.data.offset, s.buf.as_mut_slice()));
        }
    }
    src.read_many(&mut requests)?;
    drop(requests);
    for (from, to) in copies {
        let (head, tail) = slots.split_at_mut(to);
        let dst = tail[0]
            .1
            .as_mut()
            .expect("only readable slots are copied to");
        match from.map(|f| &head[f].1) {
            Some(Ok(p)) => dst.buf.as_mut_slice().copy_from_slice(p.buf.as_slice()),
            _ => src.read_into(dst.data.offset, dst.buf.as_mut_slice())?,
        }
    }
    Ok(())
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
        let e = r.view::<f32>("a").unwrap_err();
        assert!(
            e.to_string().contains("remote"),
            "no zero-copy views of a remote file: {e}"
        );
    }

    #[test]
    fn checked_tensors_are_fetched_in_groups_while_earlier_ones_are_checked() {
        let mut w = Writer::in_memory();
        let crc = WriteOptions::default().with_checksum(Checksum::Crc32c);
        for i in 0..80u32 {
            let v: Vec<u32> = (0..(1 << 18)).map(|j| j ^ i).collect(); // 1 MiB each
            w.add_with(&format!("t{i:02}"), &[1 << 18], &v, &crc)
                .unwrap();
        }
        let (r, src) = open(w.finish_into_vec().unwrap());
        let names: Vec<String> = (0..80).rev().map(|i| format!("t{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let got = r.read_many(&refs, false);
        // 80 MiB to check: groups of 32 MiB (at least), in file order.
        assert_eq!(src.batches.load(Ordering::Relaxed), 3);
        for (n, g) in names.iter().zip(got) {
            let i: u32 = n[1..].parse().unwrap();
            let want: Vec<u8> = (0..(1u32 << 18))
                .flat_map(|j| (j ^ i).to_le_bytes())
                .collect();
            assert!(g.unwrap().as_slice() == want.as_slice(), "{n}");
        }
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
