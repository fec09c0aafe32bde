//! Decoding steps shared by the foreign readers, applied lazily when a
//! tensor is read: inflating zip members, byte-swapping big-endian data and
//! gathering strided views into row-major order.

use std::io::Read;
use std::sync::Arc;

use ztensor::{FormatError, Transform};

/// Raw DEFLATE (zip method 8) whose decoded size is known from the archive.
/// Decoding refuses to produce more or fewer bytes than declared.
#[derive(Debug)]
pub struct Inflate {
    /// Declared decoded size (validated by the caller against the shape).
    pub decoded_len: u64,
    /// Bytes to skip at the start of the decoded stream (e.g. an .npy header).
    pub skip: u64,
}

impl Transform for Inflate {
    fn name(&self) -> &str {
        "deflate"
    }

    fn decoded_len(&self) -> u64 {
        self.decoded_len
    }

    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        let mut z = flate2::read::DeflateDecoder::new(stored);
        std::io::copy(&mut (&mut z).take(self.skip), &mut std::io::sink())
            .map_err(|e| format!("deflate: {e}"))?;
        z.read_exact(out).map_err(|e| {
            FormatError::truncated(format!("deflate stream is shorter than declared: {e}"))
        })?;
        let mut extra = [0u8; 1];
        match z.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err("deflate stream is longer than declared".into()),
            Err(e) => Err(format!("deflate: {e}").into()),
        }
    }
}

/// Reverses the byte order of every `width`-byte element (big-endian data).
#[derive(Debug)]
pub struct ByteSwap {
    /// Element width in bytes (2, 4 or 8; complex numbers swap each half).
    pub width: usize,
    /// Decoded size in bytes.
    pub len: u64,
}

impl Transform for ByteSwap {
    fn name(&self) -> &str {
        "byteswap"
    }

    fn decoded_len(&self) -> u64 {
        self.len
    }

    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        if stored.len() != out.len() || self.width == 0 || !out.len().is_multiple_of(self.width) {
            return Err("byte-swapped data has the wrong size".into());
        }
        for (src, dst) in stored
            .chunks_exact(self.width)
            .zip(out.chunks_exact_mut(self.width))
        {
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
        Ok(())
    }
}

/// Gathers a strided view of a storage into a row-major array: element
/// `(i0, i1, ...)` is read at `offset + sum(ik * strides[k])` (in elements).
#[derive(Debug)]
pub struct Strided {
    /// Bytes per element.
    pub itemsize: usize,
    /// Logical shape.
    pub shape: Vec<u64>,
    /// Strides in elements (may be 0 for broadcast dimensions).
    pub strides: Vec<u64>,
    /// Offset of element (0, 0, ...) in elements.
    pub offset: u64,
}

impl Strided {
    /// Checks that every element lies inside a storage of `storage_elems`
    /// elements; returns the output size in bytes.
    pub fn validate(&self, storage_elems: u64) -> Result<u64, String> {
        if self.shape.len() != self.strides.len() {
            return Err("shape and strides differ in length".into());
        }
        let numel = ztensor::checked_numel(&self.shape).ok_or("shape overflows")?;
        if numel == 0 {
            return Ok(0);
        }
        let last = self
            .shape
            .iter()
            .zip(&self.strides)
            .try_fold(self.offset, |acc, (&d, &s)| {
                acc.checked_add((d - 1).checked_mul(s)?)
            })
            .ok_or("strides overflow")?;
        if last >= storage_elems {
            return Err(format!(
                "view reaches element {last} of a {storage_elems}-element storage"
            ));
        }
        numel
            .checked_mul(self.itemsize as u64)
            .ok_or_else(|| "size overflows".into())
    }
}

impl Transform for Strided {
    fn name(&self) -> &str {
        "strided"
    }

    fn decoded_len(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.itemsize as u64
    }

    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        let storage_elems = (stored.len() / self.itemsize.max(1)) as u64;
        if self.validate(storage_elems)? != out.len() as u64 {
            return Err("strided view has the wrong size".into());
        }
        let w = self.itemsize;
        let nd = self.shape.len();
        let mut index = vec![0u64; nd];
        let mut src = self.offset;
        for dst in out.chunks_exact_mut(w) {
            let at = src as usize * w;
            dst.copy_from_slice(&stored[at..at + w]);
            // Odometer increment, innermost dimension fastest.
            for k in (0..nd).rev() {
                index[k] += 1;
                src += self.strides[k];
                if index[k] < self.shape[k] {
                    break;
                }
                src -= self.strides[k] * self.shape[k];
                index[k] = 0;
            }
        }
        Ok(())
    }
}

/// Several steps applied in order (e.g. inflate, then byte-swap).
#[derive(Debug)]
pub struct Chain(pub Vec<Arc<dyn Transform>>);

impl Transform for Chain {
    fn name(&self) -> &str {
        self.0.last().map_or("raw", |t| t.name())
    }

    fn decoded_len(&self) -> u64 {
        self.0.last().map_or(0, |t| t.decoded_len())
    }

    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        let Some((last, first)) = self.0.split_last() else {
            return Err("empty transform chain".into());
        };
        let mut current: Vec<u8> = stored.to_vec();
        for step in first {
            let mut next = vec![0u8; step.decoded_len() as usize];
            step.decode(&current, &mut next)?;
            current = next;
        }
        last.decode(&current, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn inflate_exact_size_and_skip() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&data).unwrap();
        let z = enc.finish().unwrap();
        let mut out = vec![0u8; 990];
        Inflate {
            decoded_len: 990,
            skip: 10,
        }
        .decode(&z, &mut out)
        .unwrap();
        assert_eq!(out, &data[10..]);
        let mut short = vec![0u8; 500];
        assert!(Inflate {
            decoded_len: 500,
            skip: 0
        }
        .decode(&z, &mut short)
        .is_err());
        let mut long = vec![0u8; 1001];
        assert!(Inflate {
            decoded_len: 1001,
            skip: 0
        }
        .decode(&z, &mut long)
        .is_err());
    }

    #[test]
    fn byteswap_and_strided_transpose() {
        let mut out = [0u8; 4];
        ByteSwap { width: 2, len: 4 }
            .decode(&[1, 2, 3, 4], &mut out)
            .unwrap();
        assert_eq!(out, [2, 1, 4, 3]);
        // storage 0..6 as a 2x3 matrix; its transpose (3x2) has strides (1, 3)
        let storage: Vec<u8> = (0..6).collect();
        let t = Strided {
            itemsize: 1,
            shape: vec![3, 2],
            strides: vec![1, 3],
            offset: 0,
        };
        let mut out = [0u8; 6];
        t.decode(&storage, &mut out).unwrap();
        assert_eq!(out, [0, 3, 1, 4, 2, 5]);
        let bad = Strided {
            itemsize: 1,
            shape: vec![3, 2],
            strides: vec![1, 4],
            offset: 0,
        };
        assert!(bad.validate(6).is_err());
        let broadcast = Strided {
            itemsize: 1,
            shape: vec![2, 2],
            strides: vec![0, 1],
            offset: 4,
        };
        let mut out = [0u8; 4];
        broadcast.decode(&storage, &mut out).unwrap();
        assert_eq!(out, [4, 5, 4, 5]);
    }
}
