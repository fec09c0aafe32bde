//! Sharded checkpoints: tensors split over several files named by an index
//! file (`model.safetensors.index.json`, `pytorch_model.bin.index.json`,
//! `model.zt.index.json`), read as one set of names.

pub mod index;
pub mod plan;
mod reader;
pub mod save;

pub use index::{is_index_name, locate, IndexFile, INDEX_SUFFIX, TOTAL_SIZE};
pub use reader::ShardedReader;
