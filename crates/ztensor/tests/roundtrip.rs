//! Write-then-read round trips through the public API.

mod common;

use half::{bf16, f16};
use ztensor::{
    Checksum, ComponentData, DType, Encoding, Layout, ReadMode, Reader, Value, WriteOptions, Writer,
};

fn all_options() -> Vec<WriteOptions> {
    let mut v = Vec::new();
    for compression in [None, Some(1), Some(3), Some(19)] {
        for checksum in [Checksum::None, Checksum::Crc32c, Checksum::Sha256] {
            v.push(WriteOptions {
                compression,
                checksum,
            });
        }
    }
    v
}

#[test]
fn every_dtype_round_trips_with_every_option_in_both_read_modes() {
    let dir = tempfile::tempdir().unwrap();
    for (i, opts) in all_options().iter().enumerate() {
        let path = dir.path().join(format!("t{i}.zt"));
        let mut w = Writer::create(&path).unwrap();
        w.add_with("f64", &[3], &[1.5f64, -0.0, f64::NAN], opts)
            .unwrap();
        w.add_with("f32", &[2, 2], &[1.0f32, f32::INFINITY, -2.5, 1e-40], opts)
            .unwrap();
        w.add_with("f16", &[2], &[f16::from_f32(0.5), f16::MAX], opts)
            .unwrap();
        w.add_with(
            "bf16",
            &[3],
            &[
                bf16::from_f32(1.0),
                bf16::from_f32(-2.5),
                bf16::from_f32(3.0),
            ],
            opts,
        )
        .unwrap();
        w.add_with("i64", &[2], &[i64::MIN, i64::MAX], opts)
            .unwrap();
        w.add_with("i32", &[1], &[-7i32], opts).unwrap();
        w.add_with("i16", &[1, 3], &[1i16, 2, 3], opts).unwrap();
        w.add_with("i8", &[2], &[-128i8, 127], opts).unwrap();
        w.add_with("u64", &[1], &[u64::MAX], opts).unwrap();
        w.add_with("u32", &[1], &[u32::MAX], opts).unwrap();
        w.add_with("u16", &[1], &[u16::MAX], opts).unwrap();
        w.add_with("u8", &[0, 4], &[] as &[u8], opts).unwrap();
        w.add_with("bool", &[], &[true], opts).unwrap();
        w.finish().unwrap();

        for mode in [ReadMode::Mmap, ReadMode::Eager] {
            let r = Reader::open_with(&path, mode).unwrap();
            assert_eq!(r.len(), 13);
            let f64s: Vec<f64> = r.to_vec("f64").unwrap();
            assert_eq!(f64s[0], 1.5);
            assert!(f64s[1] == 0.0 && f64s[1].is_sign_negative() && f64s[2].is_nan());
            assert_eq!(r.to_vec::<f32>("f32").unwrap()[3], 1e-40);
            assert_eq!(r.to_vec::<f16>("f16").unwrap()[1], f16::MAX);
            assert_eq!(r.to_vec::<bf16>("bf16").unwrap()[1], bf16::from_f32(-2.5));
            assert_eq!(r.to_vec::<i64>("i64").unwrap(), vec![i64::MIN, i64::MAX]);
            assert_eq!(r.to_vec::<u64>("u64").unwrap(), vec![u64::MAX]);
            assert_eq!(r.to_vec::<i16>("i16").unwrap(), vec![1, 2, 3]);
            assert_eq!(r.to_vec::<u8>("u8").unwrap(), Vec::<u8>::new());
            assert_eq!(r.to_vec::<bool>("bool").unwrap(), vec![true]);
            let info = r.info("bool").unwrap();
            assert_eq!(info.shape, Vec::<u64>::new());
            let data = &info.components["data"];
            assert_eq!(data.offset % 64, 0);
            assert_eq!(
                matches!(data.encoding, Encoding::Zstd { .. }),
                opts.compression.is_some()
            );
            assert_eq!(data.digest.is_some(), opts.checksum != Checksum::None);
            assert!(r.verify().is_empty(), "{:?}", r.verify());
            let zero_copy = r.read("i32").unwrap().is_zero_copy();
            assert_eq!(
                zero_copy,
                mode == ReadMode::Mmap && opts.compression.is_none()
            );
        }
    }
}

#[test]
fn views_are_zero_copy_and_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.zt");
    let vals: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let mut w = Writer::create(&path).unwrap();
    w.add("x", &[10, 100], &vals).unwrap();
    w.add_with("z", &[1000], &vals, &WriteOptions::zstd(3))
        .unwrap();
    w.finish().unwrap();
    let r = Reader::open(&path).unwrap();
    assert_eq!(r.view::<f32>("x").unwrap(), &vals[..]);
    assert!(r
        .view::<i32>("x")
        .unwrap_err()
        .to_string()
        .contains("is float32, not int32"));
    assert!(r
        .view::<f32>("z")
        .unwrap_err()
        .to_string()
        .contains("compressed"));
    assert_eq!(r.to_vec::<f32>("z").unwrap(), vals);
    assert!(matches!(
        r.view::<f32>("nope"),
        Err(ztensor::Error::NotFound { .. })
    ));
    let copy = r.read_copy("x").unwrap();
    assert_eq!(copy.as_ptr() as usize % 64, 0);
    assert_eq!(&copy[..], r.read("x").unwrap().as_slice());
}

#[test]
fn large_tensor_compresses_in_independent_frames_and_round_trips() {
    let n = (ztensor::codec::FRAME_CHUNK * 3) / 4 + 12345;
    let vals: Vec<u32> = (0..n as u32)
        .map(|i| i.wrapping_mul(2654435761) >> 7)
        .collect();
    let mut w = Writer::in_memory();
    w.add_with(
        "big",
        &[n as u64],
        &vals,
        &WriteOptions::zstd(3).with_checksum(Checksum::Crc32c),
    )
    .unwrap();
    let bytes = w.finish_into_vec().unwrap();
    let r = Reader::from_bytes(&bytes).unwrap();
    assert_eq!(r.to_vec::<u32>("big").unwrap(), vals);
}

#[test]
fn sparse_quantized_and_custom_layouts_round_trip() {
    let mut w = Writer::in_memory();
    let values = [1.0f32, 2.0, 3.0];
    w.add_sparse_csr(
        "csr",
        [2, 4],
        ComponentData::of(&values),
        &[0, 3, 1],
        &[0, 2, 3],
        &WriteOptions::zstd(3),
    )
    .unwrap();
    w.add_sparse_coo(
        "coo",
        &[3, 3],
        ComponentData::of(&values),
        &[0, 1, 2, 2, 1, 0],
        &WriteOptions::raw(),
    )
    .unwrap();
    let attrs = Value::Map(vec![
        (Value::Text("group_size".into()), Value::Integer(8.into())),
        (Value::Text("bits".into()), Value::Integer(4.into())),
    ]);
    let packed = [0x12345678u32, 0x9abcdef0];
    let scales = [bf16::from_f32(0.5)];
    w.add_tensor(
        "q",
        &[1, 16],
        Layout::QuantizedGroup,
        Some(attrs),
        &[
            ("packed_weight", ComponentData::of(&packed)),
            ("scales", ComponentData::of(&scales)),
        ],
        &WriteOptions::raw().with_checksum(Checksum::Sha256),
    )
    .unwrap();
    // Invalid sparse structures are refused before anything is written.
    let bad = w.add_sparse_csr(
        "bad",
        [2, 4],
        ComponentData::of(&values),
        &[0, 9, 1],
        &[0, 2, 3],
        &WriteOptions::raw(),
    );
    assert!(bad.unwrap_err().to_string().contains("out of range"));
    let bytes = w.finish_into_vec().unwrap();

    let r = Reader::from_bytes(&bytes).unwrap();
    let csr = r.info("csr").unwrap();
    assert_eq!(csr.layout, Layout::SparseCsr);
    assert_eq!(csr.components["indices"].dtype, DType::U64);
    let indptr = r.read_component("csr", "indptr", false).unwrap();
    assert_eq!(&indptr[..], ztensor_bytes(&[0u64, 2, 3]));
    assert_eq!(
        &r.read_component("csr", "values", true).unwrap()[..],
        ztensor_bytes(&values)
    );
    assert_eq!(r.info("coo").unwrap().layout, Layout::SparseCoo);
    let q = r.info("q").unwrap();
    assert_eq!(q.layout, Layout::QuantizedGroup);
    assert_eq!(
        q.attributes.as_ref().unwrap().as_map().unwrap()[0].0,
        Value::Text("bits".into())
    );
    assert!(r.read("q").unwrap_err().to_string().contains("not dense"));
    assert!(r.verify().is_empty());
}

fn ztensor_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: test helper over plain numeric slices.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

#[test]
fn writer_refuses_bad_input() {
    let mut w = Writer::in_memory();
    assert!(w.add("", &[1], &[1u8]).is_err());
    assert!(w
        .add("x", &[2], &[1u8])
        .unwrap_err()
        .to_string()
        .contains("needs 2 bytes"));
    assert!(w
        .add("x", &[u64::MAX, 3], &[1u8])
        .unwrap_err()
        .to_string()
        .contains("overflows"));
    w.add("x", &[1], &[1u8]).unwrap();
    assert!(w
        .add("x", &[1], &[1u8])
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
    let bad = ComponentData {
        dtype: DType::U16,
        logical_type: Some("f8_e4m3fn"),
        bytes: &[0, 0],
    };
    assert!(w.add_dense("f8", &[1], bad, &WriteOptions::raw()).is_err());
    assert!(Writer::in_memory().with_alignment(100).is_err());
    assert!(w.set_attributes(Value::Integer(1.into())).is_err());
}

#[test]
fn complex_logical_type_counts_two_floats_per_element() {
    let mut w = Writer::in_memory();
    let c = ComponentData {
        dtype: DType::F32,
        logical_type: Some("complex64"),
        bytes: ztensor_bytes(&[1.0f32, 2.0, 3.0, 4.0]),
    };
    w.add_dense("c", &[2], c, &WriteOptions::raw()).unwrap();
    let r = Reader::from_bytes(&w.finish_into_vec().unwrap()).unwrap();
    let info = r.info("c").unwrap();
    assert_eq!(info.logical_type(), Some("complex64"));
    assert_eq!(info.dense_nbytes(), Some(16));
}

#[test]
fn larger_alignment_and_attributes() {
    let mut w = Writer::in_memory().with_alignment(4096).unwrap();
    w.set_attributes(Value::Map(vec![
        (Value::Text("z".into()), Value::Text("last".into())),
        (Value::Text("a".into()), Value::Float(1.5)),
    ]))
    .unwrap();
    w.add("a", &[3], &[1u8, 2, 3]).unwrap();
    w.add("b", &[1], &[1u8]).unwrap();
    let bytes = w.finish_into_vec().unwrap();
    let r = Reader::from_bytes(&bytes).unwrap();
    assert_eq!(r.info("a").unwrap().components["data"].offset, 4096);
    assert_eq!(r.info("b").unwrap().components["data"].offset, 8192);
    let attrs = r.attributes().unwrap().as_map().unwrap();
    assert_eq!(
        attrs[0].0,
        Value::Text("a".into()),
        "top-level keys are sorted"
    );
    assert_eq!(r.names_in_file_order().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn isolated_reads_get_their_own_mapping_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iso.zt");
    let mut w = Writer::create(&path).unwrap();
    w.add("a", &[1000], &vec![1.5f32; 1000]).unwrap();
    w.add("b", &[10], &[7u8; 10]).unwrap();
    w.finish().unwrap();
    let r = Reader::open(&path).unwrap();
    let one = r.read_many_isolated(&["a", "b"], false);
    let two = r.read_many_isolated(&["a"], false);
    let (a1, b1, a2) = (
        one[0].as_ref().unwrap(),
        one[1].as_ref().unwrap(),
        two[0].as_ref().unwrap(),
    );
    assert!(a1.is_zero_copy() && b1.is_zero_copy() && a2.is_zero_copy());
    assert_ne!(a1.as_ptr(), a2.as_ptr(), "two calls must not share memory");
    assert_ne!(a1.as_ptr(), r.read("a").unwrap().as_ptr());
    // Within one call, the tensors keep their file layout (one mapping).
    let (oa, ob) = (
        r.info("a").unwrap().components["data"].offset,
        r.info("b").unwrap().components["data"].offset,
    );
    assert_eq!(b1.as_ptr() as u64 - a1.as_ptr() as u64, ob - oa);
    assert_eq!(a1.as_ptr() as usize % 64, 0);
    assert_eq!(&a1[..4], &1.5f32.to_le_bytes());
    let c = r.read_component_isolated("b", "data", false).unwrap();
    assert!(c.is_zero_copy() && c.as_ptr() != b1.as_ptr() && c[..] == [7u8; 10]);
    // Plain reads share the reader's mapping, as before.
    assert_eq!(r.read("a").unwrap().as_ptr(), r.read("a").unwrap().as_ptr());
}

#[test]
fn sparse_indices_of_other_integer_types_are_stored_as_u64() {
    let values = [1.0f32, 2.0, 3.0];
    let csr = |indices: ComponentData<'_>, indptr: ComponentData<'_>| {
        let mut w = Writer::in_memory();
        w.add_tensor(
            "csr",
            &[2, 4],
            Layout::SparseCsr,
            None,
            &[
                ("values", ComponentData::of(&values)),
                ("indices", indices),
                ("indptr", indptr),
            ],
            &WriteOptions::raw(),
        )
        .map(|_| w.finish_into_vec().unwrap())
    };
    // scipy's int32 CSR, and unsigned 16-bit indices
    let bytes = csr(
        ComponentData::of(&[0i32, 3, 1]),
        ComponentData::of(&[0u16, 2, 3]),
    )
    .unwrap();
    let r = Reader::from_bytes(&bytes).unwrap();
    let info = r.info("csr").unwrap();
    assert_eq!(info.components["indices"].dtype, DType::U64);
    assert_eq!(info.components["indptr"].dtype, DType::U64);
    assert_eq!(
        &r.read_component("csr", "indices", true).unwrap()[..],
        ztensor_bytes(&[0u64, 3, 1])
    );
    assert_eq!(
        &r.read_component("csr", "indptr", true).unwrap()[..],
        ztensor_bytes(&[0u64, 2, 3])
    );
    // Widened values are still checked; negatives and floats are refused.
    let err = |r: ztensor::Result<Vec<u8>>| r.unwrap_err().to_string();
    let e = err(csr(
        ComponentData::of(&[0i64, 9, 1]),
        ComponentData::of(&[0i64, 2, 3]),
    ));
    assert!(e.contains("out of range"), "{e}");
    let e = err(csr(
        ComponentData::of(&[0i32, -1, 1]),
        ComponentData::of(&[0i32, 2, 3]),
    ));
    assert!(
        e.contains("negative index") && e.contains("'indices'"),
        "{e}"
    );
    let e = err(csr(
        ComponentData::of(&[0.0f32, 1.0, 1.0]),
        ComponentData::of(&[0u64, 2, 3]),
    ));
    assert!(e.contains("must hold integers"), "{e}");
}
