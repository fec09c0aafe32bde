//! Damaged and crafted files: every problem is a clean error, local to the
//! tensor at fault where possible, and no allocation is sized by the file.

mod common;

use ciborium::Value;
use common::*;
use ztensor::{Checksum, Error, Reader, WriteOptions, Writer};

fn sample_file(opts: &WriteOptions) -> Vec<u8> {
    let mut w = Writer::in_memory();
    let vals: Vec<f32> = (0..64).map(|i| i as f32 * 0.5).collect();
    w.add_with("a", &[8, 8], &vals, opts).unwrap();
    w.add_with("b", &[3], &[1i64, 2, 3], opts).unwrap();
    w.finish_into_vec().unwrap()
}

fn open_and_read_all(bytes: &[u8]) -> Result<(), Error> {
    let r = Reader::from_bytes(bytes)?;
    for name in r.names().map(str::to_string).collect::<Vec<_>>() {
        r.read(&name)?;
    }
    Ok(())
}

#[test]
fn every_truncation_is_an_error() {
    for opts in [
        WriteOptions::raw(),
        WriteOptions::zstd(3).with_checksum(Checksum::Crc32c),
    ] {
        let bytes = sample_file(&opts);
        for len in 0..bytes.len() {
            assert!(
                Reader::from_bytes(&bytes[..len]).is_err(),
                "truncated to {len} bytes opened"
            );
        }
        open_and_read_all(&bytes).unwrap();
    }
}

#[test]
fn every_bit_flip_in_checksummed_data_is_detected() {
    for opts in [
        WriteOptions::raw().with_checksum(Checksum::Crc32c),
        WriteOptions::raw().with_checksum(Checksum::Sha256),
        WriteOptions::zstd(3).with_checksum(Checksum::Crc32c),
        WriteOptions::zstd(3).with_checksum(Checksum::Sha256),
    ] {
        let bytes = sample_file(&opts);
        let r = Reader::from_bytes(&bytes).unwrap();
        let c = r.info("a").unwrap().components["data"].clone();
        for byte in c.offset..c.offset + c.length {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[byte as usize] ^= 1 << bit;
                let r = Reader::from_bytes(&bad).unwrap();
                let err = r.read("a").unwrap_err().to_string();
                assert!(err.contains("tensor 'a'"), "{err}");
                assert!(r.read_copy("a").is_err());
                assert_eq!(r.verify().len(), 1);
                r.read("b").unwrap();
            }
        }
    }
}

#[test]
fn bad_magic_footer_and_manifest_size() {
    let good = sample_file(&WriteOptions::raw());
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(
        Reader::from_bytes(&bad).unwrap_err().to_string(),
        "<bytes>: not a .zt file: it does not start with the .zt signature ZTEN1000"
    );
    // Said in words, never as the raw (here non-UTF-8) bytes found.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 8..].copy_from_slice(b"m\xff*\x01\x02\x03\x04\x05");
    assert_eq!(
        Reader::from_bytes(&bad).unwrap_err().to_string(),
        "<bytes>: the file does not end with the .zt signature ZTEN1000: \
         it is truncated or damaged"
    );
    for size in [u64::MAX, (n as u64) - 23, 1 << 31] {
        let mut bad = good.clone();
        bad[n - 16..n - 8].copy_from_slice(&size.to_le_bytes());
        assert!(Reader::from_bytes(&bad).is_err(), "manifest size {size}");
    }
    let e = Reader::from_bytes(
        &[
            &good[..n - 16],
            &(1u64 << 31).to_le_bytes(),
            &ztensor::MAGIC[..],
        ]
        .concat(),
    );
    assert_eq!(e.unwrap_err().kind(), ztensor::ErrorKind::LimitExceeded);
    assert!(Reader::from_bytes(b"").is_err());
}

#[test]
fn out_of_range_and_overflowing_offsets_break_only_their_tensor() {
    let data = [0u8; 16];
    let mut bad_overflow = component("f32", u64::MAX - 63, 128);
    bad_overflow.truncate(3);
    let file = v1_file(
        &data,
        vec![
            ("ok", dense(&[4], "f32", 64, 16)),
            (
                "overflow",
                object(&[32], "dense", vec![("data", map(bad_overflow))]),
            ),
            ("past_end", dense(&[4], "f32", 72, 16)),
            ("header", dense(&[2], "f32", 0, 8)),
            ("wrong_len", dense(&[5], "f32", 64, 16)),
            ("huge_shape", dense(&[u64::MAX, 4], "f32", 64, 16)),
            ("unknown_dtype", dense(&[4], "f128", 64, 16)),
            (
                "odd_layout",
                object(
                    &[4],
                    "blocked_fp4",
                    vec![("data", map(component("f32", 64, 16)))],
                ),
            ),
        ],
    );
    let r = Reader::from_bytes(&file).unwrap();
    assert_eq!(r.len(), 8);
    assert_eq!(r.to_vec::<f32>("ok").unwrap(), vec![0.0; 4]);
    for (name, needle) in [
        ("overflow", "overflows"),
        ("past_end", "outside the data region"),
        ("header", "outside the data region"),
        ("wrong_len", "needs 20"),
        ("huge_shape", "more elements"),
        ("unknown_dtype", "unknown dtype 'f128'"),
        ("odd_layout", "not dense"),
    ] {
        let err = r.read(name).unwrap_err().to_string();
        assert!(
            err.contains(&format!("tensor '{name}'")) && err.contains(needle),
            "{name}: {err}"
        );
    }
    // Unknown layouts stay describable.
    assert_eq!(r.info("odd_layout").unwrap().layout.as_str(), "blocked_fp4");
}

#[test]
fn partial_overlaps_are_refused_but_exact_aliases_allowed() {
    let data = [0u8; 32];
    let file = v1_file(
        &data,
        vec![
            ("a", dense(&[4], "f32", 64, 16)),
            ("alias", dense(&[4], "f32", 64, 16)),
            ("partial", dense(&[4], "f32", 72, 16)),
            ("after", dense(&[2], "f32", 88, 8)),
        ],
    );
    let r = Reader::from_bytes(&file).unwrap();
    r.read("after").unwrap();
    for name in ["a", "alias", "partial"] {
        let err = r.read(name).unwrap_err().to_string();
        assert!(err.contains("partially overlap"), "{name}: {err}");
    }
    // Without the partial overlap, exact aliases read fine.
    let file = v1_file(
        &data,
        vec![
            ("a", dense(&[4], "f32", 64, 16)),
            ("alias", dense(&[4], "f32", 64, 16)),
        ],
    );
    let r = Reader::from_bytes(&file).unwrap();
    assert_eq!(
        r.read("a").unwrap().as_slice(),
        r.read("alias").unwrap().as_slice()
    );
}

#[test]
fn tiny_zstd_frame_claiming_terabytes_is_refused_without_allocating() {
    // A real 16-byte-ish frame, declared as a 4 TiB tensor.
    let frame = zstd::stream::encode_all(&[0u8; 64][..], 3).unwrap();
    let mut comp = component("u8", 64, frame.len() as u64);
    comp.push(("encoding", text("zstd")));
    let file = v1_file(
        &frame,
        vec![(
            "bomb",
            object(&[1 << 42], "dense", vec![("data", map(comp.clone()))]),
        )],
    );
    let r = Reader::from_bytes(&file).unwrap();
    let e = r.read("bomb").unwrap_err();
    assert_eq!(e.kind(), ztensor::ErrorKind::LimitExceeded, "{e}");
    assert!(e.to_string().contains("cannot hold"), "{e}");
    // Shorter output than declared is an error, never zero fill.
    let file = v1_file(
        &frame,
        vec![("short", object(&[128], "dense", vec![("data", map(comp))]))],
    );
    let r = Reader::from_bytes(&file).unwrap();
    let e = r.read("short").unwrap_err();
    assert_eq!(e.kind(), ztensor::ErrorKind::Truncated, "{e}");
    assert!(
        e.to_string().contains("decodes to 64 bytes, expected 128"),
        "{e}"
    );
}

#[test]
fn deeply_nested_cbor_is_an_error_not_a_stack_overflow() {
    // Encode by hand: ciborium's encoder would recurse as deep as we nest.
    let mut nested = vec![0x81u8; 100_000];
    nested.push(0xf6);
    let mut manifest = Vec::new();
    ciborium::ser::into_writer(
        &map(vec![("version", text("1.2.0")), ("objects", map(vec![]))]),
        &mut manifest,
    )
    .unwrap();
    // Replace the root by {"version":..., "attributes": {"x": [[[...]]]}, "objects": {}}
    let mut cbor = vec![0xa3];
    cbor.extend(&manifest[1..15]); // "version": "1.2.0"
    cbor.extend([0x6a]);
    cbor.extend(b"attributes");
    cbor.extend([0xa1, 0x61, b'x']);
    cbor.extend(&nested);
    cbor.extend(&manifest[15..]);
    let mut file = b"ZTEN1000".to_vec();
    file.extend(&cbor);
    file.extend((cbor.len() as u64).to_le_bytes());
    file.extend(b"ZTEN1000");
    let err = Reader::from_bytes(&file).unwrap_err().to_string();
    assert!(err.contains("manifest"), "{err}");
}

#[test]
fn legacy_v01_files_are_read() {
    let data: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let record = map(vec![
        ("name", text("w")),
        ("offset", int(64)),
        ("size", int(8)),
        ("dtype", text("float32")),
        ("shape", Value::Array(vec![int(2)])),
        ("encoding", text("raw")),
        (
            "checksum",
            text(
                &ztensor::Checksum::Crc32c
                    .compute(&data)
                    .unwrap()
                    .to_string(),
            ),
        ),
    ]);
    let mut cbor = Vec::new();
    ciborium::ser::into_writer(&Value::Array(vec![record]), &mut cbor).unwrap();
    let mut file = b"ZTEN0001".to_vec();
    file.resize(64, 0);
    file.extend(&data);
    file.extend(&cbor);
    file.extend((cbor.len() as u64).to_le_bytes());
    let r = Reader::from_bytes(&file).unwrap();
    assert_eq!(r.version(), "0.1.0");
    assert_eq!(r.to_vec::<f32>("w").unwrap(), vec![1.5, -2.0]);
    let mut bad = file.clone();
    bad[64] ^= 1;
    assert!(Reader::from_bytes(&bad).unwrap().read("w").is_err());
}

#[test]
fn unknown_digest_algorithm_is_reported_by_verify() {
    let data = [0u8; 4];
    let mut comp = component("u8", 64, 4);
    comp.push(("digest", text("md5:0123")));
    let file = v1_file(
        &data,
        vec![("m", object(&[4], "dense", vec![("data", map(comp))]))],
    );
    let r = Reader::from_bytes(&file).unwrap();
    r.read("m").unwrap();
    assert!(r.verify()[0].to_string().contains("unknown algorithm"));
}

#[test]
fn paths_give_io_errors_with_kinds() {
    let dir = tempfile::tempdir().unwrap();
    match Reader::open(dir.path()) {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc_eisdir())),
        other => panic!("{:?}", other.map(|_| ())),
    }
    match Reader::open(dir.path().join("missing.zt")) {
        Err(Error::Io { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

fn libc_eisdir() -> i32 {
    21
}
