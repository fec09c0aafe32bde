//! [`ShardedReader`]: the tensors of every shard of a checkpoint as one set
//! of names. Names come from the index, so listing them opens no shard; a
//! shard is opened (with [`crate::open_with_options`], so in any format we
//! read) the first time one of its tensors is touched, and a read that
//! needs several shards opens and reads them in parallel.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use ztensor::{Error, FormatError, ReadMode, Reader, Result, TensorBytes, Value};

use super::index::{locate, IndexFile};
use crate::OpenOptions;

/// One shard file: its name in the index and, once opened, its reader.
struct Shard {
    file: String,
    reader: OnceLock<Arc<Reader>>,
}

/// A sharded checkpoint opened through its index (see the module docs).
///
/// Consistency rules, checked when a shard is opened or a tensor touched:
/// every name the index maps to a shard must be in it (else an error naming
/// the tensor and the shard); a shard holding a name the index maps to
/// another shard fails to open (two shards holding one name); names a shard
/// holds that the index does not list are not part of the checkpoint and
/// are ignored. Shard paths must stay inside the index's directory: `..`,
/// absolute paths, and files (symlinks) resolving outside it are refused,
/// except links into the `blobs/` folder of a Hugging Face hub cache when
/// the index lies in its `snapshots/<revision>/`.
pub struct ShardedReader {
    index_path: PathBuf,
    index: IndexFile,
    attributes: Value,
    /// Where shard files may resolve to (canonical paths).
    roots: Vec<PathBuf>,
    shards: Vec<Shard>,
    /// Tensor name -> position in `shards`.
    shard_of: HashMap<String, usize>,
    mode: ReadMode,
    options: OpenOptions,
}

impl std::fmt::Debug for ShardedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedReader")
            .field("index_path", &self.index_path)
            .field("shards", &self.index.shard_files())
            .finish_non_exhaustive()
    }
}

impl ShardedReader {
    /// Opens the index `path` designates (the index file, or the directory
    /// holding exactly one, see [`locate`]); no shard is opened yet. `mode`
    /// and `options` apply to every shard.
    pub fn open(path: impl AsRef<Path>, mode: ReadMode, options: &OpenOptions) -> Result<Self> {
        options.check()?;
        let index_path = locate(path.as_ref())?;
        let index = IndexFile::read(&index_path)?;
        let dir = match index_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let roots = allowed_roots(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let files = index.shard_files();
        for file in &files {
            if !is_plain_relative(file) {
                let name = index
                    .weight_map
                    .iter()
                    .find(|(_, f)| f == file)
                    .map(|(n, _)| n);
                return Err(Error::format(
                    &index_path,
                    format!(
                        "shard path '{file}' (of tensor '{}') leaves the index's directory; \
                         shards must be named relative to it, without '..'",
                        name.map_or("", String::as_str)
                    ),
                ));
            }
        }
        let position: HashMap<&str, usize> =
            files.iter().enumerate().map(|(i, f)| (*f, i)).collect();
        let shard_of = index
            .weight_map
            .iter()
            .map(|(name, file)| (name.clone(), position[file.as_str()]))
            .collect();
        let shards = files
            .iter()
            .map(|f| Shard {
                file: f.to_string(),
                reader: OnceLock::new(),
            })
            .collect();
        let attributes = Value::serialized(&index.metadata)
            .map_err(|e| Error::format(&index_path, format!("metadata: {e}")))?;
        Ok(ShardedReader {
            index_path,
            index,
            attributes,
            roots,
            shards,
            shard_of,
            mode,
            options: options.clone(),
        })
    }

    /// The index file's path.
    pub fn path(&self) -> &Path {
        &self.index_path
    }

    /// The parsed index.
    pub fn index(&self) -> &IndexFile {
        &self.index
    }

    /// The index's `metadata` (with `total_size`), as a CBOR map.
    pub fn attributes(&self) -> &Value {
        &self.attributes
    }

    /// Number of tensors the index lists.
    pub fn len(&self) -> usize {
        self.index.weight_map.len()
    }

    /// True when the index lists no tensor.
    pub fn is_empty(&self) -> bool {
        self.index.weight_map.is_empty()
    }

    /// True when the index lists `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.shard_of.contains_key(name)
    }

    /// Tensor names, byte-wise sorted (from the index: opens no shard).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.weight_map.keys().map(String::as_str)
    }

    /// The distinct shard file names, sorted (the order shards are read in).
    pub fn shard_files(&self) -> impl Iterator<Item = &str> {
        self.shards.iter().map(|s| s.file.as_str())
    }

    /// The path of a shard file named in the index.
    pub fn shard_path(&self, file: &str) -> PathBuf {
        self.index_path.with_file_name(file)
    }

    /// The readers of the shards opened so far.
    pub fn opened(&self) -> impl Iterator<Item = &Arc<Reader>> {
        self.shards.iter().filter_map(|s| s.reader.get())
    }

    /// The shard holding `name`, opened if it was not yet, and checked to
    /// hold it.
    pub fn reader_for(&self, name: &str) -> Result<Arc<Reader>> {
        let &i = self.shard_of.get(name).ok_or_else(|| Error::NotFound {
            path: self.index_path.clone(),
            name: name.to_string(),
        })?;
        let reader = self.shard(i)?;
        if !reader.contains(name) {
            return Err(self.not_in_shard(&reader, name));
        }
        Ok(reader)
    }

    /// Every shard, opened in parallel (the first error wins).
    pub fn open_all(&self) -> Result<Vec<Arc<Reader>>> {
        let all: Vec<usize> = (0..self.shards.len()).collect();
        self.open_shards(&all)
    }

    /// Names in reading order: shard by shard (in [`Self::shard_files`]
    /// order), each in its file order. Opens every shard.
    pub fn names_in_file_order(&self) -> Result<Vec<String>> {
        let readers = self.open_all()?;
        let mut out = Vec::with_capacity(self.len());
        for (i, r) in readers.iter().enumerate() {
            out.extend(
                r.names_in_file_order()
                    .filter(|n| self.shard_of.get(*n) == Some(&i))
                    .map(str::to_string),
            );
        }
        if out.len() != self.len() {
            // Some listed name is missing from its shard: name it.
            if let Some(n) = self
                .names()
                .find(|n| !readers[self.shard_of[*n]].contains(n))
            {
                return Err(self.not_in_shard(&readers[self.shard_of[n]], n));
            }
        }
        Ok(out)
    }

    /// [`Reader::read_many_isolated`] over the shards: results in the order
    /// of `names`, the shards needed opened and read in parallel.
    pub fn read_many_isolated(&self, names: &[&str], copy: bool) -> Vec<Result<TensorBytes>> {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.shards.len()];
        let mut results: Vec<Option<Result<TensorBytes>>> = Vec::with_capacity(names.len());
        for (k, name) in names.iter().enumerate() {
            match self.shard_of.get(*name) {
                Some(&i) => {
                    groups[i].push(k);
                    results.push(None);
                }
                None => results.push(Some(Err(Error::NotFound {
                    path: self.index_path.clone(),
                    name: name.to_string(),
                }))),
            }
        }
        let read: Vec<(usize, Result<TensorBytes>)> = ztensor::parallel::install(|| {
            groups
                .par_iter()
                .enumerate()
                .filter(|(_, g)| !g.is_empty())
                .flat_map_iter(|(i, g)| self.read_group(i, g, names, copy))
                .collect()
        });
        for (k, r) in read {
            results[k] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.expect("every position is filled"))
            .collect()
    }

    /// Reads the tensors `names[k]` (`k` in `group`) of shard `i`.
    fn read_group(
        &self,
        i: usize,
        group: &[usize],
        names: &[&str],
        copy: bool,
    ) -> Vec<(usize, Result<TensorBytes>)> {
        let reader = match self.shard(i) {
            Ok(r) => r,
            Err(e) => {
                // The first name gets the error itself (an I/O error stays
                // one); the others point at it.
                let path = self.shard_path(&self.shards[i].file);
                let (first, rest) = group.split_first().expect("groups are not empty");
                let mut out: Vec<_> = rest
                    .iter()
                    .map(|&k| {
                        let m = format!("its shard cannot be opened: {e}");
                        (
                            k,
                            Err(Error::tensor(
                                &path,
                                names[k],
                                FormatError::new(e.kind(), m),
                            )),
                        )
                    })
                    .collect();
                out.insert(0, (*first, Err(e)));
                return out;
            }
        };
        let (held, missing): (Vec<usize>, Vec<usize>) =
            group.iter().partition(|&&k| reader.contains(names[k]));
        let refs: Vec<&str> = held.iter().map(|&k| names[k]).collect();
        let mut out: Vec<_> = held
            .into_iter()
            .zip(reader.read_many_isolated(&refs, copy))
            .collect();
        out.extend(
            missing
                .into_iter()
                .map(|k| (k, Err(self.not_in_shard(&reader, names[k])))),
        );
        out
    }

    /// The error for a name the index maps to a shard that lacks it.
    fn not_in_shard(&self, shard: &Reader, name: &str) -> Error {
        Error::tensor(
            shard.path(),
            name,
            format!(
                "the index {} maps this tensor to this shard, which does not hold it",
                self.index_path.display()
            ),
        )
    }

    /// Checks the index against its shards, without reading tensor data:
    /// every shard opens (it exists, stays inside the directory, parses,
    /// holds no name the index maps elsewhere) and holds the names the index
    /// maps to it. The problems found, shard by shard.
    pub fn check_shards(&self) -> Vec<Error> {
        self.each_shard(|_| Vec::new())
    }

    /// [`Self::check_shards`], then [`Reader::verify`] of every shard that
    /// opens; the problems found.
    pub fn verify(&self) -> Vec<Error> {
        self.each_shard(Reader::verify)
    }

    /// For each shard in parallel: its problems with the index, then what
    /// `f` finds in it once open.
    fn each_shard(&self, f: impl Fn(&Reader) -> Vec<Error> + Sync) -> Vec<Error> {
        ztensor::parallel::install(|| {
            (0..self.shards.len())
                .into_par_iter()
                .flat_map_iter(|i| match self.shard(i) {
                    Err(e) => vec![e],
                    Ok(r) => {
                        let mut problems: Vec<Error> = self
                            .names()
                            .filter(|n| self.shard_of[*n] == i && !r.contains(n))
                            .map(|n| self.not_in_shard(&r, n))
                            .collect();
                        problems.extend(f(&r));
                        problems
                    }
                })
                .collect()
        })
    }

    /// The shards at positions `which`, opened in parallel.
    fn open_shards(&self, which: &[usize]) -> Result<Vec<Arc<Reader>>> {
        ztensor::parallel::install(|| which.par_iter().map(|&i| self.shard(i)).collect())
    }

    /// Shard `i`, opened and checked on first use. A failed open is not
    /// remembered: the next touch tries again (and fails the same way).
    fn shard(&self, i: usize) -> Result<Arc<Reader>> {
        let shard = &self.shards[i];
        if let Some(r) = shard.reader.get() {
            return Ok(r.clone());
        }
        let path = self.shard_path(&shard.file);
        self.check_inside(&path)?;
        let reader = crate::open_with_options(&path, self.mode, &self.options)?;
        // Two shards holding one name: the index says where it lives, so a
        // copy in this shard is a conflict.
        if let Some((name, other)) = reader
            .names()
            .filter_map(|n| self.shard_of.get(n).map(|&j| (n, j)))
            .find(|&(_, j)| j != i)
        {
            return Err(Error::tensor(
                &path,
                name,
                format!(
                    "also held by shard '{}', where the index {} maps it: two shards hold this name",
                    self.shards[other].file,
                    self.index_path.display()
                ),
            ));
        }
        Ok(shard.reader.get_or_init(|| Arc::new(reader)).clone())
    }

    /// Refuses a shard file that resolves (through symlinks) outside the
    /// allowed roots; a missing file is the I/O error naming it.
    fn check_inside(&self, path: &Path) -> Result<()> {
        let real = std::fs::canonicalize(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if self.roots.iter().any(|root| real.starts_with(root)) {
            return Ok(());
        }
        Err(Error::format(
            path,
            FormatError::corrupt(format!(
                "resolves to {}, outside the directory of the index {}; refused",
                real.display(),
                self.index_path.display()
            )),
        ))
    }
}

/// A relative path of plain names only (no `..`, no root, not empty).
fn is_plain_relative(file: &str) -> bool {
    let path = Path::new(file);
    !file.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)))
}

/// The canonical directories shard files may resolve into: the index's
/// directory, and for a Hugging Face hub cache snapshot
/// (`models--org--name/snapshots/<revision>/`) the repository's `blobs/`,
/// where the snapshot's symlinks point.
fn allowed_roots(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let canonical = std::fs::canonicalize(dir)?;
    let mut roots = vec![canonical.clone()];
    let snapshots = canonical.parent();
    if snapshots
        .and_then(Path::file_name)
        .is_some_and(|n| n == "snapshots")
    {
        if let Some(blobs) = snapshots
            .and_then(Path::parent)
            .map(|repo| repo.join("blobs"))
        {
            if let Ok(blobs) = std::fs::canonicalize(blobs) {
                roots.push(blobs);
            }
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use safetensors::tensor::{Dtype, TensorView};
    use ztensor::ErrorKind;

    use super::*;

    /// Writes a safetensors shard of u8 tensors.
    fn shard(dir: &Path, file: &str, tensors: &[(&str, &[u8])]) {
        let views: Vec<(&str, TensorView)> = tensors
            .iter()
            .map(|(n, d)| (*n, TensorView::new(Dtype::U8, vec![d.len()], d).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(file)).unwrap();
    }

    fn index(dir: &Path, map: &[(&str, &str)]) -> PathBuf {
        let map: BTreeMap<String, String> = map
            .iter()
            .map(|(n, f)| (n.to_string(), f.to_string()))
            .collect();
        let path = dir.join("model.safetensors.index.json");
        std::fs::write(&path, IndexFile::new(6, map).to_json()).unwrap();
        path
    }

    fn open(path: &Path) -> Result<ShardedReader> {
        ShardedReader::open(path, ReadMode::Mmap, &OpenOptions::default())
    }

    /// Two shards: `a`, `b` in the first, `c` in the second.
    fn checkpoint() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        shard(dir.path(), "m-1.safetensors", &[("b", b"bb"), ("a", b"a")]);
        shard(dir.path(), "m-2.safetensors", &[("c", b"ccc")]);
        let path = index(
            dir.path(),
            &[
                ("a", "m-1.safetensors"),
                ("b", "m-1.safetensors"),
                ("c", "m-2.safetensors"),
            ],
        );
        (dir, path)
    }

    #[test]
    fn reads_every_shard_as_one_set_of_names_lazily() {
        let (dir, path) = checkpoint();
        let r = open(dir.path()).unwrap();
        assert_eq!(r.path(), path);
        assert_eq!(r.names().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(r.len(), 3);
        assert!(r.contains("c") && !r.contains("d"));
        assert_eq!(r.opened().count(), 0, "names come from the index");
        assert_eq!(r.reader_for("c").unwrap().format(), "safetensors");
        assert_eq!(r.opened().count(), 1, "only the shard touched is opened");
        for copy in [false, true] {
            let got = r.read_many_isolated(&["c", "a", "d", "b"], copy);
            assert_eq!(got[0].as_ref().unwrap().as_slice(), b"ccc");
            assert_eq!(got[1].as_ref().unwrap().as_slice(), b"a");
            assert_eq!(got[2].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
            assert_eq!(got[3].as_ref().unwrap().as_slice(), b"bb");
        }
        // safetensors lays out names sorted; shards follow in file-name order.
        assert_eq!(r.names_in_file_order().unwrap(), ["a", "b", "c"]);
        assert!(r.verify().is_empty());
        assert_eq!(r.index().total_size(), Some(6));
    }

    #[test]
    fn a_missing_shard_is_an_io_error_naming_it() {
        let (dir, _) = checkpoint();
        std::fs::remove_file(dir.path().join("m-2.safetensors")).unwrap();
        let r = open(dir.path()).unwrap();
        let e = r.reader_for("c").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("m-2.safetensors"), "{e}");
        assert!(r.reader_for("a").is_ok(), "other shards still read");
        let got = r.read_many_isolated(&["c", "a"], false);
        assert_eq!(got[0].as_ref().unwrap_err().kind(), ErrorKind::Io);
        assert!(got[1].is_ok());
        assert_eq!(r.verify().len(), 1);
        assert_eq!(r.check_shards().len(), 1);
        assert_eq!(r.names_in_file_order().unwrap_err().kind(), ErrorKind::Io);
    }

    #[test]
    fn a_name_missing_from_its_shard_names_the_tensor_and_shard() {
        let dir = tempfile::tempdir().unwrap();
        shard(dir.path(), "m-1.safetensors", &[("a", b"a")]);
        index(
            dir.path(),
            &[("a", "m-1.safetensors"), ("z", "m-1.safetensors")],
        );
        let r = open(dir.path()).unwrap();
        let e = r.reader_for("z").unwrap_err().to_string();
        assert!(e.contains("m-1.safetensors: tensor 'z': the index"), "{e}");
        let got = r.read_many_isolated(&["z"], true);
        assert!(got[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("tensor 'z'"));
        assert!(r
            .names_in_file_order()
            .unwrap_err()
            .to_string()
            .contains("'z'"));
        assert_eq!(r.verify().len(), 1);
    }

    #[test]
    fn two_shards_holding_one_name_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        shard(dir.path(), "m-1.safetensors", &[("a", b"a")]);
        shard(dir.path(), "m-2.safetensors", &[("a", b"A"), ("b", b"b")]);
        index(
            dir.path(),
            &[("a", "m-1.safetensors"), ("b", "m-2.safetensors")],
        );
        let r = open(dir.path()).unwrap();
        let e = r.reader_for("b").unwrap_err().to_string();
        assert!(
            e.contains("m-2.safetensors: tensor 'a': also held by shard 'm-1.safetensors'"),
            "{e}"
        );
    }

    #[test]
    fn names_a_shard_holds_beyond_the_index_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        shard(
            dir.path(),
            "m-1.safetensors",
            &[("a", b"a"), ("extra", b"x")],
        );
        index(dir.path(), &[("a", "m-1.safetensors")]);
        let r = open(dir.path()).unwrap();
        assert_eq!(r.names_in_file_order().unwrap(), ["a"]);
        assert!(!r.contains("extra"));
    }

    #[test]
    fn shard_paths_leaving_the_directory_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("ckpt");
        std::fs::create_dir(&dir).unwrap();
        shard(outer.path(), "out.safetensors", &[("a", b"a")]);
        for bad in [
            "../out.safetensors",
            "/etc/passwd",
            "",
            "sub/../../out.safetensors",
        ] {
            index(&dir, &[("a", bad)]);
            let e = open(&dir).unwrap_err().to_string();
            assert!(
                e.contains("leaves the index's directory") && e.contains("tensor 'a'"),
                "{bad}: {e}"
            );
        }
        // A symlink inside pointing outside.
        std::os::unix::fs::symlink(
            outer.path().join("out.safetensors"),
            dir.join("m.safetensors"),
        )
        .unwrap();
        index(&dir, &[("a", "m.safetensors")]);
        let r = open(&dir).unwrap();
        let e = r.reader_for("a").unwrap_err().to_string();
        assert!(e.contains("outside the directory of the index"), "{e}");
        // A subdirectory is fine.
        std::fs::create_dir(dir.join("sub")).unwrap();
        shard(&dir.join("sub"), "s.safetensors", &[("a", b"a")]);
        index(&dir, &[("a", "sub/s.safetensors")]);
        assert!(open(&dir).unwrap().reader_for("a").is_ok());
    }

    #[test]
    fn hub_cache_snapshots_may_link_into_blobs() {
        let repo = tempfile::tempdir().unwrap();
        let blobs = repo.path().join("blobs");
        let snap = repo.path().join("snapshots").join("abc123");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        shard(&blobs, "f00d", &[("a", b"a")]);
        std::os::unix::fs::symlink("../../blobs/f00d", snap.join("m-1.safetensors")).unwrap();
        index(&snap, &[("a", "m-1.safetensors")]);
        let r = open(&snap).unwrap();
        assert_eq!(
            r.read_many_isolated(&["a"], false)[0]
                .as_ref()
                .unwrap()
                .as_slice(),
            b"a"
        );
    }
}
