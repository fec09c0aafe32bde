//! Globals, calls, `BUILD`, `copyreg` extensions and persistent ids: what
//! the machine hands to its [`Hooks`](super::Hooks) instead of running.

use std::rc::Rc;

use super::input::Arg;
use super::opcodes::Op;
use super::{Global, Machine, Object, Value, R};

impl Machine<'_, '_> {
    /// `GLOBAL`: `module\nname\n`.
    pub(super) fn text_global(&mut self) -> R<()> {
        let module = self.line()?;
        let name = self.line()?;
        let g = self.global(module, name)?;
        self.push(g)
    }

    /// `STACK_GLOBAL`: the module and name are the top two strings.
    pub(super) fn stack_global(&mut self) -> R<()> {
        let name = self.pop()?;
        let module = self.pop()?;
        let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
            return Err("STACK_GLOBAL needs two strings".into());
        };
        let g = self.global(module.as_bytes(), name.as_bytes())?;
        self.push(g)
    }

    /// `REDUCE`, `NEWOBJ`: a callable and its argument tuple.
    pub(super) fn reduce(&mut self, op: Op) -> R<()> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let args = self.call_args(&args, op)?;
        self.call(&callable, args)
    }

    /// `NEWOBJ_EX`: as `NEWOBJ`; the keyword arguments are dropped.
    pub(super) fn new_obj_ex(&mut self, op: Op) -> R<()> {
        let _kwargs = self.pop()?;
        self.reduce(op)
    }

    /// `INST`: `module\nname\n`, its arguments above the mark.
    pub(super) fn inst(&mut self) -> R<()> {
        let module = self.line()?;
        let name = self.line()?;
        let cls = self.global(module, name)?;
        let args = self.pop_mark()?;
        self.budget.charge(args.len())?;
        self.call(&cls, args)
    }

    /// `OBJ`: the class and its arguments above the mark.
    pub(super) fn obj(&mut self) -> R<()> {
        let mut args = self.pop_mark()?;
        if args.is_empty() {
            return Err("OBJ without a class".into());
        }
        let cls = args.remove(0);
        self.budget.charge(args.len())?;
        self.call(&cls, args)
    }

    /// `BUILD`: the state of an inert object. Anything else (a dict's
    /// attributes, a tensor's Python-level state) carries no tensor data
    /// and is ignored.
    pub(super) fn build(&mut self) -> R<()> {
        let state = self.pop()?;
        self.budget.edges += 1;
        if let Value::Object(obj) = self.top()? {
            *obj.state.borrow_mut() = Some(state);
            let obj = Value::Object(obj.clone());
            self.budget.mutated.note(&obj);
        }
        Ok(())
    }

    /// `EXT1`, `EXT2`, `EXT4`: an inert object named by its code.
    pub(super) fn ext(&mut self, op: Op, arg: Arg) -> R<()> {
        let code = self.uint(op, arg)?;
        self.alloc()?;
        let v = Value::Object(Rc::new(Object::new(
            format!("copyreg extension {code}"),
            Vec::new(),
        )));
        self.push(v)
    }

    /// `PERSID`: a text persistent id.
    pub(super) fn text_persistent_id(&mut self) -> R<()> {
        let line = self.line()?;
        let pid = String::from_utf8_lossy(line).into_owned();
        self.alloc()?;
        let v = self.hooks.persistent_load(Value::Str(pid.into()))?;
        self.push(v)
    }

    /// `BINPERSID`: the persistent id is the top value.
    pub(super) fn persistent_id(&mut self) -> R<()> {
        let pid = self.pop()?;
        self.alloc()?;
        let v = self.hooks.persistent_load(pid)?;
        self.push(v)
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
    fn call_args(&mut self, args: &Value, op: Op) -> R<Vec<Value>> {
        match args {
            Value::Tuple(s) | Value::List(s) => {
                self.budget.charge(s.0.borrow().len())?;
                Ok(s.0.borrow().clone())
            }
            other => Err(format!("{} arguments are a {}", op.name(), other.kind())),
        }
    }

    /// Hands a call to the hooks (`INST`/`OBJ` arguments come off the
    /// stack; the others were charged by [`Machine::call_args`]).
    fn call(&mut self, callable: &Value, args: Vec<Value>) -> R<()> {
        self.alloc()?;
        let v = self.hooks.call(callable, args, self.budget)?;
        self.push(v)
    }
}
