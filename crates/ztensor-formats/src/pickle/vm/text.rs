//! Protocol 0's text encodings: decimal integers, quoted byte strings,
//! `raw-unicode-escape`, and UTF-8 with surrogates.

/// A decimal integer as minimal little-endian two's complement bytes (the
/// form `LONG1` stores), for integers too wide for `i64`.
pub(super) fn decimal_to_le(s: &str) -> Option<Vec<u8>> {
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
pub(super) fn quoted_string(line: &[u8]) -> Option<Vec<u8>> {
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
pub(super) fn utf8_surrogatepass(mut bytes: &[u8]) -> bool {
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
pub(super) fn raw_unicode_escape(line: &[u8]) -> String {
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
