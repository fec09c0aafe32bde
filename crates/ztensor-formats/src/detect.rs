//! Which format a file is: its first bytes first, then its extension (the
//! extensions come from [`crate::TABLE`]). Detection needs no reader, so a
//! build without a format's feature still names the format it cannot read.

use std::io::Read;
use std::path::Path;

use crate::Format;

/// The 8 bytes an HDF5 superblock starts with.
pub const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Where HDF5 looks for the superblock: offset 0, then after a userblock of
/// 512, 1024, 2048, ... bytes.
pub fn hdf5_superblock_offsets() -> impl Iterator<Item = u64> {
    std::iter::once(0).chain((9..63).map(|k| 1u64 << k))
}

/// Where the HDF5 superblock signature of an image lies, if anywhere HDF5 looks.
pub fn hdf5_signature_offset(bytes: &[u8]) -> Option<usize> {
    hdf5_superblock_offsets()
        .map_while(|at| usize::try_from(at).ok())
        .take_while(|&at| at < bytes.len())
        .find(|&at| bytes[at..].starts_with(HDF5_SIGNATURE))
}

/// Detects a file's format from its first bytes, then from its extension
/// (case-insensitive) when the bytes are not conclusive.
pub fn detect(head: &[u8], path: Option<&Path>) -> Option<Format> {
    if ztensor::is_zt(head) {
        return Some(Format::Zt);
    }
    if head.starts_with(b"GGUF") {
        return Some(Format::Gguf);
    }
    if head.starts_with(HDF5_SIGNATURE) {
        return Some(Format::Hdf5);
    }
    if head.starts_with(b"\x93NUMPY") {
        return Some(Format::Npy);
    }
    if looks_like_safetensors(head) {
        return Some(Format::Safetensors);
    }
    let ext = path
        .and_then(|p| p.extension())
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        // Both .npz and torch's zip checkpoints are zip archives.
        return Some(match ext.as_deref() {
            Some("npz") => Format::Npz,
            _ => Format::Pickle,
        });
    }
    if head.first() == Some(&0x80) {
        return Some(Format::Pickle); // a pickle protocol >= 2 header: legacy torch.save
    }
    let ext = ext?;
    Format::ALL
        .into_iter()
        .find(|f| f.extensions().contains(&ext.as_str()))
}

/// Why a file's format could not be detected, in words (the parse error of
/// an undetected file).
pub(crate) fn undetected(head: &[u8], path: Option<&Path>) -> String {
    if head.is_empty() {
        return "cannot detect the format of an empty file".into();
    }
    let Some(path) = path else {
        return "cannot detect the format: its first bytes are not those of a supported format"
            .into();
    };
    let ext = match path.extension() {
        Some(e) => format!(".{}", e.to_string_lossy()),
        None => "none".into(),
    };
    let known: Vec<String> = Format::ALL
        .iter()
        .map(|f| format!(".{}", f.extensions().join("/.")))
        .collect();
    format!(
        "cannot detect the format: its first bytes and its extension ({ext}) match no \
         supported format ({})",
        known.join(", ")
    )
}

/// A safetensors file starts with a u64 header size and then `{`.
fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{' && {
        let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        (2..(100 << 20)).contains(&n)
    }
}

/// Whether an HDF5 superblock follows a userblock (at 512, 1024, 2048, ...
/// bytes): such a file is an HDF5 file whatever its name. At most one small
/// read per power of two below the file size.
pub(crate) fn hdf5_after_userblock(f: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    hdf5_superblock_offsets()
        .skip(1) // offset 0 was checked with the first bytes
        .take_while(|&at| at < len)
        .any(|at| {
            let mut sig = [0u8; 8];
            f.read_exact_at(&mut sig, at).is_ok() && &sig == HDF5_SIGNATURE
        })
}

pub(crate) fn read_head(f: &mut std::fs::File, head: &mut [u8]) -> usize {
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_prefers_bytes_over_extensions() {
        let p = |s: &str| Some(Path::new(s).to_path_buf());
        assert_eq!(detect(b"ZTEN1000", p("x.bin").as_deref()), Some(Format::Zt));
        assert_eq!(
            detect(b"PK\x03\x04", p("x.NPZ").as_deref()),
            Some(Format::Npz)
        );
        assert_eq!(
            detect(b"PK\x03\x04", p("x.pt").as_deref()),
            Some(Format::Pickle)
        );
        let st = [&8u64.to_le_bytes()[..], b"{\"a\":{}}"].concat();
        assert_eq!(
            detect(&st, p("weights.bin").as_deref()),
            Some(Format::Safetensors)
        );
        assert_eq!(detect(b"GGUF\x03\0\0\0", None), Some(Format::Gguf));
        assert_eq!(detect(b"\x89HDF\r\n\x1a\n", None), Some(Format::Hdf5));
        assert_eq!(
            detect(b"\x08\x07\x12\x00", p("model.ONNX").as_deref()),
            Some(Format::Onnx)
        );
        assert_eq!(
            detect(b"", p("a.SafeTensors").as_deref()),
            Some(Format::Safetensors)
        );
        assert_eq!(detect(b"hello", p("a.txt").as_deref()), None);
    }
}
