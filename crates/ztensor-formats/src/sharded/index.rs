//! The index of a sharded checkpoint: the Hugging Face convention
//! (`model.safetensors.index.json`, `pytorch_model.bin.index.json`, ours
//! `model.zt.index.json`), a JSON object
//!
//! ```json
//! {
//!   "metadata": {"total_size": 1234},
//!   "weight_map": {"layer.weight": "model-00001-of-00002.safetensors"}
//! }
//! ```
//!
//! [`IndexFile`] reads and writes it; [`locate`] finds the index of a path
//! given as the index itself or as the directory holding it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use ztensor::{Error, ErrorKind, FormatError, Result};

/// How every index file name ends (`model.safetensors.index.json`).
pub const INDEX_SUFFIX: &str = ".index.json";

/// The key of [`IndexFile::metadata`] holding the tensors' total byte size.
pub const TOTAL_SIZE: &str = "total_size";

/// A sharded checkpoint's index: which shard file holds each tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Free-form metadata; writers put `total_size` (bytes of every tensor,
    /// an integer) here, and may add more keys (the user's file metadata).
    /// Absent in some indexes in the wild: read as empty.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Tensor name -> shard file name, relative to the index's directory.
    #[serde(deserialize_with = "unique_names")]
    pub weight_map: BTreeMap<String, String>,
}

impl IndexFile {
    /// An index of `weight_map` whose metadata holds `total_size` alone.
    pub fn new(total_size: u64, weight_map: BTreeMap<String, String>) -> IndexFile {
        let mut metadata = Map::new();
        metadata.insert(TOTAL_SIZE.to_string(), Value::from(total_size));
        IndexFile {
            metadata,
            weight_map,
        }
    }

    /// `metadata["total_size"]` when it is a non-negative integer.
    pub fn total_size(&self) -> Option<u64> {
        self.metadata.get(TOTAL_SIZE).and_then(Value::as_u64)
    }

    /// The distinct shard file names, sorted.
    pub fn shard_files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self.weight_map.values().map(String::as_str).collect();
        files.sort_unstable();
        files.dedup();
        files
    }

    /// Parses the bytes of the index file at `path` (named in errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<IndexFile> {
        let bad = |e: String| {
            Error::format(
                path,
                FormatError::corrupt(format!("not a valid sharded checkpoint index: {e}")),
            )
        };
        // An object only: serde would also take a struct as a JSON array.
        // (Parsed straight from the bytes, not through a `Value`, whose map
        // would drop a name listed twice before `unique_names` sees it.)
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(bad("expected a JSON object, not an array".to_string()));
        }
        serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))
    }

    /// Reads and parses the index file at `path`.
    pub fn read(path: &Path) -> Result<IndexFile> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        IndexFile::parse(&bytes, path)
    }

    /// The index as pretty JSON (two-space indent, keys sorted, a final
    /// newline), the layout `transformers`' `save_pretrained` writes and
    /// `huggingface_hub`'s `save_torch_state_dict` writes up to key order.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .expect("a map of strings and JSON values always serializes");
        s.push('\n');
        s
    }
}

/// Deserializes `weight_map`, refusing a name listed twice (JSON allows
/// it; a map would silently keep the last shard).
fn unique_names<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object mapping tensor names to shard file names")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((name, file)) = map.next_entry::<String, String>()? {
                if let Some(first) = out.insert(name.clone(), file) {
                    return Err(serde::de::Error::custom(format!(
                        "tensor '{name}' is listed twice in weight_map (first in '{first}')"
                    )));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(Names)
}

/// Whether `path`'s file name is an index file's (`*.index.json`).
pub fn is_index_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() > INDEX_SUFFIX.len() && n.ends_with(INDEX_SUFFIX))
}

/// The index a path designates: the path itself when it is a file, else the
/// one `*.index.json` file of the directory. A directory with none is an
/// I/O "is a directory" error (as opening it as a file is); one with
/// several is an error listing them.
pub fn locate(path: &Path) -> Result<PathBuf> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if !std::fs::metadata(path).map_err(io)?.is_dir() {
        return Ok(path.to_path_buf());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if is_index_name(&p) && !p.is_dir() {
            found.push(p);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.pop().expect("one element")),
        0 => Err(io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            format!("is a directory without a sharded checkpoint index (*{INDEX_SUFFIX})"),
        ))),
        _ => {
            let names: Vec<String> = found
                .iter()
                .map(|p| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            Err(Error::format(
                path,
                FormatError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the directory holds {} checkpoint indexes ({}); open one of them",
                        names.len(),
                        names.join(", ")
                    ),
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_the_hugging_face_layout() {
        let text = br#"{"metadata": {"total_size": 24, "format": "pt"},
            "weight_map": {"b": "m-00002-of-00002.safetensors", "a": "m-00001-of-00002.safetensors"}}"#;
        let index = IndexFile::parse(text, Path::new("m.index.json")).unwrap();
        assert_eq!(index.total_size(), Some(24));
        assert_eq!(
            index.shard_files(),
            [
                "m-00001-of-00002.safetensors",
                "m-00002-of-00002.safetensors"
            ]
        );
        let json = index.to_json();
        assert_eq!(
            json,
            "{\n  \"metadata\": {\n    \"format\": \"pt\",\n    \"total_size\": 24\n  },\n  \
             \"weight_map\": {\n    \"a\": \"m-00001-of-00002.safetensors\",\n    \
             \"b\": \"m-00002-of-00002.safetensors\"\n  }\n}\n"
        );
        assert_eq!(
            IndexFile::parse(json.as_bytes(), Path::new("x")).unwrap(),
            index
        );
        let made = IndexFile::new(24, index.weight_map.clone());
        assert_eq!(made.total_size(), Some(24));
    }

    #[test]
    fn missing_metadata_reads_as_empty() {
        let index = IndexFile::parse(br#"{"weight_map": {}}"#, Path::new("x")).unwrap();
        assert!(index.metadata.is_empty());
        assert_eq!(index.total_size(), None);
    }

    #[test]
    fn malformed_indexes_are_refused_naming_the_file() {
        for (text, expect) in [
            (&b"{"[..], "EOF"),
            (br#"{"metadata": {}}"#, "missing field `weight_map`"),
            (br#"{"weight_map": {"a": 1}}"#, "invalid type"),
            (br#"{"weight_map": []}"#, "invalid type"),
            (br#"[{}, {"a": "x"}]"#, "expected a JSON object"),
            (
                br#"{"weight_map": {"a": "x", "a": "y"}}"#,
                "tensor 'a' is listed twice in weight_map (first in 'x')",
            ),
        ] {
            let e = IndexFile::parse(text, Path::new("dir/m.index.json")).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.kind(), ErrorKind::Corrupt);
            assert!(msg.starts_with("dir/m.index.json: "), "{msg}");
            assert!(msg.contains(expect), "{msg}");
        }
    }

    #[test]
    fn locate_finds_the_one_index_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let e = locate(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(
            e.to_string().contains("without a sharded checkpoint index"),
            "{e}"
        );
        let a = dir.path().join("model.safetensors.index.json");
        std::fs::write(&a, "{}").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), "").unwrap();
        assert_eq!(locate(dir.path()).unwrap(), a);
        assert_eq!(locate(&a).unwrap(), a);
        std::fs::write(dir.path().join("pytorch_model.bin.index.json"), "{}").unwrap();
        let e = locate(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(
                "2 checkpoint indexes (model.safetensors.index.json, pytorch_model.bin.index.json)"
            ),
            "{e}"
        );
        assert!(is_index_name(Path::new("a/model.zt.index.json")));
        assert!(!is_index_name(Path::new(".index.json")));
        assert!(!is_index_name(Path::new("model.zt")));
    }
}
