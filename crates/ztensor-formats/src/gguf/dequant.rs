//! Dequantization of ggml block-quantized tensors to f32 (or to f16, by
//! rounding the f32 values to nearest-even).
//!
//! Hand-written on purpose. crates.io was checked (November 2026): ggml
//! dequantizers live inside whole inference engines (candle-core, llama-rs,
//! llama-gguf, ...), and the one stand-alone crate, `ggml-quants` 0.1.0, has
//! `todo!()` (a panic) for every K-quant and IQ type. The block layouts are
//! small, public facts, so they are written here from those facts.
//!
//! Every kernel follows the arithmetic order of the reference dequantizer,
//! the `gguf` Python package (`gguf.quants`), so that the f32 results are
//! bit-identical to it: scales are widened from f16 exactly, and each value
//! is a chain of separately rounded f32 operations in the reference's order
//! (e.g. Q4_K is `(d * sc) * q - (dmin * m)`; Rust never fuses these into a
//! multiply-add).
//!
//! Types without a kernel (the IQ1/IQ2/IQ3 grid types, Q8_1, Q1_0) are left
//! as raw bytes by the GGUF reader.

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use ztensor::{DType, FormatError, Transform};

/// Decodes one block: `block` is `type_size` bytes, `out` is `block_size` values.
type BlockFn = fn(&[u8], &mut [f32]);

/// The largest block any kernel has (the K-quants' 256 values).
const MAX_BLOCK: usize = 256;

/// About this many values are decoded per parallel task (256 KiB of f32).
const CHUNK_VALUES: usize = 64 * 1024;

/// How to dequantize one ggml type.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// The ggml type's lower-case name (`"q4_k"`).
    pub name: &'static str,
    /// Values per block.
    pub block_size: usize,
    /// Bytes per block.
    pub type_size: usize,
    decode: BlockFn,
}

impl Kernel {
    /// Decodes whole blocks of `stored` into `out` (`block_size` values per
    /// block), in parallel for large inputs.
    pub fn dequantize(&self, stored: &[u8], out: &mut [f32]) -> Result<(), String> {
        self.check(stored.len(), out.len())?;
        let per_task = (CHUNK_VALUES / self.block_size).max(1);
        ztensor::parallel::install(|| {
            stored
                .par_chunks(per_task * self.type_size)
                .zip(out.par_chunks_mut(per_task * self.block_size))
                .for_each(|(src, dst)| {
                    for (b, o) in src
                        .chunks_exact(self.type_size)
                        .zip(dst.chunks_exact_mut(self.block_size))
                    {
                        (self.decode)(b, o);
                    }
                })
        });
        Ok(())
    }

    fn check(&self, stored: usize, values: usize) -> Result<(), String> {
        if !stored.is_multiple_of(self.type_size)
            || stored / self.type_size * self.block_size != values
        {
            return Err(format!(
                "{}: {stored} bytes are not the {} blocks of {} bytes that {values} values need",
                self.name,
                values / self.block_size,
                self.type_size
            ));
        }
        Ok(())
    }
}

/// The kernel for a ggml type name, if it has one.
pub fn kernel(type_name: &str) -> Option<Kernel> {
    let k = |name, block_size, type_size, decode: BlockFn| Kernel {
        name,
        block_size,
        type_size,
        decode,
    };
    Some(match type_name {
        "q4_0" => k("q4_0", 32, 18, q4_0),
        "q4_1" => k("q4_1", 32, 20, q4_1),
        "q5_0" => k("q5_0", 32, 22, q5_0),
        "q5_1" => k("q5_1", 32, 24, q5_1),
        "q8_0" => k("q8_0", 32, 34, q8_0),
        "q2_k" => k("q2_k", 256, 84, q2_k),
        "q3_k" => k("q3_k", 256, 110, q3_k),
        "q4_k" => k("q4_k", 256, 144, q4_k),
        "q5_k" => k("q5_k", 256, 176, q5_k),
        "q6_k" => k("q6_k", 256, 210, q6_k),
        "q8_k" => k("q8_k", 256, 292, q8_k),
        "iq4_nl" => k("iq4_nl", 32, 18, iq4_nl),
        "iq4_xs" => k("iq4_xs", 256, 136, iq4_xs),
        "tq1_0" => k("tq1_0", 256, 54, tq1_0),
        "tq2_0" => k("tq2_0", 256, 66, tq2_0),
        "mxfp4" => k("mxfp4", 32, 17, mxfp4),
        "nvfp4" => k("nvfp4", 64, 36, nvfp4),
        _ => return None,
    })
}

/// A [`Transform`] that dequantizes a whole tensor's blocks at read time
/// into little-endian f32 or f16 values.
#[derive(Debug)]
pub struct Dequantize {
    kernel: Kernel,
    n_blocks: u64,
    out: DType,
    name: String,
}

impl Dequantize {
    /// Dequantizes `n_blocks` blocks of `kernel` to `out` (F32 or F16;
    /// `None` for any other dtype, or when the decoded size overflows).
    pub fn new(kernel: Kernel, n_blocks: u64, out: DType) -> Option<Self> {
        n_blocks.checked_mul((kernel.block_size * out.size()) as u64)?;
        matches!(out, DType::F32 | DType::F16).then(|| Dequantize {
            kernel,
            n_blocks,
            out,
            name: format!("dequantize_{}", kernel.name),
        })
    }
}

impl Transform for Dequantize {
    fn name(&self) -> &str {
        &self.name
    }

    fn decoded_len(&self) -> u64 {
        self.n_blocks * (self.kernel.block_size * self.out.size()) as u64
    }

    fn decode(&self, stored: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
        let k = self.kernel;
        let width = self.out.size();
        if stored.len() as u64 != self.n_blocks * k.type_size as u64
            || out.len() as u64 != self.decoded_len()
        {
            return Err(FormatError::truncated(format!(
                "{}: {} stored bytes do not decode to {} bytes",
                k.name,
                stored.len(),
                out.len()
            )));
        }
        let per_task = (CHUNK_VALUES / k.block_size).max(1);
        ztensor::parallel::install(|| {
            stored
                .par_chunks(per_task * k.type_size)
                .zip(out.par_chunks_mut(per_task * k.block_size * width))
                .for_each(|(src, dst)| decode_run(k, self.out, src, dst))
        });
        Ok(())
    }
}

/// Decodes consecutive blocks into output bytes. The output buffer has no
/// alignment guarantee for f32, so values go through a stack block.
fn decode_run(k: Kernel, out: DType, src: &[u8], dst: &mut [u8]) {
    let mut values = [0f32; MAX_BLOCK];
    let mut halves = [f16::ZERO; MAX_BLOCK];
    let values = &mut values[..k.block_size];
    let halves = &mut halves[..k.block_size];
    let width = out.size();
    for (block, bytes) in src
        .chunks_exact(k.type_size)
        .zip(dst.chunks_exact_mut(k.block_size * width))
    {
        (k.decode)(block, values);
        if out == DType::F16 {
            halves.convert_from_f32_slice(values);
            for (o, h) in bytes.chunks_exact_mut(2).zip(halves.iter()) {
                o.copy_from_slice(&h.to_le_bytes());
            }
        } else {
            for (o, v) in bytes.chunks_exact_mut(4).zip(values.iter()) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// The f16 at byte `at`, widened (exactly) to f32.
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q4_0, 32 values in 18 bytes: f16 scale `d`, then 16 bytes of 4-bit codes
/// (low nibbles are values 0-15, high nibbles 16-31); `d * (code - 8)`.
fn q4_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = out[..32].split_at_mut(16);
    for ((&q, l), h) in b[2..18].iter().zip(lo).zip(hi) {
        *l = d * ((q & 0xF) as i32 - 8) as f32;
        *h = d * ((q >> 4) as i32 - 8) as f32;
    }
}

/// Q4_1, 32 values in 20 bytes: f16 scale `d`, f16 offset `m`, 16 bytes of
/// 4-bit codes ordered as in Q4_0; `d * code + m`.
fn q4_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let (lo, hi) = out[..32].split_at_mut(16);
    for ((&q, l), h) in b[4..20].iter().zip(lo).zip(hi) {
        *l = d * (q & 0xF) as f32 + m;
        *h = d * (q >> 4) as f32 + m;
    }
}

/// The 5-bit codes of Q5_0/Q5_1: low 4 bits as in Q4_0, bit 4 of value `j`
/// is bit `j` of the little-endian u32 `qh`.
fn five_bit(qh: u32, qs: &[u8], j: usize) -> u32 {
    let low = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
    low as u32 | ((qh >> j) & 1) << 4
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Q5_0, 32 values in 22 bytes: f16 `d`, u32 high bits `qh`, 16 bytes of
/// low nibbles; `d * (code - 16)`.
fn q5_0(b: &[u8], out: &mut [f32]) {
    let (d, qh, qs) = (f16_at(b, 0), u32_at(b, 2), &b[6..22]);
    for (j, o) in out[..32].iter_mut().enumerate() {
        *o = d * (five_bit(qh, qs, j) as i32 - 16) as f32;
    }
}

/// Q5_1, 32 values in 24 bytes: f16 `d`, f16 `m`, u32 `qh`, 16 bytes of low
/// nibbles; `d * code + m`.
fn q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m, qh, qs) = (f16_at(b, 0), f16_at(b, 2), u32_at(b, 4), &b[8..24]);
    for (j, o) in out[..32].iter_mut().enumerate() {
        *o = d * five_bit(qh, qs, j) as f32 + m;
    }
}

/// Q8_0, 32 values in 34 bytes: f16 `d`, 32 signed bytes; `code * d`.
fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (&q, o) in b[2..34].iter().zip(&mut out[..32]) {
        *o = (q as i8) as f32 * d;
    }
}

/// Q8_K, 256 values in 292 bytes: f32 `d`, 256 signed bytes, then 16 i16
/// partial sums (used by ggml's dot products, not needed here); `d * code`.
fn q8_k(b: &[u8], out: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (&q, o) in b[4..260].iter().zip(&mut out[..256]) {
        *o = d * (q as i8) as f32;
    }
}

/// Q2_K, 256 values in 84 bytes: 16 scale bytes (low nibble: scale, high
/// nibble: min, one pair per 16 values), 64 bytes of 2-bit codes, f16 `d`,
/// f16 `dmin`. Code of value `128h + 32s + l` is bits `2s..2s+2` of byte
/// `32h + l`; value `(d * scale) * code - (dmin * min)`.
fn q2_k(b: &[u8], out: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    let out = &mut out[..256];
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let e = 128 * h + 32 * s + l;
                let sc = scales[e / 16];
                let dl = d * (sc & 0xF) as f32;
                let ml = dmin * (sc >> 4) as f32;
                let q = (qs[32 * h + l] >> (2 * s)) & 3;
                out[e] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q3_K, 256 values in 110 bytes: 32 bytes of high bits `hmask`, 64 bytes of
/// 2-bit low codes (ordered as in Q2_K), 12 bytes holding sixteen 6-bit
/// scales, f16 `d`. Scale `i`: low 4 bits from byte `i % 8` (low nibble for
/// `i < 8`, else high), high 2 bits from byte `8 + i % 4` at bit `2 * (i /
/// 4)`; minus 32. Value `e = 32s + l` subtracts 4 from its code when bit `s`
/// of `hmask[l]` is clear; value `(d * scale) * code`.
fn q3_k(b: &[u8], out: &mut [f32]) {
    let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    let mut dl = [0f32; 16];
    for (i, x) in dl.iter_mut().enumerate() {
        let low = if i < 8 { sc[i] & 0xF } else { sc[i - 8] >> 4 };
        let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        *x = d * ((low | high << 4) as i32 - 32) as f32;
    }
    let out = &mut out[..256];
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let e = 128 * h + 32 * s + l;
                let low = ((qs[32 * h + l] >> (2 * s)) & 3) as i32;
                let set = (hmask[l] >> (e / 32)) & 1;
                let q = if set == 1 { low } else { low - 4 };
                out[e] = dl[e / 16] * q as f32;
            }
        }
    }
}

/// The eight 6-bit (scale, min) pairs of Q4_K/Q5_K, packed in 12 bytes:
/// pair `j < 4` is the low 6 bits of bytes `j` and `4 + j`; pair `j >= 4`
/// takes its low 4 bits from byte `8 + j - 4` (scale: low nibble, min: high
/// nibble) and its top 2 bits from the top bits of bytes `j - 4` / `j`.
fn k_scale_min(sc: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (sc[j] & 0x3F, sc[j + 4] & 0x3F)
    } else {
        (
            (sc[j + 4] & 0xF) | ((sc[j - 4] >> 2) & 0x30),
            (sc[j + 4] >> 4) | ((sc[j] >> 2) & 0x30),
        )
    }
}

/// Q4_K, 256 values in 144 bytes: f16 `d`, f16 `dmin`, 12 bytes of scales
/// and mins (see [`k_scale_min`]), 128 bytes of 4-bit codes. Value `64c +
/// 32s + l` (sub-block `2c + s`) is nibble `s` of byte `32c + l`; value
/// `(d * scale) * code - (dmin * min)`.
fn q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin, sc, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..144]);
    let out = &mut out[..256];
    for g in 0..8 {
        let (s, m) = k_scale_min(sc, g);
        let (dl, ml) = (d * s as f32, dmin * m as f32);
        let (c, shift) = (g / 2, 4 * (g % 2));
        for l in 0..32 {
            let q = (qs[32 * c + l] >> shift) & 0xF;
            out[32 * g + l] = dl * q as f32 - ml;
        }
    }
}

/// Q5_K, 256 values in 176 bytes: as Q4_K with 32 bytes of high bits `qh`
/// after the scales (bit 4 of value `32g + l` is bit `g` of `qh[l]`), then
/// 128 bytes of low nibbles.
fn q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin, sc) = (f16_at(b, 0), f16_at(b, 2), &b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    let out = &mut out[..256];
    for g in 0..8 {
        let (s, m) = k_scale_min(sc, g);
        let (dl, ml) = (d * s as f32, dmin * m as f32);
        let (c, shift) = (g / 2, 4 * (g % 2));
        for l in 0..32 {
            let q = ((qs[32 * c + l] >> shift) & 0xF) | ((qh[l] >> g) & 1) << 4;
            out[32 * g + l] = dl * q as f32 - ml;
        }
    }
}

/// Q6_K, 256 values in 210 bytes: 128 bytes of low nibbles `ql`, 64 bytes
/// of 2-bit high parts `qh`, 16 signed scales (one per 16 values), f16 `d`.
/// Value `128h + 32s + l`: low 4 bits are nibble `s / 2` of `ql[64h + 32(s
/// % 2) + l]`, high 2 bits are bits `2s..2s+2` of `qh[32h + l]`; value
/// `(d * scale) * (code - 32)`.
fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    let mut dl = [0f32; 16];
    for (x, &s) in dl.iter_mut().zip(sc) {
        *x = d * (s as i8) as f32;
    }
    let out = &mut out[..256];
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let e = 128 * h + 32 * s + l;
                let low = (ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0xF;
                let high = (qh[32 * h + l] >> (2 * s)) & 3;
                out[e] = dl[e / 16] * ((low | high << 4) as i32 - 32) as f32;
            }
        }
    }
}

/// The 16 non-linear 4-bit levels of IQ4_NL and IQ4_XS.
const IQ4_LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// IQ4_NL, 32 values in 18 bytes: f16 `d`, 16 bytes of 4-bit indices into
/// [`IQ4_LEVELS`] ordered as in Q4_0; `d * level`.
fn iq4_nl(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = out[..32].split_at_mut(16);
    for ((&q, l), h) in b[2..18].iter().zip(lo).zip(hi) {
        *l = d * IQ4_LEVELS[(q & 0xF) as usize] as f32;
        *h = d * IQ4_LEVELS[(q >> 4) as usize] as f32;
    }
}

/// IQ4_XS, 256 values in 136 bytes: f16 `d`, u16 `scales_h`, 4 bytes
/// `scales_l`, 128 bytes of 4-bit level indices. Sub-block `g` (32 values)
/// has scale `(nibble g % 2 of scales_l[g / 2]) | (bits 2g..2g+2 of
/// scales_h) << 4` minus 32, and its 16 bytes at `16g` hold values 0-15 in
/// low nibbles and 16-31 in high nibbles; value `(d * scale) * level`.
fn iq4_xs(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let (scales_l, qs) = (&b[4..8], &b[8..136]);
    let out = &mut out[..256];
    for g in 0..8 {
        let low = (scales_l[g / 2] >> (4 * (g % 2))) & 0xF;
        let high = ((scales_h >> (2 * g)) & 3) as u8;
        let dl = d * ((low | high << 4) as i32 - 32) as f32;
        for l in 0..16 {
            let q = qs[16 * g + l];
            out[32 * g + l] = dl * IQ4_LEVELS[(q & 0xF) as usize] as f32;
            out[32 * g + 16 + l] = dl * IQ4_LEVELS[(q >> 4) as usize] as f32;
        }
    }
}

/// A base-3 digit of TQ1_0: the byte times `3^p` (wrapping), scaled to a
/// trit by `(x * 3) >> 8`, minus 1.
fn trit(byte: u8, pow3: u8) -> i32 {
    ((byte.wrapping_mul(pow3) as u32 * 3) >> 8) as i32 - 1
}

/// TQ1_0 (ternary), 256 values in 54 bytes: 48 bytes `qs`, 4 bytes `qh`,
/// f16 `d`. Bytes hold five trits (four for `qh`) in base 3 as fixed-point
/// fractions: trit `p` of a byte is [`trit`] with `3^p`. Values 0-159 are
/// trit `p = e / 32` of `qs[e % 32]`, values 160-239 trit `p` of `qs[32 +
/// l]` (16 per `p`), values 240-255 trit `p` of `qh[l]` (4 per `p`); value
/// `d * trit`.
fn tq1_0(b: &[u8], out: &mut [f32]) {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let (qs, qh, d) = (&b[0..48], &b[48..52], f16_at(b, 52));
    let out = &mut out[..256];
    for (p, &pow) in POW3.iter().enumerate() {
        for l in 0..32 {
            out[32 * p + l] = d * trit(qs[l], pow) as f32;
        }
        for l in 0..16 {
            out[160 + 16 * p + l] = d * trit(qs[32 + l], pow) as f32;
        }
    }
    for (p, &pow) in POW3[..4].iter().enumerate() {
        for l in 0..4 {
            out[240 + 4 * p + l] = d * trit(qh[l], pow) as f32;
        }
    }
}

/// TQ2_0 (ternary), 256 values in 66 bytes: 64 bytes of 2-bit codes ordered
/// as in Q2_K, f16 `d`; `d * (code - 1)`.
fn tq2_0(b: &[u8], out: &mut [f32]) {
    let (qs, d) = (&b[0..64], f16_at(b, 64));
    let out = &mut out[..256];
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let q = ((qs[32 * h + l] >> (2 * s)) & 3) as i32 - 1;
                out[128 * h + 32 * s + l] = d * q as f32;
            }
        }
    }
}

/// The FP4 (E2M1) values, doubled so that they are integers.
const E2M1_X2: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of the power of two an E8M0 exponent byte stands for (halved
/// because [`E2M1_X2`] is doubled); 0 and 1 are subnormal f32s.
fn e8m0_half(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits((e as u32 - 1) << 23)
    }
}

/// MXFP4, 32 values in 17 bytes: an E8M0 exponent byte, then 16 bytes of
/// E2M1 codes ordered as in Q4_0; `e8m0_half(e) * (2 * fp4)`.
fn mxfp4(b: &[u8], out: &mut [f32]) {
    let d = e8m0_half(b[0]);
    let (lo, hi) = out[..32].split_at_mut(16);
    for ((&q, l), h) in b[1..17].iter().zip(lo).zip(hi) {
        *l = d * E2M1_X2[(q & 0xF) as usize] as f32;
        *h = d * E2M1_X2[(q >> 4) as usize] as f32;
    }
}

/// Half an unsigned E4M3 scale (bias 7, no sign; `0x7F` reads as 0 like 0,
/// the top bit is ignored). Exact in f32.
fn ue4m3_half(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let (exp, man) = ((x >> 3) & 0xF, (x & 7) as f32);
    let v = if exp == 0 {
        man / 512.0
    } else {
        (1.0 + man / 8.0) * f32::from_bits((exp as u32 + 120) << 23)
    };
    v * 0.5
}

/// NVFP4, 64 values in 36 bytes: four UE4M3 scales (one per 16 values),
/// then 32 bytes of E2M1 codes, 8 per sub-block (low nibbles are its values
/// 0-7, high nibbles 8-15); `ue4m3_half(scale) * (2 * fp4)`.
fn nvfp4(b: &[u8], out: &mut [f32]) {
    let out = &mut out[..64];
    for s in 0..4 {
        let d = ue4m3_half(b[s]);
        for i in 0..8 {
            let q = b[4 + 8 * s + i];
            out[16 * s + i] = d * E2M1_X2[(q & 0xF) as usize] as f32;
            out[16 * s + 8 + i] = d * E2M1_X2[(q >> 4) as usize] as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    fn run(name: &str, block: &[u8]) -> Vec<f32> {
        let k = kernel(name).unwrap();
        assert_eq!(block.len(), k.type_size, "{name}");
        let mut out = vec![f32::NAN; k.block_size];
        k.dequantize(block, &mut out).unwrap();
        out
    }

    #[test]
    fn q4_0_and_q4_1() {
        let mut b = h(0.5).to_vec();
        b.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let v = run("q4_0", &b);
        for j in 0..16 {
            assert_eq!(v[j], 0.5 * (j as f32 - 8.0));
            assert_eq!(v[16 + j], 0.5 * (7.0 - j as f32));
        }
        let mut b = [h(2.0), h(-1.0)].concat();
        b.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let v = run("q4_1", &b);
        assert_eq!(v[3], 5.0);
        assert_eq!(v[16], 29.0);
    }

    #[test]
    fn q5_0_and_q5_1() {
        // qh: bit j set for odd j; low nibbles all 1 (low) and 2 (high).
        let qh = 0xAAAA_AAAAu32.to_le_bytes();
        let mut b = h(0.25).to_vec();
        b.extend(qh);
        b.extend([0x21u8; 16]);
        let v = run("q5_0", &b);
        assert_eq!(v[0], 0.25 * (1.0 - 16.0));
        assert_eq!(v[1], 0.25 * (17.0 - 16.0));
        assert_eq!(v[17], 0.25 * (18.0 - 16.0));
        let mut b = [h(1.0), h(0.5)].concat();
        b.extend(qh);
        b.extend([0x21u8; 16]);
        let v = run("q5_1", &b);
        assert_eq!((v[0], v[1], v[16], v[31]), (1.5, 17.5, 2.5, 18.5));
    }

    #[test]
    fn q8_0_and_q8_k() {
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let v = run("q8_0", &b);
        assert!((0..32).all(|j| v[j] == 0.5 * (j as f32 - 16.0)));
        let mut b = 0.125f32.to_le_bytes().to_vec();
        b.extend((0..256).map(|j| j as u8));
        b.extend([0xEE; 32]); // partial sums: ignored
        let v = run("q8_k", &b);
        assert_eq!((v[1], v[255], v[128]), (0.125, -0.125, -16.0));
    }

    #[test]
    fn q2_k_layout() {
        let mut b = vec![0u8; 84];
        b[0] = 0x12; // group 0: scale 2, min 1
        b[15] = 0x30; // group 15: scale 0, min 3
        b[5] = 0x04; // group 5 (values 80-95): scale 4
        b[16] = 0b11_10_01_00; // byte 0: values 0, 32, 64, 96 get codes 0..3
        b[16 + 32 + 31] = 0b1100_0000; // byte 63: value 128 + 96 + 31 gets 3
        b[16 + 16] = 0b0001_0000; // byte 16: value 64 + 16 = 80 gets 1
        b[80..82].copy_from_slice(&h(0.5));
        b[82..84].copy_from_slice(&h(2.0));
        let v = run("q2_k", &b);
        assert_eq!(v[0], 0.5 * 2.0 * 0.0 - 2.0);
        assert_eq!(v[1], -2.0);
        assert_eq!(v[32], 0.0); // group 2: scale 0, min 0
        assert_eq!(v[80], 0.5 * 4.0 * 1.0);
        assert_eq!(v[255], -6.0); // scale 0 * 3 - 2 * 3
    }

    #[test]
    fn q3_k_layout() {
        let mut b = vec![0u8; 110];
        // Scale 0: low nibble 1 (byte 96), high bits 2 (byte 104 bits 0-1): 33 - 32 = 1.
        b[96] = 0x01;
        b[104] = 0x02;
        // Scale 15: low = high nibble of byte 96 + 7 = 103, high = byte 107 bits 6-7.
        b[103] = 0x30;
        b[107] = 0b1100_0000; // 3 | 3 << 4 = 51, minus 32 = 19
        b[108..110].copy_from_slice(&h(0.5));
        b[0] = 0b0000_0001; // hmask: value 0 (s = 0, l = 0) has its high bit
        b[32] = 0b0000_0011; // low code of value 0 is 3
        b[32 + 63] = 0b1100_0000; // value 128 + 96 + 31 = 255: low code 3
        let v = run("q3_k", &b);
        assert_eq!(v[0], 0.5 * 1.0 * 3.0);
        assert_eq!(v[1], 0.5 * 1.0 * -4.0); // code 0, high bit clear
        assert_eq!(v[255], 0.5 * 19.0 * (3.0 - 4.0));
    }

    #[test]
    fn q4_k_and_q5_k_layout() {
        let mut sc = [0u8; 12];
        sc[0] = 0b01_000010; // scale 0 = 2, top bits of scale 4 = 1
        sc[4] = 0b10_000011; // min 0 = 3, top bits of min 4 = 2
        sc[8] = 0x75; // scale 4 low = 5, min 4 low = 7
        assert_eq!(k_scale_min(&sc, 0), (2, 3));
        assert_eq!(k_scale_min(&sc, 4), (5 | 1 << 4, 7 | 2 << 4));
        let mut b = [h(0.5), h(0.25)].concat();
        b.extend(sc);
        b.extend([0u8; 128]);
        b[16] = 0x9A; // value 0: code 10; value 32: code 9
        b[16 + 64] = 0x0B; // value 128 (sub-block 4): code 11
        let v = run("q4_k", &b);
        assert_eq!(v[0], 0.5 * 2.0 * 10.0 - 0.25 * 3.0);
        assert_eq!(v[32], 0.0); // sub-block 1: scale 0, min 0
        assert_eq!(v[128], 0.5 * 21.0 * 11.0 - 0.25 * 39.0);
        let mut b5 = b[..16].to_vec();
        let mut qh = [0u8; 32];
        qh[0] = 0b0001_0001; // bit 4 for value 0 (g 0) and value 128 (g 4)
        b5.extend(qh);
        b5.extend(&b[16..]);
        let v = run("q5_k", &b5);
        assert_eq!(v[0], 0.5 * 2.0 * 26.0 - 0.25 * 3.0);
        assert_eq!(v[128], 0.5 * 21.0 * 27.0 - 0.25 * 39.0);
        assert_eq!(v[129], 0.5 * 21.0 * 0.0 - 0.25 * 39.0);
    }

    #[test]
    fn q6_k_layout() {
        let mut b = vec![0u8; 210];
        b[0] = 0x5F; // ql[0]: value 0 low = 15, value 64 low = 5
        b[128] = 0b0000_1110; // qh[0]: value 0 high = 2, value 32 high = 3
        b[192] = 2; // scale of values 0-15
        b[192 + 4] = (-1i8) as u8; // scale of values 64-79
        b[192 + 2] = 1; // scale of values 32-47
        b[208..210].copy_from_slice(&h(0.5));
        let v = run("q6_k", &b);
        assert_eq!(v[0], 0.5 * 2.0 * (47.0 - 32.0));
        assert_eq!(v[32], 0.5 * 1.0 * (48.0 - 32.0));
        assert_eq!(v[64], -0.5 * (5.0 - 32.0)); // scale -1
        assert_eq!(v[1], 0.5 * 2.0 * -32.0);
    }

    #[test]
    fn iq4_layouts() {
        let mut b = h(2.0).to_vec();
        b.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let v = run("iq4_nl", &b);
        assert_eq!((v[0], v[15], v[16]), (-254.0, 226.0, 226.0));
        let mut b = vec![0u8; 136];
        b[0..2].copy_from_slice(&h(0.5));
        b[2..4].copy_from_slice(&0xC002u16.to_le_bytes()); // g0 high 2, g7 high 3
        b[4] = 0x01; // g0 low 1, g1 low 0
        b[7] = 0xF0; // g7 low 15
        b[8] = 0x8F; // g0 values 0 and 16
        b[8 + 16 * 7 + 15] = 0x10; // g7 values 15 and 31
        let v = run("iq4_xs", &b);
        let s0 = (1 | 2 << 4) as f32 - 32.0;
        let s7 = (15 | 3 << 4) as f32 - 32.0;
        assert_eq!(v[0], 0.5 * s0 * 113.0);
        assert_eq!(v[16], 0.5 * s0 * 1.0);
        assert_eq!(v[32], 0.5 * -32.0 * -127.0);
        assert_eq!(v[224 + 15], 0.5 * s7 * -127.0);
        assert_eq!(v[224 + 31], 0.5 * s7 * -104.0);
    }

    #[test]
    fn ternary_layouts() {
        // TQ1_0: a byte for trits (t0..t4) is ceil(sum(t_p * 3^(4-p)) * 256 / 243).
        let byte = |t: [u8; 5]| {
            let n = t.iter().fold(0u16, |a, &x| a * 3 + x as u16);
            (n * 256).div_ceil(243) as u8
        };
        let mut b = vec![0u8; 54];
        b[0] = byte([2, 0, 1, 2, 0]);
        b[32] = byte([0, 1, 2, 2, 1]);
        b[48] = byte([1, 2, 0, 2, 0]);
        b[52..54].copy_from_slice(&h(0.5));
        let v = run("tq1_0", &b);
        let got: Vec<f32> = (0..5).map(|p| v[32 * p]).collect();
        assert_eq!(got, [0.5, -0.5, 0.0, 0.5, -0.5]);
        let got: Vec<f32> = (0..5).map(|p| v[160 + 16 * p]).collect();
        assert_eq!(got, [-0.5, 0.0, 0.5, 0.5, 0.0]);
        let got: Vec<f32> = (0..4).map(|p| v[240 + 4 * p]).collect();
        assert_eq!(got, [0.0, 0.5, -0.5, 0.5]);
        let mut b = vec![0u8; 66];
        b[0] = 0b10_01_00_10;
        b[63] = 0b00_00_00_01;
        b[64..66].copy_from_slice(&h(3.0));
        let v = run("tq2_0", &b);
        assert_eq!((v[0], v[32], v[64], v[96]), (3.0, -3.0, 0.0, 3.0));
        assert_eq!((v[128 + 31], v[255]), (0.0, -3.0));
    }

    #[test]
    fn fp4_layouts() {
        assert_eq!(e8m0_half(127), 0.5);
        assert_eq!(e8m0_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_half(0), 2f32.powi(-64) * 2f32.powi(-64));
        let mut b = vec![130u8]; // 2^3 / 2 = 4
        b.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let v = run("mxfp4", &b);
        assert_eq!((v[7], v[15], v[16], v[31]), (48.0, -48.0, -48.0, 0.0));
        assert_eq!(ue4m3_half(0x38), 0.5); // exponent 7, mantissa 0: 1.0
        assert_eq!(ue4m3_half(0x01), 1.0 / 1024.0);
        assert_eq!((ue4m3_half(0x7F), ue4m3_half(0x7E)), (0.0, 224.0));
        let mut b = vec![0x38, 0x40, 0, 0x7F];
        b.extend([0u8; 32]);
        b[4] = 0x71; // sub-block 0: value 0 code 1, value 8 code 7
        b[4 + 8 + 7] = 0xF0; // sub-block 1: value 7 code 0, value 15 code 15
        let v = run("nvfp4", &b);
        assert_eq!((v[0], v[8]), (0.5, 6.0));
        assert_eq!((v[16 + 7], v[16 + 15]), (0.0, -12.0));
    }

    #[test]
    fn transform_writes_f32_and_f16_and_checks_sizes() {
        let k = kernel("q8_0").unwrap();
        let mut stored = Vec::new();
        for blk in 0..3 {
            stored.extend(h(0.5 + blk as f32));
            stored.extend((0..32).map(|j| j as u8));
        }
        let t32 = Dequantize::new(k, 3, DType::F32).unwrap();
        let mut out = vec![0u8; t32.decoded_len() as usize];
        t32.decode(&stored, &mut out).unwrap();
        let f: Vec<f32> = out
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!((f[1], f[33], f[95]), (0.5, 1.5, 2.5 * 31.0));
        let t16 = Dequantize::new(k, 3, DType::F16).unwrap();
        let mut out16 = vec![0u8; t16.decoded_len() as usize];
        t16.decode(&stored, &mut out16).unwrap();
        for (c, &x) in out16.chunks_exact(2).zip(&f) {
            assert_eq!(f16::from_le_bytes([c[0], c[1]]), f16::from_f32(x));
        }
        assert!(t32.decode(&stored[1..], &mut out[..]).is_err());
        assert!(t32.decode(&stored, &mut out[4..]).is_err());
        assert!(Dequantize::new(k, 3, DType::BF16).is_none());
        assert!(Dequantize::new(k, u64::MAX / 64, DType::F32).is_none());
        assert!(k.dequantize(&stored[..50], &mut [0f32; 32]).is_err());
        assert_eq!(t32.name(), "dequantize_q8_0");
    }

    #[test]
    fn many_blocks_in_parallel_match_one_at_a_time() {
        let k = kernel("q4_k").unwrap();
        let n = 3 * CHUNK_VALUES / 256 + 5;
        let mut stored: Vec<u8> = (0..n * 144).map(|i| (i * 7 + i / 144) as u8).collect();
        for blk in stored.chunks_exact_mut(144) {
            blk[0..2].copy_from_slice(&h(0.125));
            blk[2..4].copy_from_slice(&h(0.5));
        }
        let mut all = vec![0f32; n * 256];
        k.dequantize(&stored, &mut all).unwrap();
        for (blk, want) in stored.chunks_exact(144).zip(all.chunks_exact(256)) {
            let mut one = [0f32; 256];
            q4_k(blk, &mut one);
            assert_eq!(&one[..], want);
        }
    }
}
