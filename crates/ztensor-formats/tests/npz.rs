//! .npz and .npy readers: arrays and zip archives built byte by byte here
//! (no NumPy), including hostile archives.

use std::io::Write;

use ztensor::{DType, Encoding, ErrorKind, Reader};
use ztensor_formats::ParseContext;

// ---------------------------------------------------------------------------
// builders
// ---------------------------------------------------------------------------

/// An `.npy` image: version 1.0 header padded to 64 bytes, then `data`.
fn npy(descr: &str, fortran: bool, shape: &[u64], data: &[u8]) -> Vec<u8> {
    npy_v(1, descr, fortran, shape, data)
}

fn npy_v(major: u8, descr: &str, fortran: bool, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let dims: String = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let fortran = if fortran { "True" } else { "False" };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {dims}, }}");
    npy_raw(major, &dict, data)
}

fn npy_raw(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let fixed = if major == 1 { 10 } else { 12 };
    let mut text = dict.as_bytes().to_vec();
    while !(fixed + text.len() + 1).is_multiple_of(64) {
        text.push(b' ');
    }
    text.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([major, 0]);
    if major == 1 {
        out.extend((text.len() as u16).to_le_bytes());
    } else {
        out.extend((text.len() as u32).to_le_bytes());
    }
    out.extend(text);
    out.extend_from_slice(data);
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn crc(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// A zip archive written field by field, so tests can lie in any field.
#[derive(Default)]
struct Zip {
    buf: Vec<u8>,
    central: Vec<u8>,
    count: u16,
}

/// What a central-directory record says about a member.
#[derive(Clone, Copy)]
struct Record {
    method: u16,
    flags: u16,
    crc: u32,
    csize: u32,
    usize: u32,
    local: u32,
}

impl Zip {
    /// Adds a member holding `content`, stored (method 0) or deflated (8).
    fn add(&mut self, name: &str, content: &[u8], method: u16) -> Record {
        let payload = if method == 8 {
            deflate(content)
        } else {
            content.to_vec()
        };
        let rec = Record {
            method,
            flags: 0,
            crc: crc(content),
            csize: payload.len() as u32,
            usize: content.len() as u32,
            local: self.buf.len() as u32,
        };
        self.local(name, rec, &payload);
        self.record(name, rec);
        rec
    }

    /// Writes a local header and data (no central record).
    fn local(&mut self, name: &str, r: Record, payload: &[u8]) {
        let b = &mut self.buf;
        b.extend(0x04034b50u32.to_le_bytes());
        b.extend(20u16.to_le_bytes());
        b.extend(r.flags.to_le_bytes());
        b.extend(r.method.to_le_bytes());
        b.extend([0u8; 4]); // time, date
        b.extend(r.crc.to_le_bytes());
        b.extend(r.csize.to_le_bytes());
        b.extend(r.usize.to_le_bytes());
        b.extend((name.len() as u16).to_le_bytes());
        b.extend(0u16.to_le_bytes());
        b.extend(name.as_bytes());
        b.extend_from_slice(payload);
    }

    /// Adds a central-directory record (which may point anywhere).
    fn record(&mut self, name: &str, r: Record) {
        let c = &mut self.central;
        c.extend(0x02014b50u32.to_le_bytes());
        c.extend(20u16.to_le_bytes());
        c.extend(20u16.to_le_bytes());
        c.extend(r.flags.to_le_bytes());
        c.extend(r.method.to_le_bytes());
        c.extend([0u8; 4]);
        c.extend(r.crc.to_le_bytes());
        c.extend(r.csize.to_le_bytes());
        c.extend(r.usize.to_le_bytes());
        c.extend((name.len() as u16).to_le_bytes());
        c.extend([0u8; 8]); // extra len, comment len, disk, internal attributes
        c.extend(0u32.to_le_bytes()); // external attributes
        c.extend(r.local.to_le_bytes());
        c.extend(name.as_bytes());
        self.count += 1;
    }

    fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&self.central);
        out.extend(0x06054b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend(self.count.to_le_bytes());
        out.extend(self.count.to_le_bytes());
        out.extend((self.central.len() as u32).to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
        .collect()
}

fn swapped(data: &[u8], width: usize) -> Vec<u8> {
    data.chunks(width)
        .flat_map(|c| c.iter().rev().copied())
        .collect()
}

/// Column-major bytes of a row-major array.
fn to_fortran(data: &[u8], shape: &[u64], itemsize: usize) -> Vec<u8> {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let numel: usize = shape.iter().product();
    let mut out = vec![0u8; data.len()];
    for flat_c in 0..numel {
        // multi-index of the row-major position, then its column-major position
        let mut rem = flat_c;
        let mut idx = vec![0usize; shape.len()];
        for k in (0..shape.len()).rev() {
            idx[k] = rem % shape[k];
            rem /= shape[k];
        }
        let mut flat_f = 0;
        for k in (0..shape.len()).rev() {
            flat_f = flat_f * shape[k] + idx[k];
        }
        out[flat_f * itemsize..(flat_f + 1) * itemsize]
            .copy_from_slice(&data[flat_c * itemsize..(flat_c + 1) * itemsize]);
    }
    out
}

fn open_npz(bytes: &[u8]) -> Reader {
    Reader::from_bytes_with_parser(bytes, |b| {
        ztensor_formats::npz::parse(b, &ParseContext::default())
    })
    .unwrap()
}

const DTYPES: &[(&str, DType, Option<&str>, usize)] = &[
    ("|b1", DType::Bool, None, 1),
    ("|i1", DType::I8, None, 1),
    ("<i2", DType::I16, None, 2),
    ("<i4", DType::I32, None, 4),
    ("<i8", DType::I64, None, 8),
    ("|u1", DType::U8, None, 1),
    ("<u2", DType::U16, None, 2),
    ("<u4", DType::U32, None, 4),
    ("<u8", DType::U64, None, 8),
    ("<f2", DType::F16, None, 2),
    ("<f4", DType::F32, None, 4),
    ("<f8", DType::F64, None, 8),
    ("<c8", DType::F32, Some("complex64"), 8),
    ("<c16", DType::F64, Some("complex128"), 16),
    ("<V2", DType::BF16, None, 2),
    ("<f1", DType::U8, Some("f8_e5m2"), 1),
];

fn values(descr: &str, n: usize, seed: u8) -> Vec<u8> {
    if descr == "|b1" {
        (0..n).map(|i| (i % 3 == 0) as u8).collect()
    } else {
        pattern(n, seed)
    }
}

// ---------------------------------------------------------------------------
// npz
// ---------------------------------------------------------------------------

#[test]
fn every_dtype_stored_and_deflated() {
    let mut zip = Zip::default();
    let mut expected = Vec::new();
    for (i, &(descr, _, _, width)) in DTYPES.iter().enumerate() {
        let data = values(descr, 12 * width, i as u8);
        let key = descr.trim_start_matches(['<', '|']);
        zip.add(
            &format!("s_{key}.npy"),
            &npy(descr, false, &[3, 4], &data),
            0,
        );
        zip.add(
            &format!("d_{key}.npy"),
            &npy(descr, false, &[3, 4], &data),
            8,
        );
        expected.push((key, data));
    }
    let file = zip.finish();
    let r = open_npz(&file);
    assert_eq!(r.format(), "npz");
    assert_eq!(r.len(), 2 * DTYPES.len());
    for (&(descr, dtype, logical, _), (key, data)) in DTYPES.iter().zip(&expected) {
        for (prefix, zero_copy) in [("s_", true), ("d_", false)] {
            let name = format!("{prefix}{key}");
            let info = r.info(&name).unwrap();
            assert_eq!(info.dtype(), Some(dtype), "{descr}");
            assert_eq!(info.logical_type(), logical, "{descr}");
            assert_eq!(info.shape, [3, 4]);
            let got = r.read(&name).unwrap();
            assert_eq!(got.is_zero_copy(), zero_copy, "{name}");
            assert_eq!(&got[..], &data[..], "{name}");
            assert_eq!(&r.read_copy(&name).unwrap()[..], &data[..], "{name}");
        }
    }
    assert!(r.verify().is_empty());
}

#[test]
fn big_endian_fortran_and_both() {
    let mut zip = Zip::default();
    let mut cases = Vec::new();
    for (descr, width, swap) in [(">f4", 4, 4), (">c16", 16, 8), (">V2", 2, 2), (">i8", 8, 8)] {
        for shape in [&[2u64, 3][..], &[2, 3, 4][..], &[1, 5][..], &[7][..]] {
            for fortran in [false, true] {
                for method in [0u16, 8] {
                    let n: u64 = shape.iter().product();
                    let le = pattern(n as usize * width, cases.len() as u8);
                    let mut stored = swapped(&le, swap);
                    if fortran {
                        stored = to_fortran(&stored, shape, width);
                    }
                    let name = format!("a{}", cases.len());
                    zip.add(
                        &format!("{name}.npy"),
                        &npy(descr, fortran, shape, &stored),
                        method,
                    );
                    cases.push((name, le, shape.to_vec()));
                }
            }
        }
    }
    // little-endian Fortran order too
    let le = pattern(24 * 4, 99);
    zip.add(
        "lf.npy",
        &npy("<u4", true, &[4, 6], &to_fortran(&le, &[4, 6], 4)),
        0,
    );
    cases.push(("lf".into(), le, vec![4, 6]));
    let r = open_npz(&zip.finish());
    for (name, le, shape) in &cases {
        assert_eq!(r.info(name).unwrap().shape, *shape);
        assert_eq!(&r.read(name).unwrap()[..], &le[..], "{name}");
    }
}

#[test]
fn fortran_with_one_long_dimension_stays_zero_copy() {
    let mut zip = Zip::default();
    let data = pattern(20, 3);
    zip.add("row.npy", &npy("<f4", true, &[1, 5, 1], &data), 0);
    let r = open_npz(&zip.finish());
    assert_eq!(
        r.info("row").unwrap().components["data"].encoding,
        Encoding::Raw
    );
    let got = r.read("row").unwrap();
    assert!(got.is_zero_copy());
    assert_eq!(&got[..], &data[..]);
}

#[test]
fn scalars_empty_arrays_and_names() {
    let mut zip = Zip::default();
    zip.add(
        "scalar.npy",
        &npy("<f8", false, &[], &2.5f64.to_le_bytes()),
        0,
    );
    zip.add("empty.npy", &npy("<i4", false, &[0, 3], &[]), 0);
    zip.add("empty_z.npy", &npy(">f4", true, &[3, 0], &[]), 8);
    zip.add("dir/inner.npy", &npy("|u1", false, &[2], &[7, 8]), 8);
    zip.add("notes.txt", b"not an array", 0);
    zip.add("x.NPY", &npy("|u1", false, &[1], &[1]), 0);
    zip.add("dir/", b"", 0);
    let r = open_npz(&zip.finish());
    let names: Vec<&str> = r.names().collect();
    assert_eq!(names, ["dir/inner", "empty", "empty_z", "scalar"]);
    assert_eq!(r.to_vec::<f64>("scalar").unwrap(), [2.5]);
    assert!(r.info("scalar").unwrap().shape.is_empty());
    assert_eq!(r.info("empty").unwrap().shape, [0, 3]);
    assert!(r.read("empty").unwrap().is_empty());
    assert!(r.read("empty_z").unwrap().is_empty());
    assert_eq!(&r.read("dir/inner").unwrap()[..], &[7, 8]);
}

#[test]
fn unsupported_members_fail_alone() {
    let mut zip = Zip::default();
    zip.add("good.npy", &npy("<i2", false, &[2], &[1, 0, 2, 0]), 0);
    zip.add("obj.npy", &npy("|O", false, &[2], b"\x80\x04pickle"), 0);
    zip.add("str.npy", &npy("<U3", false, &[2], &[0; 24]), 8);
    zip.add("fp8.npy", &npy("<V1", false, &[2], &[0; 2]), 0);
    zip.add("void.npy", &npy("|V2", false, &[2], &[0; 4]), 0);
    zip.add("time.npy", &npy("<M8[s]", false, &[1], &[0; 8]), 0);
    zip.add(
        "rec.npy",
        &npy_raw(
            1,
            "{'descr': [('a', '<f4'), ('b', '>i2', (2,))], 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        ),
        0,
    );
    zip.add("bad_header.npy", b"\x93NUMPY\x01\x00\x05\x00{'de", 0);
    zip.add("not_npy.npy", b"hello world, no magic here", 8);
    zip.add("short.npy", &npy("<f4", false, &[4], &[0; 12]), 0);
    zip.add("long.npy", &npy("<f4", false, &[2], &[0; 12]), 0);
    let r = open_npz(&zip.finish());
    assert_eq!(r.len(), 11);
    assert_eq!(r.to_vec::<i16>("good").unwrap(), [1, 2]);
    let unsupported = ErrorKind::Unsupported;
    for (name, needle, kind) in [
        ("obj", "|O", unsupported),
        ("str", "<U3", unsupported),
        ("fp8", "<V1", unsupported),
        ("void", "|V2", unsupported),
        ("time", "<M8[s]", unsupported),
        ("rec", "structured", unsupported),
        ("bad_header", "header", ErrorKind::Corrupt),
        ("not_npy", "magic", ErrorKind::Corrupt),
        ("short", "12 are stored", ErrorKind::Truncated),
        ("long", "12 are stored", ErrorKind::Corrupt),
    ] {
        let e = r.info(name).unwrap_err();
        assert_eq!(e.kind(), kind, "{name}: {e}");
        let e = e.to_string();
        assert!(e.contains(needle), "{name}: {e}");
        assert!(e.contains(&format!("{name}.npy")), "{name}: {e}");
    }
}

#[test]
fn zip_bombs_are_refused() {
    // A small header but a stream that inflates to far more than it declares.
    let shape_data = pattern(16, 1);
    let header = npy("<f4", false, &[4], &shape_data);
    let mut huge = header.clone();
    huge.extend(vec![0u8; 10 << 20]);
    let mut zip = Zip::default();
    let payload = deflate(&huge);
    let rec = Record {
        method: 8,
        flags: 0,
        crc: 0,
        csize: payload.len() as u32,
        usize: header.len() as u32, // claims just the header + 16 bytes
        local: 0,
    };
    zip.local("bomb.npy", rec, &payload);
    zip.record("bomb.npy", rec);
    // Vice versa: a header claiming a huge shape whose stream is tiny.
    let big_header = npy("<f8", false, &[1 << 40], &[]);
    let payload = deflate(&big_header);
    let rec2 = Record {
        method: 8,
        flags: 0,
        crc: 0,
        csize: payload.len() as u32,
        usize: u32::MAX, // not header + shape either way
        local: zip.buf.len() as u32,
    };
    zip.local("claims_big.npy", rec2, &payload);
    zip.record("claims_big.npy", rec2);
    // Consistent sizes but the stream ends early.
    let honest = npy("<u2", false, &[1000], &pattern(2000, 5));
    let payload = deflate(&honest[..honest.len() - 500]);
    let rec3 = Record {
        method: 8,
        flags: 0,
        crc: 0,
        csize: payload.len() as u32,
        usize: honest.len() as u32,
        local: zip.buf.len() as u32,
    };
    zip.local("short.npy", rec3, &payload);
    zip.record("short.npy", rec3);
    // A declared size that matches the shape but exceeds DEFLATE's ratio.
    let header = npy("|u1", false, &[100 << 20], &[]);
    let payload = deflate(&header);
    let rec4 = Record {
        method: 8,
        flags: 0,
        crc: 0,
        csize: payload.len() as u32,
        usize: header.len() as u32 + (100 << 20),
        local: zip.buf.len() as u32,
    };
    zip.local("ratio.npy", rec4, &payload);
    zip.record("ratio.npy", rec4);
    // A stream that inflates to the right size but not to what the CRC says.
    let content = npy("<f4", false, &[4], &pattern(16, 3));
    let payload = deflate(&content);
    let rec5 = Record {
        method: 8,
        flags: 0,
        crc: crc(&content) ^ 1,
        csize: payload.len() as u32,
        usize: content.len() as u32,
        local: zip.buf.len() as u32,
    };
    zip.local("crc.npy", rec5, &payload);
    zip.record("crc.npy", rec5);
    let r = open_npz(&zip.finish());
    let e = r.read("crc").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e}");
    assert!(e.to_string().contains("CRC-32 mismatch"), "{e}");
    let e = r.read("bomb").unwrap_err().to_string();
    assert!(e.contains("longer than declared"), "{e}");
    let e = r.info("claims_big").unwrap_err().to_string();
    assert!(e.contains("declares"), "{e}");
    let e = r.read("short").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
    assert!(e.to_string().contains("shorter"), "{e}");
    let e = r.info("ratio").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(e.to_string().contains("cannot come from"), "{e}");
    assert_eq!(r.verify().len(), 5);
}

#[test]
fn overlapping_members_are_refused() {
    let mut zip = Zip::default();
    let a = zip.add("a.npy", &npy("<f4", false, &[4], &pattern(16, 1)), 0);
    zip.add("b.npy", &npy("<f4", false, &[2], &pattern(8, 2)), 0);
    // Another central record for a's local header (an exact alias) is refused
    // for naming it differently from that header, as np.load refuses it ...
    zip.record("alias.npy", a);
    let r = open_npz(&zip.finish());
    assert!(r.read("b").is_ok());
    let e = r.info("alias").unwrap_err().to_string();
    assert!(e.contains("local header"), "{e}");
    assert!(r.read("a").is_ok());

    // ... and a partial overlap: a record whose data runs into the next member.
    let mut zip = Zip::default();
    let x = zip.add("x.npy", &npy("|u1", false, &[8], &pattern(8, 1)), 0);
    zip.add("y.npy", &npy("|u1", false, &[8], &pattern(8, 2)), 0);
    zip.add("z.npy", &npy("|u1", false, &[8], &pattern(8, 3)), 0);
    let mut file = zip.finish();
    // Rewrite x's central record so its sizes reach into y.
    let bigger = x.csize + 40;
    let cd = file.len() - 22 - zip.central.len();
    file[cd + 20..cd + 24].copy_from_slice(&bigger.to_le_bytes());
    file[cd + 24..cd + 28].copy_from_slice(&bigger.to_le_bytes());
    let r = open_npz(&file);
    assert!(r.info("x").unwrap_err().to_string().contains("overlap"));
    assert!(r.info("y").unwrap_err().to_string().contains("overlap"));
    assert_eq!(&r.read("z").unwrap()[..], &pattern(8, 3)[..]);
}

#[test]
fn records_past_the_end_encrypted_and_other_methods() {
    let mut zip = Zip::default();
    let content = npy("<f4", false, &[2], &pattern(8, 1));
    zip.add("ok.npy", &content, 0);
    let mut past = Record {
        method: 0,
        flags: 0,
        crc: 0,
        csize: 1 << 30,
        usize: 1 << 30,
        local: zip.buf.len() as u32,
    };
    zip.local("past.npy", past, &content);
    zip.record("past.npy", past);
    past.local = 0xFFFF_FF00;
    past.csize = 10;
    zip.record("nowhere.npy", past);
    let mut enc = zip.add("enc.npy", &content, 0);
    enc.flags = 1;
    let mut bz = Record { method: 12, ..enc };
    bz.flags = 0;
    bz.local = zip.buf.len() as u32;
    zip.local("bz.npy", bz, &content);
    zip.record("bz.npy", bz);
    let mut file = zip.finish();
    // Mark enc's central record as encrypted.
    let mut cd = file.len() - 22 - zip.central.len();
    for _ in 0..3 {
        let name_len = u16::from_le_bytes([file[cd + 28], file[cd + 29]]) as usize;
        cd += 46 + name_len;
    }
    file[cd + 8] = 1;
    let r = open_npz(&file);
    assert!(r.read("ok").is_ok());
    for name in ["past", "nowhere", "enc", "bz"] {
        let e = r.info(name);
        assert!(e.is_err(), "{name}");
    }
    assert!(r.info("enc").unwrap_err().to_string().contains("encrypted"));
    let e = r.info("bz").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("not supported"), "{e}");
}

#[test]
fn truncated_and_mangled_archives_never_panic() {
    let mut zip = Zip::default();
    for (i, method) in [0u16, 8, 0, 8].into_iter().enumerate() {
        let shape = [3u64, 5];
        zip.add(
            &format!("m{i}.npy"),
            &npy(
                if i % 2 == 0 { ">f8" } else { "<i4" },
                i > 1,
                &shape,
                &pattern(15 * if i % 2 == 0 { 8 } else { 4 }, i as u8),
            ),
            method,
        );
    }
    let file = zip.finish();
    let check = |bytes: &[u8]| {
        if let Ok(r) = Reader::from_bytes_with_parser(bytes, |b| {
            ztensor_formats::npz::parse(b, &ParseContext::default())
        }) {
            let names: Vec<String> = r.names().map(String::from).collect();
            for n in names {
                let _ = r.read(&n);
                let _ = r.read_copy(&n);
            }
            let _ = r.verify();
        }
    };
    for n in 0..file.len() {
        check(&file[..n]);
    }
    // Flip every byte once (a cheap structural fuzz).
    for i in 0..file.len() {
        let mut m = file.clone();
        m[i] ^= 0xA5;
        check(&m);
    }
    assert!(ztensor_formats::npz::parse(b"PK\x03\x04", &ParseContext::default()).is_err());
    assert!(ztensor_formats::npz::parse(b"", &ParseContext::default()).is_err());
}

// ---------------------------------------------------------------------------
// npy
// ---------------------------------------------------------------------------

#[test]
fn single_npy_every_version() {
    for major in [1u8, 2, 3] {
        let le = pattern(6 * 8, major);
        let stored = to_fortran(&swapped(&le, 4), &[2, 3], 8);
        let file = npy_v(major, ">c8", true, &[2, 3], &stored);
        let r = ztensor_formats::from_bytes(&file).unwrap();
        assert_eq!(r.format(), "npy");
        assert_eq!(r.version(), format!("{major}.0"));
        assert_eq!(r.names().collect::<Vec<_>>(), ["arr_0"]);
        let info = r.info("arr_0").unwrap();
        assert_eq!(info.logical_type(), Some("complex64"));
        assert_eq!(info.shape, [2, 3]);
        assert_eq!(&r.read("arr_0").unwrap()[..], &le[..]);
    }
    // Plain data is zero-copy; trailing bytes are ignored, as NumPy does.
    let data = pattern(12, 7);
    let mut file = npy("<i2", false, &[6], &data);
    file.extend_from_slice(b"trailing");
    let r = ztensor_formats::from_bytes(&file).unwrap();
    let got = r.read("arr_0").unwrap();
    assert!(got.is_zero_copy());
    assert_eq!(&got[..], &data[..]);
}

#[test]
fn npy_problems() {
    // Unsupported dtype: listed, unreadable, says why.
    let r = ztensor_formats::from_bytes(&npy("|O", false, &[1], &[0; 8])).unwrap();
    let e = r.info("arr_0").unwrap_err().to_string();
    assert!(e.contains("object"), "{e}");
    // Short data: the tensor is unreadable.
    let r = ztensor_formats::from_bytes(&npy("<f4", false, &[4], &[0; 15])).unwrap();
    assert!(r.info("arr_0").is_err());
    // Huge shapes.
    let r = ztensor_formats::from_bytes(&npy("<f8", false, &[1 << 62, 8], &[])).unwrap();
    assert!(r.info("arr_0").is_err());
    // Bad versions and truncated headers fail the file.
    let good = npy("<f4", false, &[1], &[0; 4]);
    for n in 0..good.len() - 4 {
        assert!(
            ztensor_formats::npy::parse(&good[..n], &ParseContext::default()).is_err(),
            "{n}"
        );
    }
    for n in good.len() - 4..good.len() {
        let c = ztensor_formats::npy::parse(&good[..n], &ParseContext::default()).unwrap();
        assert!(c.entries[0].info.is_err());
    }
    let mut v4 = good.clone();
    v4[6] = 4;
    let e = ztensor_formats::npy::parse(&v4, &ParseContext::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("version"), "{e}");
    let mut huge = good.clone();
    huge[6] = 2;
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = ztensor_formats::npy::parse(&huge, &ParseContext::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
}

#[test]
fn opens_npz_and_npy_files_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut zip = Zip::default();
    let data = pattern(16, 4);
    zip.add("w.npy", &npy("<f4", false, &[4], &data), 0);
    let npz = zip.finish();
    for name in ["a.npz", "A.NPZ"] {
        let path = dir.path().join(name);
        std::fs::write(&path, &npz).unwrap();
        let r = ztensor_formats::open(&path).unwrap();
        assert_eq!(r.format(), "npz");
        let got = r.read("w").unwrap();
        assert!(got.is_zero_copy());
        assert_eq!(&got[..], &data[..]);
    }
    let path = dir.path().join("x.data");
    std::fs::write(&path, npy("<f4", false, &[4], &data)).unwrap();
    let r = ztensor_formats::open(&path).unwrap();
    assert_eq!(r.format(), "npy");
    assert_eq!(&r.read("arr_0").unwrap()[..], &data[..]);
}
