//! A restricted pickle machine.
//!
//! It decodes every opcode of pickle protocols 0 to 5 and builds plain data
//! (`None`, bools, ints, floats, strings, byte strings, lists, tuples,
//! dicts, sets). It never imports or calls anything: a `GLOBAL` becomes a
//! [`Global`] naming the callable (and is recorded in [`Budget::globals`]),
//! and every call site (`REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`) is
//! handed to [`Hooks::call`], which decides what the call *means* for the
//! few constructors it knows and otherwise returns an inert [`Object`].
//! Persistent ids go to [`Hooks::persistent_load`].
//!
//! Every resource is bounded ([`MAX_MEMO`], [`MAX_STACK`], [`Budget`];
//! lengths are checked against the remaining input before anything is
//! allocated), containers are dropped without recursion, and nothing here
//! recurses on the input's structure, so hostile input fails with an error
//! and bounded memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use super::globals::Seen;
use super::torch::{Storage, TensorRef};

/// Most memo entries one pickle may create.
pub(crate) const MAX_MEMO: usize = 4 << 20;
/// Most values on the stack, counting those below every open mark.
pub(crate) const MAX_STACK: usize = 1 << 20;
/// Containers, strings and objects any file may create; each byte of pickle
/// allows a quarter more (one byte of pickle can create one object, so
/// memory stays within a small multiple of the input's size). torch.save
/// pickles spend about 10 bytes per object, so the per-byte allowance is
/// what real files use; the base only serves tiny pickles. (At 1 << 20 it
/// let a 1 MB pickle of empty dicts take 89 MB.)
pub(crate) const BASE_OBJECTS: u64 = 1 << 16;
/// Highest pickle protocol understood.
const MAX_PROTOCOL: u8 = 5;
/// Most distinct globals one file may name (names pair memoized strings,
/// so a small pickle could name very many; their bytes are also charged to
/// the [`Budget`]).
pub(crate) const MAX_GLOBALS: usize = 1 << 16;

/// A value built by the machine. Cloning is cheap (reference counted).
#[derive(Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits: its little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    /// A byte string: where it lies in the pickle's input (when it does) and
    /// its length. Its contents are never needed to find tensors.
    Bytes {
        at: Option<usize>,
        len: usize,
    },
    List(Rc<Seq>),
    Tuple(Rc<Seq>),
    Set(Rc<Seq>),
    Dict(Rc<Map>),
    /// A module attribute named by `GLOBAL`/`STACK_GLOBAL`; never resolved.
    Global(Rc<Global>),
    /// The inert result of a call the hooks do not interpret.
    Object(Rc<Object>),
    Storage(Rc<Storage>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    /// A short description for error messages (never recursive).
    pub(crate) fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes { .. } => "bytes".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Set(_) => "set".into(),
            Value::Dict(_) => "dict".into(),
            Value::Global(g) => format!("{}.{}", g.module, g.name),
            Value::Object(o) => format!("{} object", o.class),
            Value::Storage(_) => "storage".into(),
            Value::Tensor(_) => "tensor".into(),
        }
    }

    /// The items of a tuple or list (a snapshot).
    pub(crate) fn items(&self) -> Option<Vec<Value>> {
        self.items_up_to(usize::MAX)
    }

    /// The items of a tuple or list of at most `max` items (a snapshot;
    /// longer ones are not copied).
    pub(crate) fn items_up_to(&self, max: usize) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(s) | Value::List(s) => {
                let items = s.0.borrow();
                (items.len() <= max).then(|| items.clone())
            }
            _ => None,
        }
    }
}

/// Items of a list, tuple or set.
pub(crate) struct Seq(pub RefCell<Vec<Value>>);

/// Items of a dict, in insertion order (duplicates kept; readers take the last).
pub(crate) struct Map(pub RefCell<Vec<(Value, Value)>>);

/// A `module.name` reference.
pub(crate) struct Global {
    pub module: String,
    pub name: String,
}

/// An instance of something the hooks do not interpret: the callable's
/// name, its arguments, and whatever `BUILD`, `SETITEM(S)` and
/// `APPEND(S)` later attach to it.
pub(crate) struct Object {
    pub class: String,
    pub args: Vec<Value>,
    pub state: RefCell<Option<Value>>,
    pub items: RefCell<Vec<(Value, Value)>>,
    pub list: RefCell<Vec<Value>>,
}

impl Object {
    pub(crate) fn new(class: String, args: Vec<Value>) -> Object {
        Object {
            class,
            args,
            state: RefCell::new(None),
            items: RefCell::new(Vec::new()),
            list: RefCell::new(Vec::new()),
        }
    }
}

// Dropping deeply nested containers recursively would overflow the native
// stack (100 000 nested lists are a few hundred KiB of pickle): containers
// hand their children to an explicit work list instead.

fn drop_iteratively(mut pending: Vec<Value>) {
    while let Some(v) = pending.pop() {
        match v {
            Value::List(rc) | Value::Tuple(rc) | Value::Set(rc) => {
                if let Some(seq) = Rc::into_inner(rc) {
                    pending.append(&mut seq.0.borrow_mut());
                }
            }
            Value::Dict(rc) => {
                if let Some(map) = Rc::into_inner(rc) {
                    for (k, v) in map.0.borrow_mut().drain(..) {
                        pending.push(k);
                        pending.push(v);
                    }
                }
            }
            Value::Object(rc) => {
                if let Some(mut obj) = Rc::into_inner(rc) {
                    pending.append(&mut obj.take_children());
                }
            }
            _ => {}
        }
    }
}

impl Object {
    fn take_children(&mut self) -> Vec<Value> {
        let mut out = std::mem::take(&mut self.args);
        out.extend(self.state.get_mut().take());
        for (k, v) in self.items.get_mut().drain(..) {
            out.push(k);
            out.push(v);
        }
        out.append(self.list.get_mut());
        out
    }
}

impl Drop for Seq {
    fn drop(&mut self) {
        let items = std::mem::take(self.0.get_mut());
        if !items.is_empty() {
            drop_iteratively(items);
        }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        let items = std::mem::take(self.0.get_mut());
        if !items.is_empty() {
            drop_iteratively(items.into_iter().flat_map(|(k, v)| [k, v]).collect());
        }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let items = self.take_children();
        if !items.is_empty() {
            drop_iteratively(items);
        }
    }
}

/// What the machine asks of its user: the meaning of calls and persistent ids.
pub(crate) trait Hooks {
    /// `callable(*args)`; must not fail for callables it does not know
    /// (return an inert [`Object`] instead). Values it copies are charged
    /// to `budget` ([`Budget::charge`]).
    fn call(
        &mut self,
        callable: &Value,
        args: Vec<Value>,
        budget: &mut Budget,
    ) -> Result<Value, String>;
    /// The object a persistent id stands for.
    fn persistent_load(&mut self, pid: Value) -> Result<Value, String>;
}

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
    /// Every global the pickles named (see [`super::globals`]).
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
    fn note(&mut self, v: &Value) {
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

/// Runs one pickle from the start of `data`; returns the value `STOP`
/// returned and the number of bytes the pickle took.
pub(crate) fn run(
    data: &[u8],
    hooks: &mut dyn Hooks,
    budget: &mut Budget,
) -> Result<(Value, usize), String> {
    let mut vm = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        below_marks: 0,
        memo: Memo::default(),
        budget,
        hooks,
    };
    let mut op_at = 0;
    match vm.run(&mut op_at) {
        Ok(v) => Ok((v, vm.pos)),
        Err(e) => Err(format!("invalid pickle at byte {op_at}: {e}")),
    }
}

/// The memo: dense while keys arrive in order (the normal case), with a
/// map for the rest so a huge key costs no memory.
#[derive(Default)]
struct Memo {
    dense: Vec<Option<Value>>,
    sparse: HashMap<u64, Value>,
    len: usize,
}

impl Memo {
    fn put(&mut self, key: u64, v: Value) -> Result<(), String> {
        let dense_len = self.dense.len() as u64;
        let present = if key < dense_len {
            self.dense[key as usize].is_some()
        } else {
            self.sparse.contains_key(&key)
        };
        if !present {
            if self.len >= MAX_MEMO {
                return Err(format!("the memo grows past {MAX_MEMO} entries"));
            }
            self.len += 1;
        }
        if key < dense_len {
            self.dense[key as usize] = Some(v);
        } else if key == dense_len && self.sparse.is_empty() {
            self.dense.push(Some(v));
        } else {
            self.sparse.insert(key, v);
        }
        Ok(())
    }

    fn get(&self, key: u64) -> Result<Value, String> {
        let found = if key < self.dense.len() as u64 {
            self.dense[key as usize].clone()
        } else {
            self.sparse.get(&key).cloned()
        };
        found.ok_or_else(|| format!("memo key {key} is not defined"))
    }
}

struct Machine<'a, 'h> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<Vec<Value>>,
    /// Values held below the open marks.
    below_marks: usize,
    memo: Memo,
    budget: &'h mut Budget,
    hooks: &'h mut dyn Hooks,
}

type R<T> = Result<T, String>;

impl<'a> Machine<'a, '_> {
    fn run(&mut self, op_at: &mut usize) -> R<Value> {
        loop {
            *op_at = self.pos;
            let op = self.byte()?;
            match op {
                // ---------------------------------------------- structure
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(format!("more than {MAX_STACK} open marks"));
                    }
                    let below = std::mem::take(&mut self.stack);
                    self.below_marks += below.len();
                    self.marks.push(below);
                }
                b'.' => return self.pop(),
                b'0' => {
                    if self.stack.pop().is_none() {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.push(top)?;
                }
                0x80 => {
                    let proto = self.byte()?;
                    if proto > MAX_PROTOCOL {
                        return Err(format!("unsupported pickle protocol {proto}"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: only a read-ahead hint
                }
                // ---------------------------------------------- scalars
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(v.into()))?;
                }
                0x8a => {
                    let n = self.byte()? as usize;
                    let v = self.long(n)?;
                    self.push(v)?;
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.array()?);
                    let n = usize::try_from(n).map_err(|_| "negative LONG4 length".to_string())?;
                    let v = self.long(n)?;
                    self.push(v)?;
                }
                b'I' => {
                    let line = self.line()?;
                    let v = match line {
                        b"00" => Value::Bool(false),
                        b"01" => Value::Bool(true),
                        _ => self.text_int(line)?,
                    };
                    self.push(v)?;
                }
                b'L' => {
                    let line = self.line()?;
                    let line = line.strip_suffix(b"L").unwrap_or(line);
                    let v = self.text_int(line)?;
                    self.push(v)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v))?;
                }
                b'F' => {
                    let line = self.line()?;
                    let v = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or("FLOAT is not a number")?;
                    self.push(Value::Float(v))?;
                }
                // ---------------------------------------------- strings
                b'X' => {
                    let n = u32::from_le_bytes(self.array()?) as u64;
                    self.unicode(n)?;
                }
                0x8c => {
                    let n = self.byte()? as u64;
                    self.unicode(n)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.array()?);
                    self.unicode(n)?;
                }
                b'V' => {
                    let line = self.line()?;
                    let s = raw_unicode_escape(line);
                    self.push_str(s)?;
                }
                b'S' => {
                    let line = self.line()?;
                    let s = quoted_string(line).ok_or("STRING is not a quoted string")?;
                    self.push_str(String::from_utf8_lossy(&s).into_owned())?;
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.array()?);
                    let n =
                        u64::try_from(n).map_err(|_| "negative BINSTRING length".to_string())?;
                    let s = self.take_len(n)?;
                    self.push_text(s)?;
                }
                b'U' => {
                    let n = self.byte()? as u64;
                    let s = self.take_len(n)?;
                    self.push_text(s)?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.array()?) as u64;
                    self.bytes(n)?;
                }
                b'C' => {
                    let n = self.byte()? as u64;
                    self.bytes(n)?;
                }
                0x8e | 0x96 => {
                    let n = u64::from_le_bytes(self.array()?);
                    self.bytes(n)?;
                }
                0x97 => return Err("out-of-band buffers (NEXT_BUFFER) are not supported".into()),
                0x98 => {
                    self.top()?; // READONLY_BUFFER: no change for us
                }
                // ---------------------------------------------- containers
                b')' => {
                    let v = self.tuple(Vec::new())?;
                    self.push(v)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.tuple(items)?;
                    self.push(v)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.tuple(items)?;
                    self.push(v)?;
                }
                b']' => {
                    let v = self.seq(Vec::new(), Value::List)?;
                    self.push(v)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.seq(items, Value::List)?;
                    self.push(v)?;
                }
                0x8f => {
                    let v = self.seq(Vec::new(), Value::Set)?;
                    self.push(v)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.seq(items, Value::Set)?;
                    self.push(v)?;
                }
                b'}' => {
                    let v = self.dict(Vec::new())?;
                    self.push(v)?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    let v = self.dict(pairs)?;
                    self.push(v)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(pairs(items)?)?;
                }
                // ---------------------------------------------- memo
                b'p' => {
                    let key = self.text_key()?;
                    let top = self.top()?.clone();
                    self.memo.put(key, top)?;
                }
                b'q' => {
                    let key = self.byte()? as u64;
                    let top = self.top()?.clone();
                    self.memo.put(key, top)?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(self.array()?) as u64;
                    let top = self.top()?.clone();
                    self.memo.put(key, top)?;
                }
                0x94 => {
                    let key = self.memo.len as u64;
                    let top = self.top()?.clone();
                    self.memo.put(key, top)?;
                }
                b'g' => {
                    let key = self.text_key()?;
                    let v = self.memo.get(key)?;
                    self.push(v)?;
                }
                b'h' => {
                    let key = self.byte()? as u64;
                    let v = self.memo.get(key)?;
                    self.push(v)?;
                }
                b'j' => {
                    let key = u32::from_le_bytes(self.array()?) as u64;
                    let v = self.memo.get(key)?;
                    self.push(v)?;
                }
                // ---------------------------------------------- objects
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.push(g)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err("STACK_GLOBAL needs two strings".into());
                    };
                    let g = self.global(module.as_bytes(), name.as_bytes())?;
                    self.push(g)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let args = self.call_args(&args, "REDUCE")?;
                    self.call(&callable, args)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = self.call_args(&args, "NEWOBJ")?;
                    self.call(&cls, args)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = self.call_args(&args, "NEWOBJ_EX")?;
                    self.call(&cls, args)?;
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let cls = self.global(module, name)?;
                    let args = self.pop_mark()?;
                    self.budget.charge(args.len())?;
                    self.call(&cls, args)?;
                }
                b'o' => {
                    let mut args = self.pop_mark()?;
                    if args.is_empty() {
                        return Err("OBJ without a class".into());
                    }
                    let cls = args.remove(0);
                    self.budget.charge(args.len())?;
                    self.call(&cls, args)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    self.budget.edges += 1;
                    if let Value::Object(obj) = self.top()? {
                        *obj.state.borrow_mut() = Some(state);
                        let obj = Value::Object(obj.clone());
                        self.budget.mutated.note(&obj);
                    }
                    // Anything else (a dict's attributes, a tensor's
                    // Python-level state) carries no tensor data: ignored.
                }
                0x82..=0x84 => {
                    let code = match op {
                        0x82 => self.byte()? as u32,
                        0x83 => u16::from_le_bytes(self.array()?) as u32,
                        _ => u32::from_le_bytes(self.array()?),
                    };
                    let v = self.object(format!("copyreg extension {code}"), Vec::new())?;
                    self.push(v)?;
                }
                b'P' => {
                    let line = self.line()?;
                    let pid = String::from_utf8_lossy(line).into_owned();
                    self.alloc()?;
                    let v = self.hooks.persistent_load(Value::Str(pid.into()))?;
                    self.push(v)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.alloc()?;
                    let v = self.hooks.persistent_load(pid)?;
                    self.push(v)?;
                }
                other => return Err(format!("unknown opcode 0x{other:02x}")),
            }
        }
    }

    // ------------------------------------------------------------ input

    fn byte(&mut self) -> R<u8> {
        let b = *self.data.get(self.pos).ok_or("the pickle is truncated")?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let data = self.data;
        if n > data.len() - self.pos {
            return Err("the pickle is truncated".into());
        }
        let s = &data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length read from the input, checked against what remains before use.
    fn take_len(&mut self, n: u64) -> R<&'a [u8]> {
        let remaining = (self.data.len() - self.pos) as u64;
        if n > remaining {
            return Err(format!(
                "a length of {n} bytes runs past the end of the pickle ({remaining} bytes left)"
            ));
        }
        self.take(n as usize)
    }

    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// A text line without its `\n` (protocol 0 arguments).
    fn line(&mut self) -> R<&'a [u8]> {
        let data = self.data;
        let rest = &data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the pickle is truncated (unterminated line)")?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn text_key(&mut self) -> R<u64> {
        let line = self.line()?;
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| "memo key is not a number".into())
    }

    fn text_int(&mut self, line: &[u8]) -> R<Value> {
        let s = std::str::from_utf8(line).map_err(|_| "INT is not a number")?;
        let s = s.trim();
        if let Ok(v) = s.parse::<i64>() {
            return Ok(Value::Int(v));
        }
        let bytes = decimal_to_le(s).ok_or_else(|| format!("INT is not a number: {s:?}"))?;
        self.alloc()?;
        Ok(Value::BigInt(bytes.into()))
    }

    fn long(&mut self, n: usize) -> R<Value> {
        let bytes = self.take_len(n as u64)?;
        if n <= 8 {
            let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
            let mut buf = if negative { [0xff; 8] } else { [0; 8] };
            buf[..n].copy_from_slice(bytes);
            return Ok(Value::Int(i64::from_le_bytes(buf)));
        }
        let v = Value::BigInt(Rc::from(bytes));
        self.alloc()?;
        Ok(v)
    }

    fn unicode(&mut self, n: u64) -> R<()> {
        let s = self.take_len(n)?;
        // As Python's unpickler, which decodes these with 'surrogatepass':
        // other invalid UTF-8 fails the load (damage, not a name to invent).
        if !utf8_surrogatepass(s) {
            return Err("a pickled string is not valid UTF-8".into());
        }
        self.push_text(s)
    }

    /// Text from the input (invalid UTF-8, e.g. lone surrogates, replaced).
    fn push_text(&mut self, bytes: &[u8]) -> R<()> {
        self.alloc()?;
        let s: Rc<str> = match std::str::from_utf8(bytes) {
            Ok(s) => Rc::from(s),
            Err(_) => Rc::from(String::from_utf8_lossy(bytes).as_ref()),
        };
        self.push(Value::Str(s))
    }

    fn bytes(&mut self, n: u64) -> R<()> {
        let at = self.pos;
        self.take_len(n)?;
        self.push(Value::Bytes {
            at: Some(at),
            len: n as usize,
        })
    }

    // ------------------------------------------------------------ stack

    fn push(&mut self, v: Value) -> R<()> {
        if self.stack.len() + self.below_marks >= MAX_STACK {
            return Err(format!("the stack grows past {MAX_STACK} values"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> R<Value> {
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn top(&self) -> R<&Value> {
        self.stack.last().ok_or_else(|| "stack underflow".into())
    }

    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let below = self.marks.pop().ok_or("no MARK to pop to")?;
        self.below_marks -= below.len();
        Ok(std::mem::replace(&mut self.stack, below))
    }

    // ------------------------------------------------------------ building

    fn alloc(&mut self) -> R<()> {
        self.budget.objects += 1;
        if self.budget.objects > self.budget.max_objects {
            return Err(format!("more than {} objects", self.budget.max_objects));
        }
        Ok(())
    }

    fn push_str(&mut self, s: String) -> R<()> {
        self.alloc()?;
        self.push(Value::Str(s.into()))
    }

    fn tuple(&mut self, items: Vec<Value>) -> R<Value> {
        self.seq(items, Value::Tuple)
    }

    fn seq(&mut self, items: Vec<Value>, wrap: fn(Rc<Seq>) -> Value) -> R<Value> {
        self.alloc()?;
        self.budget.edges += items.len() as u64;
        Ok(wrap(Rc::new(Seq(RefCell::new(items)))))
    }

    fn dict(&mut self, pairs: Vec<(Value, Value)>) -> R<Value> {
        self.alloc()?;
        self.budget.edges += 2 * pairs.len() as u64;
        Ok(Value::Dict(Rc::new(Map(RefCell::new(pairs)))))
    }

    fn object(&mut self, class: String, args: Vec<Value>) -> R<Value> {
        self.alloc()?;
        self.budget.edges += args.len() as u64;
        Ok(Value::Object(Rc::new(Object::new(class, args))))
    }

    fn global(&mut self, module: &[u8], name: &[u8]) -> R<Value> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        self.alloc()?;
        let g = Global {
            module: text(module),
            name: text(name),
        };
        self.budget.note_global(&g.module, &g.name)?;
        Ok(Value::Global(Rc::new(g)))
    }

    /// The arguments of a call: a tuple's items, charged before they are copied.
    fn call_args(&mut self, args: &Value, op: &str) -> R<Vec<Value>> {
        match args {
            Value::Tuple(s) | Value::List(s) => {
                self.budget.charge(s.0.borrow().len())?;
                Ok(s.0.borrow().clone())
            }
            other => Err(format!("{op} arguments are a {}", other.kind())),
        }
    }

    /// Hands a call to the hooks (`INST`/`OBJ` arguments come off the
    /// stack; the others were charged by [`Machine::call_args`]).
    fn call(&mut self, callable: &Value, args: Vec<Value>) -> R<()> {
        self.alloc()?;
        let v = self.hooks.call(callable, args, self.budget)?;
        self.push(v)
    }

    fn append(&mut self, items: Vec<Value>) -> R<()> {
        self.budget.edges += items.len() as u64;
        let target = self.top()?.clone();
        match &target {
            Value::List(l) | Value::Set(l) => l.0.borrow_mut().extend(items),
            Value::Object(o) => o.list.borrow_mut().extend(items),
            other => return Err(format!("cannot append to a {}", other.kind())),
        }
        self.budget.mutated.note(&target);
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> R<()> {
        self.budget.edges += 2 * pairs.len() as u64;
        let target = self.top()?.clone();
        match &target {
            Value::Dict(d) => d.0.borrow_mut().extend(pairs),
            Value::Object(o) => o.items.borrow_mut().extend(pairs),
            other => return Err(format!("cannot set items of a {}", other.kind())),
        }
        self.budget.mutated.note(&target);
        Ok(())
    }
}

fn pairs(items: Vec<Value>) -> R<Vec<(Value, Value)>> {
    if items.len() % 2 == 1 {
        return Err("odd number of items for a dict".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// A decimal integer as minimal little-endian two's complement bytes (the
/// form `LONG1` stores), for integers too wide for `i64`.
fn decimal_to_le(s: &str) -> Option<Vec<u8>> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Magnitude, little-endian bytes.
    let mut mag: Vec<u8> = Vec::new();
    for d in digits.bytes() {
        let mut carry = (d - b'0') as u32;
        for byte in mag.iter_mut() {
            let v = *byte as u32 * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push(carry as u8);
            carry >>= 8;
        }
    }
    mag.push(0); // room for the sign bit
    if negative {
        let mut carry = 1u16;
        for byte in mag.iter_mut() {
            let v = (!*byte) as u16 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
    }
    let fill = if negative { 0xff } else { 0 };
    while mag.len() > 1
        && mag[mag.len() - 1] == fill
        && (mag[mag.len() - 2] & 0x80 != 0) == negative
    {
        mag.pop();
    }
    Some(mag)
}

/// Decodes a protocol 0 `STRING` argument: a Python `repr` of a byte string.
fn quoted_string(line: &[u8]) -> Option<Vec<u8>> {
    let q = *line.first()?;
    if line.len() < 2 || !(q == b'\'' || q == b'"') || *line.last()? != q {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' || i == body.len() {
            out.push(c);
            continue;
        }
        let e = body[i];
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'\n' => {}
            b'x' => {
                let hex = body.get(i..i + 2)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            _ => {
                out.push(b'\\');
                out.push(e);
            }
        }
    }
    Some(out)
}

/// Whether `bytes` are UTF-8 in which encoded surrogates (U+D800-U+DFFF,
/// `ED A0..BF 80..BF`) are allowed too, i.e. what Python decodes with
/// `'surrogatepass'`.
fn utf8_surrogatepass(mut bytes: &[u8]) -> bool {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return true,
            Err(e) => {
                let rest = &bytes[e.valid_up_to()..];
                match rest {
                    [0xED, 0xA0..=0xBF, 0x80..=0xBF, ..] => bytes = &rest[3..],
                    _ => return false,
                }
            }
        }
    }
}

/// Decodes Python's `raw-unicode-escape` (protocol 0 `UNICODE`): latin-1
/// text with `\uXXXX` and `\UXXXXXXXX` escapes.
fn raw_unicode_escape(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == b'\\' && i + 1 < line.len() && matches!(line[i + 1], b'u' | b'U') {
            let digits = if line[i + 1] == b'u' { 4 } else { 8 };
            let code = line
                .get(i + 2..i + 2 + digits)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            if let Some(code) = code {
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                i += 2 + digits;
                continue;
            }
        }
        out.push(c as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hooks that interpret nothing.
    struct Inert;

    impl Hooks for Inert {
        fn call(
            &mut self,
            callable: &Value,
            args: Vec<Value>,
            _budget: &mut Budget,
        ) -> Result<Value, String> {
            Ok(Value::Object(Rc::new(Object::new(callable.kind(), args))))
        }
        fn persistent_load(&mut self, pid: Value) -> Result<Value, String> {
            Ok(Value::Object(Rc::new(Object::new("pid".into(), vec![pid]))))
        }
    }

    fn eval(p: &[u8]) -> Result<Value, String> {
        let mut budget = Budget::new(p.len() as u64);
        let result = run(p, &mut Inert, &mut budget).map(|(v, _)| v);
        // The tests inspect the value after the budget is gone: keep its
        // containers as they are (leaking any cycle, in tests only).
        std::mem::forget(std::mem::take(&mut budget.mutated));
        result
    }

    #[test]
    fn reference_cycles_are_freed_with_the_budget() {
        // l = []; l.append(l); d = {}; d[0] = d; o = obj(); o.__setstate__(o)
        type WeakOf = fn(&Value) -> Option<Weak<dyn std::any::Any>>;
        let cases: [(&[u8], WeakOf); 3] = [
            (b"\x80\x02]q\x00h\x00a.", |v| match v {
                Value::List(l) => Some(Rc::downgrade(l) as Weak<dyn std::any::Any>),
                _ => None,
            }),
            (b"\x80\x02}q\x00K\x00h\x00s.", |v| match v {
                Value::Dict(d) => Some(Rc::downgrade(d) as Weak<dyn std::any::Any>),
                _ => None,
            }),
            (b"\x80\x02cm\nC\n)\x81q\x00h\x00b.", |v| match v {
                Value::Object(o) => Some(Rc::downgrade(o) as Weak<dyn std::any::Any>),
                _ => None,
            }),
        ];
        for (p, weak_of) in cases {
            let mut budget = Budget::new(p.len() as u64);
            let (v, _) = run(p, &mut Inert, &mut budget).unwrap();
            let weak = weak_of(&v).expect("the pickle's container");
            drop(v);
            assert!(weak.upgrade().is_some(), "the cycle keeps it alive");
            drop(budget);
            assert!(weak.upgrade().is_none(), "freed with the budget");
        }
    }

    #[test]
    fn scalars_and_containers() {
        // {'a': [1, -2, 3.5, None, True], 'b': (b'xy', 300)}
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bC\x02xyM,\x01\x86u.";
        let Value::Dict(d) = eval(p).unwrap() else {
            panic!("not a dict")
        };
        let d = d.0.borrow();
        assert_eq!(d.len(), 2);
        let Value::List(l) = &d[0].1 else { panic!() };
        let l = l.0.borrow();
        assert!(matches!(l[0], Value::Int(1)));
        assert!(matches!(l[1], Value::Int(-2)));
        assert!(matches!(l[2], Value::Float(f) if f == 3.5));
        assert!(matches!(l[3], Value::None));
        assert!(matches!(l[4], Value::Bool(true)));
        let Value::Tuple(t) = &d[1].1 else { panic!() };
        let t = t.0.borrow();
        assert!(matches!(t[0], Value::Bytes { len: 2, .. }));
        assert!(matches!(t[1], Value::Int(300)));
    }

    #[test]
    fn protocol_0_text_opcodes() {
        let p = b"(dp0\nS'k'\np1\n(lp2\nI01\naL12345678901234567890L\naF1.5\naVx\\u00e9\nag1\nas.";
        let Value::Dict(d) = eval(p).unwrap() else {
            panic!()
        };
        let d = d.0.borrow();
        assert!(matches!(&d[0].0, Value::Str(s) if &**s == "k"));
        let Value::List(l) = &d[0].1 else { panic!() };
        let l = l.0.borrow();
        assert!(matches!(l[0], Value::Bool(true)));
        assert!(matches!(l[1], Value::BigInt(_)));
        assert!(matches!(l[2], Value::Float(f) if f == 1.5));
        assert!(matches!(&l[3], Value::Str(s) if &**s == "x\u{e9}"));
        assert!(matches!(&l[4], Value::Str(s) if &**s == "k"));
    }

    #[test]
    fn text_longs_match_long1() {
        for (text, bytes) in [
            (
                "119547037146038801333356",
                &b"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"[..],
            ),
            (
                "-9223372036854775809",
                b"\xff\xff\xff\xff\xff\xff\xff\x7f\xff",
            ),
            (
                "18446744073709551615",
                b"\xff\xff\xff\xff\xff\xff\xff\xff\x00",
            ),
            (
                "-18446744073709551616",
                b"\x00\x00\x00\x00\x00\x00\x00\x00\xff",
            ),
        ] {
            assert_eq!(decimal_to_le(text).unwrap(), bytes, "{text}");
        }
        assert!(decimal_to_le("12a").is_none());
        assert!(decimal_to_le("-").is_none());
    }

    #[test]
    fn long_opcodes() {
        assert!(matches!(eval(b"\x8a\x01\xff.").unwrap(), Value::Int(-1)));
        assert!(matches!(eval(b"\x8a\x00.").unwrap(), Value::Int(0)));
        assert!(matches!(
            eval(b"\x8a\x02\x00\x80.").unwrap(),
            Value::Int(-32768)
        ));
        assert!(matches!(
            eval(b"\x8b\x09\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09.").unwrap(),
            Value::BigInt(b) if b.len() == 9
        ));
        // A LONG4 length past the end of the input is refused before any allocation.
        let e = eval(b"\x8b\xff\xff\xff\x7f").err().unwrap();
        assert!(e.contains("past the end"), "{e}");
        assert!(eval(b"\x8b\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn globals_are_never_resolved() {
        // os.system('echo hi') via GLOBAL + REDUCE yields an inert object.
        let p = b"cos\nsystem\n(S'echo hi'\ntR.";
        let Value::Object(o) = eval(p).unwrap() else {
            panic!()
        };
        assert_eq!(o.class, "os.system");
        // STACK_GLOBAL, NEWOBJ, NEWOBJ_EX, INST, OBJ and BUILD likewise.
        let p = b"\x80\x04\x8c\x02os\x8c\x06system\x93)\x81}b\x8c\x02os\x8c\x05popen\x93)}\x92(cbuiltins\neval\no0(ibuiltins\nexec\n0.";
        let v = eval(p).unwrap();
        assert!(matches!(v, Value::Object(o) if o.class == "os.popen"));
    }

    #[test]
    fn marks_pop_and_dup() {
        // POP with an empty stack pops the mark; POP_MARK discards items.
        let p = b"K\x01(K\x02K\x031(0\x2e";
        assert!(matches!(eval(p).unwrap(), Value::Int(1)));
        let p = b"K\x05\x32\x86.";
        let Value::Tuple(t) = eval(p).unwrap() else {
            panic!()
        };
        assert_eq!(t.0.borrow().len(), 2);
    }

    #[test]
    fn memo_sparse_keys_and_errors() {
        // LONG_BINPUT with a huge key costs one map entry, not a huge vector.
        let p = b"K\x07r\xff\xff\xff\xff0j\xff\xff\xff\xff.";
        assert!(matches!(eval(p).unwrap(), Value::Int(7)));
        let e = eval(b"h\x05.").err().unwrap();
        assert!(e.contains("memo key 5"), "{e}");
        // MEMOIZE numbers entries by the memo's size.
        let p = b"\x80\x04K\x01\x94K\x02\x94h\x01.";
        assert!(matches!(eval(p).unwrap(), Value::Int(2)));
    }

    #[test]
    fn malformed_inputs_fail_cleanly() {
        for p in [
            &b""[..],
            b"\x80",
            b"\x80\x06N.",
            b"N",
            b".",
            b"a.",
            b"]N\x85s.",
            b"t.",
            b"(K\x01d.",
            b"X\x05\x00\x00\x00abc",
            b"\xff",
            b"\x97.",
            b"K\x01K\x02R.",
            b"I12x\n.",
        ] {
            assert!(eval(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn stack_limit() {
        let mut p = vec![b'N'; MAX_STACK + 10];
        p.push(b'.');
        let e = eval(&p).err().unwrap();
        assert!(e.contains("stack"), "{e}");
        let mut p = vec![b'('; MAX_STACK + 10];
        p.push(b'.');
        assert!(eval(&p).is_err());
    }

    #[test]
    fn memo_limit() {
        let mut p = b"\x80\x04N".to_vec();
        p.extend(std::iter::repeat_n(0x94u8, MAX_MEMO + 1));
        p.push(b'.');
        let e = eval(&p).err().unwrap();
        assert!(e.contains("memo"), "{e}");
    }

    #[test]
    fn object_limit() {
        // Empty lists appended to one list: one byte per object.
        let mut p = b"](".to_vec();
        for _ in 0..101 {
            p.extend(std::iter::repeat_n(b']', 1000));
            p.extend(b"e(");
        }
        p.push(b'.');
        let mut budget = Budget {
            max_objects: 100_000,
            ..Budget::new(0)
        };
        let e = run(&p, &mut Inert, &mut budget).err().unwrap();
        assert!(e.contains("objects"), "{e}");
    }

    #[test]
    fn copies_of_memoized_containers_are_charged() {
        // REDUCE with one memoized 100 000-item tuple, 10 000 times over.
        let mut p = b"\x80\x02cm\nf\nq\x00(".to_vec();
        p.extend(std::iter::repeat_n(b'N', 100_000));
        p.extend(b"tq\x01");
        for _ in 0..10_000 {
            p.extend(b"h\x00h\x01R0");
        }
        p.push(b'.');
        let e = eval(&p).err().unwrap();
        assert!(e.contains("objects"), "{e}");
    }

    #[test]
    fn deep_nesting_drops_without_recursion() {
        // 120 000 nested lists (about the most a 240 KB pickle's budget
        // allows): built and dropped without a stack overflow.
        let n = 120_000;
        let mut p = vec![b']'; n];
        p.extend(std::iter::repeat_n(b'a', n - 1));
        p.push(b'.');
        let v = eval(&p).unwrap();
        assert!(matches!(v, Value::List(_)));
        drop(v);
    }
}
