//! GGUF reader: files built byte by byte here (header, key/value metadata,
//! tensor infos, aligned data section), read through the format-detecting
//! entry points.

use ztensor::{DType, Encoding, ErrorKind, Value};
use ztensor_formats::ParseContext;

/// A metadata value as written: type id and encoded bytes.
struct Kv(u32, Vec<u8>);

fn s(text: &str) -> Vec<u8> {
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

fn kv_u8(v: u8) -> Kv {
    Kv(0, vec![v])
}
fn kv_u32(v: u32) -> Kv {
    Kv(4, v.to_le_bytes().to_vec())
}
fn kv_u64(v: u64) -> Kv {
    Kv(10, v.to_le_bytes().to_vec())
}
fn kv_str(v: &str) -> Kv {
    Kv(8, s(v))
}

/// One tensor to write: name, GGUF dims (innermost first), ggml type, bytes.
struct T<'a>(&'a str, Vec<u64>, u32, Vec<u8>);

/// Builds a GGUF v3 image with tensors laid out at aligned offsets.
fn build(version: u32, kvs: &[(&str, Kv)], tensors: &[T], align: usize) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, Kv(ty, v)) in kvs {
        out.extend_from_slice(&s(k));
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(v);
    }
    let mut data = Vec::new();
    for T(name, dims, ty, bytes) in tensors {
        out.extend_from_slice(&s(name));
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        data.extend_from_slice(bytes);
        while !data.len().is_multiple_of(align) {
            data.push(0);
        }
    }
    while !out.len().is_multiple_of(align) {
        out.push(0);
    }
    out.extend_from_slice(&data);
    out
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn attr<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Map(m) = map else { return None };
    m.iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

const PLAIN: &[(u32, DType, usize)] = &[
    (0, DType::F32, 4),
    (1, DType::F16, 2),
    (30, DType::BF16, 2),
    (28, DType::F64, 8),
    (24, DType::I8, 1),
    (25, DType::I16, 2),
    (26, DType::I32, 4),
    (27, DType::I64, 8),
];

#[test]
fn plain_types_read_zero_copy_with_row_major_shapes() {
    for version in [2u32, 3] {
        let tensors: Vec<T> = PLAIN
            .iter()
            .enumerate()
            .map(|(i, &(ty, _, w))| {
                T(
                    ["f32", "f16", "bf16", "f64", "i8", "i16", "i32", "i64"][i],
                    vec![4, 3, 2],
                    ty,
                    pattern(24 * w, i as u8),
                )
            })
            .collect();
        let file = build(version, &[("general.name", kv_str("tiny"))], &tensors, 32);
        let r = ztensor_formats::from_bytes(&file).unwrap();
        assert_eq!(r.format(), "gguf");
        assert_eq!(r.len(), PLAIN.len());
        for (t, &(_, dtype, _)) in tensors.iter().zip(PLAIN) {
            let info = r.info(t.0).unwrap();
            assert_eq!(info.dtype(), Some(dtype));
            assert_eq!(info.shape, [2, 3, 4]);
            assert_eq!(info.logical_type(), None);
            assert_eq!(info.components["data"].encoding, Encoding::Raw);
            let bytes = r.read(t.0).unwrap();
            assert!(bytes.is_zero_copy());
            assert_eq!(&bytes[..], &t.3[..]);
        }
    }
}

#[test]
fn quantized_types_are_raw_bytes_with_their_ggml_name() {
    // Q8_0: 32 elements per 34-byte block; Q4_K: 256 per 144.
    let q8 = pattern(2 * 2 * 34, 7);
    let q4k = pattern(3 * 144, 9);
    let file = build(
        3,
        &[],
        &[
            T("q8", vec![64, 2], 8, q8.clone()),
            T("q4k", vec![256, 3], 12, q4k.clone()),
            T("bad_blocks", vec![16, 2], 8, pattern(34, 1)),
            T("unknown", vec![4], 99, pattern(16, 1)),
            T("ok", vec![2], 0, pattern(8, 3)),
        ],
        32,
    );
    let r = ztensor_formats::from_bytes(&file).unwrap();
    assert!(r.attributes().is_none());
    let info = r.info("q8").unwrap();
    assert_eq!(info.dtype(), Some(DType::U8));
    assert_eq!(info.logical_type(), Some("q8_0"));
    assert_eq!(info.shape, [q8.len() as u64]);
    let a = info.attributes.as_ref().unwrap();
    assert_eq!(attr(a, "ggml_type"), Some(&Value::Text("q8_0".into())));
    assert_eq!(
        attr(a, "original_shape"),
        Some(&Value::Array(vec![Value::from(2u64), Value::from(64u64)]))
    );
    assert_eq!(&r.read("q8").unwrap()[..], &q8[..]);
    assert_eq!(r.info("q4k").unwrap().logical_type(), Some("q4_k"));
    assert_eq!(&r.read("q4k").unwrap()[..], &q4k[..]);
    assert!(r.info("bad_blocks").is_err());
    let err = r.info("unknown").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let err = err.to_string();
    assert!(err.contains("99"), "{err}");
    assert_eq!(&r.read("ok").unwrap()[..], &pattern(8, 3)[..]);
}

#[test]
fn metadata_of_every_type_becomes_attributes() {
    let mut arr = 6u32.to_le_bytes().to_vec(); // array of f32
    arr.extend_from_slice(&2u64.to_le_bytes());
    arr.extend_from_slice(&1.5f32.to_le_bytes());
    arr.extend_from_slice(&(-2.0f32).to_le_bytes());
    let mut nested = 9u32.to_le_bytes().to_vec(); // array of arrays of strings
    nested.extend_from_slice(&1u64.to_le_bytes());
    nested.extend_from_slice(&8u32.to_le_bytes());
    nested.extend_from_slice(&2u64.to_le_bytes());
    nested.extend_from_slice(&s("a"));
    nested.extend_from_slice(&s("bé"));
    let kvs = [
        ("u8", kv_u8(200)),
        ("i8", Kv(1, vec![0xff])),
        ("u16", Kv(2, 65535u16.to_le_bytes().to_vec())),
        ("i16", Kv(3, (-300i16).to_le_bytes().to_vec())),
        ("u32", kv_u32(7)),
        ("i32", Kv(5, (-7i32).to_le_bytes().to_vec())),
        ("f32", Kv(6, 0.25f32.to_le_bytes().to_vec())),
        ("bool", Kv(7, vec![1])),
        ("str", kv_str("héllo")),
        ("arr", Kv(9, arr)),
        ("u64", kv_u64(u64::MAX)),
        ("i64", Kv(11, i64::MIN.to_le_bytes().to_vec())),
        ("f64", Kv(12, 1e300f64.to_le_bytes().to_vec())),
        ("nested", Kv(9, nested)),
    ];
    let file = build(3, &kvs, &[], 32);
    let r = ztensor_formats::from_bytes(&file).unwrap();
    let a = r.attributes().unwrap();
    assert_eq!(attr(a, "u8"), Some(&Value::from(200u8)));
    assert_eq!(attr(a, "i8"), Some(&Value::from(-1i8)));
    assert_eq!(attr(a, "u16"), Some(&Value::from(65535u16)));
    assert_eq!(attr(a, "i16"), Some(&Value::from(-300i16)));
    assert_eq!(attr(a, "u32"), Some(&Value::from(7u32)));
    assert_eq!(attr(a, "i32"), Some(&Value::from(-7i32)));
    assert_eq!(attr(a, "f32"), Some(&Value::Float(0.25)));
    assert_eq!(attr(a, "bool"), Some(&Value::Bool(true)));
    assert_eq!(attr(a, "str"), Some(&Value::Text("héllo".into())));
    assert_eq!(
        attr(a, "arr"),
        Some(&Value::Array(vec![Value::Float(1.5), Value::Float(-2.0)]))
    );
    assert_eq!(attr(a, "u64"), Some(&Value::from(u64::MAX)));
    assert_eq!(attr(a, "i64"), Some(&Value::from(i64::MIN)));
    assert_eq!(attr(a, "f64"), Some(&Value::Float(1e300)));
    assert_eq!(
        attr(a, "nested"),
        Some(&Value::Array(vec![Value::Array(vec![
            Value::Text("a".into()),
            Value::Text("bé".into())
        ])]))
    );
}

#[test]
fn alignment_is_honoured_whatever_integer_stores_it() {
    for (align, kv) in [
        (64usize, kv_u8(64)),
        (128, kv_u64(128)),
        (8, kv_u32(8)),
        (1, Kv(11, 1i64.to_le_bytes().to_vec())),
    ] {
        let a = pattern(12, 1);
        let b = pattern(20, 2);
        let file = build(
            3,
            &[("general.alignment", kv)],
            &[T("a", vec![3], 0, a.clone()), T("b", vec![5], 0, b.clone())],
            align,
        );
        let r = ztensor_formats::from_bytes(&file).unwrap();
        assert_eq!(&r.read("a").unwrap()[..], &a[..], "align {align}");
        assert_eq!(&r.read("b").unwrap()[..], &b[..], "align {align}");
        assert_eq!(
            r.info("a").unwrap().components["data"].offset % align as u64,
            0
        );
    }
    for bad in [
        kv_u32(0),
        kv_u32(48),
        kv_str("32"),
        Kv(5, (-32i32).to_le_bytes().to_vec()),
    ] {
        let file = build(3, &[("general.alignment", bad)], &[], 32);
        assert!(ztensor_formats::from_bytes(&file).is_err());
    }
}

#[test]
fn truncations_at_every_length_never_panic() {
    let file = build(
        3,
        &[("general.alignment", kv_u32(16)), ("name", kv_str("x"))],
        &[
            T("w", vec![4, 2], 0, pattern(32, 1)),
            T("q", vec![32], 8, pattern(34, 2)),
        ],
        16,
    );
    assert!(ztensor_formats::from_bytes(&file).is_ok());
    for n in 0..file.len() {
        if let Ok(r) = ztensor_formats::from_bytes(&file[..n]) {
            for name in ["w", "q"] {
                if let Ok(b) = r.read(name) {
                    assert!(!b.is_empty());
                }
            }
        }
    }
}

#[test]
fn hostile_counts_and_lengths_fail_cleanly() {
    let header = |n_tensors: u64, n_kv: u64| {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&n_tensors.to_le_bytes());
        out.extend_from_slice(&n_kv.to_le_bytes());
        out
    };
    // A kv count of 2^60, a tensor count of 2^62.
    for (n_tensors, n_kv) in [(0, 1 << 60), (1 << 62, 0)] {
        let err = ztensor_formats::from_bytes(&header(n_tensors, n_kv)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    }
    // A key string length of 2^63.
    let mut f = header(0, 1);
    f.extend_from_slice(&(1u64 << 63).to_le_bytes());
    f.extend_from_slice(&[b'a'; 64]);
    let err = ztensor_formats::from_bytes(&f).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    // A value string length of 2^63, and an array of 2^61 u64s.
    for (ty, body) in [
        (8u32, (1u64 << 63).to_le_bytes().to_vec()),
        (
            9u32,
            [&10u32.to_le_bytes()[..], &(1u64 << 61).to_le_bytes()].concat(),
        ),
        (
            9u32,
            [&9u32.to_le_bytes()[..], &u64::MAX.to_le_bytes()].concat(),
        ),
        (77u32, vec![0; 16]),
    ] {
        let mut f = header(0, 1);
        f.extend_from_slice(&s("k"));
        f.extend_from_slice(&ty.to_le_bytes());
        f.extend_from_slice(&body);
        f.extend_from_slice(&[0; 64]);
        assert!(ztensor_formats::from_bytes(&f).is_err(), "type {ty}");
    }
    // Arrays nested deeper than the cap.
    let mut f = header(0, 1);
    f.extend_from_slice(&s("deep"));
    f.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..40 {
        f.extend_from_slice(&9u32.to_le_bytes());
        f.extend_from_slice(&1u64.to_le_bytes());
    }
    f.extend_from_slice(&[0; 64]);
    assert!(ztensor_formats::from_bytes(&f).is_err());
    // n_dims 1000.
    let mut f = header(1, 0);
    f.extend_from_slice(&s("t"));
    f.extend_from_slice(&1000u32.to_le_bytes());
    f.extend_from_slice(&[0; 8192]);
    assert!(ztensor_formats::from_bytes(&f).is_err());
    // Bad magic, version 1, big-endian.
    assert!(ztensor_formats::gguf::parse(b"GGUX\x03\0\0\0", &ParseContext::default()).is_err());
    let mut v1 = header(0, 0);
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(ztensor_formats::from_bytes(&v1).is_err());
    let mut be = header(0, 0);
    be[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(ztensor_formats::from_bytes(&be).is_err());
    // Offsets past the end and sizes that overflow break only their tensor.
    let mut file = build(
        3,
        &[],
        &[
            T("ok", vec![2], 0, pattern(8, 1)),
            T("far", vec![2], 0, pattern(8, 2)),
            T("huge", vec![u64::MAX / 2, 4], 0, vec![]),
            T("bigq", vec![1 << 62, 1 << 8], 12, vec![]),
        ],
        32,
    );
    // Patch "far"'s offset to point past the end of the file.
    let at = file
        .windows(3)
        .position(|w| w == b"far")
        .expect("far's info");
    let off = at + 3 + 4 + 8 + 4;
    file[off..off + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let r = ztensor_formats::from_bytes(&file).unwrap();
    assert_eq!(&r.read("ok").unwrap()[..], &pattern(8, 1)[..]);
    for name in ["far", "huge", "bigq"] {
        assert!(r.info(name).is_err(), "{name}");
    }
}

#[test]
fn duplicate_names_and_empty_files() {
    let file = build(
        3,
        &[],
        &[
            T("a", vec![1], 0, pattern(4, 1)),
            T("a", vec![1], 0, pattern(4, 2)),
        ],
        32,
    );
    assert!(ztensor_formats::from_bytes(&file).is_err());
    let file = build(3, &[("k", kv_u8(1)), ("k", kv_u8(2))], &[], 32);
    assert!(ztensor_formats::from_bytes(&file).is_err());
    // No tensors and no padding at all.
    let file = build(2, &[], &[], 1);
    let r = ztensor_formats::from_bytes(&file).unwrap();
    assert_eq!(r.len(), 0);
    assert_eq!(r.format(), "gguf");
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Q8_0 blocks whose value `i` (counted over the whole tensor) is
/// `scale * (i % 32 - 16)`, with scale 0.5 for even blocks and 2 for odd.
fn q8_blocks(n: usize) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::new();
    let mut values = Vec::new();
    for b in 0..n {
        let d = if b % 2 == 0 { 0.5f32 } else { 2.0 };
        bytes.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        for j in 0..32 {
            bytes.push((j as i8 - 16) as u8);
            values.push(d * (j as f32 - 16.0));
        }
    }
    (bytes, values)
}

#[test]
fn dequantize_option_projects_quantized_tensors_to_dense_floats() {
    use ztensor_formats::{gguf::dequant, OpenOptions};
    let (q8, q8_values) = q8_blocks(2 * 3 * 2);
    let mut q4k = pattern(3 * 144, 9);
    for blk in q4k.chunks_exact_mut(144) {
        blk[0..4].copy_from_slice(&[0x00, 0x38, 0x00, 0x34]); // d = 0.5, dmin = 0.25
    }
    let iq2 = pattern(66, 4);
    let file = build(
        3,
        &[],
        &[
            T("q8_3d", vec![64, 3, 2], 8, q8.clone()),
            T("q4k", vec![256, 3], 12, q4k.clone()),
            T("iq2", vec![256], 16, iq2.clone()),
            T("bad_blocks", vec![16, 2], 8, pattern(34, 1)),
            T("plain", vec![2], 0, pattern(8, 3)),
        ],
        32,
    );
    let opts = OpenOptions::default().dequantize(Some(DType::F32));
    let r = ztensor_formats::from_bytes_with_options(&file, &opts).unwrap();
    let info = r.info("q8_3d").unwrap();
    assert_eq!(info.dtype(), Some(DType::F32));
    assert_eq!(info.shape, [2, 3, 64]);
    assert_eq!(info.logical_type(), None);
    let data = &info.components["data"];
    assert_eq!(data.encoding.as_str(), "dequantize_q8_0");
    assert_eq!(data.length, q8.len() as u64);
    let a = info.attributes.as_ref().unwrap();
    assert_eq!(attr(a, "ggml_type"), Some(&Value::Text("q8_0".into())));
    assert_eq!(attr(a, "dequantized"), Some(&Value::Bool(true)));
    let bytes = r.read("q8_3d").unwrap();
    assert!(!bytes.is_zero_copy());
    assert_eq!(f32s(&bytes), q8_values);
    assert_eq!(r.to_vec::<f32>("q8_3d").unwrap(), q8_values);
    assert_eq!(f32s(&r.read_copy("q8_3d").unwrap()), q8_values);
    assert!(r.view::<f32>("q8_3d").is_err());

    let mut want = vec![0f32; 3 * 256];
    dequant::kernel("q4_k")
        .unwrap()
        .dequantize(&q4k, &mut want)
        .unwrap();
    assert_eq!(r.info("q4k").unwrap().shape, [3, 256]);
    assert_eq!(f32s(&r.read("q4k").unwrap()), want);
    // No kernel: raw bytes as without the option.
    let info = r.info("iq2").unwrap();
    assert_eq!(
        (info.dtype(), info.logical_type()),
        (Some(DType::U8), Some("iq2_xxs"))
    );
    assert_eq!(&r.read("iq2").unwrap()[..], &iq2[..]);
    // A size that is not whole blocks stays this tensor's error.
    let err = r.info("bad_blocks").unwrap_err().to_string();
    assert!(
        err.contains("bad_blocks") && err.contains("blocks"),
        "{err}"
    );
    assert_eq!(&r.read("plain").unwrap()[..], &pattern(8, 3)[..]);

    // float16: the float32 values rounded.
    let opts = OpenOptions::default().dequantize(Some(DType::F16));
    let r16 = ztensor_formats::from_bytes_with_options(&file, &opts).unwrap();
    assert_eq!(r16.info("q4k").unwrap().dtype(), Some(DType::F16));
    let halves: Vec<half::f16> = r16.to_vec("q4k").unwrap();
    let rounded: Vec<half::f16> = want.iter().map(|&x| half::f16::from_f32(x)).collect();
    assert_eq!(halves, rounded);

    // Without the option, and through a path in eager mode.
    let raw = ztensor_formats::from_bytes(&file).unwrap();
    assert_eq!(raw.info("q8_3d").unwrap().dtype(), Some(DType::U8));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &file).unwrap();
    let opts = OpenOptions::default().dequantize(Some(DType::F32));
    let r = ztensor_formats::open_with_options(&path, ztensor::ReadMode::Eager, &opts).unwrap();
    assert_eq!(f32s(&r.read("q8_3d").unwrap()), q8_values);
    // Only float32/float16 are accepted.
    let bf16 = OpenOptions::default().dequantize(Some(DType::BF16));
    assert!(ztensor_formats::from_bytes_with_options(&file, &bf16).is_err());
    assert!(ztensor_formats::open_with_options(&path, ztensor::ReadMode::Mmap, &bf16).is_err());
}

#[test]
fn dequantized_hostile_sizes_fail_per_tensor() {
    use ztensor_formats::OpenOptions;
    let opts = OpenOptions::default().dequantize(Some(DType::F32));
    // Rows that are not whole blocks, a tensor whose bytes run past the end
    // of the file, and a float32 size that overflows: each fails alone.
    let (q8, values) = q8_blocks(2);
    let mut file = build(
        3,
        &[],
        &[
            T("ok", vec![64], 8, q8.clone()),
            T("ragged", vec![48, 2], 8, q8.clone()),
            T("huge", vec![32, 1 << 58], 8, vec![]),
            T("short", vec![64 * 4], 8, q8.clone()),
        ],
        32,
    );
    file.truncate(file.len() - 40); // cuts into "short"'s data
    let r = ztensor_formats::from_bytes_with_options(&file, &opts).unwrap();
    assert_eq!(f32s(&r.read("ok").unwrap()), values);
    for name in ["ragged", "huge", "short"] {
        let err = r.info(name).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
    }
    // Truncations at every length never panic with the option either.
    for n in 0..file.len() {
        if let Ok(r) = ztensor_formats::from_bytes_with_options(&file[..n], &opts) {
            if let Ok(b) = r.read("ok") {
                assert_eq!(f32s(&b), values);
            }
        }
    }
}
