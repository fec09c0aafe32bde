//! The memo and its opcodes (`PUT`, `BINPUT`, `LONG_BINPUT`, `MEMOIZE`,
//! `GET`, `BINGET`, `LONG_BINGET`).

use std::collections::HashMap;

use super::input::Arg;
use super::opcodes::Op;
use super::{Machine, Value, R};

/// Most memo entries one pickle may create.
pub(crate) const MAX_MEMO: usize = 4 << 20;

/// The memo: dense while keys arrive in order (the normal case), with a
/// map for the rest so a huge key costs no memory.
#[derive(Default)]
pub(super) struct Memo {
    dense: Vec<Option<Value>>,
    sparse: HashMap<u64, Value>,
    len: usize,
}

impl Memo {
    pub(super) fn put(&mut self, key: u64, v: Value) -> Result<(), String> {
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

    pub(super) fn get(&self, key: u64) -> Result<Value, String> {
        let found = if key < self.dense.len() as u64 {
            self.dense[key as usize].clone()
        } else {
            self.sparse.get(&key).cloned()
        };
        found.ok_or_else(|| format!("memo key {key} is not defined"))
    }
}

/// Where a memo opcode's key comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key {
    /// A decimal text line (protocol 0).
    Text,
    /// A binary argument.
    Arg(Arg),
    /// The memo's size (`MEMOIZE`).
    Next,
}

impl Machine<'_, '_> {
    fn key(&mut self, op: Op, key: Key) -> R<u64> {
        match key {
            Key::Text => {
                let line = self.line()?;
                std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| "memo key is not a number".into())
            }
            Key::Arg(arg) => self.uint(op, arg),
            Key::Next => Ok(self.memo.len as u64),
        }
    }

    /// Stores the top value under the key.
    pub(super) fn put(&mut self, op: Op, key: Key) -> R<()> {
        let key = self.key(op, key)?;
        let top = self.top()?.clone();
        self.memo.put(key, top)
    }

    /// Pushes the value stored under the key.
    pub(super) fn get(&mut self, op: Op, key: Key) -> R<()> {
        let key = self.key(op, key)?;
        let v = self.memo.get(key)?;
        self.push(v)
    }
}
