//! Byte compatibility with the reference writer (ztensor 1.2.3): the layout
//! and manifest encoding of docs/format.md sections 2 and 3, byte for byte.

use ztensor::{Checksum, Reader, WriteOptions, Writer};

fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// The 338-byte file the reference writes for `x` = f32 `[1.0, 2.0]` with a
/// crc32c digest, then `y` = i16 `[[1, 2, 3]]`, byte for byte.
#[test]
fn writes_the_reference_bytes_of_the_annotated_example() {
    let mut expected = b"ZTEN1000".to_vec();
    expected.resize(64, 0);
    expected.extend(unhex("0000803f00000040"));
    expected.resize(128, 0);
    expected.extend(unhex("010002000300"));
    expected.extend(unhex(
        "a2 67 76657273696f6e 65 312e322e30 67 6f626a65637473 a2
         61 78 a3 65 7368617065 81 02 66 666f726d6174 65 64656e7365
         6a 636f6d706f6e656e7473 a1 64 64617461 a4 65 6474797065 63 663332
         66 6f6666736574 18 40 66 6c656e677468 08 66 646967657374
         71 6372633332633a3078323843304339423
         1
         61 79 a3 65 7368617065 82 01 03 66 666f726d6174 65 64656e7365
         6a 636f6d706f6e656e7473 a1 64 64617461 a3 65 6474797065 63 693136
         66 6f6666736574 18 80 66 6c656e677468 06",
    ));
    expected.extend(188u64.to_le_bytes());
    expected.extend(b"ZTEN1000");
    assert_eq!(expected.len(), 338);

    let mut w = Writer::in_memory();
    w.add_with(
        "x",
        &[2],
        &[1.0f32, 2.0],
        &WriteOptions::raw().with_checksum(Checksum::Crc32c),
    )
    .unwrap();
    w.add("y", &[1, 3], &[1i16, 2, 3]).unwrap();
    let bytes = w.finish_into_vec().unwrap();
    assert_eq!(bytes, expected);
}

/// The worked example of docs/format.md section 13, read from the document
/// itself (its `xxd` dump), so that the document cannot drift from the writer.
#[test]
fn writes_the_worked_example_of_the_format_document() {
    let doc = include_str!("../../../docs/format.md");
    let section = doc
        .split("## 13. Worked example")
        .nth(1)
        .expect("section 13");
    let dump = section.split("```").nth(1).expect("a dump in section 13");
    // An xxd line: "00000040: 0700 ffff ...  ascii"; the hex is columns 10..49.
    let expected: Vec<u8> = dump
        .lines()
        .filter(|l| l.len() > 10)
        .flat_map(|l| unhex(&l[10..l.len().min(49)]))
        .collect();
    assert_eq!(expected.len(), 207, "the dump the document describes");

    let mut w = Writer::in_memory();
    w.add_with(
        "w",
        &[2, 2],
        &[7i16, -1, 256, 0],
        &WriteOptions::raw().with_checksum(Checksum::Crc32c),
    )
    .unwrap();
    assert_eq!(w.finish_into_vec().unwrap(), expected);
}

#[test]
fn empty_file_is_48_bytes_and_zero_length_blobs_share_offsets() {
    let bytes = Writer::in_memory().finish_into_vec().unwrap();
    assert_eq!(bytes.len(), 48);
    assert_eq!(
        &bytes[8..32],
        &unhex("a2 67 76657273696f6e 65 312e322e30 67 6f626a65637473 a0")[..]
    );

    let mut w = Writer::in_memory();
    w.add("a", &[1], &[1.0f32]).unwrap();
    w.add("b", &[0, 3], &[] as &[f32]).unwrap();
    w.add("c", &[0], &[] as &[i64]).unwrap();
    w.add("d", &[1], &[7u8]).unwrap();
    let bytes = w.finish_into_vec().unwrap();
    let r = Reader::from_bytes(&bytes).unwrap();
    for name in ["b", "c", "d"] {
        assert_eq!(
            r.info(name).unwrap().components["data"].offset,
            128,
            "{name}"
        );
    }
}

#[test]
fn empty_zstd_frame_matches_the_reference() {
    let mut w = Writer::in_memory();
    w.add_with("e", &[0], &[] as &[f32], &WriteOptions::zstd(3))
        .unwrap();
    let bytes = w.finish_into_vec().unwrap();
    assert_eq!(&bytes[64..73], &unhex("28b52ffd2000010000")[..]);
}
