//! What a parser gets besides the file image: where the image came from and
//! the choices made at open. Every parser takes `(bytes, &ParseContext)`.

use std::path::Path;
#[cfg(feature = "hdf5")]
use std::sync::Arc;

use ztensor::DType;

/// Choices made when a file is opened; `OpenOptions::default()` reads every
/// file as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Dequantize GGUF block-quantized tensors to this dtype (`F32` or
    /// `F16`; other dtypes are refused at open). Each tensor whose ggml type
    /// has a kernel (see `gguf::dequant`) then reads as a dense array of
    /// its original shape, decoded at read time (never zero-copy); types
    /// without a kernel stay raw bytes. Other formats hold no quantized
    /// tensors and ignore it. `None` (default): raw bytes.
    pub dequantize: Option<DType>,
    /// Refuse a pickle (`.pt`, `.pth`, `.bin`, `.pkl`) that names a global
    /// the reader does not interpret (`argparse.Namespace`, a user class)
    /// instead of skipping its objects and listing it in
    /// [`ztensor::Reader::skipped_globals`]. Other formats ignore it. Globals
    /// that can run code are refused whatever this says (see `pickle::parse`).
    pub strict: bool,
}

impl OpenOptions {
    /// Sets [`OpenOptions::dequantize`].
    pub fn dequantize(mut self, dtype: Option<DType>) -> Self {
        self.dequantize = dtype;
        self
    }

    /// Sets [`OpenOptions::strict`].
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    pub(crate) fn check(&self) -> ztensor::Result<()> {
        match self.dequantize {
            None | Some(DType::F32 | DType::F16) => Ok(()),
            Some(d) => Err(ztensor::Error::InvalidArgument(format!(
                "dequantize must be float32 or float16, not {d}"
            ))),
        }
    }
}

/// Everything a parser is told besides the bytes. A parser reads the fields
/// that concern its format and ignores the rest.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ParseContext<'a> {
    /// The file the image came from, when it came from a file: formats that
    /// refer to other files (ONNX external data) resolve them next to it,
    /// and HDF5's library reopens it.
    pub path: Option<&'a Path>,
    /// The choices made at open.
    pub options: OpenOptions,
    /// HDF5 only: walk the file with this library instead of the built-in
    /// one (tests use a fake one). The structural checks of the image are
    /// then skipped: they concern the built-in library.
    #[cfg(feature = "hdf5")]
    pub hdf5_backend: Option<Arc<dyn crate::hdf5::Hdf5Backend>>,
}

impl<'a> ParseContext<'a> {
    /// A context for an image read from `path` (if any) with `options`.
    pub fn new(path: Option<&'a Path>, options: &OpenOptions) -> Self {
        ParseContext {
            path,
            options: options.clone(),
            ..ParseContext::default()
        }
    }

    /// Sets [`ParseContext::hdf5_backend`].
    #[cfg(feature = "hdf5")]
    pub fn hdf5_backend(mut self, backend: Arc<dyn crate::hdf5::Hdf5Backend>) -> Self {
        self.hdf5_backend = Some(backend);
        self
    }
}
