//! Publishing a sharded checkpoint so that a crash at any point leaves either
//! the old or the new checkpoint complete on disk.
//!
//! Each shard file is written atomically (the caller uses [`ztensor::Writer`],
//! which renames a finished temporary over its target). The index is written
//! last, atomically, so it never names a shard that is missing or partial.
//! One case needs more: a new shard whose name already exists (saving again
//! with the same number of shards) would replace a shard the old index still
//! names, mixing checkpoints if the save stops there. Then [`ShardedSave`]
//! writes the shards under staging names, publishes an index naming them
//! (the new checkpoint, complete), hard-links each staged file to its final
//! name, publishes the final index and only then removes the staged names.
//! Old shards the new index does not name go last.

use std::io::Write;
use std::path::{Path, PathBuf};

use ztensor::{AtomicFile, Error, Result};

use super::plan::{index_name, is_shard_of, shard_names};
use super::IndexFile;

/// The staging names' suffix: `.model-00001-of-00002.zt.<token>.staged`.
const STAGED_SUFFIX: &str = ".staged";

/// A sharded save in progress: where each shard is to be written, and the
/// commit that publishes them.
#[derive(Debug)]
pub struct ShardedSave {
    dir: PathBuf,
    filename: String,
    /// The names the shards end up with (just `filename` for one shard).
    names: Vec<String>,
    /// Where the caller writes each shard: `names`, or staging names.
    written: Vec<String>,
}

impl ShardedSave {
    /// Prepares saving `shards` shards for `target` (`dir/model.zt`): one
    /// shard is `target` itself, more are `dir/model-0000i-of-0000n.zt`.
    pub fn new(target: &Path, shards: usize) -> Result<ShardedSave> {
        // A folder (or a path ending in '/') is no file name to shard.
        if target.as_os_str().to_string_lossy().ends_with('/') || target.is_dir() {
            return Err(Error::Io {
                path: target.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "a folder, not a file name to save a checkpoint as (like model.zt)",
                ),
            });
        }
        let filename = target
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{}: a sharded save needs a file name in UTF-8 (like model.zt)",
                    target.display()
                ))
            })?
            .to_string();
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let names = if shards <= 1 {
            vec![filename.clone()]
        } else {
            shard_names(&filename, shards)
        };
        let clash = shards > 1 && names.iter().any(|n| dir.join(n).symlink_metadata().is_ok());
        let written = if clash {
            let token = format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            );
            names
                .iter()
                .map(|n| format!(".{n}.{token}{STAGED_SUFFIX}"))
                .collect()
        } else {
            names.clone()
        };
        Ok(ShardedSave {
            dir,
            filename,
            names,
            written,
        })
    }

    /// The final file names of the shards (relative to the target's folder).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Where to write each shard, atomically (a [`ztensor::Writer`]).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.written.iter().map(|n| self.dir.join(n)).collect()
    }

    /// The path of the index file (`dir/model.zt.index.json`).
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(index_name(&self.filename))
    }

    /// Publishes the checkpoint once every shard of [`ShardedSave::paths`]
    /// is written: the index (`index`'s weight map names final names; None
    /// for one shard, which is the target itself) and then the removal of
    /// what the new checkpoint replaced: old shards of the same name pattern,
    /// a single file at the target (sharded now), or an index and its shards
    /// (a single file now). Removal is best effort: a file that cannot be
    /// removed stays, the checkpoint is published regardless.
    pub fn commit(&self, index: Option<&IndexFile>) -> Result<()> {
        let index_path = self.index_path();
        match index {
            None if self.names.len() > 1 => {
                return Err(Error::InvalidArgument(format!(
                    "{}: a checkpoint of {} shards needs its index",
                    index_path.display(),
                    self.names.len()
                )))
            }
            None => remove(&index_path),
            Some(index) => {
                if self.written != self.names {
                    let staged = self.rename_files(index);
                    write_index(&index_path, &staged)?;
                    for (from, to) in self.written.iter().zip(&self.names) {
                        link_over(&self.dir.join(from), &self.dir.join(to))?;
                    }
                }
                write_index(&index_path, index)?;
                remove(&self.dir.join(&self.filename));
            }
        }
        self.remove_stale();
        Ok(())
    }

    /// Removes the shards written so far, after a failed save (they never
    /// replaced anything: fresh names, or staging names).
    pub fn abort(&self) {
        for path in self.paths() {
            if self.names.len() > 1 {
                remove(&path);
            }
        }
    }

    /// `index` with its shard names replaced by the staging names.
    fn rename_files(&self, index: &IndexFile) -> IndexFile {
        let mut staged = index.clone();
        for file in staged.weight_map.values_mut() {
            if let Some(i) = self.names.iter().position(|n| n == file) {
                file.clone_from(&self.written[i]);
            }
        }
        staged
    }

    /// Removes shard files of this target's name pattern (and staging files)
    /// that the new checkpoint does not name.
    fn remove_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if self.names.iter().any(|n| n == name) {
                continue;
            }
            let staged = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(STAGED_SUFFIX))
                .and_then(|n| n.rsplit_once('.'))
                .is_some_and(|(shard, _)| is_shard_of(shard, &self.filename));
            if staged || is_shard_of(name, &self.filename) {
                remove(&entry.path());
            }
        }
    }
}

/// The index of a sharded save: `weight_map` (tensor name -> final shard
/// name), `total_size` (bytes of every tensor) and the user's file metadata
/// given as a JSON object's text, whose keys go beside `total_size` (a key
/// `total_size` of its own is refused: readers take that one as the size).
pub fn index_with_metadata(
    total_size: u64,
    weight_map: std::collections::BTreeMap<String, String>,
    metadata_json: Option<&str>,
) -> Result<IndexFile> {
    let mut index = IndexFile::new(total_size, weight_map);
    if let Some(text) = metadata_json {
        let extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| {
                Error::InvalidArgument(format!("the metadata is not a JSON object: {e}"))
            })?;
        if extra.contains_key(super::TOTAL_SIZE) {
            return Err(Error::InvalidArgument(format!(
                "the metadata key '{}' is reserved in a sharded checkpoint's index \
                 (the byte size of all tensors)",
                super::TOTAL_SIZE
            )));
        }
        index.metadata.extend(extra);
    }
    Ok(index)
}

/// Writes `index` to `path` atomically.
fn write_index(path: &Path, index: &IndexFile) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut out = AtomicFile::create(path).map_err(io)?;
    out.write_all(index.to_json().as_bytes()).map_err(io)?;
    out.commit().map_err(io)
}

/// Makes `to` another name of the file `from`, replacing `to` atomically
/// (a copy where the file system has no hard links).
fn link_over(from: &Path, to: &Path) -> Result<()> {
    let io = |e| Error::Io {
        path: to.to_path_buf(),
        source: e,
    };
    // A staging name too, so a leftover is cleaned up like one.
    let tmp = from.with_file_name(
        from.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .replace(STAGED_SUFFIX, &format!("-link{STAGED_SUFFIX}")),
    );
    remove(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp).map_err(io)?;
    }
    std::fs::rename(&tmp, to).map_err(io)
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn save(target: &Path, shards: usize, content: &str) -> ShardedSave {
        let save = ShardedSave::new(target, shards).unwrap();
        for path in save.paths() {
            std::fs::write(path, content).unwrap();
        }
        let map: BTreeMap<String, String> = save
            .names()
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("t{i}"), n.clone()))
            .collect();
        let index = IndexFile::new(0, map);
        save.commit((shards > 1).then_some(&index)).unwrap();
        save
    }

    #[test]
    fn a_new_checkpoint_replaces_the_old_one_and_its_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("model.zt");
        std::fs::write(dir.path().join("other-00001-of-00002.zt"), "keep").unwrap();
        std::fs::write(dir.path().join("model-00001-of-00002.zt.bak"), "keep").unwrap();
        save(&target, 1, "one");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "one");

        let s = save(&target, 3, "three");
        assert!(s.written.iter().eq(s.names.iter()), "no clash: final names");
        let index = IndexFile::read(&dir.path().join("model.zt.index.json")).unwrap();
        assert_eq!(index.shard_files(), s.names());
        assert_eq!(
            files(dir.path()),
            [
                "model-00001-of-00002.zt.bak",
                "model-00001-of-00003.zt",
                "model-00002-of-00003.zt",
                "model-00003-of-00003.zt",
                "model.zt.index.json",
                "other-00001-of-00002.zt",
            ],
            "the single file is gone"
        );

        // Same count again: names clash, so the save goes through staging.
        let s = save(&target, 3, "again");
        assert!(s.written.iter().all(|n| n.ends_with(".staged")));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("model-00002-of-00003.zt")).unwrap(),
            "again"
        );
        let index = IndexFile::read(&dir.path().join("model.zt.index.json")).unwrap();
        assert_eq!(index.shard_files(), s.names());

        save(&target, 2, "two");
        assert_eq!(
            files(dir.path()),
            [
                "model-00001-of-00002.zt",
                "model-00001-of-00002.zt.bak",
                "model-00002-of-00002.zt",
                "model.zt.index.json",
                "other-00001-of-00002.zt",
            ]
        );
        save(&target, 1, "one");
        assert_eq!(
            files(dir.path()),
            [
                "model-00001-of-00002.zt.bak",
                "model.zt",
                "other-00001-of-00002.zt"
            ]
        );
    }

    #[test]
    fn user_metadata_goes_beside_total_size() {
        let map = BTreeMap::from([("a".to_string(), "m-00001-of-00002.zt".to_string())]);
        let index = index_with_metadata(8, map.clone(), Some(r#"{"k": "v", "n": [1]}"#)).unwrap();
        assert_eq!(index.total_size(), Some(8));
        assert_eq!(index.metadata["k"], "v");
        assert_eq!(index.metadata["n"], serde_json::json!([1]));
        assert_eq!(
            index_with_metadata(8, map.clone(), None)
                .unwrap()
                .metadata
                .len(),
            1
        );
        for (text, why) in [
            (r#"{"total_size": 1}"#, "'total_size' is reserved"),
            ("[1]", "not a JSON object"),
        ] {
            let e = index_with_metadata(8, map.clone(), Some(text)).unwrap_err();
            assert_eq!(e.kind(), ztensor::ErrorKind::InvalidArgument);
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn an_index_is_required_for_several_shards_and_aborts_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = ShardedSave::new(&dir.path().join("m.zt"), 2).unwrap();
        assert_eq!(
            s.commit(None).unwrap_err().kind(),
            ztensor::ErrorKind::InvalidArgument
        );
        std::fs::write(&s.paths()[0], "x").unwrap();
        s.abort();
        assert!(files(dir.path()).is_empty());
        let e = ShardedSave::new(Path::new("no-such-folder/.."), 2).unwrap_err();
        assert!(e.to_string().contains("needs a file name"), "{e}");
        for folder in [dir.path().to_path_buf(), dir.path().join("new/")] {
            let e = ShardedSave::new(&folder, 2).unwrap_err();
            assert!(e.to_string().contains("a folder, not a file name"), "{e}");
        }
    }
}
