//! Reader for npz files (to be implemented; see the foreign-formats issue).

use ztensor::Catalog;

/// Parses a whole file image.
pub fn parse(_bytes: &[u8]) -> Result<Catalog, String> {
    Err("reading npz files is not supported yet".into())
}

/// Parses a single `.npy` file image (one tensor, named after nothing: `""`).
pub fn parse_npy(_bytes: &[u8]) -> Result<Catalog, String> {
    Err("reading npy files is not supported yet".into())
}
