//! The command line, declared with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  zt info model.safetensors               format, metadata and a table of tensors
  zt info model.zt --json                 the same, as JSON
  zt convert model.safetensors model.zt   any readable format to .zt
  zt convert model.pt model.zt --compress --checksum crc32c
  zt convert model.zt model.safetensors   .zt back to safetensors
  zt convert hf_model/ out/model.zt --max-shard-size 2GB
                                          a sharded checkpoint to .zt shards + index
  zt verify model.zt                      check structure, digests and compressed data
  zt diff model.safetensors model.zt      compare the tensors of two files
  zt compact model.zt                     drop the bytes appends left unused
  zt repair model.zt                      undo an append that did not finish

Readable formats: .zt, and the foreign formats this build supports
(safetensors, PyTorch .pt/.pth/.bin, NumPy .npz/.npy, ...).

Exit status: 0 success, 1 problems found or failure, 2 usage error
(zt diff: 0 identical, 1 different, 2 trouble), 130 interrupted.";

/// Inspect, convert, verify and compare tensor files.
#[derive(Debug, Parser)]
#[command(
    name = "zt",
    bin_name = "zt",
    version,
    about = "Inspect, convert, verify and compare tensor files (.zt, safetensors, PyTorch, NumPy, ...)",
    after_help = EXAMPLES,
    arg_required_else_help = true,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a file's format, size, metadata and a table of its tensors.
    #[command(after_help = "\
The JSON document has file, format, version, file_size, tensor_count,
total_bytes (decoded), stored_bytes, metadata, and tensors in file order, each
with name, dtype, logical_type, shape, layout, nbytes, stored_bytes, encoding,
digest, components and attributes (or name and error for unreadable tensors).

Examples:
  zt info model.zt
  zt info model.safetensors --json | jq '.tensors[].name'

Exit status: 0, or 1 when the file cannot be read or lists unreadable tensors.")]
    Info(InfoArgs),
    /// Convert any readable file to .zt, or to .safetensors.
    #[command(after_help = "\
The output format follows OUT's extension: .safetensors writes safetensors
(every tensor must be dense with a safetensors dtype), anything else writes
.zt. Tensors are converted one at a time (memory stays bounded by the largest
tensor), the output appears atomically once complete, and file metadata is
carried over (safetensors __metadata__ <-> .zt file attributes; non-string
values become JSON strings in safetensors).

IN may be a sharded checkpoint: an index (model.safetensors.index.json,
pytorch_model.bin.index.json, model.zt.index.json) or the directory holding
it; its shards are read one tensor at a time. --max-shard-size splits the .zt
output as Hugging Face does (greedy in file order, a tensor over the limit in
a shard of its own): OUT's stem-00001-of-0000N.zt shards, then OUT.index.json
(with the file metadata and total_size) written last; old shards of OUT that
the new index does not name are removed. When everything fits, OUT is one
file as without the option.

Examples:
  zt convert model.safetensors model.zt
  zt convert model.safetensors.index.json out/model.zt --max-shard-size 2GB
  zt convert big.pt model.zt --max-shard-size 5GiB
  zt convert model.pt model.zt --compress=9 --checksum sha256
  zt convert model.zt small.zt --include 'model.layers.0.*' --exclude '*.bias'
  zt convert model.zt model.safetensors
  zt convert weights.npz weights.zt --alignment 4096 --quiet
  zt convert model.gguf model.safetensors --dequantize f16")]
    Convert(ConvertArgs),
    /// Check a file: structure, every digest, and decoding of every tensor.
    #[command(after_help = "\
Reports each problem with the tensor it affects. Raw tensors without a digest
can only be checked for structure; write files with --checksum to detect bit
flips.

Examples:
  zt verify model.zt
  zt verify model.zt --quiet && echo sound

Exit status: 0 when the file is sound, 1 when problems were found.")]
    Verify(VerifyArgs),
    /// Compare the tensors of two files (of any formats).
    #[command(after_help = "\
Lists tensors only in A, only in B, and those whose dtype, shape, layout or
bytes differ. Bytes are compared exactly (NaN payloads included).

Examples:
  zt diff model.safetensors model.zt
  zt diff old.zt new.zt --quiet || echo changed

Exit status: 0 identical, 1 different, 2 trouble (a file cannot be read).")]
    Diff(DiffArgs),
    /// Rewrite a .zt file without the bytes appends left unused.
    #[command(after_help = "\
Appending to a .zt file (Writer(path, mode=\"a\"), replace_tensor) never
overwrites: removed or replaced tensors and old manifests stay in the file as
dead bytes ('zt info' shows how many). compact copies every tensor as stored
(same encoding and digest; digests are checked) into a new file that replaces
OUT (default: FILE itself) atomically.

Examples:
  zt compact model.zt
  zt compact model.zt small.zt --alignment 4096

Exit status: 0, or 1 when the file cannot be read or a tensor is damaged.")]
    Compact(CompactArgs),
    /// Undo an append to a .zt file that did not finish (killed, power cut).
    #[command(after_help = "\
An append that stops before its commit leaves the file ending with an append
trailer instead of a footer, and readers refuse it ('torn append'). repair
checks that a complete file ends where the trailer says the append started,
and truncates the file there: its content from before the append, exactly.
A file that ends with a complete footer is left alone. repair takes the
append lock, so it never cuts an append that is still running.

Examples:
  zt repair model.zt

Exit status: 0 when the file is complete (repaired or already so), 1 otherwise.")]
    Repair(RepairArgs),
}

/// `zt info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The file to describe, or a sharded checkpoint (its *.index.json or its directory).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Dequantize GGUF block-quantized tensors (Q4_0..Q8_0, K-quants, IQ4, TQ, MXFP4, NVFP4)
    /// to this float type instead of keeping their raw blocks.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub dequantize: Option<DequantizeArg>,
}

/// Digest options of `zt convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChecksumArg {
    /// No digest.
    None,
    /// CRC-32C: fast, catches accidental damage.
    Crc32c,
    /// SHA-256: cryptographic, slower.
    Sha256,
}

/// `--dequantize`: the float type GGUF block-quantized tensors become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DequantizeArg {
    /// 32-bit floats (exact for every kernel).
    F32,
    /// 16-bit floats (the f32 result rounded to nearest-even).
    F16,
}

impl DequantizeArg {
    /// The reader option for this choice (`None`: keep the raw blocks).
    pub fn options(choice: Option<Self>) -> ztensor_formats::OpenOptions {
        ztensor_formats::OpenOptions::default().dequantize(choice.map(|c| match c {
            Self::F32 => ztensor::DType::F32,
            Self::F16 => ztensor::DType::F16,
        }))
    }
}

/// `zt convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The file to read (any readable format).
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// The file to write: .safetensors, or .zt (any other name).
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
    /// Compress with zstd (.zt output), at LEVEL 1-22 (default 3).
    #[arg(
        long,
        value_name = "LEVEL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "3",
        value_parser = clap::value_parser!(i32)
            .range(i64::from(ztensor::codec::MIN_LEVEL)..=i64::from(ztensor::codec::MAX_LEVEL))
    )]
    pub compress: Option<i32>,
    /// Store a digest of every tensor (.zt output).
    #[arg(long, value_enum, value_name = "KIND")]
    pub checksum: Option<ChecksumArg>,
    /// Align tensor data to this many bytes (.zt output; a power of two >= 64; default 64).
    #[arg(long, value_name = "BYTES", value_parser = parse_alignment)]
    pub alignment: Option<u64>,
    /// Convert only tensors whose name matches GLOB (repeatable; `*`, `?`, `[..]`, `{a,b}`).
    #[arg(long, value_name = "GLOB", value_parser = parse_glob)]
    pub include: Vec<globset::Glob>,
    /// Leave out tensors whose name matches GLOB (repeatable; applied after --include).
    #[arg(long, value_name = "GLOB", value_parser = parse_glob)]
    pub exclude: Vec<globset::Glob>,
    /// Dequantize GGUF block-quantized tensors (Q4_0..Q8_0, K-quants, IQ4, TQ, MXFP4, NVFP4)
    /// to this float type instead of keeping their raw blocks.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub dequantize: Option<DequantizeArg>,
    /// Split the .zt output into shards of at most SIZE tensor bytes (5GB = 5*10^9,
    /// 5GiB = 5*2^30; KB/MB/GB/TB, KiB/MiB/GiB/TiB) plus OUT.index.json.
    #[arg(long, value_name = "SIZE", value_parser = parse_shard_size)]
    pub max_shard_size: Option<u64>,
    /// No progress bar and no summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `zt verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The file to check (any readable format), or a sharded checkpoint (its *.index.json or
    /// its directory).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print only the problems (no progress bar, no summary).
    #[arg(short, long)]
    pub quiet: bool,
}

/// `zt compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The .zt file to compact.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to write the compacted file (default: replace FILE).
    #[arg(value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Align tensor data to this many bytes (a power of two >= 64; default: FILE's alignment).
    #[arg(long, value_name = "BYTES", value_parser = parse_alignment)]
    pub alignment: Option<u64>,
    /// No summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `zt repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The .zt file whose append did not finish.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// No summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `zt diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first file (any readable format, or a sharded checkpoint's *.index.json or directory).
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The second file (any readable format, or a sharded checkpoint's *.index.json or directory).
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Dequantize GGUF block-quantized tensors (Q4_0..Q8_0, K-quants, IQ4, TQ, MXFP4, NVFP4)
    /// to this float type instead of keeping their raw blocks.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub dequantize: Option<DequantizeArg>,
    /// Print nothing; report through the exit status only.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_alignment(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number of bytes"))?;
    if !(ztensor::DEFAULT_ALIGNMENT..=ztensor::MAX_ALIGNMENT).contains(&n) || !n.is_power_of_two() {
        return Err(format!(
            "{n} is not a power of two from {} to {}",
            ztensor::DEFAULT_ALIGNMENT,
            ztensor::MAX_ALIGNMENT
        ));
    }
    Ok(n)
}

fn parse_shard_size(s: &str) -> Result<u64, String> {
    ztensor_formats::sharded::plan::parse_size(s).map_err(|e| e.to_string())
}

fn parse_glob(s: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(s)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.to_string())
}
