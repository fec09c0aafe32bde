//! The values the machine builds, and how they are dropped without
//! recursion.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

/// A value made by the machine's user in a [`super::Hooks`] call (a torch
/// storage, a tensor): the machine only moves it around and never looks
/// inside, so it knows nothing of what its users build.
pub(crate) trait Native: Any {
    /// What it is, for error messages (`"tensor"`).
    fn kind(&self) -> &'static str;
}

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
    /// What a hook made (see [`Native`]).
    Native(Rc<dyn Native>),
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
            Value::Native(n) => n.kind().into(),
        }
    }

    /// The native value of type `T` this is, if it is one.
    pub(crate) fn native<T: Native>(&self) -> Option<Rc<T>> {
        match self {
            Value::Native(n) => (n.clone() as Rc<dyn Any>).downcast::<T>().ok(),
            _ => None,
        }
    }

    /// Whether this is a native value of type `T`.
    pub(crate) fn is_native<T: Native>(&self) -> bool {
        matches!(self, Value::Native(n) if (&**n as &dyn Any).is::<T>())
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

pub(super) fn drop_iteratively(mut pending: Vec<Value>) {
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
