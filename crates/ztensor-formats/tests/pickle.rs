//! PyTorch checkpoint reader: pickles, legacy files and zip archives built
//! byte by byte here (no torch), including hostile ones.

use std::io::{Cursor, Write};

use ztensor::{DType, Encoding, ErrorKind, Reader};

// ---------------------------------------------------------------------------
// a small pickle writer (protocol 2 opcodes, as torch.save emits them)
// ---------------------------------------------------------------------------

#[derive(Default, Clone)]
struct P(Vec<u8>);

impl P {
    fn new() -> P {
        P(b"\x80\x02".to_vec())
    }
    fn op(mut self, bytes: &[u8]) -> P {
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(self, s: &str) -> P {
        let mut b = vec![b'X'];
        b.extend((s.len() as u32).to_le_bytes());
        b.extend(s.as_bytes());
        self.op(&b)
    }
    fn int(self, v: i64) -> P {
        if (0..256).contains(&v) {
            self.op(&[b'K', v as u8])
        } else if let Ok(v) = i32::try_from(v) {
            let mut b = vec![b'J'];
            b.extend(v.to_le_bytes());
            self.op(&b)
        } else {
            let mut b = vec![0x8a, 8];
            b.extend(v.to_le_bytes());
            self.op(&b)
        }
    }
    fn global(self, module: &str, name: &str) -> P {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn ints(self, v: &[i64]) -> P {
        let mut p = self.op(b"(");
        for &x in v {
            p = p.int(x);
        }
        p.op(b"t")
    }
    /// `_rebuild_tensor_v2(('storage', torch.<class>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`
    fn tensor(
        self,
        class: &str,
        key: &str,
        numel: i64,
        offset: i64,
        size: &[i64],
        stride: &[i64],
    ) -> P {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .global("torch", class)
            .str(key)
            .str("cpu")
            .int(numel)
            .op(b"tQ")
            .int(offset)
            .ints(size)
            .ints(stride)
            .op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")RtR")
    }
    /// `_rebuild_tensor_v3` over an untyped storage of `nbytes`, with a dtype.
    fn tensor_v3(self, dtype: &str, key: &str, nbytes: i64, size: &[i64], stride: &[i64]) -> P {
        self.global("torch._utils", "_rebuild_tensor_v3")
            .op(b"((")
            .str("storage")
            .global("torch.storage", "UntypedStorage")
            .str(key)
            .str("cpu")
            .int(nbytes)
            .op(b"tQ")
            .int(0)
            .ints(size)
            .ints(stride)
            .op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")R")
            .global("torch", dtype)
            .op(b"tR")
    }
    fn end(self) -> Vec<u8> {
        self.op(b".").0
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

const MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";

/// A legacy (non-zip) checkpoint: magic, protocol, system info, `main`,
/// the key list, then each storage as a u64 count and its bytes.
fn legacy(main: &[u8], storages: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend(b"\x80\x02M\xe9\x03.");
    out.extend(P::new().op(b"}").str("little_endian").op(b"\x88s").end());
    out.extend(main);
    let mut keys = P::new().op(b"](");
    for (k, _, _) in storages {
        keys = keys.str(k);
    }
    out.extend(keys.op(b"e").end());
    for (_, count, data) in storages {
        out.extend(count.to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// A zip checkpoint `archive/...` with the given members.
fn zip(members: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in members {
        w.start_file(format!("archive/{name}"), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn checkpoint(main: &[u8], storages: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    let mut members: Vec<(String, &[u8])> = vec![
        ("data.pkl".into(), main),
        ("byteorder".into(), b"little"),
        ("version".into(), b"3\n"),
    ];
    for (k, d) in storages {
        members.push((format!("data/{k}"), d));
    }
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    zip(&refs, deflate)
}

fn open(bytes: &[u8]) -> Reader {
    ztensor_formats::from_bytes(bytes).expect("opens")
}

fn err(bytes: &[u8]) -> String {
    match ztensor_formats::from_bytes(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A state dict {"w": 3x4 f32, "wt": its transpose, "row": w[2], "tail": flat w[7:]}.
fn views_pickle() -> Vec<u8> {
    P::new()
        .op(b"}(")
        .str("w")
        .tensor("FloatStorage", "0", 12, 0, &[3, 4], &[4, 1])
        .str("wt")
        .tensor("FloatStorage", "0", 12, 0, &[4, 3], &[1, 4])
        .str("row")
        .tensor("FloatStorage", "0", 12, 8, &[4], &[1])
        .str("tail")
        .tensor("FloatStorage", "0", 12, 7, &[5], &[1])
        .op(b"u")
        .end()
}

fn twelve() -> Vec<f32> {
    (0..12).map(|i| i as f32 * 1.5 - 3.0).collect()
}

fn check_views(r: &Reader) {
    let w = twelve();
    assert_eq!(r.format(), "pickle");
    assert_eq!(r.to_vec::<f32>("w").unwrap(), w);
    let wt: Vec<f32> = (0..4)
        .flat_map(|j| (0..3).map(move |i| (i, j)))
        .map(|(i, j)| w[i * 4 + j])
        .collect();
    assert_eq!(r.to_vec::<f32>("wt").unwrap(), wt);
    assert_eq!(r.to_vec::<f32>("row").unwrap(), &w[8..]);
    assert_eq!(r.to_vec::<f32>("tail").unwrap(), &w[7..]);
    assert_eq!(r.info("wt").unwrap().shape, vec![4, 3]);
}

// ---------------------------------------------------------------------------
// layouts
// ---------------------------------------------------------------------------

#[test]
fn zip_views_are_zero_copy_ranges_or_strided() {
    let data = f32s(&twelve());
    let file = checkpoint(&views_pickle(), &[("0", &data)], false);
    let r = open(&file);
    check_views(&r);
    assert_eq!(r.version(), "3");
    let w = &r.info("w").unwrap().components["data"];
    assert_eq!(w.encoding, Encoding::Raw);
    assert_eq!(
        &file[w.offset as usize..(w.offset + 48) as usize],
        &data[..]
    );
    let row = &r.info("row").unwrap().components["data"];
    assert_eq!(
        (row.offset, row.length, &row.encoding),
        (w.offset + 32, 16, &Encoding::Raw)
    );
    assert_eq!(
        r.info("wt").unwrap().components["data"].encoding.as_str(),
        "strided"
    );
}

#[test]
fn zip_deflated_members() {
    let data = f32s(&twelve());
    let file = checkpoint(&views_pickle(), &[("0", &data)], true);
    let r = open(&file);
    check_views(&r);
    assert_eq!(
        r.info("w").unwrap().components["data"].encoding.as_str(),
        "deflate"
    );
}

#[test]
fn legacy_views() {
    let data = f32s(&twelve());
    let file = legacy(&views_pickle(), &[("0", 12, &data)]);
    let r = open(&file);
    check_views(&r);
    assert_eq!(r.version(), "1001");
}

#[test]
fn big_endian_archives_are_swapped() {
    let big: Vec<u8> = twelve().iter().flat_map(|x| x.to_be_bytes()).collect();
    let file = zip(
        &[
            ("data.pkl", &views_pickle()),
            ("byteorder", b"big"),
            ("data/0", &big),
        ],
        false,
    );
    check_views(&open(&file));
}

#[test]
fn dtypes_v2_and_v3() {
    let main = P::new()
        .op(b"}(")
        .str("u16")
        .tensor_v3("uint16", "0", 6, &[3], &[1])
        .str("f8")
        .tensor_v3("float8_e4m3fn", "1", 2, &[2], &[1])
        .str("c64")
        .tensor("ComplexFloatStorage", "2", 2, 0, &[2], &[1])
        .str("b")
        .tensor("BoolStorage", "3", 3, 0, &[3], &[1])
        .str("bf")
        .tensor("BFloat16Storage", "4", 1, 0, &[], &[])
        .str("q")
        .tensor("QInt8Storage", "5", 1, 0, &[1], &[1])
        .str("unknown_dtype")
        .tensor_v3("complex32", "6", 1, &[1], &[1])
        .str("f4")
        .tensor_v3("float4_e2m1fn_x2", "7", 1, &[1], &[1])
        .op(b"u")
        .end();
    let c64 = f32s(&[1.0, -1.0, 2.5, 0.5]);
    let file = checkpoint(
        &main,
        &[
            ("0", &[1, 0, 2, 0, 0xff, 0xff]),
            ("1", &[0x38, 0xc0]),
            ("2", &c64),
            ("3", &[1, 0, 1]),
            ("4", &[0x80, 0x3f]),
            ("5", &[1]),
            ("6", &[1]),
            ("7", &[0x2f]),
        ],
        false,
    );
    let r = open(&file);
    assert_eq!(r.to_vec::<u16>("u16").unwrap(), vec![1, 2, 65535]);
    let f8 = r.info("f8").unwrap();
    assert_eq!(
        (f8.dtype(), f8.logical_type()),
        (Some(DType::U8), Some("f8_e4m3fn"))
    );
    let c = r.info("c64").unwrap();
    assert_eq!(
        (c.dtype(), c.logical_type(), c.shape.clone()),
        (Some(DType::F32), Some("complex64"), vec![2])
    );
    assert_eq!(r.to_vec::<f32>("c64").unwrap(), vec![1.0, -1.0, 2.5, 0.5]);
    assert_eq!(r.to_vec::<bool>("b").unwrap(), vec![true, false, true]);
    assert_eq!(r.to_vec::<half::bf16>("bf").unwrap(), vec![half::bf16::ONE]);
    assert!(r.info("q").unwrap_err().to_string().contains("quantized"));
    assert!(r
        .info("unknown_dtype")
        .unwrap_err()
        .to_string()
        .contains("complex32"));
    let f4 = r.info("f4").unwrap();
    assert_eq!(
        (f4.dtype(), f4.logical_type()),
        (Some(DType::U8), Some("f4_e2m1fn_x2"))
    );
    assert_eq!(r.to_vec::<u8>("f4").unwrap(), vec![0x2f]);
}

#[test]
fn empty_and_scalar_tensors() {
    let main = P::new()
        .op(b"}(")
        .str("empty")
        .tensor("FloatStorage", "0", 0, 0, &[0, 3], &[3, 1])
        .str("scalar")
        .tensor("DoubleStorage", "1", 1, 0, &[], &[])
        .op(b"u")
        .end();
    let file = checkpoint(&main, &[("0", b""), ("1", &2.5f64.to_le_bytes())], false);
    let r = open(&file);
    assert_eq!(r.to_vec::<f32>("empty").unwrap(), Vec::<f32>::new());
    assert_eq!(r.info("empty").unwrap().shape, vec![0, 3]);
    assert_eq!(r.to_vec::<f64>("scalar").unwrap(), vec![2.5]);
}

// ---------------------------------------------------------------------------
// names
// ---------------------------------------------------------------------------

#[test]
fn nested_names_parameters_and_objects() {
    let t = |p: P, key: &str| p.tensor("FloatStorage", key, 1, 0, &[1], &[1]);
    let main = P::new()
        .op(b"}(")
        .str("model")
        .global("collections", "OrderedDict")
        .op(b")R(");
    let main = t(main.str("a.weight"), "0").op(b"u");
    // a parameter, a list and an int-keyed dict
    let main = main
        .str("p")
        .global("torch._utils", "_rebuild_parameter")
        .op(b"(");
    let main = t(main, "1")
        .op(b"\x88")
        .global("collections", "OrderedDict")
        .op(b")RtR");
    let main = t(main.str("list").op(b"]("), "0").op(b"K\x05e");
    let main = t(
        main.str("state").op(b"}K\x00}X\x07\x00\x00\x00exp_avg"),
        "1",
    )
    .op(b"ss");
    // an unknown class instance whose state holds a module's parameters
    let main = main
        .str("obj")
        .global("mymodule", "Net")
        .op(b")\x81}X\x0b\x00\x00\x00_parametersq\x00}X\x04\x00\x00\x00bias");
    let main = t(main, "0").op(b"ssb");
    // a repeated key keeps its last value
    let main = t(main.str("dup"), "0").str("dup").op(b"N").op(b"u").end();
    let file = checkpoint(&main, &[("0", &f32s(&[1.0])), ("1", &f32s(&[2.0]))], false);
    let r = open(&file);
    let names: Vec<&str> = r.names().collect();
    assert_eq!(
        names,
        vec![
            "list.0",
            "model.a.weight",
            "obj.bias",
            "p",
            "state.0.exp_avg"
        ]
    );
    assert_eq!(r.to_vec::<f32>("p").unwrap(), vec![2.0]);
    assert_eq!(r.to_vec::<f32>("obj.bias").unwrap(), vec![1.0]);
}

#[test]
fn bare_tensor_is_named_empty() {
    let main = P::new().tensor("FloatStorage", "0", 2, 0, &[2], &[1]).end();
    let file = checkpoint(&main, &[("0", &f32s(&[1.0, 2.0]))], false);
    let r = open(&file);
    assert_eq!(r.names().collect::<Vec<_>>(), vec![""]);
    assert_eq!(r.to_vec::<f32>("").unwrap(), vec![1.0, 2.0]);
}

#[test]
fn no_tensors_is_an_empty_file() {
    let main = P::new().op(b"}").str("epoch").int(3).op(b"s").end();
    assert_eq!(open(&checkpoint(&main, &[], false)).len(), 0);
    assert_eq!(open(&main).len(), 0);
}

#[test]
fn storages_pickled_by_value() {
    // pickle.dumps(tensor): the storage is a legacy checkpoint in a byte string.
    let inner_main = P::new()
        .op(b"(")
        .str("storage")
        .global("torch", "FloatStorage")
        .str("k")
        .str("cpu")
        .int(3)
        .op(b"NtQ")
        .end();
    let data = f32s(&[4.0, 5.0, 6.0]);
    let inner = legacy(&inner_main, &[("k", 3, &data)]);
    let mut main = P::new()
        .op(b"\x80\x03}")
        .str("x")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"(")
        .global("torch.storage", "_load_from_bytes")
        .op(b"B");
    main.0.extend((inner.len() as u32).to_le_bytes());
    main.0.extend(&inner);
    let main = main
        .op(b"\x85R")
        .int(1)
        .ints(&[2])
        .ints(&[1])
        .op(b"\x89")
        .global("collections", "OrderedDict")
        .op(b")RtRs")
        .end();
    let r = open(&main);
    assert_eq!(r.to_vec::<f32>("x").unwrap(), vec![5.0, 6.0]);
    assert_eq!(
        r.info("x").unwrap().components["data"].encoding,
        Encoding::Raw
    );
}

// ---------------------------------------------------------------------------
// failures stay local
// ---------------------------------------------------------------------------

#[test]
fn bad_views_and_storages_fail_per_tensor() {
    let main = P::new()
        .op(b"}(")
        .str("ok")
        .tensor("FloatStorage", "0", 4, 0, &[4], &[1])
        .str("past_end")
        .tensor("FloatStorage", "0", 4, 1, &[4], &[1])
        .str("stride")
        .tensor("FloatStorage", "0", 4, 0, &[2, 2], &[1, 3])
        .str("huge")
        .tensor("FloatStorage", "0", 4, 0, &[1 << 40, 1 << 40], &[1, 1])
        .str("negative")
        .tensor("FloatStorage", "0", 4, 0, &[2], &[-1])
        .str("missing")
        .tensor("FloatStorage", "9", 4, 0, &[4], &[1])
        .str("declared")
        .tensor("FloatStorage", "1", 100, 0, &[1], &[1])
        .str("unknown_class")
        .tensor("NoSuchStorage", "2", 4, 0, &[4], &[1])
        .op(b"u")
        .end();
    let data = f32s(&[1.0, 2.0, 3.0, 4.0]);
    let file = checkpoint(&main, &[("0", &data), ("1", &data), ("2", &data)], false);
    let r = open(&file);
    assert_eq!(r.len(), 8);
    assert_eq!(r.to_vec::<f32>("ok").unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    for (name, words) in [
        ("past_end", "does not fit storage '0'"),
        ("stride", "does not fit"),
        ("huge", "overflows"),
        ("negative", "stride"),
        ("missing", "archive/data/9' is missing"),
        ("declared", "declares 400 bytes"),
        ("unknown_class", "unknown storage type torch.NoSuchStorage"),
    ] {
        let e = r.info(name).unwrap_err().to_string();
        assert!(e.contains(words) && e.contains(name), "{name}: {e}");
    }
}

#[test]
fn legacy_records_past_the_end_fail_their_tensors() {
    let main = P::new()
        .op(b"}(")
        .str("a")
        .tensor("FloatStorage", "0", 2, 0, &[2], &[1])
        .str("b")
        .tensor("FloatStorage", "1", 2, 0, &[2], &[1])
        .op(b"u")
        .end();
    let a = f32s(&[1.0, 2.0]);
    let file = legacy(&main, &[("0", 2, &a), ("1", 1 << 60, &a)]);
    let r = open(&file);
    assert_eq!(r.to_vec::<f32>("a").unwrap(), vec![1.0, 2.0]);
    assert!(r.info("b").unwrap_err().to_string().contains("truncated"));
}

// ---------------------------------------------------------------------------
// globals: code-execution payloads are refused, unknown classes listed
// ---------------------------------------------------------------------------

fn strict_err(bytes: &[u8]) -> String {
    let strict = ztensor_formats::OpenOptions::default().strict(true);
    match ztensor_formats::from_bytes_with_options(bytes, &strict) {
        Ok(_) => panic!("expected strict to refuse"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::UnsafePickle, "{e}");
            e.to_string()
        }
    }
}

/// Asserts the file is refused naming every global of `names`.
fn assert_refused(bytes: &[u8], names: &[&str]) {
    let e = ztensor_formats::from_bytes(bytes).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnsafePickle, "{e}");
    let e = e.to_string();
    for n in names {
        assert!(e.contains(n), "{n} not named in: {e}");
    }
    assert!(
        e.contains("refused") && e.contains("Nothing was run"),
        "{e}"
    );
    assert!(!std::path::Path::new("pwned").exists());
}

/// `{"x": tensor, <key>: <payload>}` with the payload's opcodes spliced in.
fn beside_tensor(payload: &[u8]) -> Vec<u8> {
    P::new()
        .op(b"}(")
        .str("x")
        .tensor("FloatStorage", "0", 1, 0, &[1], &[1])
        .str("evil")
        .op(payload)
        .op(b"u")
        .end()
}

/// Payloads calling dangerous globals through every opcode that names a
/// global, and the `module.name` each must be reported as.
fn payloads() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        // GLOBAL + REDUCE (protocols 0-2: what __reduce__ pickles to)
        (b"cos\nsystem\n(S'touch pwned'\ntR".to_vec(), "os.system"),
        (
            b"cposix\nsystem\n(S'touch pwned'\ntR".to_vec(),
            "posix.system",
        ),
        // protocol 2 spelling of builtins
        (
            b"c__builtin__\neval\n(S'1'\ntR".to_vec(),
            "__builtin__.eval",
        ),
        // INST, OBJ, NEWOBJ
        (b"(S'1'\nibuiltins\nexec\n".to_vec(), "builtins.exec"),
        (b"(cbuiltins\ncompile\no".to_vec(), "builtins.compile"),
        (b"csubprocess\nPopen\n)\x81".to_vec(), "subprocess.Popen"),
        // STACK_GLOBAL (protocol 4), names from the stack and from the memo
        (
            b"\x8c\x08builtins\x94\x8c\x04exec\x93\x8c\x011\x85R".to_vec(),
            "builtins.exec",
        ),
        (
            b"\x8c\x02os\x94\x8c\x05popen\x93h\x00\x8c\x06system\x93\x86".to_vec(),
            "os.system",
        ),
        // a dotted name walks attributes: the same function by another path
        (
            b"\x8c\x05torch\x8c\x12serialization.load\x93".to_vec(),
            "torch.serialization.load",
        ),
        (
            b"\x8c\x0bcollections\x8c\x0c_sys.modules\x93".to_vec(),
            "collections._sys.modules",
        ),
        // a whole module is denied, submodules included
        (b"cos.path\njoin\n".to_vec(), "os.path.join"),
        (
            b"cimportlib\nimport_module\n".to_vec(),
            "importlib.import_module",
        ),
        (b"coperator\nattrgetter\n".to_vec(), "operator.attrgetter"),
    ]
}

#[test]
fn code_execution_payloads_refuse_the_whole_file() {
    let data = f32s(&[1.0]);
    for (payload, name) in payloads() {
        let main = beside_tensor(&payload);
        // zip (torch.save), legacy (torch.save, old serialization), bare pickle
        for file in [
            checkpoint(&main, &[("0", &data)], false),
            checkpoint(&main, &[("0", &data)], true),
            legacy(&main, &[("0", 1, &data)]),
            main.clone(),
        ] {
            assert_refused(&file, &[name]);
            assert!(strict_err(&file).contains(name));
        }
        // alone: the file holds no tensor at all
        let alone = P::new().op(&payload).end();
        assert_refused(&alone, &[name]);
        assert_refused(&checkpoint(&alone, &[], false), &[name]);
    }
}

#[test]
fn every_payload_of_a_file_is_named() {
    let main = P::new()
        .op(b"(")
        .op(b"cos\nsystem\n(S'x'\ntR")
        .op(b"cbuiltins\neval\n(S'x'\ntR")
        .op(b"l")
        .end();
    assert_refused(&main, &["os.system", "builtins.eval"]);
}

#[test]
fn payloads_in_a_tensor_slot_or_a_nested_storage_are_refused() {
    // os.system(...) given as a tensor's storage
    let main = P::new()
        .op(b"}(")
        .str("bad")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"(")
        .global("os", "system")
        .op(b"(")
        .str("touch pwned")
        .op(b"tR")
        .int(0)
        .ints(&[1])
        .ints(&[1])
        .op(b"\x89")
        .global("collections", "OrderedDict")
        .op(b")RtR")
        .op(b"u")
        .end();
    assert_refused(&checkpoint(&main, &[], false), &["os.system"]);
    // a storage pickled by value whose nested pickle names a payload
    let inner_main = P::new()
        .op(b"(")
        .str("storage")
        .global("torch", "FloatStorage")
        .str("k")
        .str("cpu")
        .int(1)
        .op(b"NtQ")
        .end();
    let payload = P::new().op(b"csubprocess\ncall\n(S'x'\ntR").end();
    let mut inner = legacy(&inner_main, &[("k", 1, &f32s(&[1.0]))]);
    // the payload as the nested checkpoint's system-info pickle
    let at = MAGIC.len() + b"\x80\x02M\xe9\x03.".len();
    let info_len = P::new()
        .op(b"}")
        .str("little_endian")
        .op(b"\x88s")
        .end()
        .len();
    inner.splice(at..at + info_len, payload);
    let mut main = P::new()
        .op(b"\x80\x03}")
        .str("x")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"(")
        .global("torch.storage", "_load_from_bytes")
        .op(b"B");
    main.0.extend((inner.len() as u32).to_le_bytes());
    main.0.extend(&inner);
    let main = main
        .op(b"\x85R")
        .int(0)
        .ints(&[1])
        .ints(&[1])
        .op(b"\x89")
        .global("collections", "OrderedDict")
        .op(b")RtRs")
        .end();
    assert_refused(&main, &["subprocess.call"]);
}

#[test]
fn a_payload_is_reported_even_in_a_damaged_file() {
    // The payload, then garbage: refused for the payload, not "invalid pickle".
    let main = P::new().op(b"cos\nsystem\n(S'x'\ntR\xff").0;
    assert_refused(&main, &["os.system"]);
    // A checkpoint whose main pickle is cut right after the payload.
    let main = beside_tensor(b"cos\nsystem\n(S'x'\ntR");
    let cut = &main[..main.len() - 2];
    let data = f32s(&[1.0]);
    assert!(err(&checkpoint(b"\x80\x02}(", &[], false)).contains("truncated"));
    assert_refused(&checkpoint(cut, &[("0", &data)], false), &["os.system"]);
    assert_refused(&legacy(cut, &[("0", 1, &data)]), &["os.system"]);
}

#[test]
fn unknown_globals_are_listed_and_refused_when_strict() {
    // {"x": tensor, "args": argparse.Namespace(lr=0.1), "n": numpy scalar}
    let main = P::new()
        .op(b"}(")
        .str("x")
        .tensor("FloatStorage", "0", 1, 0, &[1], &[1])
        .str("args")
        .global("argparse", "Namespace")
        .op(b")\x81}")
        .str("lr")
        .op(b"G?\xb9\x99\x99\x99\x99\x99\x9abs")
        .str("n")
        .global("numpy.core.multiarray", "scalar")
        .op(b")R")
        .op(b"u")
        .end();
    let data = f32s(&[1.5]);
    for file in [
        checkpoint(&main, &[("0", &data)], false),
        legacy(&main, &[("0", 1, &data)]),
    ] {
        let r = open(&file);
        assert_eq!(r.to_vec::<f32>("x").unwrap(), vec![1.5]);
        assert_eq!(
            r.skipped_globals(),
            ["argparse.Namespace", "numpy.core.multiarray.scalar"]
        );
        let e = strict_err(&file);
        assert!(
            e.contains("argparse.Namespace")
                && e.contains("numpy.core.multiarray.scalar")
                && e.contains("strict")
                && e.contains("Nothing was run"),
            "{e}"
        );
    }
}

#[test]
fn interpreted_globals_are_not_listed() {
    // tensors, a parameter, an OrderedDict, a TorchScript class, torch.device
    let main = P::new()
        .op(b"}(")
        .str("w")
        .global("torch._utils", "_rebuild_parameter")
        .op(b"(")
        .tensor("FloatStorage", "0", 1, 0, &[1], &[1])
        .op(b"\x89")
        .global("collections", "OrderedDict")
        .op(b")RtR")
        .str("v")
        .tensor_v3("float16", "1", 2, &[1], &[1])
        .str("m")
        .global("__torch__.torch.nn.modules.linear", "Linear")
        .op(b")\x81")
        .str("d")
        .global("torch", "device")
        .op(b"(X\x03\x00\x00\x00cputR")
        .op(b"u")
        .end();
    let file = checkpoint(&main, &[("0", &f32s(&[1.0])), ("1", &[0, 0x3c])], false);
    let strict = ztensor_formats::OpenOptions::default().strict(true);
    for r in [
        open(&file),
        ztensor_formats::from_bytes_with_options(&file, &strict).expect("strict accepts it"),
    ] {
        assert!(r.skipped_globals().is_empty(), "{:?}", r.skipped_globals());
        assert_eq!(r.to_vec::<f32>("w").unwrap(), vec![1.0]);
    }
}

#[test]
fn other_formats_ignore_strict() {
    let st = [&8u64.to_le_bytes()[..], b"{}      "].concat();
    let strict = ztensor_formats::OpenOptions::default().strict(true);
    let r = ztensor_formats::from_bytes_with_options(&st, &strict).expect("opens");
    assert_eq!(r.format(), "safetensors");
    assert!(r.skipped_globals().is_empty());
}

#[test]
fn many_distinct_globals_fail_cleanly() {
    // 300 memoized strings paired into 90 000 distinct STACK_GLOBALs: short
    // names hit the count limit, long ones the object budget first.
    for (width, limit) in [(4, "distinct globals"), (250, "objects")] {
        let mut p = b"\x80\x04".to_vec();
        for i in 0..300u32 {
            let s = format!("m{i:0width$}");
            p.push(0x8c);
            p.push(s.len() as u8);
            p.extend(s.as_bytes());
            p.push(b'r');
            p.extend(i.to_le_bytes());
            p.push(b'0');
        }
        for i in 0..300u32 {
            for j in 0..300u32 {
                p.push(b'j');
                p.extend(i.to_le_bytes());
                p.push(b'j');
                p.extend(j.to_le_bytes());
                p.extend(b"\x930");
            }
        }
        p.extend(b"N.");
        let e = err(&p);
        assert!(e.contains(limit), "{e}");
    }
}

// ---------------------------------------------------------------------------
// bombs and damage
// ---------------------------------------------------------------------------

fn tensor_at_bottom_of(depth: usize, open_op: &[u8], close_op: &[u8]) -> Vec<u8> {
    let mut p = P::new();
    for _ in 0..depth {
        p = p.op(open_op);
    }
    p = p.tensor("FloatStorage", "0", 1, 0, &[1], &[1]);
    for _ in 0..depth {
        p = p.op(close_op);
    }
    p.end()
}

#[test]
fn deep_nesting_is_refused() {
    let data = f32s(&[1.0]);
    let ok = checkpoint(
        &tensor_at_bottom_of(900, b"]", b"a"),
        &[("0", &data)],
        false,
    );
    let r = open(&ok);
    assert_eq!(r.len(), 1);
    assert_eq!(r.names().next().unwrap().split('.').count(), 900);
    let deep = checkpoint(
        &tensor_at_bottom_of(100_000, b"]", b"a"),
        &[("0", &data)],
        false,
    );
    assert!(err(&deep).contains("nested more than 1000"));
}

#[test]
fn reference_bombs_are_refused() {
    // 12 levels of lists holding 10 references each to the level below.
    let mut p = P::new()
        .tensor("FloatStorage", "0", 1, 0, &[1], &[1])
        .op(b"q\x000");
    for level in 1u8..=12 {
        p = p.op(b"(");
        for _ in 0..10 {
            p = p.op(&[b'h', level - 1]);
        }
        p = p.op(&[b'l', b'q', level, b'0']);
    }
    let p = p.op(b"h\x0c").end();
    let e = err(&checkpoint(&p, &[("0", &f32s(&[1.0]))], false));
    assert!(e.contains("bomb"), "{e}");
}

#[test]
fn cycles_are_not_followed() {
    let p = P::new()
        .op(b"]q\x00")
        .tensor("FloatStorage", "0", 1, 0, &[1], &[1])
        .op(b"ah\x00a")
        .end();
    let r = open(&checkpoint(&p, &[("0", &f32s(&[3.0]))], false));
    assert_eq!(r.names().collect::<Vec<_>>(), vec!["0"]);
}

#[test]
fn memo_and_length_bombs_fail_cleanly() {
    for body in [
        b"\x80\x02}r\xff\xff\xff\xff0j\xff\xff\xff\xff.".to_vec(),
        [&b"\x80\x04\x8d"[..], &(1u64 << 62).to_le_bytes(), b"abc."].concat(),
        b"\x80\x02\x8b\xff\xff\xff\x7f.".to_vec(),
        [&b"\x80\x04\x8e"[..], &u64::MAX.to_le_bytes(), b"."].concat(),
    ] {
        let file = checkpoint(&body, &[], false);
        match ztensor_formats::from_bytes(&file) {
            Ok(r) => assert_eq!(r.len(), 0),
            Err(e) => assert!(e.to_string().contains("invalid pickle"), "{e}"),
        }
    }
}

#[test]
fn truncations_never_panic() {
    let data = f32s(&twelve());
    let files = [
        legacy(&views_pickle(), &[("0", 12, &data)]),
        checkpoint(&views_pickle(), &[("0", &data)], false),
        checkpoint(&views_pickle(), &[("0", &data)], true),
    ];
    for file in &files {
        for n in 0..file.len() {
            if let Ok(r) = ztensor_formats::from_bytes(&file[..n]) {
                for name in r.names() {
                    if let Ok(v) = r.to_vec::<f32>(name) {
                        assert!(v.iter().all(|x| twelve().contains(x)));
                    }
                }
            }
        }
    }
}

#[test]
fn bit_flips_never_panic() {
    let data = f32s(&twelve());
    let files = [
        legacy(&views_pickle(), &[("0", 12, &data)]),
        checkpoint(&views_pickle(), &[("0", &data)], false),
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for file in &files {
        for _ in 0..3000 {
            let mut f = file.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % f.len() as u64) as usize;
                f[at] ^= 1 << (seed >> 61);
            }
            if let Ok(r) = ztensor_formats::from_bytes(&f) {
                for name in r.names() {
                    let _ = r.read(name);
                }
            }
        }
    }
}

#[test]
fn not_a_checkpoint() {
    assert!(err(b"\x80\x02\xff").contains("unknown opcode"));
    assert!(err(&zip(&[("weights.npy", b"x")], false)).contains("no data.pkl"));
}

#[test]
fn deepest_allowed_nesting_fits_a_small_stack() {
    // 999 levels of objects whose state dicts hold the next level (the
    // deepest frames of the search), on a thread with a 1 MiB stack.
    let mut p = P::new();
    for _ in 0..999 {
        p = p.global("m", "C").op(b")\x81}").str("k");
    }
    p = p.tensor("FloatStorage", "0", 1, 0, &[1], &[1]);
    for _ in 0..999 {
        p = p.op(b"sb");
    }
    let file = checkpoint(&p.end(), &[("0", &f32s(&[1.0]))], false);
    let r = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || open(&file).len())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(r, 1);
}
