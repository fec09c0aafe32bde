//! `zt convert`: any readable file, or a sharded checkpoint, to `.zt` (one
//! file, or shards with `--max-shard-size`) or `.safetensors`, one tensor at
//! a time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ztensor::{Checksum, ComponentData, ReadMode, TensorInfo, Value, WriteOptions, Writer};
use ztensor_formats::sharded::save::ShardedSave;
use ztensor_formats::sharded::{plan, IndexFile, ShardedReader, TOTAL_SIZE};

use crate::args::{ChecksumArg, ConvertArgs, DequantizeArg};
use crate::filter::NameFilter;
use crate::progress::Progress;
use crate::sharded::{is_sharded, Tensors};
use crate::util::{self, Failure};
use crate::{safetensors_out, Interrupt};

/// What `zt convert` writes, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutFormat {
    Zt,
    Safetensors,
}

fn out_format(path: &Path) -> Result<OutFormat, Failure> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("safetensors") => Ok(OutFormat::Safetensors),
        // Formats `zt` reads but does not write (from the format table).
        Some(e) if ztensor_formats::read_only_extensions().any(|r| r == e) => {
            Err(Failure::Usage(format!(
                "cannot write '{}': zt convert writes .zt and .safetensors files, not .{e}",
                util::show(path)
            )))
        }
        _ => Ok(OutFormat::Zt),
    }
}

pub(crate) fn run(args: &ConvertArgs, interrupt: &Interrupt) -> Result<i32, Failure> {
    let format = out_format(&args.output)?;
    if format == OutFormat::Safetensors {
        for (given, option) in [
            (args.compress.is_some(), "--compress"),
            (args.checksum.is_some(), "--checksum"),
            (args.alignment.is_some(), "--alignment"),
            (args.max_shard_size.is_some(), "--max-shard-size"),
        ] {
            if given {
                return Err(Failure::Usage(format!(
                    "{option} applies to .zt output only; '{}' is written as safetensors",
                    util::show(&args.output)
                )));
            }
        }
    }
    let filter = NameFilter::new(&args.include, &args.exclude)?;
    let started = Instant::now();
    // Eager reads: each tensor is read into a buffer that is freed once it is
    // written, so memory stays bounded by the largest tensor (a mapping would
    // grow the resident set by the whole input).
    // A sharded input opens its shards as tensors are reached.
    let options = DequantizeArg::options(args.dequantize);
    let (tensors, all, attributes) = if is_sharded(&args.input) {
        let sharded = ShardedReader::open(&args.input, ReadMode::Eager, &options)?;
        let names = sharded.names_in_file_order()?;
        // The index's metadata, less the size it gives of its own tensors.
        let mut metadata = sharded.index().metadata.clone();
        metadata.remove(TOTAL_SIZE);
        let attributes = (!metadata.is_empty())
            .then(|| Value::serialized(&metadata))
            .transpose()
            .map_err(|e| {
                Failure::Error(format!("{}: metadata: {e}", util::show(sharded.path())))
            })?;
        (Tensors::Sharded(sharded), names, attributes)
    } else {
        let reader = crate::input::open(&args.input, ReadMode::Eager, &options)?.reader;
        let names = reader.names_in_file_order().map(str::to_string).collect();
        let attributes = reader.attributes().cloned();
        (Tensors::File(Arc::new(reader)), names, attributes)
    };
    let input = util::show(&args.input);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    if !args.quiet {
        for glob in filter.unmatched(all.iter().copied()) {
            eprintln!("zt: warning: {glob} matches no tensor of {input}");
        }
    }
    let selected: Vec<&str> = all.iter().copied().filter(|n| filter.keeps(n)).collect();
    if selected.is_empty() && !all.is_empty() && !filter.is_empty() {
        return Err(Failure::Error(format!(
            "--include/--exclude leave none of the {} tensors of {input} to convert",
            all.len()
        )));
    }
    let infos: Vec<ztensor::Result<TensorInfo>> =
        selected.iter().map(|n| info_of(&tensors, n)).collect();
    let broken: Vec<String> = infos
        .iter()
        .filter_map(|i| i.as_ref().err().map(|e| e.to_string()))
        .collect();
    if !broken.is_empty() {
        return Err(Failure::Error(format!(
            "{} tensor{} of {input} cannot be read:\n  {}\n(leave {} out with --exclude NAME)",
            broken.len(),
            if broken.len() == 1 { "" } else { "s" },
            util::bullets(&broken),
            if broken.len() == 1 { "it" } else { "them" },
        )));
    }
    let sizes: Vec<u64> = infos.iter().flatten().map(util::decoded_bytes).collect();
    let total: u64 = sizes.iter().sum();
    let progress = Progress::bytes("converting", total, args.quiet);
    let zt = ZtOut {
        tensors: &tensors,
        args,
        progress: &progress,
        interrupt,
    };
    let mut shards = 1;
    let size = match (format, &tensors) {
        (OutFormat::Zt, _) => match args.max_shard_size {
            None => zt.write(&selected, &args.output, attributes.as_ref())?,
            Some(limit) => {
                let (size, n) = zt.write_sharded(&selected, &sizes, limit, attributes.as_ref())?;
                shards = n;
                size
            }
        },
        (OutFormat::Safetensors, Tensors::File(reader)) => safetensors_out::write(
            reader,
            &selected,
            &args.output,
            &progress,
            interrupt,
            args.quiet,
        )?,
        (OutFormat::Safetensors, Tensors::Sharded(_)) => {
            return Err(Failure::Usage(format!(
                "{input} is a sharded checkpoint: zt convert writes it as .zt (one file, or \
                 shards with --max-shard-size), not as '{}'",
                util::show(&args.output)
            )))
        }
    };
    let visible = progress.visible();
    progress.finish();
    if visible {
        eprintln!(
            "zt: wrote {}{} ({}): {} tensor{}, {} of data, {} file{}, in {:.1} s",
            util::show(&args.output),
            if shards > 1 {
                format!(" as {shards} shards and an index")
            } else {
                String::new()
            },
            match format {
                OutFormat::Zt => "zt",
                OutFormat::Safetensors => "safetensors",
            },
            selected.len(),
            if selected.len() == 1 { "" } else { "s" },
            util::human(total),
            util::human(size),
            if shards > 1 { "s" } else { "" },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(crate::exit::OK)
}

/// The tensor `name`'s description, from whichever file holds it.
fn info_of(tensors: &Tensors, name: &str) -> ztensor::Result<TensorInfo> {
    tensors.reader_for(name)?.info(name).cloned()
}

/// Writing `.zt` output from the tensors of the input.
struct ZtOut<'a> {
    tensors: &'a Tensors,
    args: &'a ConvertArgs,
    progress: &'a Progress,
    interrupt: &'a Interrupt,
}

impl ZtOut<'_> {
    /// Writes `names` to the `.zt` file `out` with the file metadata
    /// `attributes`; returns its size.
    fn write(
        &self,
        names: &[&str],
        out: &Path,
        attributes: Option<&Value>,
    ) -> Result<u64, Failure> {
        let args = self.args;
        let opts = WriteOptions {
            compression: args.compress,
            checksum: match args.checksum {
                None | Some(ChecksumArg::None) => Checksum::None,
                Some(ChecksumArg::Crc32c) => Checksum::Crc32c,
                Some(ChecksumArg::Sha256) => Checksum::Sha256,
            },
        };
        let mut writer = Writer::create(out).map_err(|e| util::with_output(out, e))?;
        self.interrupt.set_writing(true);
        if let Some(alignment) = args.alignment {
            writer = writer
                .with_alignment(alignment)
                .map_err(|e| util::with_output(out, e))?;
        }
        if let Some(attributes) = attributes {
            writer.set_attributes(attributes.clone()).map_err(|e| {
                Failure::Error(format!(
                    "{}: the file metadata cannot be stored in .zt: {e}",
                    util::show(&args.input)
                ))
            })?;
        }
        for name in names {
            self.interrupt.check()?;
            let reader = self.tensors.reader_for(name)?;
            let info = reader.info(name)?;
            self.progress.tensor(name);
            // Components go out in the order they lie in the source.
            let mut components: Vec<_> = info.components.iter().collect();
            components.sort_by_key(|(_, c)| c.offset);
            let bytes = components
                .iter()
                .map(|(cname, _)| reader.read_component(name, cname, false))
                .collect::<Result<Vec<_>, _>>()?;
            let data: Vec<(&str, ComponentData<'_>)> = components
                .iter()
                .zip(&bytes)
                .map(|((cname, c), b)| {
                    (
                        cname.as_str(),
                        ComponentData {
                            dtype: c.dtype,
                            logical_type: c.logical_type.as_deref(),
                            bytes: b.as_slice(),
                        },
                    )
                })
                .collect();
            writer
                .add_tensor(
                    name,
                    &info.shape,
                    info.layout.clone(),
                    info.attributes.clone(),
                    &data,
                    &opts,
                )
                .map_err(|e| util::with_output(out, e))?;
            self.progress.advance(util::decoded_bytes(info));
        }
        self.interrupt.check()?;
        writer.finish().map_err(|e| util::with_output(out, e))
    }

    /// `--max-shard-size`: `names` (of `sizes` decoded bytes) split into
    /// shards by Hugging Face's plan, written one after the other (memory
    /// stays bounded by the largest tensor), then the index; the file
    /// metadata goes in the index. Everything in one shard: the single file
    /// as without the option. Returns the bytes written and the shard count.
    fn write_sharded(
        &self,
        names: &[&str],
        sizes: &[u64],
        limit: u64,
        attributes: Option<&Value>,
    ) -> Result<(u64, usize), Failure> {
        let out = &self.args.output;
        let groups = plan::plan(sizes, limit);
        let save = ShardedSave::new(out, groups.len()).map_err(|e| util::with_output(out, e))?;
        if groups.len() == 1 {
            let size = self.write(names, out, attributes)?;
            save.commit(None).map_err(|e| util::with_output(out, e))?;
            return Ok((size, 1));
        }
        let mut size = 0;
        let mut weight_map = BTreeMap::new();
        for ((group, path), file) in groups.iter().zip(save.paths()).zip(save.names()) {
            let shard: Vec<&str> = group.iter().map(|&i| names[i]).collect();
            match self.write(&shard, &path, None) {
                Ok(n) => size += n,
                Err(e) => {
                    save.abort();
                    return Err(e);
                }
            }
            weight_map.extend(shard.iter().map(|n| (n.to_string(), file.clone())));
        }
        let mut index = IndexFile::new(sizes.iter().sum(), weight_map);
        if let Some(serde_json::Value::Object(metadata)) = attributes.map(util::cbor_to_json) {
            for (key, value) in metadata {
                // The input's own total (a sharded input's) is not ours.
                if key != TOTAL_SIZE {
                    index.metadata.insert(key, value);
                }
            }
        }
        save.commit(Some(&index))
            .map_err(|e| util::with_output(out, e))?;
        let index_size = std::fs::metadata(save.index_path()).map_or(0, |m| m.len());
        Ok((size + index_size, groups.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_follow_the_format_table() {
        for row in &ztensor_formats::TABLE {
            for ext in row.extensions {
                let path = format!("out.{}", ext.to_ascii_uppercase());
                let got = out_format(Path::new(&path));
                match (row.writable, row.name) {
                    (true, "safetensors") => assert_eq!(got.ok(), Some(OutFormat::Safetensors)),
                    (true, _) => assert_eq!(got.ok(), Some(OutFormat::Zt), "{path}"),
                    (false, _) => assert!(got.is_err(), "{path} would be written"),
                }
            }
        }
    }
}
