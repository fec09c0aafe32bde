//! Reader for NumPy `.npz` archives (single `.npy` arrays: [`crate::npy`]).
//!
//! An `.npz` file is a zip archive of `.npy` members (`np.savez` stores
//! them, `np.savez_compressed` deflates them). Each `NAME.npy` member
//! becomes the tensor `NAME`; other members are ignored.
//!
//! * Stored members are read zero-copy: the tensor's bytes are the
//!   member's data right after its `.npy` header.
//! * Deflated members are inflated at read time ([`Inflate`]); only the
//!   `.npy` header is inflated while parsing. The decoded size must equal
//!   the header's shape times the element size *and* the size the archive
//!   declares, and it must be reachable by DEFLATE from the compressed size,
//!   so a member whose stream produces more or less than it claims (a zip
//!   bomb) fails when read, without a large allocation. The member's CRC-32
//!   is checked as it is inflated. A stored member's CRC-32 becomes a
//!   digest of its array bytes ([`Digest::Crc32`], derived from the member's
//!   checksum and its `.npy` header), which the reader checks before handing
//!   the bytes out, zero-copy or not, as `np.load` checks it.
//! * A member whose local header names it differently from the central
//!   directory is unreadable, as it is for `np.load`.
//! * Big-endian arrays are byte-swapped ([`ByteSwap`]) and Fortran-order
//!   arrays gathered into row-major order ([`Strided`]) at read time.
//! * Members that overlap each other in the archive (a known zip-bomb
//!   construction), lie past the end of the file, are encrypted or use
//!   another compression method, and arrays of unsupported dtypes (object,
//!   strings, structured, ...) are listed as unreadable with a message; the
//!   rest of the archive stays readable.
//!
//! [`Inflate`]: crate::transforms::Inflate
//! [`ByteSwap`]: crate::transforms::ByteSwap
//! [`Strided`]: crate::transforms::Strided

use std::io::{Cursor, Read};

use zip::{CompressionMethod, ZipArchive};
use ztensor::{Catalog, Digest, Entry, FormatError};

use crate::npy::{self, Data, Header};
use crate::ParseContext;

/// One `.npy` member of the archive, as the central directory lists it.
struct Member {
    name: String,
    /// `[local header start, data end)`, when the data lies inside the file.
    extent: Option<(u64, u64)>,
    info: Result<ztensor::TensorInfo, FormatError>,
}

/// Parses a whole `.npz` file image.
pub fn parse(bytes: &[u8], _cx: &ParseContext) -> Result<Catalog, FormatError> {
    let file_len = bytes.len() as u64;
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    let mut members: Vec<Member> = Vec::new();
    for i in 0..zip.len() {
        let raw_name = match zip.name_for_index(i) {
            Some(Ok(n)) => n.into_owned(),
            _ => continue, // an undecodable name cannot end in ".npy"
        };
        let Some(name) = raw_name.strip_suffix(".npy") else {
            continue;
        };
        let name = name.to_string();
        let (extent, info) = match member(&mut zip, i, bytes, file_len) {
            Ok((extent, info)) => (Some(extent), info),
            Err(e) => (None, Err(e)),
        };
        members.push(Member {
            name,
            extent,
            info: info.map_err(|e| e.prefixed(format_args!("member '{raw_name}': "))),
        });
    }
    refuse_overlaps(&mut members);
    let entries = members
        .into_iter()
        .map(|m| match m.info {
            Ok(info) => Entry::ok(info),
            Err(e) => Entry::broken(m.name, e),
        })
        .collect();
    Ok(Catalog::new("npz", entries, (0, file_len)))
}

/// Locates member `i` and builds its tensor. The outer error means the
/// member cannot even be located; the inner one that its array is unusable.
#[allow(clippy::type_complexity)]
fn member(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    i: usize,
    bytes: &[u8],
    file_len: u64,
) -> Result<((u64, u64), Result<ztensor::TensorInfo, FormatError>), FormatError> {
    let f = zip.by_index_raw(i).map_err(|e| format!("{e}"))?;
    let name = f.name().map_err(|e| format!("{e}"))?.into_owned();
    let tensor_name = name.strip_suffix(".npy").unwrap_or(&name).to_string();
    let start = f.header_start();
    let data_start = f
        .data_start()
        .ok_or("the archive does not say where the member's data starts")?;
    let clen = f.compressed_size();
    let data_end = data_start
        .checked_add(clen)
        .filter(|&e| e <= file_len)
        .ok_or_else(|| {
            format!("its {clen} data bytes at offset {data_start} lie past the end of the file ({file_len} bytes)")
        })?;
    if start > data_start {
        return Err("its local header lies after its data".into());
    }
    crate::zipcheck::check_local_header(bytes, start, f.name_raw())?;
    let extent = (start, data_end);
    if f.encrypted() {
        return Ok((extent, Err("encrypted members are not supported".into())));
    }
    // data_end <= file_len, so these fit usize.
    let stored = &bytes[data_start as usize..data_end as usize];
    let size = f.size();
    let info = match f.compression() {
        CompressionMethod::Stored => {
            if size != clen {
                Err(
                    format!("a stored member of {clen} bytes declares {size} uncompressed bytes")
                        .into(),
                )
            } else {
                npy::parse_header(stored).and_then(|h| {
                    let len = clen.saturating_sub(h.data_offset);
                    let mut info = npy::tensor(
                        &tensor_name,
                        &h,
                        Data::Stored {
                            offset: data_start + h.data_offset,
                            len,
                            exact: true,
                        },
                    )?;
                    // The member's CRC-32, moved onto the array bytes, which
                    // the reader then checks before handing them out.
                    let head = usize::try_from(h.data_offset)
                        .ok()
                        .and_then(|n| stored.get(..n))
                        .ok_or("the .npy header is longer than the member")?;
                    let crc = crate::zipcheck::crc32_of_tail(f.crc32(), head, len);
                    if let Some(data) = info.components.get_mut("data") {
                        data.digest = Some(Digest::Crc32(crc));
                    }
                    Ok(info)
                })
            }
        }
        CompressionMethod::Deflated => inflate_header(stored).and_then(|h| {
            npy::tensor(
                &tensor_name,
                &h,
                Data::Deflated {
                    offset: data_start,
                    len: clen,
                    declared: size,
                    crc32: f.crc32(),
                },
            )
        }),
        other => Err(FormatError::unsupported(format!(
            "compression method {other} is not supported"
        ))),
    };
    Ok((extent, info))
}

/// Inflates just the `.npy` header at the start of a deflate stream.
fn inflate_header(stream: &[u8]) -> Result<Header, FormatError> {
    let mut z = flate2::read::DeflateDecoder::new(stream);
    let mut head = Vec::with_capacity(64);
    // The fixed prefix is 10 bytes (v1) or 12 (v2, v3).
    read_up_to(&mut z, &mut head, 12)?;
    let (total, _) = npy::header_len(&head)?;
    // total <= npy::MAX_HEADER_LEN, so this allocation is bounded.
    read_up_to(&mut z, &mut head, total as usize)?;
    npy::parse_header(&head)
}

/// Reads from `r` until `buf` holds `want` bytes or the stream ends.
fn read_up_to(r: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> Result<(), FormatError> {
    let have = buf.len();
    if want > have {
        r.take((want - have) as u64)
            .read_to_end(buf)
            .map_err(|e| format!("deflate stream: {e}"))?;
    }
    Ok(())
}

/// Members whose byte ranges in the archive overlap (even exactly) are
/// hostile: several names would decode the same compressed bytes.
fn refuse_overlaps(members: &mut [Member]) {
    let mut order: Vec<(u64, u64, usize)> = members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.extent.map(|(s, e)| (s, e, i)))
        .collect();
    order.sort_unstable();
    let mut clashes: Vec<(usize, usize)> = Vec::new();
    // The member reaching furthest so far: (end, index).
    let mut reach: Option<(u64, usize)> = None;
    for &(start, end, i) in &order {
        if let Some((r_end, r)) = reach {
            if start < r_end {
                clashes.push((i, r));
            }
            if end <= r_end {
                continue;
            }
        }
        reach = Some((end, i));
    }
    for (a, b) in clashes {
        let (name_a, name_b) = (members[a].name.clone(), members[b].name.clone());
        members[a].info =
            Err(format!("its bytes in the archive overlap those of member '{name_b}.npy'").into());
        members[b].info =
            Err(format!("its bytes in the archive overlap those of member '{name_a}.npy'").into());
    }
}
