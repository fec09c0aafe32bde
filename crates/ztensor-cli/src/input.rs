//! Opening the file a command reads: a local path, or (with the `remote`
//! feature) a `.zt` or `.safetensors` URL (`s3://`, `gs://`, `az://`,
//! `http(s)://`) read by byte ranges, credentials from the environment.

use std::path::Path;

use ztensor::{ReadMode, Reader};
use ztensor_formats::OpenOptions;

/// An open input and its size in bytes (`None` when unknown).
pub(crate) struct Input {
    pub reader: Reader,
    pub size: Option<u64>,
}

/// Opens `path`: a URL remotely, anything else as a local file.
pub(crate) fn open(path: &Path, mode: ReadMode, options: &OpenOptions) -> ztensor::Result<Input> {
    #[cfg(feature = "remote")]
    if let Some(url) = path.to_str().filter(|p| ztensor_remote::is_url(p)) {
        let options = ztensor_remote::RemoteOptions::default();
        let (reader, size) = ztensor_remote::open_sized(url, &options)?;
        return Ok(Input {
            reader,
            size: Some(size),
        });
    }
    let reader = ztensor_formats::open_with_options(path, mode, options)?;
    let size = std::fs::metadata(path).ok().map(|m| m.len());
    Ok(Input { reader, size })
}
