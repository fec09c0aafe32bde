//! # ztensor-formats
//!
//! One loader for every common tensor file. Each reader here *projects* a
//! foreign file into ztensor's object model — names, dtypes, shapes and
//! byte ranges of the mapped file (or a [`ztensor::Transform`] where the
//! bytes need decoding) — and hands it to [`ztensor::Reader`], so zero-copy
//! views, copies, digests and the Python front ends are one code path for
//! every format.
//!
//! ```no_run
//! let reader = ztensor_formats::open("model.safetensors")?;
//! println!("{} tensors from a {} file", reader.len(), reader.format());
//! # Ok::<(), ztensor::Error>(())
//! ```

#![deny(missing_docs)]

use std::io::Read;
use std::path::Path;

use ztensor::{Catalog, ReadMode, Reader};

pub use context::{OpenOptions, ParseContext};

mod context;
#[doc(hidden)]
pub mod fuzzing;
pub mod gguf;
pub mod hdf5;
mod npy;
pub mod npz;
pub mod onnx;
pub mod pickle;
pub mod safetensors;
pub mod transforms;
mod zipcheck;

/// A file format this crate recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// zTensor `.zt` (v1 or legacy v0.1).
    Zt,
    /// Hugging Face safetensors.
    Safetensors,
    /// PyTorch `torch.save` checkpoints (zip or legacy pickle).
    Pickle,
    /// NumPy `.npz` archives.
    Npz,
    /// A single NumPy `.npy` array.
    Npy,
    /// GGUF (llama.cpp).
    Gguf,
    /// ONNX models.
    Onnx,
    /// HDF5 files.
    Hdf5,
}

impl Format {
    /// Every format, `.zt` first.
    pub const ALL: [Format; 8] = [
        Format::Zt,
        Format::Safetensors,
        Format::Pickle,
        Format::Npz,
        Format::Npy,
        Format::Gguf,
        Format::Onnx,
        Format::Hdf5,
    ];

    /// The name reported as `Reader.format` (`"zt"`, `"safetensors"`, `"pickle"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Zt => "zt",
            Format::Safetensors => "safetensors",
            Format::Pickle => "pickle",
            Format::Npz => "npz",
            Format::Npy => "npy",
            Format::Gguf => "gguf",
            Format::Onnx => "onnx",
            Format::Hdf5 => "hdf5",
        }
    }

    /// The file extensions (lower case, without the dot) of this format.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Format::Zt => &["zt"],
            Format::Safetensors => &["safetensors"],
            Format::Pickle => &["pt", "pth", "bin", "pkl", "ckpt"],
            Format::Npz => &["npz"],
            Format::Npy => &["npy"],
            Format::Gguf => &["gguf"],
            Format::Onnx => &["onnx"],
            Format::Hdf5 => &["h5", "hdf5"],
        }
    }

    /// Parses a whole file image of this format, with what `cx` says
    /// (formats an option does not concern ignore it).
    pub fn parse(self, bytes: &[u8], cx: &ParseContext) -> Result<Catalog, String> {
        match self {
            Format::Zt => ztensor::Reader::parse_zt(bytes),
            Format::Safetensors => safetensors::parse(bytes, cx),
            Format::Pickle => pickle::parse(bytes, cx),
            Format::Npz => npz::parse(bytes, cx),
            Format::Npy => npz::parse_npy(bytes, cx),
            Format::Gguf => gguf::parse(bytes, cx),
            Format::Onnx => onnx::parse(bytes, cx),
            Format::Hdf5 => hdf5::parse(bytes, cx),
        }
    }
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
    if head.starts_with(hdf5::SIGNATURE) {
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
fn undetected(head: &[u8], path: Option<&Path>) -> String {
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

/// Opens any supported file, memory-mapped.
pub fn open(path: impl AsRef<Path>) -> ztensor::Result<Reader> {
    open_with(path, ReadMode::Mmap)
}

/// Opens any supported file with the given [`ReadMode`].
pub fn open_with(path: impl AsRef<Path>, mode: ReadMode) -> ztensor::Result<Reader> {
    open_with_options(path, mode, &OpenOptions::default())
}

/// Opens any supported file with the given [`ReadMode`] and [`OpenOptions`].
pub fn open_with_options(
    path: impl AsRef<Path>,
    mode: ReadMode,
    options: &OpenOptions,
) -> ztensor::Result<Reader> {
    options.check()?;
    let path = path.as_ref();
    let mut head = [0u8; 16];
    let mut n = 0;
    let format = match std::fs::File::open(path) {
        Ok(mut f) => {
            n = read_head(&mut f, &mut head);
            detect(&head[..n], Some(path))
                .or_else(|| hdf5_after_userblock(&f).then_some(Format::Hdf5))
        }
        Err(_) => None, // the reader reports the I/O error with its path
    };
    let cx = ParseContext::new(Some(path), options);
    Reader::open_with_parser(path, mode, |bytes| match format {
        Some(format) => format.parse(bytes, &cx),
        None => Err(undetected(&head[..n], Some(path))),
    })
}

/// Reads a file image held in memory, detecting its format from its bytes.
pub fn from_bytes(bytes: &[u8]) -> ztensor::Result<Reader> {
    from_bytes_with_options(bytes, &OpenOptions::default())
}

/// [`from_bytes`] with [`OpenOptions`].
pub fn from_bytes_with_options(bytes: &[u8], options: &OpenOptions) -> ztensor::Result<Reader> {
    options.check()?;
    let head = &bytes[..bytes.len().min(16)];
    let format = detect(head, None).or_else(|| hdf5::has_signature(bytes).then_some(Format::Hdf5)); // after a userblock
    let cx = ParseContext::new(None, options);
    Reader::from_bytes_with_parser(bytes, |b| match format {
        Some(format) => format.parse(b, &cx),
        None => Err(undetected(head, None)),
    })
}

/// Whether an HDF5 superblock follows a userblock (at 512, 1024, 2048, ...
/// bytes): such a file is an HDF5 file whatever its name. At most one small
/// read per power of two below the file size.
fn hdf5_after_userblock(f: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    hdf5::superblock_offsets()
        .skip(1) // offset 0 was checked with the first bytes
        .take_while(|&at| at < len)
        .any(|at| {
            let mut sig = [0u8; 8];
            f.read_exact_at(&mut sig, at).is_ok() && &sig == hdf5::SIGNATURE
        })
}

fn read_head(f: &mut std::fs::File, head: &mut [u8]) -> usize {
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
