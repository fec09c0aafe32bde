//! The one table of formats. Everything that lists formats — [`Format::ALL`],
//! names, extensions ([`crate::detect`] and the undetected-file message),
//! the Cargo feature each needs, the parser dispatch, the CLI's list of
//! formats it reads but does not write, and the fuzz targets
//! ([`crate::fuzzing::targets`]) — is derived from [`TABLE`], so adding a
//! row is how a format is added (see [`ztensor::seam`] for the rest).

use ztensor::seam::Catalog;
use ztensor::FormatError;

use crate::ParseContext;

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

/// What every parser is: a whole file image plus its context, to a catalog.
pub type Parser = fn(&[u8], &ParseContext) -> Result<Catalog, FormatError>;

/// A row's parser: `$parse`, or without its Cargo feature one that says
/// which feature is missing.
macro_rules! parser {
    ($feature:literal, $parse:path) => {{
        #[cfg(feature = $feature)]
        let parse: Parser = $parse;
        #[cfg(not(feature = $feature))]
        let parse: Parser = |_, _| {
            Err(FormatError::unsupported(concat!(
                "this build of ztensor-formats was compiled without the `",
                $feature,
                "` feature"
            )))
        };
        parse
    }};
}

/// One row of [`TABLE`]: everything that must agree about a format.
#[derive(Debug, Clone, Copy)]
pub struct FormatInfo {
    /// The format.
    pub format: Format,
    /// The name reported as `Reader.format`; also its fuzz target's name.
    pub name: &'static str,
    /// File extensions, lower case, without the dot.
    pub extensions: &'static [&'static str],
    /// The Cargo feature of this crate that compiles its reader (`None`:
    /// always compiled).
    pub feature: Option<&'static str>,
    /// Whether `zt convert` writes it (else an output with one of its
    /// extensions is refused).
    pub writable: bool,
    /// Its parser; without its feature, one that says so.
    pub parse: Parser,
}

/// Every format, `.zt` first, in the order of [`Format`]'s variants.
pub const TABLE: [FormatInfo; 8] = [
    FormatInfo {
        format: Format::Zt,
        name: "zt",
        extensions: &["zt"],
        feature: None,
        writable: true,
        parse: |bytes, _| ztensor::Reader::parse_zt(bytes),
    },
    FormatInfo {
        format: Format::Safetensors,
        name: "safetensors",
        extensions: &["safetensors"],
        feature: None,
        writable: true,
        parse: crate::safetensors::parse,
    },
    FormatInfo {
        format: Format::Pickle,
        name: "pickle",
        extensions: &["pt", "pth", "bin", "pkl", "ckpt"],
        feature: Some("pickle"),
        writable: false,
        parse: parser!("pickle", crate::pickle::parse),
    },
    FormatInfo {
        format: Format::Npz,
        name: "npz",
        extensions: &["npz"],
        feature: Some("npz"),
        writable: false,
        parse: parser!("npz", crate::npz::parse),
    },
    FormatInfo {
        format: Format::Npy,
        name: "npy",
        extensions: &["npy"],
        feature: Some("npz"),
        writable: false,
        parse: parser!("npz", crate::npy::parse),
    },
    FormatInfo {
        format: Format::Gguf,
        name: "gguf",
        extensions: &["gguf"],
        feature: Some("gguf"),
        writable: false,
        parse: parser!("gguf", crate::gguf::parse),
    },
    FormatInfo {
        format: Format::Onnx,
        name: "onnx",
        extensions: &["onnx"],
        feature: Some("onnx"),
        writable: false,
        parse: parser!("onnx", crate::onnx::parse),
    },
    FormatInfo {
        format: Format::Hdf5,
        name: "hdf5",
        extensions: &["h5", "hdf5"],
        feature: Some("hdf5"),
        writable: false,
        parse: parser!("hdf5", crate::hdf5::parse),
    },
];

impl Format {
    /// Every format, `.zt` first (the order of [`TABLE`]).
    pub const ALL: [Format; TABLE.len()] = {
        let mut all = [Format::Zt; TABLE.len()];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].format;
            i += 1;
        }
        all
    };

    /// This format's row of [`TABLE`].
    pub fn info(self) -> &'static FormatInfo {
        &TABLE[self as usize]
    }

    /// The name reported as `Reader.format` (`"zt"`, `"safetensors"`, `"pickle"`, ...).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The file extensions (lower case, without the dot) of this format.
    pub fn extensions(self) -> &'static [&'static str] {
        self.info().extensions
    }

    /// Whether this build reads the format (its Cargo feature, if any, is on).
    pub fn is_enabled(self) -> bool {
        self.info().feature.is_none_or(feature_enabled)
    }

    /// Parses a whole file image of this format, with what `cx` says
    /// (formats an option does not concern ignore it).
    pub fn parse(self, bytes: &[u8], cx: &ParseContext) -> Result<Catalog, FormatError> {
        (self.info().parse)(bytes, cx)
    }
}

/// Extensions of the formats `zt convert` reads but does not write.
pub fn read_only_extensions() -> impl Iterator<Item = &'static str> {
    TABLE
        .iter()
        .filter(|f| !f.writable)
        .flat_map(|f| f.extensions.iter().copied())
}

/// Whether the named Cargo feature of this crate is on.
#[allow(clippy::match_like_matches_macro)] // in a full build every arm is `true`
fn feature_enabled(feature: &str) -> bool {
    match feature {
        "hdf5" => cfg!(feature = "hdf5"),
        "onnx" => cfg!(feature = "onnx"),
        "pickle" => cfg!(feature = "pickle"),
        "gguf" => cfg!(feature = "gguf"),
        "npz" => cfg!(feature = "npz"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_variants() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.format as usize, i, "{}", row.name);
            assert_eq!(Format::ALL[i], row.format);
        }
    }

    #[test]
    fn names_and_extensions_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for row in &TABLE {
            assert!(seen.insert(row.name), "{}", row.name);
        }
        let mut seen = std::collections::HashSet::new();
        for ext in TABLE.iter().flat_map(|f| f.extensions) {
            assert!(seen.insert(*ext), "extension {ext} in two rows");
            assert_eq!(*ext, ext.to_ascii_lowercase());
        }
    }

    #[test]
    fn every_feature_of_the_table_is_a_cargo_feature() {
        let manifest = include_str!("../Cargo.toml");
        let features = manifest
            .split("[features]")
            .nth(1)
            .expect("a [features] section");
        let default = features
            .lines()
            .find(|l| l.starts_with("default"))
            .expect("default features");
        for feature in TABLE.iter().filter_map(|f| f.feature) {
            assert!(
                features
                    .lines()
                    .any(|l| l.starts_with(&format!("{feature} ="))),
                "feature {feature} is not declared"
            );
            assert!(
                default.contains(&format!("\"{feature}\"")),
                "{feature} is not default"
            );
        }
    }

    #[test]
    #[cfg(all(
        feature = "hdf5",
        feature = "onnx",
        feature = "pickle",
        feature = "gguf",
        feature = "npz"
    ))]
    fn the_default_build_reads_every_format() {
        assert!(Format::ALL.iter().all(|f| f.is_enabled()));
    }

    #[test]
    fn a_disabled_format_says_which_feature_is_missing() {
        for row in TABLE.iter().filter(|f| !f.format.is_enabled()) {
            let e = row.format.parse(b"", &ParseContext::default()).unwrap_err();
            assert!(
                e.message()
                    .contains(&format!("`{}` feature", row.feature.unwrap())),
                "{e}"
            );
        }
    }
}
