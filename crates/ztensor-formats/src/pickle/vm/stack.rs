//! The stack and its marks: `MARK`, `POP`, `POP_MARK`, `DUP`, `STOP`, `PROTO`.

use super::{Machine, Value, MAX_PROTOCOL, MAX_STACK, R};

impl Machine<'_, '_> {
    pub(super) fn push(&mut self, v: Value) -> R<()> {
        if self.stack.len() + self.below_marks >= MAX_STACK {
            return Err(format!("the stack grows past {MAX_STACK} values"));
        }
        self.stack.push(v);
        Ok(())
    }

    pub(super) fn pop(&mut self) -> R<Value> {
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    pub(super) fn top(&self) -> R<&Value> {
        self.stack.last().ok_or_else(|| "stack underflow".into())
    }

    /// `MARK`: the values so far wait below the mark.
    pub(super) fn mark(&mut self) -> R<()> {
        if self.marks.len() >= MAX_STACK {
            return Err(format!("more than {MAX_STACK} open marks"));
        }
        let below = std::mem::take(&mut self.stack);
        self.below_marks += below.len();
        self.marks.push(below);
        Ok(())
    }

    /// The values above the topmost mark, which is removed (`POP_MARK`).
    pub(super) fn pop_mark(&mut self) -> R<Vec<Value>> {
        let below = self.marks.pop().ok_or("no MARK to pop to")?;
        self.below_marks -= below.len();
        Ok(std::mem::replace(&mut self.stack, below))
    }

    /// `POP`: the top value, or the topmost mark when there is none above it.
    pub(super) fn discard(&mut self) -> R<()> {
        if self.stack.pop().is_none() {
            self.pop_mark()?;
        }
        Ok(())
    }

    pub(super) fn dup(&mut self) -> R<()> {
        let top = self.top()?.clone();
        self.push(top)
    }

    pub(super) fn proto(&mut self) -> R<()> {
        let proto = self.byte()?;
        if proto > MAX_PROTOCOL {
            return Err(format!("unsupported pickle protocol {proto}"));
        }
        Ok(())
    }
}
