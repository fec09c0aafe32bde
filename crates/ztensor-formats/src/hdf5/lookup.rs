//! One dataset of an HDF5 file without walking the file: [`parse_one`].
//!
//! `rust-hdf5` discovers every object when it opens a file, and [`parse`]
//! then describes and checks every dataset: for a file of 20,000 datasets
//! that is hundreds of milliseconds to read one of them, where h5py opens
//! lazily and looks the one name up. This module does the lookup itself,
//! on the file image, with the crate's public format codecs (as `check.rs`
//! does), and projects the dataset found exactly as [`parse`] would.
//!
//! Only the plain case is taken this way: groups along the path that are
//! symbol-table groups (h5py's default; the name is looked up down the
//! group B-tree, as libhdf5 does) or compact link-message groups, each
//! linked once, and at the end a contiguous, allocated, little-endian
//! dataset of a supported element type whose header holds nothing but
//! dataspace, datatype, fill value, layout and time messages (no
//! attributes). The checks `check.rs` makes are made on what the lookup
//! reads (addresses inside the file, name heaps, the keys of the B-tree
//! nodes on the way, every member of the symbol-table node reached in name
//! order within its keys, extent and fill value). Anything else, any check
//! failing, any codec error, any doubt, falls back to the full [`parse`]
//! filtered to the name: correct by construction, only slower.
//!
//! So a damaged file gives the same entries either way, with one limit
//! inherent to not walking (h5py does not walk either): damage the lookup
//! does not read is not seen. The full parse fails on damage anywhere in
//! the file, holds a damaged member name against every member of its group
//! and refuses datasets whose bytes overlap another's; a lookup sees these
//! only on its way to the name.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rust_hdf5::format::btree_v1::BTreeV1Node;
use rust_hdf5::format::local_heap::{local_heap_header_size, LocalHeapHeader};
use rust_hdf5::format::messages::data_layout::DataLayoutMessage;
use rust_hdf5::format::messages::dataspace::{DataspaceClass, DataspaceMessage};
use rust_hdf5::format::messages::datatype::DatatypeMessage;
use rust_hdf5::format::messages::fill_value::FillValueMessage;
use rust_hdf5::format::messages::link::{LinkMessage, LinkTarget};
use rust_hdf5::format::messages::link_info::LinkInfoMessage;
use rust_hdf5::format::superblock::{SymbolTableCache, SymbolTableEntry};
use rust_hdf5::format::symbol_table::SymbolTableNode;
use rust_hdf5::format::UNDEF_ADDR;
use ztensor::{Catalog, Entry, FormatError, Value};

use super::backend::{DatasetDesc, ElemType, Hdf5Backend, Storage};
use super::check::{self, Geometry, Message};
use super::message::*;
use super::{library, parse, tensor};
use crate::ParseContext;

/// Deepest group nesting followed (the full walk's bound, `check.rs`).
const MAX_DEPTH: usize = 64;
/// Most B-tree and symbol-table nodes read in one lookup; past that, the
/// full parse decides.
const MAX_NODES: usize = 1 << 20;

/// A catalog holding only the entries of the tensor `name` (the dataset(s)
/// whose path, with `.` between groups, is `name`): the same entries the
/// full [`parse`] gives that name, and none when it has none. File
/// attributes are left out when the fast lookup answers (`attributes:
/// None`); callers needing them parse the whole file.
pub fn parse_one(bytes: &[u8], cx: &ParseContext, name: &str) -> Result<Catalog, FormatError> {
    if cx.hdf5_backend.is_none() {
        let (superblock, version) = super::opened(bytes)?;
        if !superblock.extended {
            let found = catch_unwind(AssertUnwindSafe(|| {
                let mut lookup = Lookup {
                    bytes,
                    geo: &superblock.geometry,
                    name,
                    nodes: 0,
                    groups: HashSet::new(),
                };
                let mut out = Vec::new();
                let root = superblock.geometry.root;
                lookup
                    .group(root, superblock.root_stab, name, 0, &mut out)
                    .map(|()| out)
            }));
            if let Ok(Some(entries)) = found {
                return Ok(Catalog {
                    version,
                    ..Catalog::new("hdf5", entries, (0, bytes.len() as u64))
                });
            }
        }
    }
    let mut catalog = parse(bytes, cx)?;
    catalog.entries.retain(|e| e.name == name);
    Ok(catalog)
}

/// A catalog of no entries, after the checks [`parse`] makes of a file
/// before walking it (an HDF5 signature, a superblock that decodes, a file
/// as long as the superblock says): what a reader that looks datasets up
/// one by one ([`parse_one`]) checks when it opens. The superblock version
/// is the catalog's version, as in [`parse`].
pub fn parse_none(bytes: &[u8]) -> Result<Catalog, FormatError> {
    let (_, version) = super::opened(bytes)?;
    Ok(Catalog {
        version,
        ..Catalog::new("hdf5", Vec::new(), (0, bytes.len() as u64))
    })
}

/// What a lookup needs; every method answers `None` for "not sure: let the
/// full parse decide".
struct Lookup<'a> {
    bytes: &'a [u8],
    geo: &'a Geometry,
    /// The tensor name looked up (every entry found bears it).
    name: &'a str,
    nodes: usize,
    /// Group headers entered (a hard-link cycle is left to the full parse).
    groups: HashSet<u64>,
}

/// One member of a group that may start the rest of the name.
struct Member {
    /// Bytes of the name it matched.
    len: usize,
    /// Its object header address.
    addr: u64,
    /// The symbol-table addresses cached in its entry (symbol-table groups).
    stab: Option<(u64, u64)>,
}

impl<'a> Lookup<'a> {
    /// Adds to `out` the entries for `rest` below the group whose header is
    /// at `addr`.
    fn group(
        &mut self,
        addr: u64,
        cached: Option<(u64, u64)>,
        rest: &str,
        depth: usize,
        out: &mut Vec<Entry>,
    ) -> Option<()> {
        if depth > MAX_DEPTH || !self.groups.insert(addr) {
            return None;
        }
        let messages = self.header(addr)?;
        // Only messages a group may hold that change nothing for a lookup:
        // anything else is a doubt.
        let plain = |m: &Message| {
            m.1 & SHARED == 0
                && matches!(
                    m.0,
                    NIL | LINK_INFO
                        | LINK
                        | GROUP_INFO
                        | ATTRIBUTE
                        | COMMENT
                        | MTIME_OLD
                        | SYMBOL_TABLE
                        | MTIME
                        | ATTRIBUTE_INFO
                )
        };
        if !messages.iter().all(plain) {
            return None;
        }
        let has = |t: u8| messages.iter().any(|m| m.0 == t);
        let members = if has(LINK) || has(LINK_INFO) {
            if has(SYMBOL_TABLE) {
                return None;
            }
            self.links(&messages, rest)?
        } else {
            let body = &messages.iter().find(|m| m.0 == SYMBOL_TABLE)?.2;
            let (sa, _) = self.widths();
            let own = (
                check::read_uint(body, 0, sa)?,
                check::read_uint(body, usize::from(sa), sa)?,
            );
            // The library takes the cached addresses over the header's.
            if cached.is_some_and(|c| c != own) {
                return None;
            }
            self.symbol_table(own, rest)?
        };
        for m in members {
            let tail = &rest[m.len..];
            if tail.is_empty() {
                self.dataset(m.addr, out)?;
            } else {
                self.child_group(m.addr, m.stab, &tail[1..], depth + 1, out)?;
            }
        }
        Some(())
    }

    /// A member named by a prefix of the name: a group to descend, or
    /// something else (a dataset, a datatype) that holds no tensor there.
    fn child_group(
        &mut self,
        addr: u64,
        cached: Option<(u64, u64)>,
        rest: &str,
        depth: usize,
        out: &mut Vec<Entry>,
    ) -> Option<()> {
        match self.kind(addr)? {
            Kind::Group => self.group(addr, cached, rest, depth, out),
            Kind::Dataset => Some(()),
        }
    }

    /// Whether the object at `addr` is a group or a dataset (else: doubt).
    fn kind(&self, addr: u64) -> Option<Kind> {
        let messages = self.header(addr)?;
        let has = |t: u8| messages.iter().any(|m| m.0 == t);
        let group = has(LINK) || has(LINK_INFO) || has(SYMBOL_TABLE) || has(GROUP_INFO);
        let dataset = has(DATATYPE) && has(DATASPACE) && has(LAYOUT);
        match (group, dataset) {
            (true, false) => Some(Kind::Group),
            (false, true) => Some(Kind::Dataset),
            _ => None,
        }
    }

    fn widths(&self) -> (u8, u8) {
        (self.geo.ctx.sizeof_addr, self.geo.ctx.sizeof_size)
    }

    /// The messages of the object header at `addr`, when it is referenced
    /// once (an object linked twice may be listed under one path only).
    fn header(&self, addr: u64) -> Option<Vec<Message>> {
        let at = usize::try_from(self.geo.base.checked_add(addr)?).ok()?;
        // A version-1 header keeps its reference count at bytes 4..8; a
        // version-2 one only in a message, which `plain` refuses.
        if self.bytes.get(at) == Some(&1) && check::read_uint(self.bytes, at + 4, 4)? != 1 {
            return None;
        }
        let messages = check::header_messages(self.bytes, self.geo.base, addr, &self.geo.ctx);
        messages.ok()
    }

    /// The members of a link-message group that start `rest`.
    fn links(&self, messages: &[Message], rest: &str) -> Option<Vec<Member>> {
        let ctx = &self.geo.ctx;
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for m in messages {
            match m.0 {
                LINK => {
                    let (link, _) = LinkMessage::decode(&m.2, ctx).ok()?;
                    if !names.insert(link.name.clone()) {
                        return None; // listed twice: the full parse decides
                    }
                    if starts(rest, link.name.as_bytes()) {
                        let LinkTarget::Hard { address } = link.target else {
                            return None;
                        };
                        out.push(Member {
                            len: link.name.len(),
                            addr: address,
                            stab: None,
                        });
                    }
                }
                LINK_INFO => {
                    let (info, _) = LinkInfoMessage::decode(&m.2, ctx).ok()?;
                    if info.is_dense() {
                        return None;
                    }
                }
                _ => {}
            }
        }
        Some(out)
    }

    /// The members of a symbol-table group that start `rest`, each looked
    /// up down the group's B-tree as libhdf5 does, after the checks
    /// `check.rs` makes of what the lookup reads: the heap, the B-tree
    /// nodes on the way (their keys in order) and the symbol-table node
    /// reached (every member in name order within its keys).
    fn symbol_table(&mut self, (btree, heap_addr): (u64, u64), rest: &str) -> Option<Vec<Member>> {
        let (sa, ss) = self.widths();
        let header = self.at(heap_addr, local_heap_header_size(sa.into(), ss.into()))?;
        let heap = LocalHeapHeader::decode(header, sa.into(), ss.into()).ok()?;
        let data_len = usize::try_from(heap.data_size).ok()?;
        let overlaps = heap.data_addr < heap_addr.saturating_add(header.len() as u64)
            && heap_addr < heap.data_addr.saturating_add(heap.data_size);
        if overlaps {
            return None;
        }
        let heap_data = self.at(heap.data_addr, data_len)?;
        check::check_free_list(heap_data, heap.free_list_offset, ss).ok()?;
        // Every prefix of `rest` ending before a `.`, and `rest` itself.
        let ends = rest.match_indices('.').map(|(i, _)| i).chain([rest.len()]);
        let mut out = Vec::new();
        for end in ends {
            let name = &rest.as_bytes()[..end];
            if name.is_empty() {
                continue;
            }
            let Some(e) = self.find(btree, heap_data, name)? else {
                continue;
            };
            let stab = match e.cache {
                SymbolTableCache::Nothing => None,
                SymbolTableCache::SymbolTable {
                    btree_addr,
                    heap_addr,
                } => Some((btree_addr, heap_addr)),
                SymbolTableCache::SoftLink { .. } => return None,
            };
            if e.obj_header_addr == UNDEF_ADDR {
                return None;
            }
            out.push(Member {
                len: end,
                addr: e.obj_header_addr,
                stab,
            });
        }
        Some(out)
    }

    /// The entry named `name` in the group whose B-tree is at `btree` and
    /// whose names are in `heap`: `Some(None)` when there is none.
    fn find(&mut self, btree: u64, heap: &[u8], name: &[u8]) -> Option<Option<SymbolTableEntry>> {
        let name_at = |offset: u64| -> Option<&[u8]> {
            let rest = heap.get(usize::try_from(offset).ok()?..)?;
            Some(&rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())])
        };
        let (sa, ss) = self.widths();
        let k = self.geo.k;
        let (mut addr, mut level) = (btree, None);
        for _ in 0..=MAX_DEPTH {
            self.node()?;
            let buf = self.at(addr, k.snode_btree_node_size(sa.into(), ss.into()))?;
            let node =
                BTreeV1Node::decode(buf, sa.into(), ss.into(), k.snode_max_entries()).ok()?;
            if level.is_some_and(|l| node.level != l) || node.keys.len() != node.children.len() + 1
            {
                return None;
            }
            let keys: Vec<&[u8]> = node
                .keys
                .iter()
                .map(|&o| name_at(o))
                .collect::<Option<_>>()?;
            if keys.windows(2).any(|w| w[0] > w[1]) {
                return None;
            }
            // The child whose keys bound the name (left < name <= right).
            // Past the last key libhdf5 finds nothing, but the last node is
            // read all the same: a damaged name there (past its key) is
            // listed by the full parse, which must then decide.
            let last = node.children.len().checked_sub(1)?;
            let i = match (0..=last).find(|&i| keys[i] < name && name <= keys[i + 1]) {
                Some(i) => i,
                None if name > keys[last + 1] => last,
                None => return Some(None),
            };
            if node.level > 0 {
                (addr, level) = (node.children[i], Some(node.level - 1));
                continue;
            }
            let snod = self.snod(node.children[i])?;
            let mut previous = keys[i];
            let mut found = None;
            for e in snod.entries {
                let member = name_at(e.name_offset)?;
                if member <= previous || member > keys[i + 1] {
                    return None; // a damaged name: the full parse decides
                }
                previous = member;
                if member == name {
                    found = Some(e);
                }
            }
            return Some(found);
        }
        None
    }

    /// Counts one more node read; `None` past [`MAX_NODES`].
    fn node(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES).then_some(())
    }

    fn snod(&mut self, addr: u64) -> Option<SymbolTableNode> {
        self.node()?;
        let (sa, ss) = self.widths();
        let k = self.geo.k;
        let buf = self.at(addr, k.symbol_table_node_size(sa.into(), ss.into()))?;
        SymbolTableNode::decode(buf, sa.into(), ss.into(), k.sym_leaf_max_entries()).ok()
    }

    fn at(&self, addr: u64, len: usize) -> Option<&'a [u8]> {
        let start = check::span(self.bytes, self.geo.base, addr, len as u64).ok()?;
        self.bytes.get(start..start + len)
    }

    /// The entry of the plain dataset at `addr`.
    fn dataset(&self, addr: u64, out: &mut Vec<Entry>) -> Option<()> {
        let name = self.name;
        let messages = self.header(addr)?;
        let plain = |m: &Message| {
            m.1 & SHARED == 0
                && matches!(
                    m.0,
                    NIL | DATASPACE | DATATYPE | FILL_OLD | FILL | LAYOUT | MTIME_OLD | MTIME
                )
        };
        if !messages.iter().all(plain) {
            // A group named by the whole name holds no tensor; anything else: doubt.
            return match self.kind(addr)? {
                Kind::Group => Some(()),
                Kind::Dataset => None,
            };
        }
        let one = |t: u8| -> Option<&[u8]> {
            let mut it = messages.iter().filter(|m| m.0 == t);
            let first = it.next()?;
            it.next().is_none().then_some(first.2.as_slice())
        };
        let ctx = &self.geo.ctx;
        let (space, _) = DataspaceMessage::decode(one(DATASPACE)?, ctx).ok()?;
        if space.class == DataspaceClass::Null {
            return None;
        }
        if space
            .max_dims
            .as_ref()
            .is_some_and(|m| m.len() != space.dims.len())
        {
            return None;
        }
        check::extent_problem(&space).ok()?;
        let datatype = one(DATATYPE)?;
        let (dt, _) = DatatypeMessage::decode(datatype, ctx).ok()?;
        let elem = library::elem_type(&dt);
        let little = match &elem {
            ElemType::Int { big_endian, .. }
            | ElemType::Float { big_endian, .. }
            | ElemType::Complex { big_endian, .. } => !big_endian,
            ElemType::Bool => true,
            ElemType::Unsupported(_) => false,
        };
        if !little {
            return None;
        }
        let fill = messages.iter().filter(|m| m.0 == FILL).count() <= 1;
        let old = messages.iter().filter(|m| m.0 == FILL_OLD).count() <= 1;
        let find = |t: u8| messages.iter().find(|m| m.0 == t).map(|m| m.2.as_slice());
        // The library refuses a dataset whose fill value message does not decode.
        if find(FILL).is_some_and(|f| FillValueMessage::decode(f).is_err()) {
            return None;
        }
        if !(fill && old)
            || check::fill_problem(Some(datatype), find(FILL), find(FILL_OLD), ctx).is_err()
        {
            return None;
        }
        let (layout, _) = DataLayoutMessage::decode(one(LAYOUT)?, ctx).ok()?;
        let DataLayoutMessage::Contiguous { address, size } = layout else {
            return None;
        };
        let needed = check::extent_bytes(u64::from(dt.element_size()), &space.dims)?;
        if address == UNDEF_ADDR || size != needed {
            return None;
        }
        let offset = self.geo.base.checked_add(address)?;
        if offset.checked_add(size)? > self.bytes.len() as u64 {
            return None;
        }
        let desc = DatasetDesc {
            shape: space.dims.clone(),
            elem,
            storage: Storage::Contiguous {
                offset: Some(offset),
            },
            attributes: Vec::new(),
        };
        // The projection `parse` uses; with a located little-endian extent
        // it never reaches the backend.
        let backend: Arc<dyn Hdf5Backend> = Arc::new(NoLibrary);
        let path = name.replace('.', "/"); // only for messages of the library path
        let entry = tensor(name, &path, desc, self.bytes.len() as u64, &backend)
            .unwrap_or_else(|e| Entry::broken(name.to_string(), e));
        out.push(entry);
        Some(())
    }
}

enum Kind {
    Group,
    Dataset,
}

/// Whether `rest` is `name`, or starts with `name` and a `.`.
fn starts(rest: &str, name: &[u8]) -> bool {
    let rest = rest.as_bytes();
    !name.is_empty()
        && rest.starts_with(name)
        && (rest.len() == name.len() || rest[name.len()] == b'.')
}

/// The backend of a fast lookup: none (its datasets never need one).
#[derive(Debug)]
struct NoLibrary;

impl Hdf5Backend for NoLibrary {
    fn datasets(&self) -> Result<Vec<String>, String> {
        Err("no library".into())
    }
    fn describe(&self, _: &str) -> Result<DatasetDesc, String> {
        Err("no library".into())
    }
    fn read_into(&self, _: &str, _: &mut [u8]) -> Result<(), String> {
        Err("no library".into())
    }
    fn file_attributes(&self) -> Result<Vec<(String, Value)>, String> {
        Err("no library".into())
    }
}
