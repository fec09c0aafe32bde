//! Numbers, strings and byte strings.

use std::rc::Rc;

use super::input::Arg;
use super::opcodes::Op;
use super::text::{decimal_to_le, quoted_string, raw_unicode_escape, utf8_surrogatepass};
use super::{Machine, Value, R};

impl Machine<'_, '_> {
    // ------------------------------------------------------------ numbers

    /// `BININT`: a signed 4-byte integer.
    pub(super) fn bin_int(&mut self) -> R<()> {
        let v = i32::from_le_bytes(self.array()?);
        self.push(Value::Int(v.into()))
    }

    /// `BININT1`, `BININT2`: an unsigned integer of 1 or 2 bytes.
    pub(super) fn small_int(&mut self, op: Op, arg: Arg) -> R<()> {
        let v = self.uint(op, arg)?;
        self.push(Value::Int(v as i64))
    }

    /// `LONG1`, `LONG4`: a two's complement integer of the length read.
    pub(super) fn long(&mut self, op: Op, arg: Arg) -> R<()> {
        let n = self.uint(op, arg)?;
        let bytes = self.take_len(n)?;
        let v = if bytes.len() <= 8 {
            let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
            let mut buf = if negative { [0xff; 8] } else { [0; 8] };
            buf[..bytes.len()].copy_from_slice(bytes);
            Value::Int(i64::from_le_bytes(buf))
        } else {
            self.alloc()?;
            Value::BigInt(Rc::from(bytes))
        };
        self.push(v)
    }

    /// `INT`: a decimal integer, or `00`/`01` for `False`/`True`.
    pub(super) fn text_int(&mut self) -> R<()> {
        let line = self.line()?;
        let v = match line {
            b"00" => Value::Bool(false),
            b"01" => Value::Bool(true),
            _ => self.decimal(line)?,
        };
        self.push(v)
    }

    /// `LONG`: a decimal integer with an optional `L` suffix.
    pub(super) fn text_long(&mut self) -> R<()> {
        let line = self.line()?;
        let line = line.strip_suffix(b"L").unwrap_or(line);
        let v = self.decimal(line)?;
        self.push(v)
    }

    fn decimal(&mut self, line: &[u8]) -> R<Value> {
        let s = std::str::from_utf8(line).map_err(|_| "INT is not a number")?;
        let s = s.trim();
        if let Ok(v) = s.parse::<i64>() {
            return Ok(Value::Int(v));
        }
        let bytes = decimal_to_le(s).ok_or_else(|| format!("INT is not a number: {s:?}"))?;
        self.alloc()?;
        Ok(Value::BigInt(bytes.into()))
    }

    /// `BINFLOAT`: a big-endian double.
    pub(super) fn bin_float(&mut self) -> R<()> {
        let v = f64::from_be_bytes(self.array()?);
        self.push(Value::Float(v))
    }

    /// `FLOAT`: a decimal float.
    pub(super) fn text_float(&mut self) -> R<()> {
        let line = self.line()?;
        let v = std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or("FLOAT is not a number")?;
        self.push(Value::Float(v))
    }

    // ------------------------------------------------------------ strings

    /// `BINUNICODE`, `SHORT_BINUNICODE`, `BINUNICODE8`: UTF-8 text.
    pub(super) fn unicode(&mut self, op: Op, arg: Arg) -> R<()> {
        let n = self.uint(op, arg)?;
        let s = self.take_len(n)?;
        // As Python's unpickler, which decodes these with 'surrogatepass':
        // other invalid UTF-8 fails the load (damage, not a name to invent).
        if !utf8_surrogatepass(s) {
            return Err("a pickled string is not valid UTF-8".into());
        }
        self.push_text(s)
    }

    /// `BINSTRING`, `SHORT_BINSTRING`: a Python 2 `str`, read as text.
    pub(super) fn bin_string(&mut self, op: Op, arg: Arg) -> R<()> {
        let n = self.uint(op, arg)?;
        let s = self.take_len(n)?;
        self.push_text(s)
    }

    /// `UNICODE`: `raw-unicode-escape` text.
    pub(super) fn text_unicode(&mut self) -> R<()> {
        let line = self.line()?;
        let s = raw_unicode_escape(line);
        self.push_str(s)
    }

    /// `STRING`: a quoted Python byte string literal, read as text.
    pub(super) fn text_string(&mut self) -> R<()> {
        let line = self.line()?;
        let s = quoted_string(line).ok_or("STRING is not a quoted string")?;
        self.push_str(String::from_utf8_lossy(&s).into_owned())
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

    fn push_str(&mut self, s: String) -> R<()> {
        self.alloc()?;
        self.push(Value::Str(s.into()))
    }

    /// `BINBYTES`, `SHORT_BINBYTES`, `BINBYTES8`, `BYTEARRAY8`: only where
    /// the bytes lie is kept.
    pub(super) fn bytes(&mut self, op: Op, arg: Arg) -> R<()> {
        let n = self.uint(op, arg)?;
        let at = self.pos;
        self.take_len(n)?;
        self.push(Value::Bytes {
            at: Some(at),
            len: n as usize,
        })
    }
}
