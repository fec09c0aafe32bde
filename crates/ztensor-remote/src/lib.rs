//! # ztensor-remote
//!
//! Opens `.zt` and `.safetensors` files where they live: S3 (and
//! S3-compatible stores), Google Cloud Storage, Azure Blob Storage, and
//! plain HTTP(S) servers, through the [`object_store`] crate. Only the bytes
//! needed are fetched: the footer and manifest of a `.zt` (a suffix range)
//! or the header of a `.safetensors` when opening, then the byte ranges of
//! the tensors read, merged when close and fetched concurrently straight
//! into the buffers handed out.
//!
//! ```no_run
//! let options = ztensor_remote::RemoteOptions::default();
//! let reader = ztensor_remote::open("s3://bucket/model.zt", &options)?;
//! let weights: Vec<f32> = reader.to_vec("layer.weight")?;
//! # Ok::<(), ztensor::Error>(())
//! ```
//!
//! Credentials and endpoints come from each store's usual environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`,
//! ...), overridden by [`RemoteOptions`]. Nothing touches the network, nor
//! starts a thread, before the first [`open`].

#![deny(missing_docs)]

mod open;
mod options;
mod plan;
mod runtime;
mod source;
mod store;

pub use open::{open, open_sized};
pub use options::RemoteOptions;

/// URL schemes [`open`] reads.
pub const SCHEMES: [&str; 8] = ["s3", "s3a", "gs", "az", "abfs", "abfss", "http", "https"];

/// True when `path` is a URL of a scheme [`open`] reads (`s3://`, `gs://`,
/// `az://`, `abfs://`, `http://`, `https://`, ...), rather than a local path.
pub fn is_url(path: &str) -> bool {
    path.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::is_url;

    #[test]
    fn urls_and_paths() {
        for url in [
            "s3://b/k.zt",
            "GS://b/k",
            "az://c/k",
            "abfs://c@a.dfs.core.windows.net/k",
        ] {
            assert!(is_url(url), "{url}");
        }
        for url in ["http://127.0.0.1:8000/a.zt", "https://host/a.safetensors"] {
            assert!(is_url(url), "{url}");
        }
        for path in [
            "model.zt",
            "/tmp/s3://x",
            "file:///tmp/a.zt",
            "ftp://h/a.zt",
            "s3:/x",
        ] {
            assert!(!is_url(path), "{path}");
        }
    }
}
