//! Checks libhdf5 makes while it reads a file that `rust-hdf5` 0.7.9 does
//! not, made on the file image with the crate's public format codecs. Without
//! them a damaged file reads with wrong values where h5py refuses it:
//!
//! - every address the walk meets (object headers, local heaps, group and
//!   chunk B-tree nodes, symbol-table nodes, chunks) lies inside the file:
//!   libhdf5 fails on one past the end ("addr overflow"), while rust-hdf5
//!   takes a chunk, or a chunk B-tree node, past the end for one never
//!   written and reads the fill value; only the undefined address
//!   (`0xffffffffffffffff`) means "never written";
//! - the element offsets of a chunk B-tree key are multiples of the chunk
//!   size ("bad coordinate offset"; rust-hdf5 rounds them down), and the
//!   chunks are in increasing offset order, which libhdf5's lookups rely on;
//! - no dimension of a dataspace exceeds its maximum, and contiguous storage
//!   holds exactly the bytes its extent needs;
//! - a fill value has the size of an element, and is not given only by the
//!   old-style fill value message, which rust-hdf5 ignores (it fills with
//!   zeros where libhdf5 fills with that value);
//! - a group's local heap keeps its names outside its own header, and its
//!   free list is well formed (a damaged data address fails it);
//! - a symbol-table group lists its members in name order, which libhdf5's
//!   lookups rely on: a member whose name is out of order (a damaged name)
//!   cannot be opened by h5py, so it is not read under that name here either.
//!
//! The walk covers symbol-table groups (h5py's default, `libver="earliest"`)
//! and link-message groups; problems are reported per object path, and every
//! dataset at or below a path with a problem is unreadable. What the walk
//! cannot decode is left to the library (it decodes with the same codecs).

use std::collections::{HashMap, HashSet};

use rust_hdf5::format::btree_v1::{BTreeV1Config, BTreeV1Node, ChunkBTreeV1Node};
use rust_hdf5::format::dense_link::read_dense_links;
use rust_hdf5::format::local_heap::{
    local_heap_header_size, LocalHeapHeader, LOCAL_HEAP_FREE_NULL,
};
use rust_hdf5::format::messages::data_layout::DataLayoutMessage;
use rust_hdf5::format::messages::dataspace::DataspaceMessage;
use rust_hdf5::format::messages::datatype::DatatypeMessage;
use rust_hdf5::format::messages::fill_value::FillValueMessage;
use rust_hdf5::format::messages::link::{LinkMessage, LinkTarget};
use rust_hdf5::format::messages::link_info::LinkInfoMessage;
use rust_hdf5::format::object_header::ObjectHeader;
use rust_hdf5::format::symbol_table::SymbolTableNode;
use rust_hdf5::format::{FormatContext, UNDEF_ADDR};

use super::library::ImageReader;
use super::message::{
    CONTINUATION, DATASPACE, DATATYPE, FILL, FILL_OLD, LAYOUT, LINK, LINK_INFO, SYMBOL_TABLE,
};

/// One object-header message: (type, flags, body).
pub(super) type Message = (u8, u8, Vec<u8>);

/// Most continuation blocks followed in one header (a hostile chain may loop).
const MAX_CONTINUATIONS: usize = 64;
/// Deepest group nesting walked.
const MAX_DEPTH: usize = 64;
/// Most B-tree and symbol-table nodes read in one file; past that the rest
/// is left unchecked (a legitimate file this large is not damaged at random).
const MAX_NODES: usize = 1 << 20;

/// The file's layout facts the walk needs.
pub(super) struct Geometry {
    /// Where the superblock starts (the userblock size); addresses count from here.
    pub base: u64,
    /// Address and length widths.
    pub ctx: FormatContext,
    /// The v1 B-tree "K" values.
    pub k: BTreeV1Config,
    /// The root group's object header address.
    pub root: u64,
}

/// Problems found, by object path (`a/b`, the root is `""`).
pub(super) fn problems(bytes: &[u8], geo: &Geometry) -> HashMap<String, String> {
    let mut walk = Walk {
        bytes,
        geo,
        problems: HashMap::new(),
        groups: HashSet::new(),
        nodes: 0,
    };
    walk.object("", geo.root, 0);
    walk.problems
}

/// The problem of the dataset at `path`, or of a group above it.
pub(super) fn problem_of<'a>(problems: &'a HashMap<String, String>, path: &str) -> Option<&'a str> {
    let path = path.trim_matches('/');
    let mut prefix = Some(path);
    while let Some(p) = prefix {
        if let Some(e) = problems.get(p) {
            return Some(e);
        }
        prefix = (!p.is_empty()).then(|| p.rfind('/').map_or("", |i| &p[..i]));
    }
    None
}

/// The messages of the object header at `addr`, continuation blocks
/// followed. An error when the header or a continuation block lies outside
/// the file or does not decode.
pub(super) fn header_messages(
    bytes: &[u8],
    base: u64,
    addr: u64,
    ctx: &FormatContext,
) -> Result<Vec<Message>, String> {
    let at = span(bytes, base, addr, 1)?;
    let (header, _) = ObjectHeader::decode_any(&bytes[at..])
        .map_err(|e| format!("object header at address {addr}: {e}"))?;
    let v2 = bytes.get(at..at + 4) == Some(b"OHDR");
    let mut pending: Vec<Message> = header
        .messages
        .into_iter()
        .map(|m| (m.msg_type, m.flags, m.data))
        .collect();
    pending.reverse();
    let mut messages = Vec::new();
    let mut blocks = 0;
    while let Some(m) = pending.pop() {
        if m.0 != CONTINUATION {
            messages.push(m);
            continue;
        }
        blocks += 1;
        if blocks > MAX_CONTINUATIONS {
            return Err(format!(
                "object header at address {addr}: too many continuation blocks"
            ));
        }
        let (sa, ss) = (ctx.sizeof_addr, ctx.sizeof_size);
        let block_addr = read_uint(&m.2, 0, sa).ok_or("short continuation message")?;
        let len = read_uint(&m.2, usize::from(sa), ss).ok_or("short continuation message")?;
        let start = span(bytes, base, block_addr, len)?;
        let block = &bytes[start..start + len as usize];
        let mut found = continuation_block(block, v2, header.flags & 0x04 != 0);
        found.reverse();
        pending.extend(found);
    }
    Ok(messages)
}

/// The absolute start of `len` bytes at `addr`, when they lie inside the file.
pub(super) fn span(bytes: &[u8], base: u64, addr: u64, len: u64) -> Result<usize, String> {
    if addr == UNDEF_ADDR {
        return Err("an undefined address where one is required".into());
    }
    let end = base
        .checked_add(addr)
        .and_then(|a| a.checked_add(len))
        .filter(|&e| e <= bytes.len() as u64);
    match end {
        Some(end) => Ok((end - len) as usize),
        None => Err(format!(
            "address {addr} (+{len} bytes) lies past the end of the {}-byte file",
            bytes.len()
        )),
    }
}

struct Walk<'a> {
    bytes: &'a [u8],
    geo: &'a Geometry,
    problems: HashMap<String, String>,
    /// Group headers already walked (hard links may form cycles).
    groups: HashSet<u64>,
    nodes: usize,
}

impl<'a> Walk<'a> {
    fn at(&self, addr: u64, len: usize) -> Result<&'a [u8], String> {
        let start = span(self.bytes, self.geo.base, addr, len as u64)?;
        Ok(&self.bytes[start..start + len])
    }

    /// Counts a node read; false once the budget is spent.
    fn node(&mut self) -> bool {
        self.nodes += 1;
        self.nodes <= MAX_NODES
    }

    fn object(&mut self, path: &str, addr: u64, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let ctx = self.geo.ctx;
        let messages = match header_messages(self.bytes, self.geo.base, addr, &ctx) {
            Ok(m) => m,
            Err(e) => {
                self.problems.insert(path.to_string(), e);
                return;
            }
        };
        let find = |t: u8| messages.iter().find(|m| m.0 == t).map(|m| m.2.as_slice());
        if let Some(layout) = find(LAYOUT) {
            let fill = fill_problem(find(DATATYPE), find(FILL), find(FILL_OLD), &ctx);
            let checked = fill.and_then(|()| self.dataset(find(DATASPACE), find(DATATYPE), layout));
            if let Err(e) = checked {
                self.problems.insert(path.to_string(), e);
            }
            return;
        }
        if !self.groups.insert(addr) {
            return;
        }
        let children = match self.members(&messages) {
            Ok(c) => c,
            Err(e) => {
                self.problems.insert(path.to_string(), e);
                return;
            }
        };
        for (name, child) in children {
            let sub = if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            self.object(&sub, child, depth + 1);
        }
    }

    /// A group's members (name, object header address), hard links only.
    fn members(&mut self, messages: &[Message]) -> Result<Vec<(String, u64)>, String> {
        let ctx = self.geo.ctx;
        let mut out = Vec::new();
        for m in messages {
            match m.0 {
                SYMBOL_TABLE => out.extend(self.symbol_table(&m.2)?),
                LINK => {
                    if let Ok((link, _)) = LinkMessage::decode(&m.2, &ctx) {
                        if let LinkTarget::Hard { address } = link.target {
                            out.push((link.name, address));
                        }
                    }
                }
                LINK_INFO => {
                    let Ok((info, _)) = LinkInfoMessage::decode(&m.2, &ctx) else {
                        continue;
                    };
                    let mut reader = ImageReader::new(self.bytes, self.geo.base as usize);
                    for link in read_dense_links(&info, &ctx, &mut reader).unwrap_or_default() {
                        if let LinkTarget::Hard { address } = link.target {
                            out.push((link.name, address));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The members of a symbol-table group, which must be in name order.
    fn symbol_table(&mut self, body: &[u8]) -> Result<Vec<(String, u64)>, String> {
        let (sa, ss) = (self.geo.ctx.sizeof_addr, self.geo.ctx.sizeof_size);
        let btree = read_uint(body, 0, sa).ok_or("short symbol table message")?;
        let heap_addr = read_uint(body, usize::from(sa), sa).ok_or("short symbol table message")?;
        let header = self.at(heap_addr, local_heap_header_size(sa.into(), ss.into()))?;
        let heap = LocalHeapHeader::decode(header, sa.into(), ss.into())
            .map_err(|e| format!("local heap at address {heap_addr}: {e}"))?;
        let data_len = usize::try_from(heap.data_size).map_err(|_| "local heap too large")?;
        let header_len = header.len() as u64;
        let overlaps = heap.data_addr < heap_addr.saturating_add(header_len)
            && heap_addr < heap.data_addr.saturating_add(heap.data_size);
        if overlaps {
            return Err(format!(
                "the names of the local heap at address {heap_addr} overlap its header (damaged)"
            ));
        }
        let heap_data = self
            .at(heap.data_addr, data_len)
            .map_err(|e| format!("local heap data: {e}"))?;
        check_free_list(heap_data, heap.free_list_offset, ss)
            .map_err(|e| format!("the local heap at address {heap_addr} is damaged: {e}"))?;
        let mut entries = Vec::new();
        self.group_node(btree, None, 0, &mut entries)?;
        let name_at = |offset: u64| {
            usize::try_from(offset)
                .ok()
                .and_then(|o| heap_data.get(o..))
                .map(|rest| &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())])
                .ok_or_else(|| {
                    format!("a member name at heap offset {offset} lies outside the group's heap")
                })
        };
        let mut out: Vec<(String, u64)> = Vec::with_capacity(entries.len());
        let mut previous: Option<&[u8]> = None;
        for (name_offset, header, (left, right)) in entries {
            let name = name_at(name_offset)?;
            // libhdf5 looks a name up in the child whose keys bound it
            // (left < name <= right); outside them it does not exist.
            if name_at(left)? >= name || name > name_at(right)? {
                return Err(format!(
                    "the group's member {:?} lies outside its B-tree keys (a damaged name): \
                     libhdf5 cannot look it up",
                    String::from_utf8_lossy(name)
                ));
            }
            if previous.is_some_and(|p| p >= name) {
                return Err(format!(
                    "the group's members are not in name order at {:?} (a damaged name): \
                     libhdf5 cannot look them up",
                    String::from_utf8_lossy(name)
                ));
            }
            previous = Some(name);
            out.push((String::from_utf8_lossy(name).into_owned(), header));
        }
        Ok(out)
    }

    /// Collects (name offset, object header, the heap offsets of the names
    /// bounding its symbol-table node) of every entry below a group B-tree
    /// node, in order.
    fn group_node(
        &mut self,
        addr: u64,
        level: Option<u8>,
        depth: usize,
        out: &mut Vec<(u64, u64, (u64, u64))>,
    ) -> Result<(), String> {
        if !self.node() || depth > MAX_DEPTH {
            return Ok(());
        }
        let (sa, ss) = (self.geo.ctx.sizeof_addr, self.geo.ctx.sizeof_size);
        let k = self.geo.k;
        let buf = self.at(addr, k.snode_btree_node_size(sa.into(), ss.into()))?;
        let node = BTreeV1Node::decode(buf, sa.into(), ss.into(), k.snode_max_entries())
            .map_err(|e| format!("group B-tree node at address {addr}: {e}"))?;
        if level.is_some_and(|l| node.level != l) {
            return Err(format!(
                "group B-tree node at address {addr} has the wrong level"
            ));
        }
        for (i, &child) in node.children.iter().enumerate() {
            if node.level > 0 {
                self.group_node(child, Some(node.level - 1), depth + 1, out)?;
                continue;
            }
            let bounds = (node.keys[i], node.keys[i + 1]); // decode gives one key more
            if !self.node() {
                return Ok(());
            }
            let buf = self.at(child, k.symbol_table_node_size(sa.into(), ss.into()))?;
            let snod = SymbolTableNode::decode(buf, sa.into(), ss.into(), k.sym_leaf_max_entries())
                .map_err(|e| format!("symbol table node at address {child}: {e}"))?;
            out.extend(
                snod.entries
                    .iter()
                    .filter(|e| e.obj_header_addr != UNDEF_ADDR) // soft links
                    .map(|e| (e.name_offset, e.obj_header_addr, bounds)),
            );
        }
        Ok(())
    }

    /// The checks of one dataset: its extent and its chunk index.
    fn dataset(
        &mut self,
        dataspace: Option<&[u8]>,
        datatype: Option<&[u8]>,
        layout: &[u8],
    ) -> Result<(), String> {
        let ctx = self.geo.ctx;
        let dims = match dataspace.map(|d| DataspaceMessage::decode(d, &ctx)) {
            Some(Ok((space, _))) => {
                extent_problem(&space)?;
                space.dims
            }
            _ => return Ok(()), // left to the library
        };
        let (chunk_dims, b_tree_address) = match DataLayoutMessage::decode(layout, &ctx) {
            Ok((
                DataLayoutMessage::ChunkedV3 {
                    chunk_dims,
                    b_tree_address,
                },
                _,
            )) => (chunk_dims, b_tree_address),
            // As libhdf5: contiguous storage holds exactly the extent's bytes.
            Ok((DataLayoutMessage::Contiguous { address, size }, _)) if address != UNDEF_ADDR => {
                let elem = datatype
                    .and_then(|d| DatatypeMessage::decode(d, &ctx).ok())
                    .map(|(t, _)| u64::from(t.element_size()));
                let needed = elem.and_then(|e| extent_bytes(e, &dims));
                return match needed {
                    Some(n) if n != size => Err(format!(
                        "its storage holds {size} bytes where its shape {dims:?} needs {n} (damaged)"
                    )),
                    _ => Ok(()),
                };
            }
            _ => return Ok(()),
        };
        if b_tree_address == UNDEF_ADDR || chunk_dims.len() != dims.len() + 1 {
            return Ok(()); // nothing written yet / left to the library
        }
        let chunk = &chunk_dims[..dims.len()];
        self.chunk_node(b_tree_address, None, chunk, 0, &mut None)
            .map_err(|e| format!("its chunk index is damaged: {e}"))
    }

    /// Checks a chunk B-tree node and everything below it; `last` is the
    /// offset of the chunk before it (chunks are in increasing offset order,
    /// which libhdf5's lookups rely on).
    fn chunk_node(
        &mut self,
        addr: u64,
        level: Option<u8>,
        chunk: &[u64],
        depth: usize,
        last: &mut Option<Vec<u64>>,
    ) -> Result<(), String> {
        if !self.node() || depth > MAX_DEPTH {
            return Ok(());
        }
        let (k, sa, rank) = (self.geo.k, self.geo.ctx.sizeof_addr, chunk.len());
        let buf = self.at(addr, k.chunk_btree_node_size(sa.into(), rank))?;
        let node = ChunkBTreeV1Node::decode(buf, sa.into(), rank, k.chunk_max_entries())
            .map_err(|e| format!("node at address {addr}: {e}"))?;
        if level.is_some_and(|l| node.level != l) {
            return Err(format!("node at address {addr} has the wrong level"));
        }
        for (key, &child) in node.keys.iter().zip(&node.children) {
            let aligned = key
                .offsets
                .iter()
                .zip(chunk)
                .all(|(&o, &c)| c != 0 && o % c == 0);
            if !aligned {
                return Err(format!(
                    "chunk offsets {:?} are not multiples of the chunk shape {chunk:?}",
                    &key.offsets[..rank.min(key.offsets.len())]
                ));
            }
            if child == UNDEF_ADDR {
                continue;
            }
            if node.level > 0 {
                self.chunk_node(child, Some(node.level - 1), chunk, depth + 1, last)?;
            } else {
                self.at(child, key.chunk_size as usize)
                    .map_err(|e| format!("a chunk at {:?}: {e}", key.offsets))?;
                let at = &key.offsets[..rank.min(key.offsets.len())];
                if last.as_deref().is_some_and(|l| l >= at) {
                    return Err(format!(
                        "the chunk at {at:?} follows the one at {:?}: out of order",
                        last.as_deref().unwrap_or_default()
                    ));
                }
                *last = Some(at.to_vec());
            }
        }
        Ok(())
    }
}

/// Checks a local heap's free list as libhdf5 reads it (`H5HL__fl_deserialize`):
/// each free block lies inside the heap's data and links to another one or
/// ends the list. A heap whose data address is damaged fails this, where its
/// names would otherwise be read from the wrong bytes.
pub(super) fn check_free_list(data: &[u8], first: u64, sizeof_size: u8) -> Result<(), String> {
    let ss = usize::from(sizeof_size);
    let mut offset = first;
    let mut blocks = 0;
    while offset != LOCAL_HEAP_FREE_NULL {
        blocks += 1;
        if blocks > data.len() / 8 + 1 {
            return Err("its free list loops".into());
        }
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        let (Some(next), Some(size)) = (
            read_uint(data, at, sizeof_size),
            read_uint(data, at.saturating_add(ss), sizeof_size),
        ) else {
            return Err(format!(
                "a free block at offset {offset} lies outside its data"
            ));
        };
        if next == 0 || offset.saturating_add(size) > data.len() as u64 {
            return Err(format!("the free block at offset {offset} is malformed"));
        }
        offset = next;
    }
    Ok(())
}

/// As libhdf5: no dimension of a dataspace exceeds its maximum.
pub(super) fn extent_problem(space: &DataspaceMessage) -> Result<(), String> {
    if let Some(max) = &space.max_dims {
        for (i, (&d, &m)) in space.dims.iter().zip(max).enumerate() {
            if m != UNDEF_ADDR && d > m {
                return Err(format!(
                    "dimension {i} is {d}, more than its maximum {m} (damaged)"
                ));
            }
        }
    }
    Ok(())
}

/// The bytes an extent of `dims` elements of `elem_size` bytes takes, if
/// that fits a `u64` (what contiguous storage must hold exactly).
pub(super) fn extent_bytes(elem_size: u64, dims: &[u64]) -> Option<u64> {
    dims.iter().try_fold(elem_size, |a, &d| a.checked_mul(d))
}

/// Checks a dataset's fill value messages (new style, old style) against
/// its datatype.
pub(super) fn fill_problem(
    datatype: Option<&[u8]>,
    fill: Option<&[u8]>,
    old: Option<&[u8]>,
    ctx: &FormatContext,
) -> Result<(), String> {
    match (fill, old) {
        (Some(fill), _) => {
            let elem = datatype
                .and_then(|d| DatatypeMessage::decode(d, ctx).ok())
                .map(|(t, _)| t.element_size() as usize);
            let value = FillValueMessage::decode(fill)
                .ok()
                .and_then(|(f, _)| f.fill_value);
            match (value, elem) {
                (Some(v), Some(e)) if v.len() != e => Err(format!(
                    "its fill value has {} bytes where an element has {e} (damaged)",
                    v.len()
                )),
                _ => Ok(()),
            }
        }
        (None, Some(old)) => {
            // A size, then that many bytes (padded to 8 in the header).
            let value = read_uint(old, 0, 4)
                .and_then(|n| old.get(4..4usize.checked_add(usize::try_from(n).ok()?)?))
                .ok_or("its old-style fill value message is malformed (damaged)")?;
            if value.iter().any(|&b| b != 0) {
                return Err("its fill value is only given by the old-style fill value \
                            message, which is not supported"
                    .into());
            }
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// A little-endian unsigned integer of `width` bytes at `at`.
pub(super) fn read_uint(buf: &[u8], at: usize, width: u8) -> Option<u64> {
    let raw = buf.get(at..at.checked_add(width as usize)?)?;
    if raw.len() > 8 {
        return None;
    }
    let mut b = [0u8; 8];
    b[..raw.len()].copy_from_slice(raw);
    Some(u64::from_le_bytes(b))
}

/// The messages of one object-header continuation block: version 1 blocks
/// are bare 8-byte aligned messages, version 2 ones start with `OCHK` and end
/// with a checksum (left to the library).
fn continuation_block(block: &[u8], v2: bool, creation_order: bool) -> Vec<Message> {
    let mut out = Vec::new();
    if v2 {
        let Some(body) = block
            .strip_prefix(b"OCHK")
            .and_then(|b| b.get(..b.len().checked_sub(4)?))
        else {
            return out;
        };
        let head = if creation_order { 6 } else { 4 };
        let mut at = 0;
        while at + head <= body.len() {
            let ty = body[at];
            let size = u16::from_le_bytes([body[at + 1], body[at + 2]]) as usize;
            let flags = body[at + 3];
            let Some(data) = body.get(at + head..at + head + size) else {
                break;
            };
            out.push((ty, flags, data.to_vec()));
            at += head + size;
        }
    } else {
        let mut at = 0;
        while at + 8 <= block.len() {
            let ty = u16::from_le_bytes([block[at], block[at + 1]]);
            let size = u16::from_le_bytes([block[at + 2], block[at + 3]]) as usize;
            let flags = block[at + 4];
            let Some(data) = block.get(at + 8..at + 8 + size) else {
                break;
            };
            if let Ok(ty) = u8::try_from(ty) {
                out.push((ty, flags, data.to_vec()));
            }
            at += 8 + size;
        }
    }
    out
}
