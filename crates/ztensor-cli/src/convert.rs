//! `zt convert`: any readable file to `.zt` or `.safetensors`, one tensor at a time.

use std::path::Path;
use std::time::Instant;

use ztensor::{Checksum, ComponentData, ReadMode, Reader, WriteOptions, Writer};

use crate::args::{ChecksumArg, ConvertArgs, DequantizeArg};
use crate::filter::NameFilter;
use crate::progress::Progress;
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
    let reader = crate::input::open(
        &args.input,
        ReadMode::Eager,
        &DequantizeArg::options(args.dequantize),
    )?
    .reader;
    let input = util::show(&args.input);
    let all: Vec<&str> = reader.names_in_file_order().collect();
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
    let broken: Vec<String> = selected
        .iter()
        .filter_map(|n| reader.info(n).err().map(|e| e.to_string()))
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
    let total: u64 = selected
        .iter()
        .filter_map(|n| reader.info(n).ok())
        .map(util::decoded_bytes)
        .sum();
    let progress = Progress::bytes("converting", total, args.quiet);
    let size = match format {
        OutFormat::Zt => to_zt(&reader, &selected, args, &progress, interrupt)?,
        OutFormat::Safetensors => safetensors_out::write(
            &reader,
            &selected,
            &args.output,
            &progress,
            interrupt,
            args.quiet,
        )?,
    };
    let visible = progress.visible();
    progress.finish();
    if visible {
        eprintln!(
            "zt: wrote {} ({}): {} tensor{}, {} of data, {} file, in {:.1} s",
            util::show(&args.output),
            match format {
                OutFormat::Zt => "zt",
                OutFormat::Safetensors => "safetensors",
            },
            selected.len(),
            if selected.len() == 1 { "" } else { "s" },
            util::human(total),
            util::human(size),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(crate::exit::OK)
}

fn to_zt(
    reader: &Reader,
    selected: &[&str],
    args: &ConvertArgs,
    progress: &Progress,
    interrupt: &Interrupt,
) -> Result<u64, Failure> {
    let out = &args.output;
    let opts = WriteOptions {
        compression: args.compress,
        checksum: match args.checksum {
            None | Some(ChecksumArg::None) => Checksum::None,
            Some(ChecksumArg::Crc32c) => Checksum::Crc32c,
            Some(ChecksumArg::Sha256) => Checksum::Sha256,
        },
    };
    let mut writer = Writer::create(out).map_err(|e| util::with_output(out, e))?;
    interrupt.set_writing(true);
    if let Some(alignment) = args.alignment {
        writer = writer
            .with_alignment(alignment)
            .map_err(|e| util::with_output(out, e))?;
    }
    if let Some(attributes) = reader.attributes() {
        writer.set_attributes(attributes.clone()).map_err(|e| {
            Failure::Error(format!(
                "{}: the file metadata cannot be stored in .zt: {e}",
                util::show(reader.path())
            ))
        })?;
    }
    for name in selected {
        interrupt.check()?;
        let info = reader.info(name)?;
        progress.tensor(name);
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
        progress.advance(util::decoded_bytes(info));
    }
    interrupt.check()?;
    writer.finish().map_err(|e| util::with_output(out, e))
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
