//! What one file's pickles may spend, and the containers they changed.

use std::collections::BTreeSet;
use std::rc::{Rc, Weak};

use super::value::{drop_iteratively, Map, Object, Seq, Value};

/// Containers, strings and objects any file may create; each byte of pickle
/// allows a quarter more (one byte of pickle can create one object, so
/// memory stays within a small multiple of the input's size). torch.save
/// pickles spend about 10 bytes per object, so the per-byte allowance is
/// what real files use; the base only serves tiny pickles. (At 1 << 20 it
/// let a 1 MB pickle of empty dicts take 89 MB.)
pub(crate) const BASE_OBJECTS: u64 = 1 << 16;
/// Most distinct globals one file may name (names pair memoized strings,
/// so a small pickle could name very many; their bytes are also charged to
/// the [`Budget`]).
pub(crate) const MAX_GLOBALS: usize = 1 << 16;

/// Every `(module, name)` a file's pickles named, each once.
pub(crate) type Seen = BTreeSet<(String, String)>;

/// Counters shared by all the pickles of one file.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Containers, strings and objects created so far.
    pub objects: u64,
    /// References stored in containers so far (bounds later traversals).
    pub edges: u64,
    /// Limit of `objects`.
    pub max_objects: u64,
    /// Containers the pickles mutated, emptied when the file is parsed.
    pub mutated: Mutated,
    /// Every global the pickles named (see [`crate::pickle::globals`]).
    pub globals: Seen,
}

/// Containers a pickle changed after creating them (`APPEND(S)`,
/// `SETITEM(S)`, `ADDITEMS`, `BUILD`): only these can close a reference
/// cycle (`l = []; l.append(l)`), which reference counting never frees.
/// Once the file is parsed nothing uses the values any more, so dropping
/// this empties every one still alive and the cycles fall apart.
#[derive(Debug, Default)]
pub(crate) struct Mutated(Vec<Container>);

#[derive(Debug)]
enum Container {
    Seq(Weak<Seq>),
    Map(Weak<Map>),
    Object(Weak<Object>),
}

impl Mutated {
    pub(super) fn note(&mut self, v: &Value) {
        let c = match v {
            Value::List(l) | Value::Set(l) => Container::Seq(Rc::downgrade(l)),
            Value::Dict(d) => Container::Map(Rc::downgrade(d)),
            Value::Object(o) => Container::Object(Rc::downgrade(o)),
            _ => return,
        };
        // APPEND after APPEND hits the same container: record it once.
        let same = |a: &Container, b: &Container| match (a, b) {
            (Container::Seq(a), Container::Seq(b)) => a.ptr_eq(b),
            (Container::Map(a), Container::Map(b)) => a.ptr_eq(b),
            (Container::Object(a), Container::Object(b)) => a.ptr_eq(b),
            _ => false,
        };
        if !self.0.last().is_some_and(|last| same(last, &c)) {
            self.0.push(c);
        }
    }
}

impl Drop for Mutated {
    fn drop(&mut self) {
        let mut children = Vec::new();
        for c in self.0.drain(..) {
            match c {
                Container::Seq(w) => {
                    if let Some(seq) = w.upgrade() {
                        children.append(&mut seq.0.borrow_mut());
                    }
                }
                Container::Map(w) => {
                    if let Some(map) = w.upgrade() {
                        for (k, v) in map.0.borrow_mut().drain(..) {
                            children.push(k);
                            children.push(v);
                        }
                    }
                }
                Container::Object(w) => {
                    if let Some(obj) = w.upgrade() {
                        children.extend(obj.state.borrow_mut().take());
                        for (k, v) in obj.items.borrow_mut().drain(..) {
                            children.push(k);
                            children.push(v);
                        }
                        children.append(&mut obj.list.borrow_mut());
                    }
                }
            }
        }
        drop_iteratively(children);
    }
}

impl Budget {
    /// A budget for a file whose pickles total `pickle_bytes`.
    pub(crate) fn new(pickle_bytes: u64) -> Budget {
        Budget {
            objects: 0,
            edges: 0,
            max_objects: BASE_OBJECTS + pickle_bytes / 4,
            mutated: Mutated::default(),
            globals: Seen::new(),
        }
    }

    /// Records a global the pickle names; each new one is charged as an
    /// object per 16 bytes of its name, so kept names stay within a small
    /// multiple of the input's size.
    pub(crate) fn note_global(&mut self, module: &str, name: &str) -> Result<(), String> {
        let key = (module.to_string(), name.to_string());
        if self.globals.contains(&key) {
            return Ok(());
        }
        if self.globals.len() >= MAX_GLOBALS {
            return Err(format!(
                "the pickles name more than {MAX_GLOBALS} distinct globals"
            ));
        }
        self.objects += 1 + (module.len() + name.len()) as u64 / 16;
        if self.objects > self.max_objects {
            return Err(format!("more than {} objects", self.max_objects));
        }
        self.globals.insert(key);
        Ok(())
    }

    /// Allows `pickle_bytes` more of pickle.
    pub(crate) fn allow(&mut self, pickle_bytes: u64) {
        self.max_objects += pickle_bytes / 4;
    }

    /// Charges `items` values copied into a new container (four count as
    /// one object): copies of memoized containers must not multiply memory
    /// unchecked.
    pub(crate) fn charge(&mut self, items: usize) -> Result<(), String> {
        self.edges += items as u64;
        self.objects += (items as u64).div_ceil(4);
        if self.objects > self.max_objects {
            return Err(format!("more than {} objects", self.max_objects));
        }
        Ok(())
    }
}
