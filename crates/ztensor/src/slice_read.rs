//! Sliced reads: the bytes of part of a dense tensor, at a cost in
//! proportion to that part.
//!
//! * Raw data: a selection that is one contiguous byte range of the file is
//!   a zero-copy view of the mapping; any other is gathered run by run from
//!   the mapping (or with `pread` in [`crate::ReadMode::Eager`]) straight
//!   into the result, never through a copy of the whole tensor.
//! * zstd data: zTensor's writer cuts large components into independent
//!   frames that declare their decoded size, so the frames can be located
//!   from their headers alone (the frame index, built once per tensor and
//!   kept). Only the frames overlapping the selected bytes are decoded. Data
//!   whose frames do not declare their sizes (other writers, or one small
//!   frame) is decoded whole.
//! * Other encodings (foreign formats: deflate, byte swaps, HDF5 chunks,
//!   GGUF dequantization...) are decoded whole, then gathered.
//! * Digests cover a component's stored bytes, so the first slice of a
//!   checksummed tensor checks the whole component (reading all of it, in
//!   eager mode); the reader remembers the result and later slices skip it.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::buffer::AlignedBuf;
use crate::codec;
use crate::dtype::storage_elements_per_item;
use crate::error::{Error, ErrorKind, FormatError, Result};
use crate::model::{Component, Encoding, Layout, TensorInfo};
use crate::reader::Reader;
use crate::slice::{Index, Plan, Selection};
use crate::source::{SharedBytes, TensorBytes};

/// Results smaller than this are gathered on the calling thread.
const SERIAL_BELOW: usize = 4 << 20;
/// Bytes of result each parallel task gathers.
const TASK: u64 = 1 << 20;
/// A `pread` task reads the whole span its runs lie in, when that span is
/// at most this many times the bytes it needs (or under `SMALL_SPAN`), and
/// at most `MAX_SPAN`; otherwise one `pread` per run.
const SPAN_FACTOR: u64 = 4;
const SMALL_SPAN: u64 = 64 << 10;
const MAX_SPAN: u64 = 16 << 20;

/// Part of a tensor: its shape and its bytes (row-major).
#[derive(Debug)]
pub struct TensorSlice {
    /// Shape of the part.
    pub shape: Vec<u64>,
    /// Its bytes: a view of the file when they lie there contiguously and
    /// raw, otherwise a fresh buffer.
    pub bytes: TensorBytes,
}

/// What a reader keeps between sliced reads.
pub(crate) struct SliceState {
    /// Per entry, the frame index of its zstd `data` once built.
    frames: Vec<OnceLock<Arc<FrameIndex>>>,
    /// Frames decoded by sliced reads so far (tests check that a slice
    /// decodes only what it needs).
    decoded: AtomicU64,
}

impl SliceState {
    pub(crate) fn new(entries: usize) -> SliceState {
        SliceState {
            frames: (0..entries).map(|_| OnceLock::new()).collect(),
            decoded: AtomicU64::new(0),
        }
    }
}

/// Where the frames of a zstd component lie: stored byte ranges (relative
/// to the component) and decoded byte ranges (relative to the tensor).
#[derive(Debug)]
struct FrameIndex {
    frames: Vec<Frame>,
    /// The sizes are not all declared: one entry covering everything, decoded as a stream.
    whole: bool,
}

#[derive(Debug, Clone)]
struct Frame {
    stored: Range<u64>,
    decoded: Range<u64>,
}

impl FrameIndex {
    fn build(stored: &[u8], expected: u64) -> Result<FrameIndex, FormatError> {
        let scanned = codec::scan_frames(stored)?;
        let sizes: Option<Vec<u64>> = scanned.iter().map(|f| f.content_size).collect();
        let Some(sizes) = sizes.filter(|_| scanned.len() > 1) else {
            return Ok(FrameIndex {
                frames: vec![Frame {
                    stored: 0..stored.len() as u64,
                    decoded: 0..expected,
                }],
                whole: true,
            });
        };
        let mut frames = Vec::with_capacity(scanned.len());
        let mut at = 0u64;
        for (f, size) in scanned.iter().zip(sizes) {
            let end = at
                .checked_add(size)
                .filter(|&e| e <= expected)
                .ok_or_else(|| {
                    format!("zstd frames declare more than the expected {expected} bytes")
                })?;
            frames.push(Frame {
                stored: f.start as u64..f.end as u64,
                decoded: at..end,
            });
            at = end;
        }
        if at != expected {
            return Err(format!("zstd frames declare {at} bytes, expected {expected}").into());
        }
        Ok(FrameIndex {
            frames,
            whole: false,
        })
    }

    /// The frames that overlap the runs of `plan`, in file order.
    fn needed(&self, plan: &Plan) -> Vec<&Frame> {
        let frames = &self.frames;
        let mut need = vec![false; frames.len()];
        let mut covered = 0..0;
        for off in plan.offsets_from(0).take(plan.runs as usize) {
            let end = off + plan.run;
            if off >= covered.start && end <= covered.end {
                continue;
            }
            let first = frames.partition_point(|f| f.decoded.end <= off);
            let mut k = first;
            while k < frames.len() && frames[k].decoded.start < end {
                need[k] = true;
                k += 1;
            }
            covered = frames[first].decoded.start..frames[k - 1].decoded.end;
        }
        frames
            .iter()
            .zip(need)
            .filter(|(_, n)| *n)
            .map(|(f, _)| f)
            .collect()
    }
}

/// The decoded bytes of the frames a slice needs, packed one after another
/// (consecutive frames stay adjacent, so a run crossing frames is contiguous).
struct Decoded {
    /// Per needed frame: its decoded range in the tensor and where it starts in `buf`.
    frames: Vec<(Range<u64>, u64)>,
    buf: AlignedBuf,
}

impl Decoded {
    /// The `len` decoded bytes at tensor offset `off`; `hint` is the frame
    /// the previous call found (runs are mostly near each other).
    fn bytes(&self, off: u64, len: u64, hint: &mut usize) -> &[u8] {
        let near = self
            .frames
            .get(*hint)
            .is_some_and(|(r, _)| r.contains(&off));
        if !near {
            *hint = self.frames.partition_point(|(r, _)| r.end <= off);
        }
        let (range, packed) = &self.frames[*hint];
        let at = (packed + off - range.start) as usize;
        &self.buf.as_slice()[at..at + len as usize]
    }
}

/// Where a zstd component's stored bytes are read from.
enum Stored<'a> {
    Memory(&'a [u8]),
    /// `pread` at the component's offset.
    File,
}

impl Reader {
    /// Reads part of a dense tensor.
    ///
    /// `index` is NumPy's basic indexing plus one list: per dimension a
    /// position ([`Index::At`], negative from the end), a range with a step
    /// ([`Index::Range`], bounds clamped as in Python), a list of positions
    /// ([`Index::List`], at most one, whose dimension stays in place as in
    /// PyTorch; see [`Selection::numpy`] for NumPy's rule), and one
    /// [`Index::Ellipsis`]; dimensions left out are taken whole. A position
    /// out of range, or another misfit, is [`Error::InvalidArgument`].
    ///
    /// The cost follows the part, not the tensor (see [`Reader::read_selection`]).
    ///
    /// ```no_run
    /// use ztensor::{Index, Reader};
    /// let r = Reader::open("model.zt")?;
    /// // Rows 1024..2048 of a 2-D weight, and every other column of them.
    /// let rows = r.read_slice("w", &[Index::range(1024, 2048)])?;
    /// let cols = r.read_slice("w", &[Index::range(1024, 2048),
    ///     Index::Range { start: None, stop: None, step: Some(2) }])?;
    /// assert_eq!(rows.shape[0], 1024);
    /// # Ok::<(), ztensor::Error>(())
    /// ```
    pub fn read_slice(&self, name: &str, index: &[Index]) -> Result<TensorSlice> {
        let info = self.info(name)?;
        let sel = Selection::new(&info.shape, index).map_err(|e| {
            Error::invalid(format!(
                "{}: tensor '{name}' of shape {:?}: {e}",
                self.path().display(),
                info.shape
            ))
        })?;
        let bytes = self.read_selection(name, &sel)?;
        Ok(TensorSlice {
            shape: sel.shape().to_vec(),
            bytes,
        })
    }

    /// The bytes of `sel` (made for this tensor's shape) of a dense tensor,
    /// row-major in the selection's shape.
    ///
    /// Raw data that the selection finds contiguous in the file (a run of
    /// rows, one row, a scalar...) is a zero-copy view of the mapping; other
    /// raw selections are gathered straight from the mapping, or with one
    /// `pread` per run (or per span of close runs) in eager mode. zstd data
    /// written by zTensor (independent frames that declare their sizes)
    /// decodes only the frames holding selected bytes; a component that is
    /// one frame, or whose frames do not declare sizes, is decoded whole,
    /// and so is any foreign encoding. A checksummed component is checked
    /// whole before its first slice is returned (eager mode reads it whole
    /// for that); the reader remembers it, so later slices cost only
    /// themselves.
    pub fn read_selection(&self, name: &str, sel: &Selection) -> Result<TensorBytes> {
        self.read_selection_in(name, sel, false)
    }

    /// [`Reader::read_selection`] whose zero-copy result points into a fresh
    /// private mapping, as [`Reader::read_many_isolated`] explains.
    pub fn read_selection_isolated(&self, name: &str, sel: &Selection) -> Result<TensorBytes> {
        self.read_selection_in(name, sel, true)
    }

    /// How many zstd frames sliced reads of this reader have decoded.
    #[doc(hidden)]
    pub fn frames_decoded(&self) -> u64 {
        self.slices.decoded.load(Ordering::Relaxed)
    }

    fn read_selection_in(
        &self,
        name: &str,
        sel: &Selection,
        isolated: bool,
    ) -> Result<TensorBytes> {
        let idx = self.lookup(name)?;
        let info = self.info(name)?;
        let err = |m: FormatError| Error::tensor(self.path(), name, m);
        if info.layout != Layout::Dense {
            return Err(err(format!(
                "has layout {}; only dense tensors can be sliced",
                info.layout
            )
            .into()));
        }
        if sel.source_shape() != info.shape {
            return Err(Error::invalid(format!(
                "{}: tensor '{name}' has shape {:?}, but the selection was made for shape {:?}",
                self.path().display(),
                info.shape,
                sel.source_shape()
            )));
        }
        let c = &info.components["data"];
        let width = storage_elements_per_item(c.logical_type.as_deref()) * c.dtype.size() as u64;
        let Some(plan) = Plan::new(sel, width) else {
            return match sel.numel().and_then(|n| n.checked_mul(width)) {
                Some(_) => Ok(TensorBytes::Owned(
                    AlignedBuf::for_overwrite(0).map_err(err)?,
                )),
                None => Err(err(FormatError::limit(format!(
                    "the selection of shape {:?} is too large",
                    sel.shape()
                )))),
            };
        };
        match &c.encoding {
            Encoding::Raw => self.slice_raw(idx, info, c, &plan, isolated),
            Encoding::Zstd { .. } => self.slice_zstd(idx, info, c, &plan),
            Encoding::Transformed(_) => {
                let whole = self.fetch(idx, info, "data", c, false, None)?;
                gather_memory(&plan, &whole).map_err(|m| err(m.prefixed("component 'data': ")))
            }
        }
    }

    fn slice_raw(
        &self,
        idx: usize,
        info: &TensorInfo,
        c: &Component,
        plan: &Plan,
        isolated: bool,
    ) -> Result<TensorBytes> {
        let err = |m: FormatError| {
            Error::tensor(self.path(), &info.name, m.prefixed("component 'data': "))
        };
        let range = c.offset as usize..(c.offset + c.length) as usize;
        if let Some(backing) = self.source.backing() {
            self.check_digest(idx, info, "data", c, &backing.bytes()[range.clone()])?;
            if plan.runs == 1 {
                let at = c.offset + plan.offsets_from(0).next().unwrap_or(0);
                let own = isolated
                    .then(|| self.source.map_span(at, at + plan.run))
                    .flatten()
                    .and_then(|s| s.bytes(at, plan.run));
                let view = own
                    .unwrap_or_else(|| SharedBytes::new(backing, at as usize, plan.run as usize));
                return Ok(TensorBytes::Shared(view));
            }
            return gather_memory(plan, &backing.bytes()[range]).map_err(err);
        }
        if self.digest_pending(idx, info, "data", c) {
            let whole = self.read_stored(c)?;
            self.check_digest(idx, info, "data", c, &whole)?;
            return gather_memory(plan, &whole).map_err(err);
        }
        let mut out = AlignedBuf::for_overwrite(plan.len() as usize).map_err(err)?;
        let io = |e| Error::io(self.path(), e);
        if plan.runs == 1 {
            let at = plan.offsets_from(0).next().unwrap_or(0);
            self.source
                .read_into(c.offset + at, out.as_mut_slice())
                .map_err(io)?;
            return Ok(TensorBytes::Owned(out));
        }
        gather(plan, out.as_mut_slice(), |first, dst| {
            let run = plan.run as usize;
            let n = (dst.len() / run) as u64;
            let (lo, hi) = plan
                .offsets_from(first)
                .take(n as usize)
                .fold((u64::MAX, 0), |(lo, hi), o| {
                    (lo.min(o), hi.max(o + plan.run))
                });
            let span = hi - lo;
            if span <= (SPAN_FACTOR * dst.len() as u64).max(SMALL_SPAN) && span <= MAX_SPAN {
                let mut scratch = vec![0u8; span as usize];
                self.source.read_into(c.offset + lo, &mut scratch)?;
                copy_runs(plan, first, &scratch, lo, dst);
                return Ok(());
            }
            for (d, o) in dst.chunks_exact_mut(run).zip(plan.offsets_from(first)) {
                self.source.read_into(c.offset + o, d)?;
            }
            Ok(())
        })
        .map_err(io)?;
        Ok(TensorBytes::Owned(out))
    }

    fn slice_zstd(
        &self,
        idx: usize,
        info: &TensorInfo,
        c: &Component,
        plan: &Plan,
    ) -> Result<TensorBytes> {
        let err = |m: FormatError| {
            Error::tensor(self.path(), &info.name, m.prefixed("component 'data': "))
        };
        let expected = info
            .dense_nbytes()
            .expect("checked when the file was opened");
        let cached = self.slices.frames[idx].get().cloned();
        let backing = self.source.backing();
        let read;
        let stored = match &backing {
            Some(b) => {
                Stored::Memory(&b.bytes()[c.offset as usize..(c.offset + c.length) as usize])
            }
            // Eager: the first slice reads the component whole (to check it and
            // to index its frames); later ones read only the frames they need.
            None if cached.is_none() || self.digest_pending(idx, info, "data", c) => {
                read = self.read_stored(c)?;
                Stored::Memory(read.as_slice())
            }
            None => Stored::File,
        };
        if let Stored::Memory(bytes) = &stored {
            self.check_digest(idx, info, "data", c, bytes)?;
        }
        let index = match (cached, &stored) {
            (Some(index), _) => index,
            (None, Stored::Memory(bytes)) => {
                let built = Arc::new(FrameIndex::build(bytes, expected).map_err(err)?);
                self.slices.frames[idx].get_or_init(|| built).clone()
            }
            (None, Stored::File) => unreachable!("an eager reader reads the component to index it"),
        };
        let mut out = AlignedBuf::for_overwrite(plan.len() as usize).map_err(err)?;
        if plan.increasing() {
            self.decode_into(c, &index, &stored, plan, out.as_mut_slice())
                .map_err(err)?;
            return Ok(TensorBytes::Owned(out));
        }
        let decoded = self.decode_frames(c, &index, &stored, plan).map_err(err)?;
        if plan.runs == 1 {
            let at = plan.offsets_from(0).next().unwrap_or(0);
            crate::parallel::copy(out.as_mut_slice(), decoded.bytes(at, plan.run, &mut 0));
            return Ok(TensorBytes::Owned(out));
        }
        gather(plan, out.as_mut_slice(), |first, dst| {
            let run = plan.run as usize;
            let mut hint = 0;
            for (d, o) in dst.chunks_exact_mut(run).zip(plan.offsets_from(first)) {
                d.copy_from_slice(decoded.bytes(o, plan.run, &mut hint));
            }
            Ok::<(), FormatError>(())
        })
        .map_err(err)?;
        Ok(TensorBytes::Owned(out))
    }

    /// Decodes the frames an [`increasing`](Plan::increasing) plan needs,
    /// in parallel, each into a small scratch buffer from which its share of
    /// the result is copied: the result is the only large memory written.
    fn decode_into(
        &self,
        c: &Component,
        index: &FrameIndex,
        stored: &Stored,
        plan: &Plan,
        out: &mut [u8],
    ) -> Result<(), FormatError> {
        let chosen = index.needed(plan);
        // Each frame feeds one contiguous piece of the result, in frame order.
        let starts: Vec<u64> = chosen
            .iter()
            .map(|f| plan.result_offset(f.decoded.start))
            .collect();
        let mut jobs = Vec::with_capacity(chosen.len());
        let mut rest = out;
        for (k, f) in chosen.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(plan.len());
            let (head, tail) = rest.split_at_mut((end - starts[k]) as usize);
            jobs.push((*f, starts[k], head));
            rest = tail;
        }
        let fill = |scratch: &mut Vec<u8>, (f, start, dst): (&Frame, u64, &mut [u8])| {
            scratch.resize((f.decoded.end - f.decoded.start) as usize, 0);
            self.decode_one(c, index, stored, f, scratch)?;
            let (run, from) = (plan.run, f.decoded.start);
            let mut filled = 0;
            for off in plan.offsets_from(start / run) {
                if filled == dst.len() {
                    break;
                }
                let (lo, hi) = (off.max(from), (off + run).min(f.decoded.end));
                let n = (hi - lo) as usize;
                dst[filled..filled + n]
                    .copy_from_slice(&scratch[(lo - from) as usize..(hi - from) as usize]);
                filled += n;
            }
            Ok(())
        };
        if jobs.len() == 1 {
            return jobs
                .into_iter()
                .try_for_each(|job| fill(&mut Vec::new(), job));
        }
        crate::parallel::install(|| jobs.into_par_iter().try_for_each_init(Vec::new, fill))
    }

    /// Decodes one frame of `index` into `dst` (its decoded size).
    fn decode_one(
        &self,
        c: &Component,
        index: &FrameIndex,
        stored: &Stored,
        f: &Frame,
        dst: &mut [u8],
    ) -> Result<(), FormatError> {
        let range = f.stored.start as usize..f.stored.end as usize;
        let read;
        let src = match stored {
            Stored::Memory(bytes) => &bytes[range],
            Stored::File => {
                let mut v = vec![0u8; range.len()];
                self.source
                    .read_into(c.offset + f.stored.start, &mut v)
                    .map_err(|e| {
                        FormatError::new(ErrorKind::Io, format!("reading zstd frame: {e}"))
                    })?;
                read = v;
                &read[..]
            }
        };
        self.slices.decoded.fetch_add(1, Ordering::Relaxed);
        if index.whole {
            codec::decompress_exact(src, dst)
        } else {
            codec::decode_frame(src, dst)
        }
    }

    /// Decodes, in parallel, the frames of `index` that `plan` needs.
    fn decode_frames(
        &self,
        c: &Component,
        index: &FrameIndex,
        stored: &Stored,
        plan: &Plan,
    ) -> Result<Decoded, FormatError> {
        let chosen = index.needed(plan);
        let total: u64 = chosen.iter().map(|f| f.decoded.end - f.decoded.start).sum();
        let mut buf = AlignedBuf::for_overwrite(total as usize)?;
        let mut frames = Vec::with_capacity(chosen.len());
        let mut jobs = Vec::with_capacity(chosen.len());
        let mut rest = buf.as_mut_slice();
        let mut packed = 0;
        for f in chosen {
            let len = f.decoded.end - f.decoded.start;
            let (head, tail) = rest.split_at_mut(len as usize);
            frames.push((f.decoded.clone(), packed));
            jobs.push((f, head));
            rest = tail;
            packed += len;
        }
        let decode = |(f, dst): (&Frame, &mut [u8])| self.decode_one(c, index, stored, f, dst);
        if jobs.len() == 1 {
            jobs.into_iter().try_for_each(decode)?;
        } else {
            crate::parallel::install(|| jobs.into_par_iter().try_for_each(decode))?;
        }
        Ok(Decoded { frames, buf })
    }

    /// The stored bytes of a component, read with `pread`.
    fn read_stored(&self, c: &Component) -> Result<AlignedBuf> {
        let mut buf = AlignedBuf::for_overwrite(c.length as usize)
            .map_err(|e| Error::format(self.path(), e))?;
        self.source
            .read_into(c.offset, buf.as_mut_slice())
            .map_err(|e| Error::io(self.path(), e))?;
        Ok(buf)
    }
}

/// Copies runs `first..` of `plan` from `src` into `dst` (whole runs);
/// `src` holds the tensor's bytes from offset `base` on. Runs of a few bytes
/// (single elements) are fixed-size moves, and along an innermost range the
/// offset just advances by its step.
fn copy_runs(plan: &Plan, first: u64, src: &[u8], base: u64, dst: &mut [u8]) {
    fn fixed<const N: usize>(plan: &Plan, first: u64, src: &[u8], base: u64, dst: &mut [u8]) {
        let Some((delta, len)) = plan.inner_step() else {
            for (d, o) in dst.chunks_exact_mut(N).zip(plan.offsets_from(first)) {
                let o = (o - base) as usize;
                d.copy_from_slice(&src[o..o + N]);
            }
            return;
        };
        let mut r = first;
        let mut rest = dst;
        while !rest.is_empty() {
            let take = ((len - r % len) as usize).min(rest.len() / N);
            let (row, tail) = rest.split_at_mut(take * N);
            let mut o = plan.offset_of(r) - base;
            for d in row.chunks_exact_mut(N) {
                d.copy_from_slice(&src[o as usize..o as usize + N]);
                o = o.wrapping_add(delta);
            }
            rest = tail;
            r += take as u64;
        }
    }
    match plan.run {
        1 => fixed::<1>(plan, first, src, base, dst),
        2 => fixed::<2>(plan, first, src, base, dst),
        4 => fixed::<4>(plan, first, src, base, dst),
        8 => fixed::<8>(plan, first, src, base, dst),
        16 => fixed::<16>(plan, first, src, base, dst),
        run => {
            let run = run as usize;
            for (d, o) in dst.chunks_exact_mut(run).zip(plan.offsets_from(first)) {
                let o = (o - base) as usize;
                d.copy_from_slice(&src[o..o + run]);
            }
        }
    }
}

/// Gathers the runs of `plan` from `src` (the tensor's bytes) into a new buffer.
fn gather_memory(plan: &Plan, src: &[u8]) -> Result<TensorBytes, FormatError> {
    let mut out = AlignedBuf::for_overwrite(plan.len() as usize)?;
    let run = plan.run as usize;
    if plan.runs == 1 {
        let at = plan.offsets_from(0).next().unwrap_or(0) as usize;
        crate::parallel::copy(out.as_mut_slice(), &src[at..at + run]);
    } else {
        gather(plan, out.as_mut_slice(), |first, dst| {
            copy_runs(plan, first, src, 0, dst);
            Ok::<(), FormatError>(())
        })?;
    }
    Ok(TensorBytes::Owned(out))
}

/// Fills `out` (the whole result) by calling `task(first_run, dst)` on
/// pieces of whole runs, in parallel when the result is large.
fn gather<E: Send>(
    plan: &Plan,
    out: &mut [u8],
    task: impl Fn(u64, &mut [u8]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let run = plan.run as usize;
    if out.len() < SERIAL_BELOW {
        return task(0, out);
    }
    let piece = (TASK as usize / run).max(1) * run;
    crate::parallel::install(|| {
        out.par_chunks_mut(piece)
            .enumerate()
            .try_for_each(|(i, dst)| task((i * piece / run) as u64, dst))
    })
}
