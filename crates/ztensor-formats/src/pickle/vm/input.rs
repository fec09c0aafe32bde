//! Reading the opcodes' arguments from the input.

use super::opcodes::Op;
use super::{Machine, R};

/// How an opcode's integer argument is stored (little-endian).
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg {
    U8,
    U16,
    U32,
    U64,
    /// A signed length: negative values are refused.
    I32,
}

impl<'a> Machine<'a, '_> {
    pub(super) fn byte(&mut self) -> R<u8> {
        let b = *self.data.get(self.pos).ok_or("the pickle is truncated")?;
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let data = self.data;
        if n > data.len() - self.pos {
            return Err("the pickle is truncated".into());
        }
        let s = &data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length read from the input, checked against what remains before use.
    pub(super) fn take_len(&mut self, n: u64) -> R<&'a [u8]> {
        let remaining = (self.data.len() - self.pos) as u64;
        if n > remaining {
            return Err(format!(
                "a length of {n} bytes runs past the end of the pickle ({remaining} bytes left)"
            ));
        }
        self.take(n as usize)
    }

    pub(super) fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// The integer argument of `op`, stored as `arg` says.
    pub(super) fn uint(&mut self, op: Op, arg: Arg) -> R<u64> {
        Ok(match arg {
            Arg::U8 => self.byte()?.into(),
            Arg::U16 => u16::from_le_bytes(self.array()?).into(),
            Arg::U32 => u32::from_le_bytes(self.array()?).into(),
            Arg::U64 => u64::from_le_bytes(self.array()?),
            Arg::I32 => {
                let n = i32::from_le_bytes(self.array()?);
                u64::try_from(n).map_err(|_| format!("negative {} length", op.name()))?
            }
        })
    }

    /// A text line without its `\n` (protocol 0 arguments).
    pub(super) fn line(&mut self) -> R<&'a [u8]> {
        let data = self.data;
        let rest = &data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the pickle is truncated (unterminated line)")?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }
}
