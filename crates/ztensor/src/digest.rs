//! Checksums of stored bytes: CRC-32C and SHA-256, in the manifest's string forms.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// Which checksum the writer computes for a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// No checksum.
    #[default]
    None,
    /// CRC-32C (Castagnoli), fast: ~15 GB/s with SSE4.2.
    Crc32c,
    /// SHA-256, cryptographic and slower (~1 GB/s).
    Sha256,
}

impl Checksum {
    /// Parses `"none"`, `"crc32c"` or `"sha256"` (exact lower-case).
    pub fn parse(s: &str) -> Option<Checksum> {
        match s {
            "none" => Some(Checksum::None),
            "crc32c" => Some(Checksum::Crc32c),
            "sha256" => Some(Checksum::Sha256),
            _ => None,
        }
    }

    /// Computes this checksum over `bytes` (`None` for [`Checksum::None`]).
    pub fn compute(self, bytes: &[u8]) -> Option<Digest> {
        match self {
            Checksum::None => None,
            Checksum::Crc32c => Some(Digest::Crc32c(crc32c::crc32c(bytes) as u64)),
            Checksum::Sha256 => Some(Digest::Sha256(Sha256::digest(bytes).into())),
        }
    }
}

/// A checksum as stored in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// `crc32c:0x` + hex. Kept as parsed (the reference accepts more than 8 digits).
    Crc32c(u64),
    /// `sha256:` + 64 hex digits.
    Sha256([u8; 32]),
    /// CRC-32 (IEEE, the zip checksum) of the stored bytes, which foreign
    /// readers derive from a zip member's checksum (e.g. a stored `.npz`
    /// member). Never read from a `.zt` manifest: there the string form is an
    /// unknown algorithm (docs/format.md section 8).
    Crc32(u32),
    /// An algorithm this library does not know; reported, never treated as verified.
    Unknown(String),
}

impl Digest {
    /// Parses a manifest digest string.
    ///
    /// Malformed values of a known algorithm are an error; an unknown
    /// algorithm is kept as [`Digest::Unknown`].
    pub fn parse(s: &str) -> Result<Digest, String> {
        if let Some(rest) = s.strip_prefix("crc32c:") {
            let hex = rest
                .strip_prefix("0x")
                .or_else(|| rest.strip_prefix("0X"))
                .ok_or_else(|| format!("malformed crc32c digest {s:?} (expected crc32c:0x...)"))?;
            if hex.is_empty() || hex.len() > 16 {
                return Err(format!("malformed crc32c digest {s:?}"));
            }
            return u64::from_str_radix(hex, 16)
                .map(Digest::Crc32c)
                .map_err(|_| format!("malformed crc32c digest {s:?}"));
        }
        if let Some(hex) = s.strip_prefix("sha256:") {
            let bytes = hex.as_bytes();
            if bytes.len() != 64 {
                return Err(format!(
                    "malformed sha256 digest {s:?} (need 64 hex digits)"
                ));
            }
            let mut out = [0u8; 32];
            for (i, pair) in bytes.chunks(2).enumerate() {
                let text = std::str::from_utf8(pair)
                    .map_err(|_| format!("malformed sha256 digest {s:?}"))?;
                out[i] = u8::from_str_radix(text, 16)
                    .map_err(|_| format!("malformed sha256 digest {s:?}"))?;
            }
            return Ok(Digest::Sha256(out));
        }
        Ok(Digest::Unknown(s.to_string()))
    }

    /// Checks `bytes` against this digest.
    ///
    /// `Ok(true)` when verified, `Ok(false)` when the algorithm is unknown
    /// (nothing could be checked), `Err` with "expected ..., got ..." on a mismatch.
    pub fn verify(&self, bytes: &[u8]) -> Result<bool, String> {
        let actual = match self {
            Digest::Crc32c(_) => Checksum::Crc32c.compute(bytes),
            Digest::Sha256(_) => Checksum::Sha256.compute(bytes),
            Digest::Crc32(_) => Some(Digest::Crc32(crc32fast::hash(bytes))),
            Digest::Unknown(_) => return Ok(false),
        };
        match actual {
            Some(a) if &a == self => Ok(true),
            Some(a) => Err(format!("checksum mismatch: expected {self}, got {a}")),
            None => Ok(false),
        }
    }
}

impl fmt::Display for Digest {
    /// The canonical manifest form: upper-case 8-digit CRC, lower-case SHA-256.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Crc32c(v) => write!(f, "crc32c:0x{v:08X}"),
            Digest::Crc32(v) => write!(f, "crc32:0x{v:08X}"),
            Digest::Sha256(bytes) => {
                f.write_str("sha256:")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Digest::Unknown(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_format() {
        let d = Checksum::Crc32c.compute(b"123456789").unwrap();
        assert_eq!(d.to_string(), "crc32c:0xE3069283");
        assert_eq!(
            Checksum::Crc32c.compute(b"").unwrap().to_string(),
            "crc32c:0x00000000"
        );
    }

    #[test]
    fn sha256_of_empty() {
        let d = Checksum::Sha256.compute(b"").unwrap().to_string();
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d).unwrap().to_string(), d);
        assert_eq!(
            Digest::parse(&d.to_uppercase().replace("SHA256", "sha256"))
                .unwrap()
                .to_string(),
            d
        );
    }

    #[test]
    fn lenient_crc_parsing_like_the_reference() {
        assert_eq!(
            Digest::parse("crc32c:0xf094a48").unwrap(),
            Digest::Crc32c(0xf094a48)
        );
        assert_eq!(
            Digest::parse("crc32c:0X000F094A48").unwrap(),
            Digest::Crc32c(0xf094a48)
        );
        assert!(Digest::parse("crc32c:0xZZ").is_err());
        assert!(Digest::parse("crc32c:1234").is_err());
        assert_eq!(
            Digest::parse("md5:abc").unwrap(),
            Digest::Unknown("md5:abc".into())
        );
    }

    #[test]
    fn crc32_is_the_zip_checksum_and_never_parsed() {
        let d = Digest::Crc32(0xCBF4_3926); // CRC-32 check value of "123456789"
        assert_eq!(d.verify(b"123456789"), Ok(true));
        assert!(d.verify(b"123456780").is_err());
        assert_eq!(d.to_string(), "crc32:0xCBF43926");
        assert_eq!(
            Digest::parse(&d.to_string()).unwrap(),
            Digest::Unknown(d.to_string())
        );
    }

    #[test]
    fn verify_detects_mismatch_and_reports_unknown() {
        let d = Checksum::Crc32c.compute(b"abc").unwrap();
        assert_eq!(d.verify(b"abc"), Ok(true));
        assert!(d.verify(b"abd").unwrap_err().contains("expected crc32c:0x"));
        assert_eq!(Digest::Unknown("md5:x".into()).verify(b"abc"), Ok(false));
    }
}
