//! A restricted pickle machine.
//!
//! It decodes every opcode of pickle protocols 0 to 5 ([`Op`]) and builds
//! plain data (`None`, bools, ints, floats, strings, byte strings, lists,
//! tuples, dicts, sets). It never imports or calls anything: a `GLOBAL`
//! becomes a [`Global`] naming the callable (and is recorded in
//! [`Budget::globals`]), and every call site (`REDUCE`, `NEWOBJ`,
//! `NEWOBJ_EX`, `INST`, `OBJ`) is handed to [`Hooks::call`], which decides
//! what the call *means* for the few constructors it knows and otherwise
//! returns an inert [`Object`]. Persistent ids go to
//! [`Hooks::persistent_load`]. What the hooks build is a [`Native`] value
//! the machine only moves around: it knows nothing of torch.
//!
//! Every resource is bounded ([`MAX_MEMO`], [`MAX_STACK`], [`Budget`];
//! lengths are checked against the remaining input before anything is
//! allocated), containers are dropped without recursion, and nothing here
//! recurses on the input's structure, so hostile input fails with an error
//! and bounded memory.
//!
//! [`Machine::run`] is the opcode table; the opcodes' work is grouped by
//! what they touch: `stack` (marks, `POP`, `DUP`, `PROTO`), `scalars`
//! (numbers, strings, byte strings), `containers`, `memo` and `calls`
//! (globals, calls, `BUILD`, persistent ids), over `input` (reading the
//! opcodes' arguments) and `text` (protocol 0's text encodings).

mod budget;
mod calls;
mod containers;
mod input;
mod memo;
mod opcodes;
mod scalars;
mod stack;
mod text;
mod value;

#[cfg(test)]
mod tests;

pub(crate) use budget::{Budget, Seen};
pub(crate) use value::{Global, Map, Native, Object, Seq, Value};

use input::Arg;
use memo::{Key, Memo};
use opcodes::Op;

/// Most values on the stack, counting those below every open mark.
pub(crate) const MAX_STACK: usize = 1 << 20;
/// Highest pickle protocol understood.
const MAX_PROTOCOL: u8 = 5;

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

/// The machine's state while it runs one pickle.
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

impl Machine<'_, '_> {
    /// Runs opcodes up to `STOP` and returns its value; `op_at` follows
    /// the position of the opcode being run (for error messages).
    fn run(&mut self, op_at: &mut usize) -> R<Value> {
        loop {
            *op_at = self.pos;
            let op = Op::try_from(self.byte()?)?;
            match op {
                // The stack and its marks (stack.rs).
                Op::Stop => return self.pop(),
                Op::Mark => self.mark()?,
                Op::Pop => self.discard()?,
                Op::PopMark => self.pop_mark().map(drop)?,
                Op::Dup => self.dup()?,
                Op::Proto => self.proto()?,
                Op::Frame => self.take(8).map(drop)?, // only a read-ahead hint
                // Numbers (scalars.rs).
                Op::None => self.push(Value::None)?,
                Op::NewTrue => self.push(Value::Bool(true))?,
                Op::NewFalse => self.push(Value::Bool(false))?,
                Op::BinInt => self.bin_int()?,
                Op::BinInt1 => self.small_int(op, Arg::U8)?,
                Op::BinInt2 => self.small_int(op, Arg::U16)?,
                Op::Long1 => self.long(op, Arg::U8)?,
                Op::Long4 => self.long(op, Arg::I32)?,
                Op::Int => self.text_int()?,
                Op::Long => self.text_long()?,
                Op::BinFloat => self.bin_float()?,
                Op::Float => self.text_float()?,
                // Strings and byte strings (scalars.rs).
                Op::BinUnicode => self.unicode(op, Arg::U32)?,
                Op::ShortBinUnicode => self.unicode(op, Arg::U8)?,
                Op::BinUnicode8 => self.unicode(op, Arg::U64)?,
                Op::Unicode => self.text_unicode()?,
                Op::String => self.text_string()?,
                Op::BinString => self.bin_string(op, Arg::I32)?,
                Op::ShortBinString => self.bin_string(op, Arg::U8)?,
                Op::BinBytes => self.bytes(op, Arg::U32)?,
                Op::ShortBinBytes => self.bytes(op, Arg::U8)?,
                Op::BinBytes8 | Op::ByteArray8 => self.bytes(op, Arg::U64)?,
                Op::NextBuffer => {
                    return Err("out-of-band buffers (NEXT_BUFFER) are not supported".into())
                }
                Op::ReadOnlyBuffer => self.top().map(drop)?, // no change for us
                // Containers (containers.rs).
                Op::EmptyTuple => self.push_seq(Vec::new(), Value::Tuple)?,
                Op::Tuple1 => self.top_tuple(1)?,
                Op::Tuple2 => self.top_tuple(2)?,
                Op::Tuple3 => self.top_tuple(3)?,
                Op::Tuple => self.marked_seq(Value::Tuple)?,
                Op::EmptyList => self.push_seq(Vec::new(), Value::List)?,
                Op::List => self.marked_seq(Value::List)?,
                Op::EmptySet => self.push_seq(Vec::new(), Value::Set)?,
                Op::FrozenSet => self.marked_seq(Value::Set)?,
                Op::EmptyDict => self.push_dict(Vec::new())?,
                Op::Dict => self.marked_dict()?,
                Op::Append => self.append_top()?,
                Op::Appends | Op::AddItems => self.append_marked()?,
                Op::SetItem => self.set_item()?,
                Op::SetItems => self.set_marked()?,
                // The memo (memo.rs).
                Op::Put => self.put(op, Key::Text)?,
                Op::BinPut => self.put(op, Key::Arg(Arg::U8))?,
                Op::LongBinPut => self.put(op, Key::Arg(Arg::U32))?,
                Op::Memoize => self.put(op, Key::Next)?,
                Op::Get => self.get(op, Key::Text)?,
                Op::BinGet => self.get(op, Key::Arg(Arg::U8))?,
                Op::LongBinGet => self.get(op, Key::Arg(Arg::U32))?,
                // Globals, calls, state and persistent ids (calls.rs).
                Op::Global => self.text_global()?,
                Op::StackGlobal => self.stack_global()?,
                Op::Reduce | Op::NewObj => self.reduce(op)?,
                Op::NewObjEx => self.new_obj_ex(op)?,
                Op::Inst => self.inst()?,
                Op::Obj => self.obj()?,
                Op::Build => self.build()?,
                Op::Ext1 => self.ext(op, Arg::U8)?,
                Op::Ext2 => self.ext(op, Arg::U16)?,
                Op::Ext4 => self.ext(op, Arg::U32)?,
                Op::PersId => self.text_persistent_id()?,
                Op::BinPersId => self.persistent_id()?,
            }
        }
    }

    /// Charges one new object to the budget.
    fn alloc(&mut self) -> R<()> {
        self.budget.objects += 1;
        if self.budget.objects > self.budget.max_objects {
            return Err(format!("more than {} objects", self.budget.max_objects));
        }
        Ok(())
    }
}
