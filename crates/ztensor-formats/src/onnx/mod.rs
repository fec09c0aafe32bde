//! Reader for ONNX models (`.onnx`).
//!
//! The file is one protobuf `ModelProto`, decoded with prost from the
//! vendored `onnx.proto`. Its tensors are:
//!
//! - the initializers of the main graph and of every subgraph (the graph
//!   attributes of `If`, `Loop`, `Scan`, ..., to any depth prost accepts);
//! - the `value` of every `Constant` node, named after the node's output;
//! - sparse initializers (and a `Constant`'s `sparse_value`) as
//!   `sparse_coo` objects: `values` as stored, `coords` the int64 indices
//!   (`[nnz, rank]` or linearized `[nnz]`) turned into dimension-major
//!   `u64` coordinates, each checked against the shape when read.
//!
//! Tensors are listed under their ONNX names; a name used twice makes both
//! tensors unreadable rather than letting one shadow the other. Not listed:
//! tensor attributes of other operators (`ConstantOfShape`'s `value`, ...),
//! and the graphs of model-local functions and `training_info`.
//!
//! Element types: the 13 storage dtypes directly; complex64/128 as f32/f64
//! pairs with that logical type; float8 (`f8_e4m3fn`, `f8_e4m3fnuz`,
//! `f8_e5m2`, `f8_e5m2fnuz`, `f8_e8m0fnu`) as `u8` codes with the logical
//! type; 4-, 2- and 6-bit types unpacked to one byte per element: `int4`
//! and `int2` as sign-extended `i8`, `uint4`, `uint2` and the float codes
//! (`f4_e2m1fn`, `f6_e2m3fn`, `f6_e3m2fn`) as `u8`, each with its logical
//! type and the tensor's own shape. Strings fail that tensor only.
//!
//! Values in `raw_data` are zero-copy ranges of the mapped file (sub-byte
//! types are unpacked from that range when read). Values in the typed
//! fields (`float_data`, varint `int32_data`/`int64_data`/`uint64_data`,
//! `double_data`) are decoded while parsing, after their count is checked
//! against the shape, following ONNX's rules for which field holds which
//! type. External data (`location`, `offset`, `length`) is read from its
//! file when the tensor is read; the location must be a relative path
//! without `..` that stays inside the model's directory once symlinks are
//! resolved, and the range must lie inside that file. Any problem with one tensor fails that tensor alone, and
//! its message says what is wrong.
//!
//! File metadata (`ir_version`, `producer_name`, `producer_version`,
//! `domain`, `model_version`, `doc_string`, `opset_import`,
//! `metadata_props` when not empty) becomes the file attributes; the
//! version string is the IR version.

use std::path::Path;

use prost::bytes::Bytes;
use prost::Message;
use ztensor::{Catalog, Entry, FormatError, Value};

use crate::ParseContext;

mod external;
pub mod proto;
mod tensor;
mod transforms;
mod types;

use proto::{GraphProto, ModelProto, NodeProto};
use tensor::{string_map, Context};

/// Deepest nesting of subgraphs walked (prost's own recursion limit stops
/// deeper messages earlier; this keeps our walk bounded on its own).
const MAX_GRAPH_DEPTH: usize = 64;

/// Parses a whole onnx file image; `cx.path` is the file it came from, if
/// any (external data files are resolved next to it).
pub fn parse(bytes: &[u8], cx: &ParseContext) -> Result<Catalog, FormatError> {
    let path = cx.path;
    // SAFETY: `from_static` wants a `'static` slice; `bytes` only lives as
    // long as this call. Every `Bytes` made from it — `buf` and the
    // `raw_data` slices prost splits off it (static `Bytes` never copy or
    // free) — lives inside `buf` or `model`, both locals dropped before this
    // function returns: `catalog` receives only offsets (`range_in`) and
    // owned values, and the types it holds (`TensorInfo`, our transforms)
    // contain no `Bytes`. So no `Bytes` is used after `bytes` ends.
    let image: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(bytes) };
    let buf = Bytes::from_static(image);
    let model = ModelProto::decode(buf).map_err(|e| format!("not a valid ONNX model: {e}"))?;
    let catalog = project(bytes, path, model);
    Ok(catalog)
}

/// The catalog of a decoded model (consumes it: typed values are moved
/// out, and every `Bytes` dies with it here).
fn project(image: &[u8], path: Option<&Path>, mut model: ModelProto) -> Catalog {
    let mut ctx = Context {
        image,
        external: external::ExternalFiles::new(path),
    };
    let mut entries = Vec::new();
    if let Some(graph) = model.graph.take() {
        walk(&mut ctx, graph, 0, &mut entries);
    }
    Catalog {
        version: model.ir_version.map_or(String::new(), |v| v.to_string()),
        attributes: Some(file_attributes(&model)),
        ..Catalog::new("onnx", entries, (0, image.len() as u64))
    }
}

/// Lists the tensors of `graph` and its subgraphs.
fn walk(ctx: &mut Context<'_, '_>, graph: GraphProto, depth: usize, out: &mut Vec<Entry>) {
    let gname = graph.name.clone().unwrap_or_default();
    if depth > MAX_GRAPH_DEPTH {
        out.push(Entry::broken(
            format!("<graph '{gname}'>"),
            format!(
                "subgraphs nest deeper than {MAX_GRAPH_DEPTH} levels; their tensors are not read"
            ),
        ));
        return;
    }
    for (i, t) in graph.initializer.into_iter().enumerate() {
        let name = t.name.clone().unwrap_or_default();
        let name = named(name, || format!("<graph '{gname}' initializer {i}>"));
        out.push(entry(name.clone(), tensor::dense(ctx, &name, t)));
    }
    for (i, s) in graph.sparse_initializer.into_iter().enumerate() {
        // The values tensor's name names a sparse initializer.
        let name = s
            .values
            .as_ref()
            .and_then(|v| v.name.clone())
            .unwrap_or_default();
        let name = named(name, || format!("<graph '{gname}' sparse initializer {i}>"));
        out.push(entry(name.clone(), tensor::sparse(ctx, &name, s)));
    }
    for node in graph.node {
        node_tensors(ctx, node, &gname, depth, out);
    }
}

/// The tensors a node holds: a `Constant`'s value, and its subgraphs'.
fn node_tensors(
    ctx: &mut Context<'_, '_>,
    node: NodeProto,
    gname: &str,
    depth: usize,
    out: &mut Vec<Entry>,
) {
    let is_constant = node.op_type.as_deref() == Some("Constant")
        && matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx"));
    let output = node.output.first().cloned().unwrap_or_default();
    let node_name = node.name.clone().unwrap_or_default();
    for attr in node.attribute {
        if is_constant {
            let fallback = || format!("<graph '{gname}' Constant node '{node_name}'>");
            match attr.name.as_deref() {
                Some("value") => {
                    if let Some(t) = attr.t {
                        let name = named(output.clone(), fallback);
                        out.push(entry(name.clone(), tensor::dense(ctx, &name, t)));
                    }
                    continue;
                }
                Some("sparse_value") => {
                    if let Some(s) = attr.sparse_tensor {
                        let name = named(output.clone(), fallback);
                        out.push(entry(name.clone(), tensor::sparse(ctx, &name, s)));
                    }
                    continue;
                }
                _ => {}
            }
        }
        for g in attr.g.into_iter().chain(attr.graphs) {
            walk(ctx, g, depth + 1, out);
        }
    }
}

/// `name`, or a placeholder naming where the tensor is when it has none.
fn named(name: String, placeholder: impl FnOnce() -> String) -> String {
    if name.is_empty() {
        placeholder()
    } else {
        name
    }
}

fn entry(name: String, info: Result<ztensor::TensorInfo, String>) -> Entry {
    match info {
        Ok(info) => Entry::ok(info),
        Err(e) => Entry::broken(name, e),
    }
}

/// The model's metadata as a map with text keys (absent fields left out).
fn file_attributes(m: &ModelProto) -> Value {
    let text = |k: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| (Value::Text(k.into()), Value::Text(v.clone())))
    };
    let int = |k: &str, v: Option<i64>| v.map(|v| (Value::Text(k.into()), Value::from(v)));
    let mut map: Vec<(Value, Value)> = [
        int("ir_version", m.ir_version),
        text("producer_name", &m.producer_name),
        text("producer_version", &m.producer_version),
        text("domain", &m.domain),
        int("model_version", m.model_version),
        text("doc_string", &m.doc_string),
    ]
    .into_iter()
    .flatten()
    .collect();
    map.push((
        Value::Text("opset_import".into()),
        Value::Array(
            m.opset_import
                .iter()
                .map(|o| {
                    Value::Map(vec![
                        (
                            Value::Text("domain".into()),
                            Value::Text(o.domain.clone().unwrap_or_default()),
                        ),
                        (
                            Value::Text("version".into()),
                            Value::from(o.version.unwrap_or(0)),
                        ),
                    ])
                })
                .collect(),
        ),
    ));
    if !m.metadata_props.is_empty() {
        map.push((
            Value::Text("metadata_props".into()),
            string_map(&m.metadata_props),
        ));
    }
    Value::Map(map)
}
