//! Reader for pickle files (to be implemented; see the foreign-formats issue).

use ztensor::Catalog;

/// Parses a whole file image.
pub fn parse(_bytes: &[u8]) -> Result<Catalog, String> {
    Err("reading pickle files is not supported yet".into())
}
