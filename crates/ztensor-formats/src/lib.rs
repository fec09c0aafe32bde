//! # ztensor-formats
//!
//! One loader for every common tensor file. Each reader here *projects* a
//! foreign file into ztensor's object model — names, dtypes, shapes and
//! byte ranges of the mapped file (or a [`ztensor::Transform`] where the
//! bytes need decoding) — and hands it to [`ztensor::Reader`], so zero-copy
//! views, copies, digests and the Python front ends are one code path for
//! every format.
//!
//! Each foreign format is a row of [`TABLE`] and a Cargo feature of the
//! same name (`hdf5`, `onnx`, `pickle`, `gguf`, `npz`; all on by default);
//! `ztensor::seam` lists every place a new format touches.
//!
//! ```no_run
//! let reader = ztensor_formats::open("model.safetensors")?;
//! println!("{} tensors from a {} file", reader.len(), reader.format());
//! # Ok::<(), ztensor::Error>(())
//! ```

#![deny(missing_docs)]

use std::path::Path;

use ztensor::{FormatError, ReadMode, Reader};

pub use context::{OpenOptions, ParseContext};
pub use detect::detect;
use detect::{hdf5_after_userblock, read_head, undetected};
pub use panic::panic_message;
pub use table::{read_only_extensions, Format, FormatInfo, Parser, TABLE};

mod context;
mod detect;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "gguf")]
pub mod gguf;
#[cfg(feature = "hdf5")]
pub mod hdf5;
#[cfg(feature = "npz")]
pub mod npy;
#[cfg(feature = "npz")]
pub mod npz;
#[cfg(feature = "onnx")]
pub mod onnx;
mod panic;
#[cfg(feature = "pickle")]
pub mod pickle;
pub mod safetensors;
pub mod sharded;
mod table;
pub mod transforms;
#[cfg(any(feature = "npz", feature = "pickle"))]
mod zipcheck;

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
        None => Err(FormatError::unsupported(undetected(&head[..n], Some(path)))),
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
    let format =
        detect(head, None).or_else(|| detect::hdf5_signature_offset(bytes).map(|_| Format::Hdf5)); // after a userblock
    let cx = ParseContext::new(None, options);
    Reader::from_bytes_with_parser(bytes, |b| match format {
        Some(format) => format.parse(b, &cx),
        None => Err(FormatError::unsupported(undetected(head, None))),
    })
}
