//! Turning the byte ranges a read needs into requests: ranges longer than
//! the request size are split, ranges closer than the merge gap are joined
//! (the bytes between them fetched and dropped), so a batch of tensors
//! costs few requests of about the request size each.

/// One request: the file bytes `start..end`, and where its pieces go.
pub(crate) struct Request<'a> {
    pub start: u64,
    pub end: u64,
    /// `(file offset, destination)`, in increasing offset order, inside `start..end`.
    pub pieces: Vec<(u64, &'a mut [u8])>,
}

/// Plans the requests for `ranges` (`(offset, destination)`, in increasing
/// offset order, not overlapping).
pub(crate) fn plan<'a>(
    ranges: &'a mut [(u64, &mut [u8])],
    request_size: u64,
    merge_gap: u64,
) -> Vec<Request<'a>> {
    let size = request_size.max(1);
    let mut out: Vec<Request<'a>> = Vec::new();
    for (offset, dst) in ranges.iter_mut() {
        let mut at = *offset;
        for piece in dst.chunks_mut(size as usize) {
            let end = at + piece.len() as u64;
            match out.last_mut() {
                Some(r) if at >= r.end && at - r.end <= merge_gap && end - r.start <= size => {
                    r.end = end;
                    r.pieces.push((at, piece));
                }
                _ => out.push(Request {
                    start: at,
                    end,
                    pieces: vec![(at, piece)],
                }),
            }
            at = end;
        }
    }
    out
}

/// Copies `data`, the file bytes at `pos`, into the pieces it covers;
/// `next` is the first piece not yet wholly written (advanced here).
pub(crate) fn scatter(pieces: &mut [(u64, &mut [u8])], next: &mut usize, pos: u64, data: &[u8]) {
    let end = pos + data.len() as u64;
    while let Some((at, dst)) = pieces.get_mut(*next) {
        let (at, len) = (*at, dst.len() as u64);
        if at >= end {
            return;
        }
        let lo = at.max(pos);
        let hi = (at + len).min(end);
        if lo < hi {
            dst[(lo - at) as usize..(hi - at) as usize]
                .copy_from_slice(&data[(lo - pos) as usize..(hi - pos) as usize]);
        }
        if at + len > end {
            return;
        }
        *next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{plan, scatter};

    fn spans(ranges: &mut [(u64, &mut [u8])], size: u64, gap: u64) -> Vec<(u64, u64, usize)> {
        plan(ranges, size, gap)
            .iter()
            .map(|r| (r.start, r.end, r.pieces.len()))
            .collect()
    }

    #[test]
    fn splits_long_ranges_and_merges_close_ones() {
        let (mut a, mut b, mut c) = (vec![0u8; 25], vec![0u8; 4], vec![0u8; 4]);
        let mut ranges: Vec<(u64, &mut [u8])> = vec![(0, &mut a), (27, &mut b), (100, &mut c)];
        // 25 bytes in pieces of 11; b is 2 bytes after a's last piece and fits
        // its request; c is too far.
        assert_eq!(
            spans(&mut ranges, 11, 2),
            vec![(0, 11, 1), (11, 22, 1), (22, 31, 2), (100, 104, 1)]
        );
        assert_eq!(spans(&mut ranges, 11, 1).len(), 5, "gap 2 > 1: not merged");
        assert_eq!(spans(&mut ranges, 10, 2).len(), 5, "merged > request size");
        assert_eq!(spans(&mut ranges, 1000, 100).len(), 1);
    }

    #[test]
    fn scatter_fills_pieces_across_chunk_boundaries() {
        let file: Vec<u8> = (0..40u8).collect();
        let (mut a, mut b) = (vec![0u8; 6], vec![0u8; 5]);
        let mut pieces: Vec<(u64, &mut [u8])> = vec![(2, &mut a), (20, &mut b)];
        let mut next = 0;
        // The request covers 2..25; deliver it in uneven chunks.
        for (lo, hi) in [(2, 5), (5, 9), (9, 21), (21, 25)] {
            scatter(&mut pieces, &mut next, lo, &file[lo as usize..hi as usize]);
        }
        assert_eq!(next, 2);
        assert_eq!(a, file[2..8]);
        assert_eq!(b, file[20..25]);
    }
}
