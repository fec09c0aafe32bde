//! Reader for NumPy `.npy` arrays ([`parse`]), and the `.npy` format the
//! `.npz` reader shares: a strict parser for the header (magic, version, length and the Python
//! dict literal holding `descr`, `fortran_order` and `shape`), the mapping
//! of `descr` strings onto ztensor dtypes, and the construction of one
//! dense tensor from a header and the place its data lies.
//!
//! Layout of an `.npy` file (format versions 1.0, 2.0 and 3.0):
//!
//! ```text
//! \x93NUMPY  major minor  header_len (u16 LE for 1.x, u32 LE for 2.x/3.x)
//! {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   (padded, ends in '\n')
//! data: numel * itemsize bytes, C or Fortran order, byte order as descr says
//! ```

use std::io::Read;
use std::sync::Arc;

use ztensor::{
    Catalog, Component, DType, Encoding, Entry, ErrorKind, FormatError, TensorInfo, Transform,
};

use crate::transforms::{ByteSwap, Chain, Inflate, Strided};
use crate::ParseContext;

/// The name [`parse`] gives the single array of an `.npy` file.
///
/// An `.npy` file holds one unnamed array; `arr_0` is the name
/// `np.savez(path, array)` gives a positional array, so the same array
/// has the same name whether it comes from an `.npy` or an `.npz` file,
/// and the name is a valid identifier for every front end.
pub const NPY_TENSOR_NAME: &str = "arr_0";

/// The six bytes every `.npy` image starts with.
pub(crate) const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Largest header (prefix + dict literal) accepted. NumPy itself refuses
/// headers over 10 000 bytes unless told otherwise; a plain array's header
/// is well under 1 KiB even with 64 dimensions.
pub(crate) const MAX_HEADER_LEN: usize = 1 << 20;

/// NumPy's limit on the number of dimensions (`NPY_MAXDIMS`).
const MAX_DIMS: usize = 64;

/// Nesting limit for the values of the header literal (structured dtypes
/// nest lists and tuples; nothing sane goes deeper than a few levels).
const MAX_DEPTH: usize = 16;

/// A parsed `.npy` header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// Format version `(major, minor)`.
    pub version: (u8, u8),
    /// Bytes from the start of the image to the first data byte.
    pub data_offset: u64,
    /// The `descr` value.
    pub descr: Value,
    /// Whether the data is stored in column-major order.
    pub fortran_order: bool,
    /// The array's shape (`[]` for a 0-d array).
    pub shape: Vec<u64>,
}

/// A value of the header's Python literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A quoted string.
    Str(String),
    /// `True` or `False`.
    Bool(bool),
    /// A non-negative integer.
    Int(u64),
    /// A parenthesised tuple.
    Tuple(Vec<Value>),
    /// A bracketed list (structured dtypes).
    List(Vec<Value>),
}

/// Reads the fixed prefix (magic, version, header length) and returns the
/// total header length — the offset of the data — and the version. Needs
/// the first 10 (v1) or 12 (v2, v3) bytes.
pub(crate) fn header_len(prefix: &[u8]) -> Result<(u64, (u8, u8)), FormatError> {
    if prefix.get(..6).is_some_and(|m| m != MAGIC) {
        return Err("not an .npy array: the magic \\x93NUMPY is missing".into());
    }
    if prefix.len() < 8 {
        return Err(FormatError::truncated(format!(
            ".npy header truncated: {} bytes",
            prefix.len()
        )));
    }
    let version = (prefix[6], prefix[7]);
    let (len, fixed) = match version {
        (1, 0) => match prefix.get(8..10) {
            Some(b) => (u64::from(u16::from_le_bytes([b[0], b[1]])), 10u64),
            None => {
                return Err(FormatError::truncated(format!(
                    ".npy header truncated: {} bytes",
                    prefix.len()
                )))
            }
        },
        (2, 0) | (3, 0) => match prefix.get(8..12) {
            Some(b) => (
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                12u64,
            ),
            None => {
                return Err(FormatError::truncated(format!(
                    ".npy header truncated: {} bytes",
                    prefix.len()
                )))
            }
        },
        (major, minor) => {
            return Err(FormatError::unsupported(format!(
                "unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are known)"
            )))
        }
    };
    let total = fixed + len;
    if total > MAX_HEADER_LEN as u64 {
        return Err(FormatError::limit(format!(
            ".npy header of {len} bytes is larger than the {MAX_HEADER_LEN}-byte limit"
        )));
    }
    Ok((total, version))
}

/// Parses a whole header; `bytes` must hold at least the full header
/// (anything after it is ignored).
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Header, FormatError> {
    let (total, version) = header_len(bytes)?;
    let fixed = if version.0 == 1 { 10 } else { 12 };
    // `total` <= MAX_HEADER_LEN, so it fits usize.
    let text = bytes.get(fixed..total as usize).ok_or_else(|| {
        format!(
            ".npy header truncated: it needs {total} bytes, {} are present",
            bytes.len()
        )
    })?;
    let dict = parse_dict(text)?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in dict {
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            other => return Err(format!(".npy header has an unexpected key '{other}'").into()),
        };
        if slot.replace(value).is_some() {
            return Err(format!(".npy header lists '{key}' twice").into());
        }
    }
    let missing = |k: &str| format!(".npy header lacks '{k}'");
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran_order = match fortran.ok_or_else(|| missing("fortran_order"))? {
        Value::Bool(b) => b,
        other => return Err(format!(".npy header: fortran_order is {other:?}, not a bool").into()),
    };
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        Value::Tuple(dims) => dims
            .into_iter()
            .map(|d| match d {
                Value::Int(n) => Ok(n),
                other => Err(format!(".npy header: shape holds {other:?}, not an integer").into()),
            })
            .collect::<Result<Vec<u64>, FormatError>>()?,
        other => return Err(format!(".npy header: shape is {other:?}, not a tuple").into()),
    };
    if shape.len() > MAX_DIMS {
        return Err(FormatError::limit(format!(
            ".npy header: {} dimensions (at most {MAX_DIMS})",
            shape.len()
        )));
    }
    Ok(Header {
        version,
        data_offset: total,
        descr,
        fortran_order,
        shape,
    })
}

/// Parses the dict literal: `{key: value, ...}` then only whitespace.
fn parse_dict(text: &[u8]) -> Result<Vec<(String, Value)>, FormatError> {
    let mut p = Lexer { s: text, pos: 0 };
    p.ws();
    p.expect(b'{')?;
    let mut items = Vec::new();
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        let value = p.value(0)?;
        items.push((key, value));
        p.ws();
        if p.eat(b',') {
            continue;
        }
        p.ws();
        p.expect(b'}')?;
        break;
    }
    p.ws();
    if p.pos != text.len() {
        return Err(format!(
            ".npy header: unexpected text after the dict at byte {}",
            p.pos
        )
        .into());
    }
    Ok(items)
}

/// A byte cursor over the header literal.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn err(&self, what: &str) -> String {
        match self.peek() {
            Some(c) => format!(
                ".npy header: expected {what} at byte {}, found {:?}",
                self.pos, c as char
            ),
            None => format!(".npy header: expected {what}, found the end of the header"),
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), FormatError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(&format!("'{}'", c as char)).into())
        }
    }

    /// A quoted string without escapes.
    fn string(&mut self) -> Result<String, FormatError> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.err("a quoted string").into()),
        };
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                Some(c) if c == quote => break,
                Some(b'\\') => return Err(self.err("a string without escapes").into()),
                Some(b'\n') | None => return Err(self.err("the end of the string").into()),
                Some(_) => self.pos += 1,
            }
        }
        let s = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(s)
    }

    fn value(&mut self, depth: usize) -> Result<Value, FormatError> {
        if depth > MAX_DEPTH {
            return Err(FormatError::limit(".npy header: values nest too deeply"));
        }
        match self.peek() {
            Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
            Some(b'(') => {
                self.pos += 1;
                let (items, trailing_comma) = self.sequence(b')', depth)?;
                // Python: `(3)` is an int, `(3,)` a tuple.
                if items.len() == 1 && !trailing_comma {
                    return Err(".npy header: a parenthesised value that is not a tuple".into());
                }
                Ok(Value::Tuple(items))
            }
            Some(b'[') => {
                self.pos += 1;
                Ok(Value::List(self.sequence(b']', depth)?.0))
            }
            Some(b'0'..=b'9') => {
                let mut n: u64 = 0;
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(c - b'0')))
                        .ok_or(".npy header: an integer does not fit 64 bits")?;
                    self.pos += 1;
                }
                // Python 2 wrote long integers as `3L`.
                self.eat(b'L');
                Ok(Value::Int(n))
            }
            _ => {
                for (word, b) in [(&b"True"[..], true), (&b"False"[..], false)] {
                    if self.s[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(Value::Bool(b));
                    }
                }
                Err(self.err("a value").into())
            }
        }
    }

    /// Comma-separated values up to `close`; returns them and whether a
    /// comma followed the last one.
    fn sequence(&mut self, close: u8, depth: usize) -> Result<(Vec<Value>, bool), FormatError> {
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            self.ws();
            if self.eat(close) {
                return Ok((items, trailing));
            }
            items.push(self.value(depth + 1)?);
            self.ws();
            trailing = self.eat(b',');
            if !trailing {
                self.ws();
                self.expect(close)?;
                return Ok((items, false));
            }
        }
    }
}

/// How an `.npy` element type maps onto ztensor's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elem {
    /// Storage dtype.
    pub dtype: DType,
    /// Logical type label (fp8, complex).
    pub logical: Option<&'static str>,
    /// Bytes per logical element.
    pub itemsize: usize,
    /// Big-endian data: the width of each byte-swapped unit.
    pub swap: Option<usize>,
}

/// Maps a `descr` onto a storage dtype, or says why it is not supported.
pub(crate) fn element(descr: &Value) -> Result<Elem, FormatError> {
    let s = match descr {
        Value::Str(s) => s.as_str(),
        Value::List(_) => {
            return Err(FormatError::unsupported(
                "structured (record) dtypes are not supported",
            ));
        }
        other => return Err(format!("descr {other:?} is not a dtype string").into()),
    };
    let unsupported = |why: &str| {
        Err(FormatError::unsupported(format!(
            "dtype '{s}' is not supported: {why}"
        )))
    };
    let (order, code) = match s.as_bytes().first() {
        Some(c @ (b'<' | b'>' | b'|' | b'=')) => (*c, &s[1..]),
        _ => (b'=', s),
    };
    let big = order == b'>';
    let (dtype, logical, itemsize) = match code {
        "b1" => (DType::Bool, None, 1),
        "i1" => (DType::I8, None, 1),
        "i2" => (DType::I16, None, 2),
        "i4" => (DType::I32, None, 4),
        "i8" => (DType::I64, None, 8),
        "u1" => (DType::U8, None, 1),
        "u2" => (DType::U16, None, 2),
        "u4" => (DType::U32, None, 4),
        "u8" => (DType::U64, None, 8),
        "f2" => (DType::F16, None, 2),
        "f4" => (DType::F32, None, 4),
        "f8" => (DType::F64, None, 8),
        "c8" => (DType::F32, Some("complex64"), 8),
        "c16" => (DType::F64, Some("complex128"), 16),
        // ml_dtypes.float8_e5m2 registers itself as a 1-byte float kind.
        "f1" => (DType::U8, Some("f8_e5m2"), 1),
        // ml_dtypes.bfloat16 saves as '<V2' (a plain 2-byte void is '|V2').
        "V2" if order != b'|' => (DType::BF16, None, 2),
        "V2" => return unsupported("an opaque 2-byte void type"),
        "V1" => {
            return unsupported(
                "a 1-byte ml_dtypes type (float8_e4m3fn, float8_e4m3fnuz, float8_e5m2fnuz, \
                 int4, ...) that .npy does not name, so which one cannot be told",
            )
        }
        _ => {
            let why = match code.as_bytes().first() {
                Some(b'O') => "object arrays hold pickled Python objects",
                Some(b'U') => "unicode strings",
                Some(b'S' | b'a') => "byte strings",
                Some(b'V') => "opaque void (raw bytes) type",
                Some(b'M') => "datetime64",
                Some(b'm') => "timedelta64",
                Some(b'f' | b'c') => "extended-precision floats",
                _ => "not a numeric type ztensor holds",
            };
            return unsupported(why);
        }
    };
    let unit = if logical.is_some_and(|l| l.starts_with("complex")) {
        itemsize / 2
    } else {
        itemsize
    };
    Ok(Elem {
        dtype,
        logical,
        itemsize,
        swap: (big && unit > 1).then_some(unit),
    })
}

/// Where an array's data lies in the file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Data {
    /// Uncompressed, at an absolute offset: `len` bytes are available.
    /// `exact` requires exactly the array's size; otherwise trailing bytes
    /// are ignored (as NumPy does for `.npy` files).
    Stored {
        /// Absolute offset of the first data byte.
        offset: u64,
        /// Bytes available from there.
        len: u64,
        /// Whether `len` must equal the array's size.
        exact: bool,
    },
    /// A raw DEFLATE stream (zip method 8) decoding to the header followed
    /// by the data.
    Deflated {
        /// Absolute offset of the compressed stream.
        offset: u64,
        /// Compressed length.
        len: u64,
        /// Uncompressed size the archive declares (header + data).
        declared: u64,
        /// CRC-32 of the uncompressed member the archive declares.
        crc32: u32,
    },
}

/// Builds the dense tensor `name` from a parsed header and its data.
pub(crate) fn tensor(name: &str, header: &Header, data: Data) -> Result<TensorInfo, FormatError> {
    let elem = element(&header.descr)?;
    let numel = ztensor::checked_numel(&header.shape)
        .ok_or_else(|| format!("shape {:?} has too many elements", header.shape))?;
    let nbytes = numel
        .checked_mul(elem.itemsize as u64)
        .ok_or_else(|| format!("shape {:?} is too large to address", header.shape))?;
    let mut steps: Vec<Arc<dyn Transform>> = Vec::new();
    let (offset, length) = match data {
        Data::Stored { offset, len, exact } => {
            if len < nbytes || (exact && len != nbytes) {
                let kind = if len < nbytes {
                    ErrorKind::Truncated
                } else {
                    ErrorKind::Corrupt
                };
                return Err(FormatError::new(kind, format!(
                    "the array needs {nbytes} data bytes (shape {:?}, {} bytes each) but {len} are stored",
                    header.shape, elem.itemsize
                )));
            }
            (offset, nbytes)
        }
        Data::Deflated {
            offset,
            len,
            declared,
            crc32,
        } => {
            let total = header
                .data_offset
                .checked_add(nbytes)
                .ok_or("array size overflows")?;
            if declared != total {
                return Err(format!(
                    "the archive declares {declared} uncompressed bytes but the .npy header and \
                     shape {:?} need {total}",
                    header.shape
                )
                .into());
            }
            let most = len
                .saturating_mul(crate::zipcheck::MAX_DEFLATE_RATIO)
                .saturating_add(1024);
            if total > most {
                return Err(FormatError::limit(format!(
                    "{total} uncompressed bytes cannot come from a {len}-byte deflate stream"
                )));
            }
            steps.push(Arc::new(CrcInflate {
                inflate: Inflate {
                    decoded_len: nbytes,
                    skip: header.data_offset,
                },
                crc32,
            }));
            (offset, len)
        }
    };
    if let Some(width) = elem.swap {
        steps.push(Arc::new(ByteSwap { width, len: nbytes }));
    }
    // Column-major data needs a gather unless at most one dimension is
    // longer than 1 (then both orders are the same bytes).
    let spread = header.shape.iter().filter(|&&d| d > 1).count();
    if header.fortran_order && spread > 1 && numel > 0 {
        let mut strides = Vec::with_capacity(header.shape.len());
        let mut step = 1u64;
        for &d in &header.shape {
            strides.push(step);
            // Cannot overflow: the product of all dims (numel) fits u64.
            step = step.saturating_mul(d);
        }
        let gather = Strided {
            itemsize: elem.itemsize,
            shape: header.shape.clone(),
            strides,
            offset: 0,
        };
        if gather.validate(numel)? != nbytes {
            return Err("column-major view has the wrong size".into());
        }
        steps.push(Arc::new(gather));
    }
    let encoding = match steps.len() {
        0 => Encoding::Raw,
        1 => Encoding::Transformed(steps.remove(0)),
        _ => Encoding::Transformed(Arc::new(Chain(steps))),
    };
    let component = Component {
        dtype: elem.dtype,
        logical_type: elem.logical.map(str::to_string),
        offset,
        length,
        encoding,
        digest: None,
    };
    Ok(TensorInfo::dense(
        name.to_string(),
        header.shape.clone(),
        component,
    ))
}

/// Parses a single `.npy` file image: one tensor named [`NPY_TENSOR_NAME`].
///
/// A malformed header fails the whole file; an array whose dtype ztensor
/// cannot hold is listed as unreadable, with the reason.
pub fn parse(bytes: &[u8], _cx: &ParseContext) -> Result<Catalog, FormatError> {
    let header = parse_header(bytes)?;
    let file_len = bytes.len() as u64;
    let info = tensor(
        NPY_TENSOR_NAME,
        &header,
        Data::Stored {
            offset: header.data_offset,
            len: file_len.saturating_sub(header.data_offset),
            exact: false,
        },
    );
    let (major, minor) = header.version;
    let entry = match info {
        Ok(info) => Entry::ok(info),
        Err(e) => Entry::broken(NPY_TENSOR_NAME, e),
    };
    Ok(Catalog {
        version: format!("{major}.{minor}"),
        ..Catalog::new("npy", vec![entry], (0, file_len))
    })
}

/// [`Inflate`] of a zip member that also checks the member's CRC-32 (over
/// the skipped `.npy` header and the data), as `np.load` does: DEFLATE
/// itself has no checksum, so a damaged stream can inflate to wrong values
/// of the right size.
#[derive(Debug)]
struct CrcInflate {
    /// Sizes: `skip` header bytes, then `decoded_len` data bytes.
    pub inflate: Inflate,
    /// The CRC-32 the archive declares for the whole uncompressed member.
    pub crc32: u32,
}

impl Transform for CrcInflate {
    fn name(&self) -> &str {
        self.inflate.name()
    }

    fn decoded_len(&self) -> u64 {
        self.inflate.decoded_len
    }

    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        // The header is at most MAX_HEADER_LEN bytes (checked at parse).
        if self.inflate.skip > MAX_HEADER_LEN as u64 || out.len() as u64 != self.decoded_len() {
            return Err("inflated member has the wrong size".into());
        }
        let mut z = flate2::read::DeflateDecoder::new(stored);
        let mut crc = flate2::Crc::new();
        let mut head = vec![0u8; self.inflate.skip as usize];
        z.read_exact(&mut head)
            .and_then(|()| z.read_exact(out))
            .map_err(|e| {
                FormatError::truncated(format!("deflate stream is shorter than declared: {e}"))
            })?;
        crc.update(&head);
        crc.update(out);
        let mut extra = [0u8; 1];
        match z.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err("deflate stream is longer than declared".into()),
            Err(e) => return Err(format!("deflate: {e}").into()),
        }
        if crc.sum() != self.crc32 {
            return Err(FormatError::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "CRC-32 mismatch (0x{:08x}, the archive says 0x{:08x}): the member is damaged",
                    crc.sum(),
                    self.crc32
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dict: &str) -> Vec<u8> {
        let mut text = dict.as_bytes().to_vec();
        while !(10 + text.len() + 1).is_multiple_of(64) {
            text.push(b' ');
        }
        text.push(b'\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((text.len() as u16).to_le_bytes());
        out.extend(text);
        out
    }

    #[test]
    fn parses_what_numpy_writes() {
        let h = parse_header(&header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        ))
        .unwrap();
        assert_eq!(h.shape, [2, 3]);
        assert_eq!(h.data_offset, 128);
        assert!(!h.fortran_order);
        let h = parse_header(&header(
            "{'descr': '>c16', 'fortran_order': True, 'shape': (), }",
        ))
        .unwrap();
        assert!(h.shape.is_empty() && h.fortran_order);
        let e = element(&h.descr).unwrap();
        assert_eq!((e.dtype, e.itemsize, e.swap), (DType::F64, 16, Some(8)));
        let h = parse_header(&header(
            "{\"shape\": (5L,), \"fortran_order\": False, \"descr\": \"|b1\"}",
        ))
        .unwrap();
        assert_eq!(h.shape, [5]);
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            "{'descr': '<f4', 'fortran_order': False}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3)}",
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
            "{'descr': '<\\f4', 'fortran_order': False, 'shape': (3,)}",
            "{'descr': '<f4' 'fortran_order': False, 'shape': (3,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)",
            "",
        ] {
            assert!(parse_header(&header(bad)).is_err(), "{bad}");
        }
        let deep = format!(
            "{{'descr': {}{}, 'fortran_order': False, 'shape': ()}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(parse_header(&header(&deep)).is_err());
        let full = header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }");
        for n in 0..full.len() {
            assert!(parse_header(&full[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn dtypes() {
        let e = |s: &str| element(&Value::Str(s.into()));
        assert_eq!(e("<V2").unwrap().dtype, DType::BF16);
        assert_eq!(e(">V2").unwrap().swap, Some(2));
        assert_eq!(e("<f1").unwrap().logical, Some("f8_e5m2"));
        assert_eq!(e(">u1").unwrap().swap, None);
        assert_eq!(e(">c8").unwrap().swap, Some(4));
        for bad in [
            "|O", "<U3", "|S4", "|V2", "<V1", "<M8[s]", "<f16", "<c32", "<i16",
        ] {
            let err = e(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{bad}: {err}");
            assert!(err.message().contains(bad), "{bad}: {err}");
        }
        let err = element(&Value::List(vec![])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    }
}
