//! safetensors reader: files built byte by byte here (8-byte header length,
//! JSON header, data section), read through the format-detecting entry
//! points.

use std::io::Write;

use ztensor::{DType, Encoding, ErrorKind, Value};
use ztensor_formats::ParseContext;

/// A safetensors image from its JSON header and data section.
fn image(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Builds a file from `(name, dtype, shape, bytes)` tensors laid out in order.
fn build(tensors: &[(&str, &str, &[u64], Vec<u8>)], metadata: Option<&str>) -> Vec<u8> {
    let mut parts = Vec::new();
    let mut data = Vec::new();
    if let Some(m) = metadata {
        parts.push(format!("\"__metadata__\":{m}"));
    }
    for (name, dtype, shape, bytes) in tensors {
        let begin = data.len();
        data.extend_from_slice(bytes);
        let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
        parts.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{begin},{}]}}",
            dims.join(","),
            data.len()
        ));
    }
    image(&format!("{{{}}}", parts.join(",")), &data)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const DTYPES: &[(&str, DType, Option<&str>, usize)] = &[
    ("F64", DType::F64, None, 8),
    ("F32", DType::F32, None, 4),
    ("F16", DType::F16, None, 2),
    ("BF16", DType::BF16, None, 2),
    ("I64", DType::I64, None, 8),
    ("I32", DType::I32, None, 4),
    ("I16", DType::I16, None, 2),
    ("I8", DType::I8, None, 1),
    ("U64", DType::U64, None, 8),
    ("U32", DType::U32, None, 4),
    ("U16", DType::U16, None, 2),
    ("U8", DType::U8, None, 1),
    ("F8_E4M3", DType::U8, Some("f8_e4m3fn"), 1),
    ("F8_E5M2", DType::U8, Some("f8_e5m2"), 1),
    ("F8_E4M3FNUZ", DType::U8, Some("f8_e4m3fnuz"), 1),
    ("F8_E5M2FNUZ", DType::U8, Some("f8_e5m2fnuz"), 1),
    ("C64", DType::F32, Some("complex64"), 8),
];

#[test]
fn every_dtype_reads_zero_copy_at_its_offset() {
    let mut tensors: Vec<(String, &str, Vec<u64>, Vec<u8>)> = Vec::new();
    for (i, &(st, _, _, width)) in DTYPES.iter().enumerate() {
        tensors.push((
            format!("t_{st}"),
            st,
            vec![2, 3],
            pattern(6 * width, i as u8),
        ));
    }
    tensors.push(("t_BOOL".into(), "BOOL", vec![5], vec![0, 1, 1, 0, 1]));
    tensors.push((
        "scalar".into(),
        "F32",
        vec![],
        1.5f32.to_le_bytes().to_vec(),
    ));
    tensors.push(("empty".into(), "I64", vec![0, 4], vec![]));
    let refs: Vec<(&str, &str, &[u64], Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.clone()))
        .collect();
    let file = build(&refs, Some("{\"format\":\"pt\",\"note\":\"héllo\"}"));
    let r = ztensor_formats::from_bytes(&file).unwrap();
    assert_eq!(r.format(), "safetensors");
    assert_eq!(r.len(), tensors.len());
    for (i, &(st, dtype, logical, _)) in DTYPES.iter().enumerate() {
        let name = format!("t_{st}");
        let info = r.info(&name).unwrap();
        assert_eq!(info.dtype(), Some(dtype), "{st}");
        assert_eq!(info.logical_type(), logical, "{st}");
        assert_eq!(info.shape, [2, 3]);
        assert_eq!(info.components["data"].encoding, Encoding::Raw);
        let bytes = r.read(&name).unwrap();
        assert!(bytes.is_zero_copy());
        assert_eq!(&bytes[..], &tensors[i].3[..], "{st}");
    }
    assert_eq!(
        r.to_vec::<bool>("t_BOOL").unwrap(),
        [false, true, true, false, true]
    );
    assert_eq!(r.to_vec::<f32>("scalar").unwrap(), [1.5]);
    assert!(r.info("scalar").unwrap().shape.is_empty());
    assert_eq!(r.read("empty").unwrap().len(), 0);
    // Offsets are absolute: 8 + header length + begin.
    let header_len = u64::from_le_bytes(file[..8].try_into().unwrap());
    let first = r.info("t_F64").unwrap().components["data"].offset;
    assert_eq!(first, 8 + header_len);
    // File order follows the data offsets.
    assert_eq!(r.names_in_file_order().next(), Some("t_F64"));
    let Some(Value::Map(meta)) = r.attributes() else {
        panic!("no metadata")
    };
    assert_eq!(
        meta,
        &vec![
            (Value::Text("format".into()), Value::Text("pt".into())),
            (Value::Text("note".into()), Value::Text("héllo".into())),
        ]
    );
}

#[test]
fn unsupported_dtypes_break_only_their_tensor() {
    let file = build(
        &[
            ("ok", "F32", &[2], pattern(8, 1)),
            ("fp6", "F6_E2M3", &[4], pattern(3, 4)),
            ("fp6b", "F6_E3M2", &[4], pattern(3, 5)),
        ],
        None,
    );
    let r = ztensor_formats::from_bytes(&file).unwrap();
    assert_eq!(r.len(), 3);
    assert!(r.attributes().is_none());
    assert_eq!(&r.read("ok").unwrap()[..], &pattern(8, 1)[..]);
    for (name, what) in [("fp6", "F6_E2M3"), ("fp6b", "F6_E3M2")] {
        let e = r.info(name).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let e = e.to_string();
        assert!(e.contains(what) && e.contains("not supported"), "{e}");
        assert!(r.read(name).is_err());
    }
}

/// `F8_E8M0` is one byte per value; `F4` packs two values per byte and
/// counts values in its shape, which ztensor (as torch) counts in bytes.
#[test]
fn microscaling_dtypes_read_as_bytes_with_their_logical_type() {
    let file = build(
        &[
            ("e8m0", "F8_E8M0", &[3], pattern(3, 3)),
            ("fp4", "F4", &[2, 6], pattern(6, 2)),
            ("fp4_empty", "F4", &[0, 4], vec![]),
            ("fp4_odd", "F4", &[3, 2, 3], pattern(9, 6)),
        ],
        None,
    );
    let r = ztensor_formats::from_bytes(&file).unwrap();
    let e8m0 = r.info("e8m0").unwrap();
    assert_eq!(e8m0.shape, [3]);
    assert_eq!(e8m0.dtype(), Some(DType::U8));
    assert_eq!(e8m0.logical_type(), Some("f8_e8m0fnu"));
    assert_eq!(&r.read("e8m0").unwrap()[..], &pattern(3, 3)[..]);
    let fp4 = r.info("fp4").unwrap();
    assert_eq!(fp4.shape, [2, 3]);
    assert_eq!(fp4.dtype(), Some(DType::U8));
    assert_eq!(fp4.logical_type(), Some("f4_e2m1fn_x2"));
    assert_eq!(&r.read("fp4").unwrap()[..], &pattern(6, 2)[..]);
    assert_eq!(r.info("fp4_empty").unwrap().shape, [0, 2]);
    assert_eq!(r.read("fp4_empty").unwrap().len(), 0);
    // 18 values fill 9 bytes, but an odd last dimension splits a byte
    // between rows: torch refuses it too.
    let e = r.info("fp4_odd").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = e.to_string();
    assert!(
        e.contains("fp4_odd") && e.contains("even last dimension"),
        "{e}"
    );
}

#[test]
fn dtype_table_maps_both_ways() {
    use safetensors::Dtype;
    use ztensor_formats::safetensors::{
        from_safetensors, safetensors_shape, to_safetensors, zt_shape, DTYPES,
    };
    for (st, storage, logical) in DTYPES {
        assert_eq!(from_safetensors(st), Some((storage, logical)));
        assert_eq!(to_safetensors(storage, logical), Some(st));
    }
    assert_eq!(from_safetensors(Dtype::F6_E2M3), None);
    assert_eq!(to_safetensors(DType::U8, Some("f4_e2m1fn")), None);
    assert_eq!(to_safetensors(DType::F64, Some("complex128")), None);
    assert_eq!(zt_shape(Dtype::F4, &[5, 8]).unwrap(), [5, 4]);
    assert_eq!(zt_shape(Dtype::F32, &[5, 7]).unwrap(), [5, 7]);
    assert!(zt_shape(Dtype::F4, &[]).is_err());
    assert_eq!(safetensors_shape(Dtype::F4, &[5, 4]).unwrap(), [5, 8]);
    assert_eq!(safetensors_shape(Dtype::U8, &[5, 4]).unwrap(), [5, 4]);
    let e = safetensors_shape(Dtype::F4, &[]).unwrap_err();
    assert!(e.contains("0-d"), "{e}");
    assert!(safetensors_shape(Dtype::F4, &[u64::MAX / 2 + 1]).is_err());
}

#[test]
fn opens_from_disk_by_content_whatever_the_extension() {
    let file = build(&[("w", "I16", &[3], pattern(6, 9))], None);
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "model.bin",
        "model.safetensors",
        "MODEL.SAFETENSORS",
        "noext",
    ] {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&file)
            .unwrap();
        for mode in [ztensor::ReadMode::Mmap, ztensor::ReadMode::Eager] {
            let r = ztensor_formats::open_with(&path, mode).unwrap();
            assert_eq!(r.format(), "safetensors");
            assert_eq!(&r.read_copy("w").unwrap()[..], &pattern(6, 9)[..]);
            assert_eq!(
                r.read("w").unwrap().is_zero_copy(),
                mode == ztensor::ReadMode::Mmap
            );
        }
    }
}

fn parse_err(bytes: &[u8]) -> String {
    match ztensor_formats::safetensors::parse(bytes, &ParseContext::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("parsed a malformed file"),
    }
}

#[test]
fn malformed_headers_fail_the_file_cleanly() {
    let good = build(
        &[
            ("a", "F32", &[2, 2], pattern(16, 1)),
            ("b", "U8", &[3], pattern(3, 2)),
        ],
        Some("{\"k\":\"v\"}"),
    );
    assert!(ztensor_formats::safetensors::parse(&good, &ParseContext::default()).is_ok());
    // Every truncation is refused (the crate requires the exact length).
    for n in 0..good.len() {
        parse_err(&good[..n]);
        assert!(ztensor_formats::from_bytes(&good[..n]).is_err());
    }
    // Trailing garbage too.
    parse_err(&[&good[..], b"x"].concat());
    // A header length of 2^63 and of u64::MAX.
    for n in [1u64 << 63, u64::MAX, 200 << 20] {
        let mut bad = good.clone();
        bad[..8].copy_from_slice(&n.to_le_bytes());
        let e = parse_err(&bad);
        assert!(e.contains("safetensors header"), "{e}");
    }
    for (header, data) in [
        ("{", &[][..]),
        ("not json", &[][..]),
        (
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}",
            &[0u8; 4][..],
        ), // size mismatch
        (
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            &[0u8; 8][..],
        ), // gap
        (
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
            &[0u8; 3][..],
        ), // past the end
        (
            "{\"a\":{\"dtype\":\"C128\",\"shape\":[1],\"data_offsets\":[0,16]}}",
            &[0u8; 16][..],
        ), // unknown dtype
        ("{\"__metadata__\":{\"k\":1}}", &[][..]), // non-string metadata
        (
            "{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615,2],\"data_offsets\":[0,0]}}",
            &[][..],
        ),
    ] {
        parse_err(&image(header, data));
    }
}

#[test]
fn offsets_summing_past_u64_are_refused_without_panicking() {
    // Eight tensors of 2^61 - 1 bytes each end at 2^64 - 8: the crate's
    // final length check then overflows.
    let size: u64 = (1 << 61) - 1;
    let parts: Vec<String> = (0..8u64)
        .map(|i| {
            format!(
                "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[{},{}]}}",
                i * size,
                (i + 1) * size
            )
        })
        .collect();
    let file = image(&format!("{{{}}}", parts.join(",")), &[]);
    assert!(ztensor_formats::safetensors::parse(&file, &ParseContext::default()).is_err());
}

#[test]
fn empty_file_and_empty_header() {
    let r =
        ztensor_formats::safetensors::parse(&image("{}", &[]), &ParseContext::default()).unwrap();
    assert!(r.entries.is_empty());
    assert_eq!(r.data_region, (10, 10));
    parse_err(&[]);
}
