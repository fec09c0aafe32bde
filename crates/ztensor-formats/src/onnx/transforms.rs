//! The decoding steps ONNX tensors need: values decoded from typed fields
//! at parse time, sub-byte unpacking, sparse indices to coordinates.
//! (External data is read by [`super::external::External`].)

use std::fmt;

use ztensor::{FormatError, Transform};

use super::types::{unpack, Packing};

/// Values decoded at parse time from a typed field (`float_data`, varint
/// `int32_data`, ...). Their bytes are not a range of the file, so the
/// component's stored range is empty and the bytes live here.
pub(crate) struct Decoded(pub Vec<u8>);

impl fmt::Debug for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decoded({} bytes)", self.0.len())
    }
}

impl Transform for Decoded {
    fn name(&self) -> &str {
        "decoded"
    }

    fn decoded_len(&self) -> u64 {
        self.0.len() as u64
    }

    fn decode(&self, _stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        if out.len() != self.0.len() {
            return Err("decoded values have the wrong size".into());
        }
        out.copy_from_slice(&self.0);
        Ok(())
    }
}

/// 4-, 2- or 6-bit elements unpacked to one byte each (see [`Packing`]).
#[derive(Debug)]
pub(crate) struct Unpack {
    /// How the stored bytes pack the elements.
    pub packing: Packing,
    /// Element count (= decoded bytes).
    pub numel: u64,
}

impl Transform for Unpack {
    fn name(&self) -> &str {
        "unpack"
    }

    fn decoded_len(&self) -> u64 {
        self.numel
    }

    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        Ok(unpack(self.packing, stored, out)?)
    }
}

/// ONNX sparse indices (int64, `[nnz, rank]` or linearized `[nnz]`) to the
/// object model's `coords`: u64, dimension-major (`[rank, nnz]`). Every
/// index is checked against the dense shape.
#[derive(Debug)]
pub(crate) struct SparseCoords {
    /// The dense shape.
    pub dims: Vec<u64>,
    /// Number of stored values.
    pub nnz: u64,
    /// Whether each index is one linearized (row-major) position.
    pub linear: bool,
}

impl Transform for SparseCoords {
    fn name(&self) -> &str {
        "sparse_coords"
    }

    fn decoded_len(&self) -> u64 {
        self.nnz * self.dims.len() as u64 * 8
    }

    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        let rank = self.dims.len();
        let nnz = self.nnz as usize;
        let per = if self.linear { 1 } else { rank };
        if stored.len() as u64 != self.nnz * per as u64 * 8 || out.len() != nnz * rank * 8 {
            return Err("sparse indices have the wrong size".into());
        }
        let index = |i: usize| {
            let b = stored[i * 8..i * 8 + 8].try_into().expect("8 bytes");
            i64::from_le_bytes(b)
        };
        let mut put = |d: usize, i: usize, v: u64| {
            out[(d * nnz + i) * 8..(d * nnz + i) * 8 + 8].copy_from_slice(&v.to_le_bytes());
        };
        let bad = |i: usize, v: i64| format!("sparse index {v} of value {i} is out of range");
        for i in 0..nnz {
            if self.linear {
                let v = index(i);
                let mut rest = u64::try_from(v).map_err(|_| bad(i, v))?;
                for d in (0..rank).rev() {
                    let extent = self.dims[d];
                    if extent == 0 {
                        return Err(bad(i, v).into());
                    }
                    put(d, i, rest % extent);
                    rest /= extent;
                }
                if rest != 0 || (rank == 0 && v != 0) {
                    return Err(bad(i, v).into());
                }
            } else {
                for d in 0..rank {
                    let v = index(i * rank + d);
                    match u64::try_from(v) {
                        Ok(u) if u < self.dims[d] => put(d, i, u),
                        _ => return Err(bad(i, v).into()),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn coords(out: &[u8]) -> Vec<u64> {
        out.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn sparse_coords_from_both_index_forms() {
        let t = SparseCoords {
            dims: vec![3, 4],
            nnz: 2,
            linear: true,
        };
        let mut out = vec![0u8; 32];
        t.decode(&le(&[1, 11]), &mut out).unwrap();
        assert_eq!(coords(&out), [0, 2, 1, 3]);
        assert!(t.decode(&le(&[1, 12]), &mut out).is_err());
        assert!(t.decode(&le(&[-1, 0]), &mut out).is_err());
        let t = SparseCoords {
            dims: vec![3, 4],
            nnz: 2,
            linear: false,
        };
        t.decode(&le(&[0, 1, 2, 3]), &mut out).unwrap();
        assert_eq!(coords(&out), [0, 2, 1, 3]);
        assert!(t.decode(&le(&[0, 4, 2, 3]), &mut out).is_err());
        assert!(t.decode(&le(&[0, 1, 2]), &mut out).is_err());
    }
}
