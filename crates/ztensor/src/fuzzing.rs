//! Entry points for the fuzz targets (`fuzz/`) and their regression tests.
//! Not a stable API: hidden from the docs and subject to change.

use crate::manifest::{self, Manifest};
use crate::manifest_fast;

/// Decodes `bytes` as a v1 manifest with the general decoder and, when the
/// fast decoder also accepts them, checks that both produced the same
/// manifest. Returns the number of listed tensors, or the general
/// decoder's error.
///
/// # Panics
/// When the two decoders disagree: a file's meaning must not depend on
/// which decoder happened to read it.
pub fn decode_manifest(bytes: &[u8]) -> Result<usize, String> {
    let general = manifest::decode_general(bytes);
    if let Some(fast) = manifest_fast::decode(bytes) {
        let general = match &general {
            Ok(g) => g,
            Err(e) => panic!("the fast decoder accepted a manifest the general one refuses: {e}"),
        };
        assert_eq!(summary(&fast), summary(general), "the decoders disagree");
    }
    general.map(|m| m.entries.len())
}

/// Everything a manifest means, printed (`Debug` keeps NaN == NaN, which
/// `PartialEq` on CBOR floats would not).
fn summary(m: &Manifest) -> String {
    let entries: Vec<_> = m.entries.iter().map(|e| (&e.name, &e.info)).collect();
    format!("{:?} {:?} {:?}", m.version, m.attributes, entries)
}
