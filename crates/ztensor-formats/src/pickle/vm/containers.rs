//! Tuples, lists, sets and dicts: building them and filling them
//! (`APPEND(S)`, `ADDITEMS`, `SETITEM(S)`).

use std::cell::RefCell;
use std::rc::Rc;

use super::{Machine, Map, Seq, Value, R};

impl Machine<'_, '_> {
    /// Pushes a new sequence of `items`, made a tuple, list or set by `wrap`.
    pub(super) fn push_seq(&mut self, items: Vec<Value>, wrap: fn(Rc<Seq>) -> Value) -> R<()> {
        self.alloc()?;
        self.budget.edges += items.len() as u64;
        self.push(wrap(Rc::new(Seq(RefCell::new(items)))))
    }

    /// `TUPLE1` to `TUPLE3`: a tuple of the top `n` values.
    pub(super) fn top_tuple(&mut self, n: usize) -> R<()> {
        if self.stack.len() < n {
            return Err("stack underflow".into());
        }
        let items = self.stack.split_off(self.stack.len() - n);
        self.push_seq(items, Value::Tuple)
    }

    /// `TUPLE`, `LIST`, `FROZENSET`: a sequence of the values above the mark.
    pub(super) fn marked_seq(&mut self, wrap: fn(Rc<Seq>) -> Value) -> R<()> {
        let items = self.pop_mark()?;
        self.push_seq(items, wrap)
    }

    pub(super) fn push_dict(&mut self, pairs: Vec<(Value, Value)>) -> R<()> {
        self.alloc()?;
        self.budget.edges += 2 * pairs.len() as u64;
        self.push(Value::Dict(Rc::new(Map(RefCell::new(pairs)))))
    }

    /// `DICT`: a dict of the key/value pairs above the mark.
    pub(super) fn marked_dict(&mut self) -> R<()> {
        let items = self.pop_mark()?;
        self.push_dict(pairs(items)?)
    }

    /// `APPEND`.
    pub(super) fn append_top(&mut self) -> R<()> {
        let v = self.pop()?;
        self.append(vec![v])
    }

    /// `APPENDS`, `ADDITEMS`.
    pub(super) fn append_marked(&mut self) -> R<()> {
        let items = self.pop_mark()?;
        self.append(items)
    }

    /// `SETITEM`.
    pub(super) fn set_item(&mut self) -> R<()> {
        let v = self.pop()?;
        let k = self.pop()?;
        self.set_items(vec![(k, v)])
    }

    /// `SETITEMS`.
    pub(super) fn set_marked(&mut self) -> R<()> {
        let items = self.pop_mark()?;
        self.set_items(pairs(items)?)
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
