//! Sharded checkpoints as inputs of `zt info`, `zt verify` and `zt diff`:
//! an index file (`model.safetensors.index.json`, ...) or the directory
//! holding exactly one. `info` and `verify` describe the index, check it
//! against its shards, then each shard as they would a file; `diff` compares
//! the tensors whatever shards hold them.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use ztensor::{ReadMode, Reader};
use ztensor_formats::sharded::{is_index_name, ShardedReader};
use ztensor_formats::OpenOptions;

use crate::args::{DequantizeArg, InfoArgs, VerifyArgs};
use crate::util::{self, outln, Failure};
use crate::{exit, Interrupt};

/// Whether `path` names a sharded checkpoint (an `*.index.json` file or a
/// directory, which must hold one).
pub(crate) fn is_sharded(path: &Path) -> bool {
    is_index_name(path) || path.is_dir()
}

/// The tensors of one file or of a sharded checkpoint, by name.
pub(crate) enum Tensors {
    File(Arc<Reader>),
    Sharded(ShardedReader),
}

impl Tensors {
    /// Opens `path`: sharded when [`is_sharded`], else a file of any format.
    pub(crate) fn open(
        path: &Path,
        mode: ReadMode,
        options: &OpenOptions,
    ) -> ztensor::Result<Self> {
        Ok(if is_sharded(path) {
            Tensors::Sharded(ShardedReader::open(path, mode, options)?)
        } else {
            Tensors::File(Arc::new(ztensor_formats::open_with_options(
                path, mode, options,
            )?))
        })
    }

    /// Names, byte-wise sorted.
    pub(crate) fn names(&self) -> Vec<&str> {
        match self {
            Tensors::File(r) => r.names().collect(),
            Tensors::Sharded(s) => s.names().collect(),
        }
    }

    /// The reader holding `name` (a shard is opened on first use).
    pub(crate) fn reader_for(&self, name: &str) -> ztensor::Result<Arc<Reader>> {
        match self {
            Tensors::File(r) => Ok(r.clone()),
            Tensors::Sharded(s) => s.reader_for(name),
        }
    }
}

/// `zt info` of a sharded checkpoint.
pub(crate) fn info(args: &InfoArgs) -> Result<i32, Failure> {
    let options = DequantizeArg::options(args.dequantize);
    let sharded = ShardedReader::open(&args.file, ReadMode::Mmap, &options)?;
    let problems: Vec<String> = sharded
        .check_shards()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let metadata = serde_json::Value::Object(sharded.index().metadata.clone());
    let mut out = std::io::stdout().lock();
    let mut status = exit::OK;
    if args.json {
        let mut shards = Vec::new();
        for r in sharded.opened() {
            let size = std::fs::metadata(r.path()).map_or(0, |m| m.len());
            let (doc, broken) = crate::info::file_json(r.path(), r, size)?;
            status = status.max(if broken > 0 { exit::PROBLEMS } else { exit::OK });
            shards.push(doc);
        }
        let doc = serde_json::json!({
            "index": util::show(sharded.path()),
            "format": "sharded",
            "tensor_count": sharded.len(),
            "metadata": metadata,
            "shard_files": sharded.shard_files().collect::<Vec<_>>(),
            "problems": problems,
            "shards": shards,
        });
        serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| util::stdout_error(e.into()))?;
        outln!(out);
    } else {
        outln!(out, "index:     {}", util::show(sharded.path()));
        outln!(
            out,
            "format:    sharded ({} shards)",
            sharded.shard_files().count()
        );
        outln!(out, "tensors:   {}", sharded.len());
        match sharded.index().total_size() {
            Some(n) => outln!(
                out,
                "total:     {} ({n} bytes, as the index says)",
                util::human(n)
            ),
            None => outln!(out, "total:     not given"),
        }
        let others: Vec<_> = sharded
            .index()
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != ztensor_formats::sharded::TOTAL_SIZE)
            .collect();
        if !others.is_empty() {
            outln!(out, "metadata:");
        }
        for (k, v) in others {
            outln!(
                out,
                "  {k}: {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_string)
            );
        }
        out.flush().map_err(util::stdout_error)?;
        drop(out);
        for r in sharded.opened() {
            println!();
            let shard = InfoArgs {
                file: r.path().to_path_buf(),
                json: false,
                dequantize: args.dequantize,
            };
            status = status.max(crate::info::run(&shard)?);
        }
        out = std::io::stdout().lock();
    }
    out.flush().map_err(util::stdout_error)?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("zt: {p}");
        }
        status = exit::PROBLEMS;
    }
    Ok(status)
}

/// `zt verify` of a sharded checkpoint: the index against its shards, then
/// every shard as `zt verify` checks a file.
pub(crate) fn verify(args: &VerifyArgs, interrupt: &Interrupt) -> Result<i32, Failure> {
    let shown = util::show(&args.file);
    let sharded = match ShardedReader::open(&args.file, ReadMode::Eager, &OpenOptions::default()) {
        Ok(s) => s,
        Err(e @ ztensor::Error::Format { .. }) => {
            println!("{e}");
            println!("{shown}: FAILED: the index cannot be read");
            return Ok(exit::PROBLEMS);
        }
        Err(e) => return Err(e.into()),
    };
    let problems: Vec<String> = sharded
        .check_shards()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let mut status = exit::OK;
    for file in sharded.shard_files() {
        interrupt.check()?;
        let path = sharded.shard_path(file);
        if !path.exists() {
            continue; // reported by `check_shards`
        }
        let shard = VerifyArgs {
            file: path,
            quiet: args.quiet,
        };
        status = status.max(crate::verify::run(&shard, interrupt)?);
    }
    let mut out = std::io::stdout().lock();
    for p in &problems {
        outln!(out, "{p}");
    }
    let shards = sharded.shard_files().count();
    if problems.is_empty() && status == exit::OK {
        if !args.quiet {
            outln!(
                out,
                "{}: OK: {} tensors in {shards} shards",
                util::show(sharded.path()),
                sharded.len()
            );
        }
    } else {
        outln!(
            out,
            "{}: FAILED: {} problem{} with the index, {} in the shards",
            util::show(sharded.path()),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            if status == exit::OK { "none" } else { "some" }
        );
        status = exit::PROBLEMS;
    }
    out.flush().map_err(util::stdout_error)?;
    Ok(status)
}
