//! The `.zt` container: header magic, footer, manifest location, and the
//! legacy v0.1 variant. Turns the bytes of a file into a [`Catalog`].

use crate::catalog::Catalog;
use crate::error::{ErrorKind, FormatError};
use crate::{legacy, manifest};

/// Magic bytes at both ends of a v1 file.
pub const MAGIC: &[u8; 8] = b"ZTEN1000";
/// Magic bytes at the start of a legacy v0.1 file.
pub const LEGACY_MAGIC: &[u8; 8] = b"ZTEN0001";
/// Largest manifest a reader accepts (1 GiB, as the reference).
pub const MAX_MANIFEST: u64 = 1 << 30;

/// True when `head` starts like a `.zt` file (v1 or legacy).
pub fn is_zt(head: &[u8]) -> bool {
    head.starts_with(MAGIC) || head.starts_with(LEGACY_MAGIC)
}

/// Parses a whole `.zt` file image.
pub fn parse(bytes: &[u8]) -> Result<Catalog, FormatError> {
    let len = bytes.len() as u64;
    if len < 8 {
        return Err(FormatError::truncated(format!(
            "file is {len} bytes, too short to be a .zt file"
        )));
    }
    let (manifest, start) = if bytes.starts_with(MAGIC) {
        if len < 24 {
            return Err(FormatError::truncated(format!(
                "file is {len} bytes, too short for a .zt header and footer"
            )));
        }
        let footer = &bytes[bytes.len() - 16..];
        if &footer[8..] == crate::append::APPEND_MAGIC {
            return Err(FormatError::new(ErrorKind::TornAppend, crate::append::TORN));
        }
        if &footer[8..] != MAGIC {
            return Err(FormatError::truncated(
                "the file does not end with the .zt signature ZTEN1000: it is truncated or damaged",
            ));
        }
        let size = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
        let start = manifest_start(size, len, 24)?;
        (
            manifest::decode(&bytes[start as usize..(start + size) as usize])?,
            start,
        )
    } else if bytes.starts_with(LEGACY_MAGIC) {
        if len < 16 {
            return Err(FormatError::truncated(format!(
                "file is {len} bytes, too short for a legacy .zt file"
            )));
        }
        let size = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().expect("8 bytes"));
        let start = manifest_start(size, len, 16)?;
        (
            legacy::decode(&bytes[start as usize..(start + size) as usize])?,
            start,
        )
    } else {
        return Err("not a .zt file: it does not start with the .zt signature ZTEN1000".into());
    };
    Ok(Catalog {
        version: manifest.version,
        attributes: manifest.attributes,
        ..Catalog::new("zt", manifest.entries, (8, start))
    })
}

fn manifest_start(size: u64, len: u64, overhead: u64) -> Result<u64, FormatError> {
    if size > MAX_MANIFEST {
        return Err(FormatError::limit(format!(
            "manifest size {size} exceeds the 1 GiB limit"
        )));
    }
    if size > len - overhead {
        return Err(FormatError::truncated(format!(
            "manifest size {size} does not fit in a {len}-byte file: the file is truncated or damaged"
        )));
    }
    Ok(len - overhead + 8 - size)
}
