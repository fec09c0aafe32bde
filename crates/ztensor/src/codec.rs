//! zstd encoding of components: chunked parallel compression and bounded,
//! exact-size, parallel decompression.

use rayon::prelude::*;

use crate::error::FormatError;
use std::io::{Read, Write};

/// zstd cannot expand data by more than ~32768:1 (a 4-byte RLE block yields
/// at most 128 KiB). Anything that claims more than this ratio is hostile,
/// and refusing it bounds every allocation by the compressed size.
pub const MAX_RATIO: u64 = 1 << 16;

/// Inputs above this size are split into independent frames of this size,
/// compressed in parallel and decodable in parallel.
pub const FRAME_CHUNK: usize = 1 << 20;

/// The lowest zstd level a writer stores at.
pub const MIN_LEVEL: i32 = 1;

/// The highest zstd level a writer stores at.
pub const MAX_LEVEL: i32 = 22;

/// `level` clamped into `MIN_LEVEL..=MAX_LEVEL`: every writer (Rust, Python
/// bindings) stores at a level this returns.
pub fn clamp_level(level: i32) -> i32 {
    level.clamp(MIN_LEVEL, MAX_LEVEL)
}

/// Compresses `data` at `level` (clamped by [`clamp_level`]).
///
/// Small inputs become one frame made by the streaming encoder, exactly as
/// the reference writer makes it (so the bytes match). Larger inputs become
/// concatenated frames of [`FRAME_CHUNK`] bytes that each declare their
/// content size; any zstd stream decoder reads them as one stream.
pub fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let level = clamp_level(level);
    if data.len() <= FRAME_CHUNK {
        return compress_stream(data, level);
    }
    let frames: Vec<Vec<u8>> = crate::parallel::install(|| {
        data.par_chunks(FRAME_CHUNK)
            .map(|chunk| compress_frame(chunk, level))
            .collect::<std::io::Result<_>>()
    })?;
    let mut out = Vec::with_capacity(frames.iter().map(Vec::len).sum());
    frames.iter().for_each(|f| out.extend_from_slice(f));
    Ok(out)
}

/// One frame made by the streaming encoder, as the reference writer makes
/// it (no content size in its header): how inputs up to [`FRAME_CHUNK`] are stored.
pub(crate) fn compress_stream(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), level)?;
    enc.write_all(data)?;
    enc.finish()
}

/// Levels up to this one keep a compression context per thread (a few
/// MiB); higher levels' contexts are far larger and made per frame.
const KEEP_CONTEXT_UP_TO: i32 = 9;

/// One frame that declares its content size (a piece of a larger input).
/// Each thread keeps its compression context: a fresh one per frame costs
/// its allocation and first-touch page faults every time.
pub(crate) fn compress_frame(chunk: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    if level > KEEP_CONTEXT_UP_TO {
        return zstd::bulk::Compressor::new(level)?.compress(chunk);
    }
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with(|slot| {
        let mut slot = slot.borrow_mut();
        match &mut *slot {
            Some((l, c)) if *l == level => c.compress(chunk),
            _ => {
                let c = slot.insert((level, zstd::bulk::Compressor::new(level)?));
                c.1.compress(chunk)
            }
        }
    })
}

/// Refuses a decoded size that the compressed bytes cannot honestly produce.
pub fn check_ratio(compressed_len: u64, decoded_len: u64) -> Result<(), FormatError> {
    let limit = compressed_len.saturating_mul(MAX_RATIO).max(MAX_RATIO);
    if decoded_len > limit {
        return Err(FormatError::limit(format!(
            "{compressed_len} compressed bytes cannot hold {decoded_len} decoded bytes (ratio limit {MAX_RATIO}:1)"
        )));
    }
    Ok(())
}

/// Decodes `src` into `out`, which must be filled exactly.
///
/// When every frame declares its content size, frames are decoded in
/// parallel straight into their slice of `out`; otherwise the stream is
/// decoded sequentially. Output longer or shorter than `out` is an error.
pub fn decompress_exact(src: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
    check_ratio(src.len() as u64, out.len() as u64)?;
    let frames = scan_frames(src)?;
    let sizes: Option<Vec<u64>> = frames.iter().map(|f| f.content_size).collect();
    match sizes {
        Some(sizes) if frames.len() > 1 => {
            let total = sizes.iter().try_fold(0u64, |a, &s| a.checked_add(s));
            if total != Some(out.len() as u64) {
                return Err(format!(
                    "zstd frames declare {} bytes, expected {}",
                    total.map_or("too many".into(), |t| t.to_string()),
                    out.len()
                )
                .into());
            }
            let mut jobs = Vec::with_capacity(frames.len());
            let mut rest = &mut *out;
            for (f, &size) in frames.iter().zip(&sizes) {
                let (head, tail) = rest.split_at_mut(size as usize);
                jobs.push((&src[f.start..f.end], head));
                rest = tail;
            }
            crate::parallel::install(|| {
                jobs.into_par_iter()
                    .try_for_each(|(frame, dst)| decode_frame(frame, dst))
            })
        }
        _ => decode_stream(src, out),
    }
}

/// Decodes a stream whose size is not known in advance, refusing to grow
/// past `limit` bytes (itself bounded by the compression ratio).
pub fn decompress_bounded(src: &[u8], limit: u64) -> Result<Vec<u8>, FormatError> {
    let limit = limit.min(src.len() as u64 * MAX_RATIO);
    let mut dec = zstd::stream::read::Decoder::with_buffer(src).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    (&mut dec)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 > limit {
        return Err(FormatError::limit(format!(
            "zstd data decodes to more than {limit} bytes"
        )));
    }
    Ok(out)
}

/// One zstd frame of a stream: its byte range and declared decoded size.
pub(crate) struct Frame {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) content_size: Option<u64>,
}

/// Locates the frames of a stream from their headers (nothing is decoded).
pub(crate) fn scan_frames(src: &[u8]) -> Result<Vec<Frame>, FormatError> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < src.len() {
        let n = zstd::zstd_safe::find_frame_compressed_size(&src[pos..]).map_err(|code| {
            format!(
                "corrupt zstd data: {}",
                zstd::zstd_safe::get_error_name(code)
            )
        })?;
        let end = pos + n;
        let content_size = zstd::zstd_safe::get_frame_content_size(&src[pos..end])
            .map_err(|_| "corrupt zstd frame header".to_string())?;
        frames.push(Frame {
            start: pos,
            end,
            content_size,
        });
        pos = end;
    }
    if frames.is_empty() {
        return Err(FormatError::truncated("empty zstd data"));
    }
    Ok(frames)
}

/// Decodes one frame, which must fill `dst` exactly.
pub(crate) fn decode_frame(frame: &[u8], dst: &mut [u8]) -> Result<(), FormatError> {
    let mut dctx = zstd::zstd_safe::DCtx::create();
    let n = dctx.decompress(dst, frame).map_err(|code| {
        format!(
            "corrupt zstd data: {}",
            zstd::zstd_safe::get_error_name(code)
        )
    })?;
    if n != dst.len() {
        return Err(format!("zstd frame decoded to {n} bytes, expected {}", dst.len()).into());
    }
    Ok(())
}

fn decode_stream(src: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
    let mut dec = zstd::stream::read::Decoder::with_buffer(src).map_err(|e| e.to_string())?;
    let mut filled = 0;
    while filled < out.len() {
        match dec.read(&mut out[filled..]) {
            Ok(0) => {
                return Err(FormatError::truncated(format!(
                    "zstd data decodes to {filled} bytes, expected {}",
                    out.len()
                )))
            }
            Ok(n) => filled += n,
            Err(e) => return Err(format!("corrupt zstd data: {e}").into()),
        }
    }
    let mut extra = [0u8; 1];
    match dec.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(format!(
            "zstd data decodes to more than the expected {} bytes",
            out.len()
        )
        .into()),
        Err(e) => Err(format!("corrupt zstd data: {e}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7) % 251) as u8 ^ ((i >> 9) as u8))
            .collect()
    }

    #[test]
    fn small_round_trip_is_one_frame() {
        let data = sample(1000);
        let z = compress(&data, 3).unwrap();
        let mut out = vec![0; data.len()];
        decompress_exact(&z, &mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(
            zstd::zstd_safe::find_frame_compressed_size(&z).unwrap(),
            z.len()
        );
    }

    #[test]
    fn large_input_is_chunked_and_decodes_in_parallel_and_as_stream() {
        let data = sample(FRAME_CHUNK * 2 + 123);
        let z = compress(&data, 1).unwrap();
        assert_eq!(scan_frames(&z).unwrap().len(), 3);
        let mut out = vec![0; data.len()];
        decompress_exact(&z, &mut out).unwrap();
        assert_eq!(out, data);
        // A plain stream decoder (what the reference uses) reads the same bytes.
        assert_eq!(zstd::stream::decode_all(&z[..]).unwrap(), data);
    }

    #[test]
    fn short_and_long_output_are_errors() {
        let z = compress(&sample(100), 3).unwrap();
        let mut short = vec![0; 99];
        let e = decompress_exact(&z, &mut short).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.message().contains("more than"), "{e}");
        let mut long = vec![0; 101];
        let e = decompress_exact(&z, &mut long).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
        assert!(e.message().contains("decodes to 100"), "{e}");
    }

    #[test]
    fn absurd_ratio_refused_before_allocation() {
        let e = check_ratio(16, 1 << 40).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
        assert!(check_ratio(16, 1 << 20).is_ok());
        let e = decompress_bounded(&compress(&[0u8; 4096], 3).unwrap(), 100).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    }
}
