//! ONNX reader: models built here as prost messages and encoded, read
//! through the `.onnx` extension (files) or the ONNX parser (memory):
//! raw and typed fields of every element type, subgraphs, Constant nodes,
//! sparse initializers, external data, and hostile inputs.

use std::path::Path;

use prost::Message;
use ztensor::{DType, Encoding, Reader, Value};
use ztensor_formats::onnx::proto::{
    tensor_proto::DataLocation, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, SparseTensorProto, StringStringEntryProto, TensorProto,
};
use ztensor_formats::{Format, ParseContext};

fn raw(name: &str, data_type: i32, dims: &[i64], bytes: &[u8]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(data_type),
        dims: dims.to_vec(),
        raw_data: Some(bytes.to_vec().into()),
        ..Default::default()
    }
}

fn typed(name: &str, data_type: i32, dims: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(data_type),
        dims: dims.to_vec(),
        ..Default::default()
    }
}

fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: Some(10),
        producer_name: Some("ztensor-tests".into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(21),
        }],
        graph: Some(graph),
        ..Default::default()
    }
}

fn graph(initializer: Vec<TensorProto>) -> GraphProto {
    GraphProto {
        name: Some("g".into()),
        initializer,
        ..Default::default()
    }
}

fn from_bytes(bytes: &[u8]) -> ztensor::Result<Reader> {
    Reader::from_bytes_with_parser(bytes, |b| Format::Onnx.parse(b, &ParseContext::default()))
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

fn write(dir: &Path, name: &str, m: &ModelProto) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn err_text<T: std::fmt::Debug>(r: ztensor::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn raw_data_is_a_zero_copy_range_of_the_file() {
    let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    let m = model(graph(vec![
        raw("w", 1, &[3, 4], &le(&w, f32::to_le_bytes)),
        raw("ids", 7, &[2], &le(&[-5i64, 1 << 40], i64::to_le_bytes)),
        raw("scalar", 11, &[], &2.5f64.to_le_bytes()),
        raw("empty", 1, &[0, 3], &[]),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.onnx", &m);
    let file = std::fs::read(&path).unwrap();
    let r = ztensor_formats::open(&path).unwrap();
    assert_eq!(r.format(), "onnx");
    assert_eq!(r.version(), "10");
    assert_eq!(r.to_vec::<f32>("w").unwrap(), w);
    // raw_data is rarely aligned: to_vec copies where view would refuse
    assert_eq!(r.to_vec::<i64>("ids").unwrap(), [-5, 1 << 40]);
    assert_eq!(r.to_vec::<f64>("scalar").unwrap(), [2.5]);
    assert_eq!(r.info("scalar").unwrap().shape, Vec::<u64>::new());
    assert_eq!(r.info("empty").unwrap().shape, [0, 3]);
    assert!(r.read("empty").unwrap().is_empty());
    let c = &r.info("w").unwrap().components["data"];
    assert_eq!(c.encoding, Encoding::Raw);
    let (o, n) = (c.offset as usize, c.length as usize);
    assert_eq!(&file[o..o + n], &le(&w, f32::to_le_bytes)[..]);
    // The zero-copy view is that range of the mapping.
    let a = r.read("w").unwrap();
    let b = r.read("ids").unwrap();
    let c2 = &r.info("ids").unwrap().components["data"];
    assert_eq!(
        b.as_ptr() as isize - a.as_ptr() as isize,
        c2.offset as isize - c.offset as isize
    );
}

#[test]
fn file_metadata_becomes_attributes() {
    let mut m = model(graph(vec![raw("x", 2, &[1], &[7])]));
    m.producer_version = Some("1.2".into());
    m.domain = Some("ai.test".into());
    m.model_version = Some(3);
    m.doc_string = Some("doc".into());
    m.metadata_props = vec![StringStringEntryProto {
        key: Some("k".into()),
        value: Some("v".into()),
    }];
    let r = from_bytes(&m.encode_to_vec()).unwrap();
    let Some(Value::Map(attrs)) = r.attributes() else {
        panic!("no attributes")
    };
    let get = |k: &str| {
        attrs
            .iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert_eq!(get("ir_version"), Value::from(10));
    assert_eq!(get("producer_name"), Value::Text("ztensor-tests".into()));
    assert_eq!(get("producer_version"), Value::Text("1.2".into()));
    assert_eq!(get("domain"), Value::Text("ai.test".into()));
    assert_eq!(get("model_version"), Value::from(3));
    assert_eq!(get("doc_string"), Value::Text("doc".into()));
    assert_eq!(
        get("metadata_props"),
        Value::Map(vec![(Value::Text("k".into()), Value::Text("v".into()))])
    );
    assert_eq!(
        get("opset_import"),
        Value::Array(vec![Value::Map(vec![
            (Value::Text("domain".into()), Value::Text("".into())),
            (Value::Text("version".into()), Value::from(21)),
        ])])
    );
}

#[test]
fn typed_fields_follow_the_onnx_storage_rules() {
    let mut ts = Vec::new();
    let mut t = typed("f32", 1, &[3]);
    t.float_data = vec![1.5, -0.0, f32::INFINITY];
    ts.push(t);
    let mut t = typed("c64", 14, &[2]);
    t.float_data = vec![1.0, 2.0, 3.0, 4.0];
    ts.push(t);
    let mut t = typed("f64", 11, &[2]);
    t.double_data = vec![1e300, -2.0];
    ts.push(t);
    let mut t = typed("c128", 15, &[1]);
    t.double_data = vec![5.0, -6.0];
    ts.push(t);
    // varints: negative int32 values take 10 bytes each on the wire
    let mut t = typed("i32", 6, &[3]);
    t.int32_data = vec![-1, i32::MIN, i32::MAX];
    ts.push(t);
    let mut t = typed("i8", 3, &[2]);
    t.int32_data = vec![-128, 127];
    ts.push(t);
    let mut t = typed("u8", 2, &[2]);
    t.int32_data = vec![0, 255];
    ts.push(t);
    let mut t = typed("i16", 5, &[2]);
    t.int32_data = vec![-32768, 300];
    ts.push(t);
    let mut t = typed("u16", 4, &[1]);
    t.int32_data = vec![65535];
    ts.push(t);
    let mut t = typed("bool", 9, &[3]);
    t.int32_data = vec![1, 0, 1];
    ts.push(t);
    let mut t = typed("f16", 10, &[2]);
    t.int32_data = vec![0x3c00, 0xc000];
    ts.push(t);
    let mut t = typed("bf16", 16, &[1]);
    t.int32_data = vec![0x3f80];
    ts.push(t);
    let mut t = typed("f8", 17, &[2]);
    t.int32_data = vec![0x38, 0x7f];
    ts.push(t);
    let mut t = typed("i64", 7, &[2]);
    t.int64_data = vec![i64::MIN, 1 << 50];
    ts.push(t);
    let mut t = typed("u32", 12, &[2]);
    t.uint64_data = vec![u32::MAX as u64, 7];
    ts.push(t);
    let mut t = typed("u64", 13, &[1]);
    t.uint64_data = vec![u64::MAX];
    ts.push(t);
    let mut t = typed("int4", 22, &[3]);
    t.int32_data = vec![0x7f, 0x08]; // -1, 7 | -8
    ts.push(t);
    let mut t = typed("f6", 27, &[2]);
    t.int32_data = vec![8, 16];
    ts.push(t);
    let r = from_bytes(&model(graph(ts)).encode_to_vec()).unwrap();
    assert_eq!(r.to_vec::<f32>("f32").unwrap(), [1.5, -0.0, f32::INFINITY]);
    assert_eq!(r.to_vec::<f32>("c64").unwrap(), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(r.info("c64").unwrap().logical_type(), Some("complex64"));
    assert_eq!(r.info("c64").unwrap().shape, [2]);
    assert_eq!(r.to_vec::<f64>("f64").unwrap(), [1e300, -2.0]);
    assert_eq!(r.to_vec::<f64>("c128").unwrap(), [5.0, -6.0]);
    assert_eq!(r.to_vec::<i32>("i32").unwrap(), [-1, i32::MIN, i32::MAX]);
    assert_eq!(r.to_vec::<i8>("i8").unwrap(), [-128, 127]);
    assert_eq!(r.to_vec::<u8>("u8").unwrap(), [0, 255]);
    assert_eq!(r.to_vec::<i16>("i16").unwrap(), [-32768, 300]);
    assert_eq!(r.to_vec::<u16>("u16").unwrap(), [65535]);
    assert_eq!(r.to_vec::<bool>("bool").unwrap(), [true, false, true]);
    let f16 = r.to_vec::<half::f16>("f16").unwrap();
    assert_eq!(
        f16.iter().map(|x| x.to_f32()).collect::<Vec<_>>(),
        [1.0, -2.0]
    );
    assert_eq!(r.to_vec::<half::bf16>("bf16").unwrap()[0].to_f32(), 1.0);
    assert_eq!(r.read("f8").unwrap().as_slice(), [0x38, 0x7f]);
    assert_eq!(r.info("f8").unwrap().logical_type(), Some("f8_e4m3fn"));
    assert_eq!(r.to_vec::<i64>("i64").unwrap(), [i64::MIN, 1 << 50]);
    assert_eq!(r.to_vec::<u32>("u32").unwrap(), [u32::MAX, 7]);
    assert_eq!(r.to_vec::<u64>("u64").unwrap(), [u64::MAX]);
    assert_eq!(r.to_vec::<i8>("int4").unwrap(), [-1, 7, -8]);
    assert_eq!(r.info("int4").unwrap().logical_type(), Some("int4"));
    assert_eq!(r.read("f6").unwrap().as_slice(), [8, 16]);
    let c = &r.info("i32").unwrap().components["data"];
    assert_eq!((c.encoding.as_str(), c.length), ("decoded", 0));
}

#[test]
fn typed_fields_with_the_wrong_count_or_field_fail_alone() {
    let mut short = typed("short", 1, &[4]);
    short.float_data = vec![1.0, 2.0];
    let mut wrong_field = typed("wrong_field", 7, &[2]);
    wrong_field.int32_data = vec![1, 2]; // int64 lives in int64_data
    let none = typed("none", 6, &[1 << 40]);
    let mut huge = typed("huge", 1, &[1 << 30, 1 << 30]);
    huge.float_data = vec![1.0];
    let overflow = typed("overflow", 1, &[i64::MAX, i64::MAX]);
    let negative = typed("negative", 1, &[-1]);
    let string = TensorProto {
        string_data: vec![b"a".to_vec()],
        ..typed("string", 8, &[1])
    };
    let undefined = raw("undefined", 0, &[1], &[0]);
    let unknown = raw("unknown", 99, &[1], &[0]);
    let mut segment = raw("segment", 2, &[1], &[0]);
    segment.segment = Some(Default::default());
    let short_raw = raw("short_raw", 1, &[2], &[0; 7]);
    let mut location = raw("location", 2, &[1], &[0]);
    location.data_location = Some(5);
    let ok = raw("ok", 2, &[1], &[9]);
    let r = from_bytes(
        &model(graph(vec![
            short,
            wrong_field,
            none,
            huge,
            overflow,
            negative,
            string,
            undefined,
            unknown,
            segment,
            short_raw,
            location,
            ok,
        ]))
        .encode_to_vec(),
    )
    .unwrap();
    assert_eq!(r.read("ok").unwrap().as_slice(), [9]);
    for (name, says) in [
        (
            "short",
            "float_data: holds 2 values but 4 elements of FLOAT need 4",
        ),
        ("wrong_field", "int64_data: holds 0 values"),
        ("none", "int32_data: holds 0 values"),
        ("huge", "holds 1 values"),
        ("overflow", "more elements than fit in 64 bits"),
        ("negative", "negative"),
        ("string", "string tensors"),
        ("undefined", "UNDEFINED"),
        ("unknown", "unknown ONNX data type 99"),
        ("segment", "segmented"),
        (
            "short_raw",
            "raw_data holds 7 bytes but shape [2] of FLOAT needs 8",
        ),
        ("location", "unknown data_location 5"),
    ] {
        let e = err_text(r.read(name));
        assert!(e.contains(says) && e.contains(name), "{name}: {e}");
    }
}

/// (data type code, dims, raw bytes, dtype, logical type, decoded bytes)
type Case = (i32, Vec<i64>, Vec<u8>, DType, Option<&'static str>, Vec<u8>);

#[test]
fn every_element_type_from_raw_data() {
    let cases: Vec<Case> = vec![
        (
            1,
            vec![1],
            1f32.to_le_bytes().to_vec(),
            DType::F32,
            None,
            1f32.to_le_bytes().to_vec(),
        ),
        (2, vec![2], vec![1, 255], DType::U8, None, vec![1, 255]),
        (3, vec![1], vec![0x80], DType::I8, None, vec![0x80]),
        (4, vec![1], vec![1, 2], DType::U16, None, vec![1, 2]),
        (5, vec![1], vec![1, 2], DType::I16, None, vec![1, 2]),
        (
            6,
            vec![1],
            vec![1, 2, 3, 4],
            DType::I32,
            None,
            vec![1, 2, 3, 4],
        ),
        (7, vec![1], vec![9; 8], DType::I64, None, vec![9; 8]),
        (9, vec![2], vec![0, 1], DType::Bool, None, vec![0, 1]),
        (10, vec![1], vec![0, 0x3c], DType::F16, None, vec![0, 0x3c]),
        (11, vec![1], vec![7; 8], DType::F64, None, vec![7; 8]),
        (
            12,
            vec![1],
            vec![1, 0, 0, 0],
            DType::U32,
            None,
            vec![1, 0, 0, 0],
        ),
        (13, vec![1], vec![2; 8], DType::U64, None, vec![2; 8]),
        (
            14,
            vec![1],
            vec![3; 8],
            DType::F32,
            Some("complex64"),
            vec![3; 8],
        ),
        (
            15,
            vec![1],
            vec![4; 16],
            DType::F64,
            Some("complex128"),
            vec![4; 16],
        ),
        (
            16,
            vec![1],
            vec![0x80, 0x3f],
            DType::BF16,
            None,
            vec![0x80, 0x3f],
        ),
        (
            17,
            vec![1],
            vec![0x38],
            DType::U8,
            Some("f8_e4m3fn"),
            vec![0x38],
        ),
        (
            18,
            vec![1],
            vec![0x38],
            DType::U8,
            Some("f8_e4m3fnuz"),
            vec![0x38],
        ),
        (
            19,
            vec![1],
            vec![0x3c],
            DType::U8,
            Some("f8_e5m2"),
            vec![0x3c],
        ),
        (
            20,
            vec![1],
            vec![0x3c],
            DType::U8,
            Some("f8_e5m2fnuz"),
            vec![0x3c],
        ),
        (
            21,
            vec![3],
            vec![0x21, 0x0f],
            DType::U8,
            Some("uint4"),
            vec![1, 2, 15],
        ),
        (
            22,
            vec![3],
            vec![0x7f, 0x08],
            DType::I8,
            Some("int4"),
            vec![0xff, 7, 0xf8],
        ),
        (
            23,
            vec![2],
            vec![0x42],
            DType::U8,
            Some("f4_e2m1fn"),
            vec![2, 4],
        ),
        (
            24,
            vec![1],
            vec![0x7f],
            DType::U8,
            Some("f8_e8m0fnu"),
            vec![0x7f],
        ),
        (
            25,
            vec![5],
            vec![0xe4, 0x02],
            DType::U8,
            Some("uint2"),
            vec![0, 1, 2, 3, 2],
        ),
        (
            26,
            vec![4],
            vec![0xe4],
            DType::I8,
            Some("int2"),
            vec![0, 1, 0xfe, 0xff],
        ),
        (
            27,
            vec![3],
            vec![0x08, 0x84, 0x00],
            DType::U8,
            Some("f6_e2m3fn"),
            vec![8, 16, 8],
        ),
        (
            28,
            vec![3],
            vec![0x0c, 0xc4, 0x00],
            DType::U8,
            Some("f6_e3m2fn"),
            vec![12, 16, 12],
        ),
    ];
    let tensors = cases
        .iter()
        .map(|(code, dims, bytes, ..)| raw(&format!("t{code}"), *code, dims, bytes))
        .collect();
    let r = from_bytes(&model(graph(tensors)).encode_to_vec()).unwrap();
    for (code, dims, _, dtype, logical, decoded) in &cases {
        let name = format!("t{code}");
        let info = r.info(&name).unwrap();
        assert_eq!(info.dtype(), Some(*dtype), "{name}");
        assert_eq!(info.logical_type(), *logical, "{name}");
        assert_eq!(
            info.shape,
            dims.iter().map(|&d| d as u64).collect::<Vec<_>>()
        );
        assert_eq!(r.read(&name).unwrap().as_slice(), &decoded[..], "{name}");
        assert_eq!(
            r.read_copy(&name).unwrap().as_slice(),
            &decoded[..],
            "{name}"
        );
    }
    // Packed types must be exactly as long as their packing says.
    let bad =
        from_bytes(&model(graph(vec![raw("i4", 22, &[3], &[0, 0, 0])])).encode_to_vec()).unwrap();
    assert!(err_text(bad.read("i4")).contains("raw_data holds 3 bytes"));
}

fn constant(output: &str, t: TensorProto) -> NodeProto {
    NodeProto {
        op_type: Some("Constant".into()),
        output: vec![output.into()],
        attribute: vec![AttributeProto {
            name: Some("value".into()),
            r#type: Some(4),
            t: Some(t),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn if_node(then: GraphProto, els: GraphProto) -> NodeProto {
    let attr = |name: &str, g| AttributeProto {
        name: Some(name.into()),
        r#type: Some(5),
        g: Some(g),
        ..Default::default()
    };
    NodeProto {
        op_type: Some("If".into()),
        input: vec!["cond".into()],
        output: vec!["y".into()],
        attribute: vec![attr("then_branch", then), attr("else_branch", els)],
        ..Default::default()
    }
}

#[test]
fn subgraphs_constants_and_duplicate_names() {
    let mut inner = graph(vec![raw("inner_w", 2, &[2], &[1, 2])]);
    inner.node = vec![constant("inner_c", raw("", 3, &[1], &[0xff]))];
    let loop_body = GraphProto {
        node: vec![if_node(graph(vec![raw("deep", 2, &[1], &[4])]), inner)],
        ..Default::default()
    };
    let loop_node = NodeProto {
        op_type: Some("Loop".into()),
        attribute: vec![AttributeProto {
            name: Some("body".into()),
            r#type: Some(5),
            g: Some(loop_body),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut g = graph(vec![raw("w", 2, &[1], &[9]), raw("dup", 2, &[1], &[1])]);
    let mut typed_c = typed("ignored_name", 7, &[]);
    typed_c.int64_data = vec![-3];
    g.node = vec![
        constant("c", typed_c),
        constant("dup", raw("", 2, &[1], &[2])),
        // not a Constant: its `value` attribute is not a named tensor
        NodeProto {
            op_type: Some("ConstantOfShape".into()),
            output: vec!["cos".into()],
            attribute: vec![AttributeProto {
                name: Some("value".into()),
                t: Some(raw("", 1, &[1], &[0; 4])),
                ..Default::default()
            }],
            ..Default::default()
        },
        loop_node,
    ];
    let r = from_bytes(&model(g).encode_to_vec()).unwrap();
    let mut names: Vec<&str> = r.names().collect();
    names.sort();
    assert_eq!(names, ["c", "deep", "dup", "inner_c", "inner_w", "w"]);
    assert_eq!(r.to_vec::<i64>("c").unwrap(), [-3]);
    assert_eq!(r.info("c").unwrap().shape, Vec::<u64>::new());
    assert_eq!(r.read("deep").unwrap().as_slice(), [4]);
    assert_eq!(r.read("inner_w").unwrap().as_slice(), [1, 2]);
    assert_eq!(r.to_vec::<i8>("inner_c").unwrap(), [-1]);
    assert!(err_text(r.read("dup")).contains("more than once"));
}

#[test]
fn deep_subgraph_nesting_fails_cleanly() {
    for depth in [10usize, 40, 200] {
        let mut g = graph(vec![raw("leaf", 2, &[1], &[1])]);
        for _ in 0..depth {
            g = GraphProto {
                node: vec![if_node(g, GraphProto::default())],
                ..Default::default()
            };
        }
        let bytes = model(g).encode_to_vec();
        match from_bytes(&bytes) {
            Ok(r) => assert_eq!(r.read("leaf").unwrap().as_slice(), [1], "depth {depth}"),
            Err(e) => assert!(depth > 30, "depth {depth}: {e}"),
        }
    }
    // Far deeper, as wire bytes: graph { node { attribute { g { ... } } } }.
    fn wrap(tag: u8, inner: Vec<u8>) -> Vec<u8> {
        let mut out = vec![tag];
        let mut n = inner.len() as u64;
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend(inner);
        out
    }
    let mut g = Vec::new();
    for _ in 0..20_000 {
        g = wrap(0x0a, wrap(0x2a, wrap(0x32, g))); // GraphProto.node, .attribute, .g
    }
    let e = err_text(from_bytes(&wrap(0x3a, g)));
    assert!(e.contains("not a valid ONNX model"), "{e}");
}

fn sparse(
    name: &str,
    dims: &[i64],
    values: TensorProto,
    indices: TensorProto,
) -> SparseTensorProto {
    SparseTensorProto {
        values: Some(TensorProto {
            name: Some(name.into()),
            ..values
        }),
        indices: Some(indices),
        dims: dims.to_vec(),
    }
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn sparse_initializers_are_coo_objects() {
    let vals = le(&[1.5f32, -2.0], f32::to_le_bytes);
    let mut typed_idx = typed("", 7, &[2, 2]);
    typed_idx.int64_data = vec![0, 3, 2, 1];
    let mut g = graph(vec![]);
    g.sparse_initializer = vec![
        sparse(
            "linear",
            &[3, 4],
            raw("", 1, &[2], &vals),
            raw("", 7, &[2], &le(&[3i64, 9], i64::to_le_bytes)),
        ),
        sparse("pairs", &[3, 4], raw("", 1, &[2], &vals), typed_idx),
        sparse(
            "out_of_range",
            &[3, 4],
            raw("", 1, &[2], &vals),
            raw("", 7, &[2], &le(&[3i64, 12], i64::to_le_bytes)),
        ),
        sparse(
            "bad_index_shape",
            &[3, 4],
            raw("", 1, &[2], &vals),
            raw("", 7, &[3], &le(&[0i64, 1, 2], i64::to_le_bytes)),
        ),
        sparse(
            "int32_indices",
            &[3, 4],
            raw("", 1, &[2], &vals),
            raw("", 6, &[2], &le(&[0i32, 1], i32::to_le_bytes)),
        ),
    ];
    let r = from_bytes(&model(g).encode_to_vec()).unwrap();
    for name in ["linear", "pairs"] {
        let info = r.info(name).unwrap();
        assert_eq!(info.layout.as_str(), "sparse_coo");
        assert_eq!(info.shape, [3, 4]);
        assert_eq!(info.dtype(), Some(DType::F32));
        let coords = r.read_component(name, "coords", false).unwrap();
        assert_eq!(u64s(&coords), [0, 2, 3, 1], "{name}");
        let values = r.read_component(name, "values", false).unwrap();
        assert_eq!(values.as_slice(), &vals[..]);
    }
    let e = err_text(r.read_component("out_of_range", "coords", false));
    assert!(e.contains("out of range"), "{e}");
    assert!(err_text(r.info("bad_index_shape")).contains("expected [2] or [2, 2]"));
    assert!(err_text(r.info("int32_indices")).contains("INT64"));
}

fn external(name: &str, code: i32, dims: &[i64], kv: &[(&str, &str)]) -> TensorProto {
    TensorProto {
        data_location: Some(DataLocation::External as i32),
        external_data: kv
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.to_string()),
            })
            .collect(),
        ..typed(name, code, dims)
    }
}

#[test]
fn external_data_is_resolved_next_to_the_model_and_checked() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let data: Vec<u8> = (0..64u8).collect();
    std::fs::write(dir.join("weights.bin"), &data).unwrap();
    std::fs::write(dir.join("sub/more.bin"), [1u8, 2, 3, 4]).unwrap();
    std::fs::write(root.path().join("secret.bin"), [0u8; 64]).unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.bin"), dir.join("link.bin")).unwrap();
    let huge = u64::MAX.to_string();
    let tensors = vec![
        external(
            "a",
            1,
            &[4],
            &[
                ("location", "weights.bin"),
                ("offset", "16"),
                ("length", "16"),
            ],
        ),
        external("whole", 2, &[64], &[("location", "weights.bin")]),
        external(
            "sub",
            2,
            &[4],
            &[("location", "./sub/more.bin"), ("offset", "0")],
        ),
        external(
            "int4",
            22,
            &[4],
            &[
                ("location", "weights.bin"),
                ("offset", "1"),
                ("length", "2"),
            ],
        ),
        external(
            "dotdot",
            2,
            &[4],
            &[("location", "../secret.bin"), ("length", "4")],
        ),
        external(
            "sub_dotdot",
            2,
            &[4],
            &[("location", "sub/../../secret.bin")],
        ),
        external(
            "absolute",
            2,
            &[4],
            &[("location", root.path().join("secret.bin").to_str().unwrap())],
        ),
        external("symlink", 2, &[64], &[("location", "link.bin")]),
        external("missing", 2, &[4], &[("location", "nope.bin")]),
        external("no_location", 2, &[4], &[("offset", "0")]),
        external(
            "past_end",
            2,
            &[4],
            &[
                ("location", "weights.bin"),
                ("offset", "62"),
                ("length", "4"),
            ],
        ),
        external(
            "overflow",
            2,
            &[4],
            &[
                ("location", "weights.bin"),
                ("offset", &huge),
                ("length", "4"),
            ],
        ),
        external(
            "offset_only_past_end",
            2,
            &[4],
            &[("location", "weights.bin"), ("offset", "100")],
        ),
        external(
            "bad_number",
            2,
            &[4],
            &[("location", "weights.bin"), ("offset", "-1")],
        ),
        external(
            "wrong_length",
            1,
            &[4],
            &[("location", "weights.bin"), ("length", "12")],
        ),
        external("a_dir", 2, &[4], &[("location", "sub")]),
    ];
    let path = write(&dir, "m.onnx", &model(graph(tensors)));
    let r = ztensor_formats::open(&path).unwrap();
    let f32s: Vec<f32> = data[16..32]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(r.to_vec::<f32>("a").unwrap(), f32s);
    assert_eq!(
        r.info("a").unwrap().components["data"].encoding.as_str(),
        "external"
    );
    assert_eq!(r.read("whole").unwrap().as_slice(), &data[..]);
    assert_eq!(r.read("sub").unwrap().as_slice(), [1, 2, 3, 4]);
    // bytes 1, 2 of the file (0x01, 0x02): nibbles 1, 0, 2, 0
    assert_eq!(r.to_vec::<i8>("int4").unwrap(), [1, 0, 2, 0]);
    for (name, says) in [
        ("dotdot", "contains '..'"),
        ("sub_dotdot", "contains '..'"),
        ("absolute", "absolute"),
        ("symlink", "outside the model's directory"),
        ("missing", "cannot be opened"),
        ("no_location", "no 'location'"),
        ("past_end", "lies outside 'weights.bin' (64 bytes)"),
        ("overflow", "lies outside"),
        ("offset_only_past_end", "past the end"),
        ("bad_number", "not a byte count"),
        ("wrong_length", "is 12 bytes but the tensor needs 16"),
        ("a_dir", "not a regular file"),
    ] {
        let e = err_text(r.read(name));
        assert!(e.contains(says) && e.contains(name), "{name}: {e}");
    }
    // Eager mode reads the same.
    let eager = ztensor_formats::open_with(&path, ztensor::ReadMode::Eager).unwrap();
    assert_eq!(eager.to_vec::<f32>("a").unwrap(), f32s);

    // From memory there is no directory to resolve against.
    let mem = from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert!(err_text(mem.read("a")).contains("read from memory"));
}

/// A small model with one tensor of each storage kind.
fn small_model() -> Vec<u8> {
    let mut t = typed("typed", 7, &[2]);
    t.int64_data = vec![-1, 300];
    let mut g = graph(vec![raw("raw", 1, &[2], &[0, 0, 128, 63, 0, 0, 0, 64]), t]);
    g.node = vec![constant("c", raw("", 22, &[3], &[0x7f, 0x08]))];
    g.sparse_initializer = vec![sparse(
        "s",
        &[4],
        raw("", 2, &[1], &[5]),
        raw("", 7, &[1], &le(&[2i64], i64::to_le_bytes)),
    )];
    model(g).encode_to_vec()
}

/// Opening and reading everything may fail, but only with an error.
fn read_everything(bytes: &[u8]) {
    if let Ok(r) = from_bytes(bytes) {
        let names: Vec<String> = r.names().map(str::to_string).collect();
        for n in names {
            let _ = r.read(&n);
            let _ = r.read_component(&n, "coords", false);
        }
    }
}

#[test]
fn every_truncation_and_bit_flip_is_an_error_or_a_smaller_model() {
    let bytes = small_model();
    let whole = from_bytes(&bytes).unwrap();
    assert_eq!(whole.len(), 4);
    for n in 0..bytes.len() {
        read_everything(&bytes[..n]);
    }
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x10, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            read_everything(&b);
        }
    }
    assert!(err_text(from_bytes(b"\xff\xff\xff\xff garbage")).contains("not a valid ONNX model"));
    // Hand-made wire bytes: a graph (field 7) whose length claims 2^62 bytes.
    let mut b = vec![0x3a];
    b.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    assert!(from_bytes(&b).is_err());
}

#[test]
fn empty_model_has_no_tensors() {
    let r = from_bytes(&[]).unwrap();
    assert_eq!(r.len(), 0);
    assert_eq!(r.format(), "onnx");
    assert_eq!(r.version(), "");
}
