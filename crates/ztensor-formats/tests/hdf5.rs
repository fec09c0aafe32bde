//! HDF5 reader: two tiny h5py-made fixtures (`tests/data/make_hdf5_fixtures.py`),
//! their truncations and corruptions, and the projection driven by a fake
//! backend (absurd shapes, ranges outside the file, unsupported types).

use std::path::PathBuf;
use std::sync::Arc;

use ztensor::{DType, Encoding, Value};
use ztensor_formats::hdf5::{self, DatasetDesc, ElemType, Hdf5Backend, Storage};
use ztensor_formats::ParseContext;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn attr<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn check_earliest(r: &ztensor::Reader) {
    assert_eq!(r.format(), "hdf5");
    assert_eq!(r.version(), "0"); // superblock version
    let names: Vec<&str> = r.names().collect();
    assert_eq!(names, ["a", "b", "c", "g.s.be", "s"]);
    let a = r.info("a").unwrap();
    assert_eq!(a.shape, [3, 4]);
    let data = &a.components["data"];
    assert_eq!(data.encoding, Encoding::Raw); // zero-copy
    assert_eq!(
        r.to_vec::<f32>("a").unwrap(),
        (0..12).map(|i| i as f32).collect::<Vec<_>>()
    );
    assert_eq!(r.to_vec::<i64>("g.s.be").unwrap(), [1, -2, 3]); // big-endian, swapped
    assert_eq!(r.to_vec::<bool>("b").unwrap(), [true, false, true]);
    let c = r.info("c").unwrap();
    assert_eq!(c.dtype(), Some(DType::F32));
    assert_eq!(c.logical_type(), Some("complex64"));
    assert_eq!(r.to_vec::<f32>("c").unwrap(), [1.0, 2.0]);
    let err = r.read("s").unwrap_err().to_string();
    assert!(err.contains("string"), "{err}");
    let attrs = r.attributes().expect("file attributes");
    assert_eq!(attr(attrs, "n"), Some(&Value::from(5)));
    assert_eq!(attr(attrs, "t"), Some(&Value::Text("hi".into())));
}

#[test]
fn h5py_earliest_from_path_and_bytes() {
    let path = fixture("h5py_earliest.h5");
    check_earliest(&ztensor_formats::open(&path).unwrap());
    check_earliest(&ztensor_formats::from_bytes(&std::fs::read(&path).unwrap()).unwrap());
}

#[test]
fn h5py_latest_chunked_gzip_shuffle_and_fill() {
    let path = fixture("h5py_latest.h5");
    let r = ztensor_formats::open(&path).unwrap();
    assert_eq!(r.version(), "3");
    assert_eq!(r.to_vec::<i32>("z").unwrap(), (0..100).collect::<Vec<_>>());
    assert_eq!(
        r.info("z").unwrap().components["data"].encoding.as_str(),
        "hdf5"
    );
    assert_eq!(r.to_vec::<u16>("fill").unwrap(), [1, 9, 9, 9, 9, 9]);
    assert_eq!(r.to_vec::<f32>("a").unwrap()[11], 11.0);
}

/// Opens and reads everything; any outcome but a panic is fine.
fn exercise(bytes: &[u8]) {
    if let Ok(r) = ztensor_formats::from_bytes(bytes) {
        let names: Vec<String> = r.names().map(str::to_string).collect();
        for n in names {
            let _ = r.read_copy(&n);
        }
    }
}

#[test]
fn truncations_and_flips_never_panic() {
    for name in ["h5py_earliest.h5", "h5py_latest.h5"] {
        let data = std::fs::read(fixture(name)).unwrap();
        for cut in (0..data.len()).step_by(97).chain([8, 9, data.len() - 1]) {
            exercise(&data[..cut]);
        }
        assert!(ztensor_formats::from_bytes(&data[..100]).is_err());
        // deterministic pseudo-random flips (xorshift)
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..60 {
            let mut m = data.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % m.len() as u64) as usize;
                m[at] ^= 1 << (state % 8);
            }
            exercise(&m);
        }
    }
}

/// A file shorter than the end-of-file address its superblock
/// states is refused at open, as libhdf5 refuses it ("truncated file"). Before,
/// a cut that removed only a chunk loaded that dataset as its fill value
/// (zeros), because the library takes a chunk past the end for one never written.
#[test]
fn every_truncation_is_refused_not_read_as_fill() {
    let path = fixture("h5py_chunked.h5");
    let data = std::fs::read(&path).unwrap();
    let intact = ztensor_formats::from_bytes(&data).unwrap();
    assert_eq!(intact.to_vec::<i16>("s").unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(
        intact.to_vec::<f64>("z").unwrap(),
        [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    );
    for cut in 0..data.len() {
        assert!(
            ztensor_formats::from_bytes(&data[..cut]).is_err(),
            "a {cut}-byte cut of the {}-byte file opened",
            data.len()
        );
    }
    // Named by path: the message names the file and both sizes.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.h5");
    std::fs::write(&cut, &data[..6088]).unwrap();
    let err = ztensor_formats::open(&cut).unwrap_err();
    assert_eq!(err.kind(), ztensor::ErrorKind::Truncated, "{err}");
    let err = err.to_string();
    for needle in ["cut.h5", "truncated", "6088", &data.len().to_string()] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}

/// The one offset where `needle` occurs in `data`.
fn find_once(data: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = data
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} occurs {} times", hits.len());
    hits[0]
}

fn put_u64(data: &mut [u8], at: usize, value: u64) {
    data[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Issue 11: damage h5py refuses (libhdf5 checks these) made a tensor read
/// with wrong values: a chunk B-tree or a chunk past the end of the file was
/// taken for "never written" (fill values), a B-tree key whose offsets are no
/// multiple of the chunk shape placed a chunk elsewhere or nowhere, a
/// dimension past its maximum read bytes beyond the data, and a member name
/// out of order (libhdf5 cannot look it up) listed a tensor under a name
/// nothing wrote, a shuffle filter set for another element size
/// unshuffled other bytes, and a contiguous extent shrunk to nothing read
/// as an empty array (libhdf5: the storage size does not match). Each makes the tensors it concerns unreadable, no more.
#[test]
fn structural_damage_libhdf5_refuses_is_refused() {
    let data = std::fs::read(fixture("h5py_chunked.h5")).unwrap();
    let len = data.len() as u64;
    // z's layout message: version 3, chunked, rank 1 (+1), B-tree address, chunk (3, 8 bytes)
    let layouts: Vec<usize> = (0..data.len() - 19)
        .filter(|&i| {
            data[i..i + 3] == [3, 2, 2] && data[i + 11..i + 19] == [3, 0, 0, 0, 8, 0, 0, 0]
        })
        .collect();
    assert_eq!(layouts.len(), 1);
    let layout = layouts[0];
    let btree = u64::from_le_bytes(data[layout + 3..layout + 11].try_into().unwrap()) as usize;
    assert_eq!(&data[btree..btree + 6], b"TREE\x01\x00"); // a chunk B-tree leaf
    let key0 = btree + 24; // chunk size, filter mask, 2 offsets; then the first chunk's address
    let child0 = key0 + 8 + 16;
    // z's dataspace: version 1, rank 1, max dims present; 6 elements, at most 6
    let mut space = vec![1, 1, 1, 0, 0, 0, 0, 0];
    space.extend(6u64.to_le_bytes());
    space.extend(6u64.to_le_bytes());
    let space = find_once(&data, &space) + 8;
    // s's filter pipeline: shuffle (named), its client data: the element size, 2
    let shuffle = find_once(&data, b"shuffle\0") + 8;
    assert_eq!(data[shuffle..shuffle + 4], 2u32.to_le_bytes());
    // a's dataspace: version 1, rank 2, max dims present; (3, 4), at most (3, 4)
    let mut a_space = vec![1, 2, 1, 0, 0, 0, 0, 0];
    for d in [3u64, 4, 3, 4] {
        a_space.extend(d.to_le_bytes());
    }
    let a_space = find_once(&data, &a_space) + 8;
    // the root group's local heap holds the names "z", "a", "s"
    let heap_a = find_once(&data, b"\0\0z\0\0\0\0\0\0\0a\0") + 10;

    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Patch, &[&str], &str)> = vec![
        (
            "chunk B-tree past the end",
            Box::new(move |d| put_u64(d, layout + 3, len + 4096)),
            &["z"],
            "past the end",
        ),
        (
            "chunk past the end",
            Box::new(move |d| put_u64(d, child0, len + 4096)),
            &["z"],
            "past the end",
        ),
        (
            "chunk offset no multiple of the chunk",
            Box::new(move |d| put_u64(d, key0 + 8, 1)),
            &["z"],
            "not multiples",
        ),
        (
            "chunks out of order",
            Box::new(move |d| put_u64(d, key0 + 40, 0)), // the second chunk's offset: 3 -> 0
            &["z"],
            "out of order",
        ),
        (
            "shuffle set for no element size",
            Box::new(move |d| d[shuffle..shuffle + 4].copy_from_slice(&0u32.to_le_bytes())),
            &["s"],
            "shuffle",
        ),
        (
            "shuffle set for 4-byte elements",
            Box::new(move |d| d[shuffle..shuffle + 4].copy_from_slice(&4u32.to_le_bytes())),
            &["s"],
            "shuffle",
        ),
        (
            "contiguous extent shrunk to nothing",
            Box::new(move |d| put_u64(d, a_space + 8, 0)),
            &["a"],
            "needs 0",
        ),
        (
            "dimension past its maximum",
            Box::new(move |d| put_u64(d, space, 7)),
            &["z"],
            "maximum",
        ),
        (
            "member name out of order",
            Box::new(move |d| d[heap_a] = b'}'),
            &["z", "s", "}"],
            "libhdf5 cannot look",
        ),
    ];
    for (what, patch, broken, needle) in cases {
        let mut bad = data.clone();
        patch(&mut bad);
        let r = ztensor_formats::from_bytes(&bad).unwrap();
        for name in broken {
            let err = r.read(name).expect_err(what).to_string();
            assert!(err.contains(needle), "{what}: {name}: {err}");
        }
        if !broken.contains(&"s") {
            assert_eq!(r.to_vec::<i16>("s").unwrap(), [0, 1, 2, 3, 4], "{what}");
        }
        if !broken.contains(&"z") {
            assert_eq!(r.to_vec::<f64>("z").unwrap()[5], 5.5, "{what}");
        }
        if !broken.contains(&"}") && !broken.contains(&"a") {
            assert_eq!(r.to_vec::<f32>("a").unwrap()[11], 11.0, "{what}");
        }
    }
}

/// Issue 11, continued: a fill value and a group's name heap damaged so that
/// rust-hdf5 and h5py read different values. The new-style fill value
/// message unrecognisable: h5py fills with the old-style message's -1,
/// rust-hdf5 with zeros; its size made 5 bytes for 4-byte elements; the
/// heap of group `g` moved onto its own header (h5py: "incorrect cache
/// entry type"), so its member was listed under a name read from there.
#[test]
fn fill_value_and_name_heap_damage_is_refused() {
    let data = std::fs::read(fixture("h5py_fill.h5")).unwrap();
    let intact = ztensor_formats::from_bytes(&data).unwrap();
    assert_eq!(
        intact.to_vec::<i32>("u").unwrap(),
        [10, 20, 30, -1, -1, -1, -1]
    );
    assert_eq!(intact.to_vec::<i64>("g.be").unwrap(), [1, -2, 3]);
    // The new-style fill value message of u: type 5, 16 bytes; version 2, times, defined, 4 bytes of -1
    let fill = find_once(
        &data,
        b"\x05\x00\x10\x00\x01\x00\x00\x00\x02\x03\x02\x01\x04\x00\x00\x00\xff\xff\xff\xff",
    );
    let heaps: Vec<usize> = (0..data.len() - 4)
        .filter(|&i| &data[i..i + 4] == b"HEAP")
        .collect();
    let g_heap = *heaps.last().unwrap(); // the root's comes first
                                         // g's symbol-table node: its only entry names "be" at heap offset 8
    let snods: Vec<usize> = (0..data.len() - 4)
        .filter(|&i| &data[i..i + 4] == b"SNOD")
        .collect();
    let g_snod_name = *snods.last().unwrap() + 8;
    assert_eq!(data[g_snod_name..g_snod_name + 8], 8u64.to_le_bytes());
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Patch, &str, &str)> = vec![
        (
            "new-style fill value message unrecognisable",
            Box::new(move |d| d[fill] = 0x25),
            "u",
            "old-style",
        ),
        (
            "new-style fill value message read as an old-style one",
            Box::new(move |d| d[fill] = 0x04),
            "u",
            "malformed",
        ),
        (
            "fill value of the wrong size",
            Box::new(move |d| d[fill + 12] = 5),
            "u",
            "fill value has 5 bytes",
        ),
        (
            "member name read one byte on (outside its B-tree keys)",
            Box::new(move |d| d[g_snod_name] += 1),
            "g.e",
            "outside its B-tree keys",
        ),
        (
            "name heap over its own header",
            Box::new(move |d| put_u64(d, g_heap + 24, g_heap as u64)),
            "g.be",
            "overlap",
        ),
        (
            "name heap one byte off",
            Box::new(move |d| put_u64(d, g_heap + 24, g_heap as u64 + 33)),
            "g.be",
            "free block",
        ),
    ];
    for (what, patch, broken, needle) in cases {
        let mut bad = data.clone();
        patch(&mut bad);
        let r = ztensor_formats::from_bytes(&bad).unwrap();
        let other = if broken == "u" { "g.be" } else { "u" };
        assert!(r.names().any(|n| n == other), "{what}");
        assert!(r.names().any(|n| n != other), "{what}"); // the damaged one is listed
        for name in r.names().filter(|&n| n != other) {
            let err = r.read(name).expect_err(what).to_string();
            assert!(err.contains(needle), "{what}: {name}: {err}");
        }
        match other {
            "u" => assert_eq!(r.to_vec::<i32>("u").unwrap()[3], -1, "{what}"),
            _ => assert_eq!(r.to_vec::<i64>("g.be").unwrap(), [1, -2, 3], "{what}"),
        }
    }
}

#[test]
fn garbage_after_a_signature_is_an_error() {
    let mut bytes = b"\x89HDF\r\n\x1a\n".to_vec();
    bytes.extend((0..600u32).map(|i| (i * 7 + 3) as u8));
    assert!(ztensor_formats::from_bytes(&bytes).is_err());
    assert!(hdf5::parse(b"not hdf5 at all", &ParseContext::default()).is_err());
}

/// A backend that reports whatever a test says.
#[derive(Debug)]
struct Fake(Vec<(&'static str, DatasetDesc)>);

impl Hdf5Backend for Fake {
    fn datasets(&self) -> Result<Vec<String>, String> {
        Ok(self.0.iter().map(|(n, _)| n.to_string()).collect())
    }
    fn describe(&self, path: &str) -> Result<DatasetDesc, String> {
        let (_, d) = self.0.iter().find(|(n, _)| *n == path).ok_or("missing")?;
        Ok(d.clone())
    }
    fn read_into(&self, _path: &str, out: &mut [u8]) -> Result<(), String> {
        out.fill(1);
        Ok(())
    }
    fn file_attributes(&self) -> Result<Vec<(String, Value)>, String> {
        Ok(vec![])
    }
}

fn desc(shape: Vec<u64>, elem: ElemType, storage: Storage) -> DatasetDesc {
    DatasetDesc {
        shape,
        elem,
        storage,
        attributes: vec![],
    }
}

#[test]
fn projection_refuses_hostile_descriptions_per_tensor() {
    let f4 = ElemType::Float {
        size: 4,
        bf16: false,
        big_endian: false,
    };
    let fake = Fake(vec![
        (
            "ok",
            desc(vec![2], f4.clone(), Storage::Contiguous { offset: Some(8) }),
        ),
        (
            "grp/outside",
            desc(
                vec![4],
                f4.clone(),
                Storage::Contiguous {
                    offset: Some(u64::MAX - 4),
                },
            ),
        ),
        (
            "overflow",
            desc(
                vec![1 << 40, 1 << 40],
                f4.clone(),
                Storage::Chunked { chunk: vec![1, 1] },
            ),
        ),
        (
            "absurd",
            desc(
                vec![1 << 30],
                f4.clone(),
                Storage::Chunked { chunk: vec![8] },
            ),
        ),
        (
            "huge_chunk",
            desc(
                vec![4],
                f4.clone(),
                Storage::Chunked {
                    chunk: vec![1 << 31],
                },
            ),
        ),
        (
            "strings",
            desc(
                vec![1],
                ElemType::Unsupported("strings".into()),
                Storage::Compact,
            ),
        ),
        (
            "virtual",
            desc(vec![1], f4, Storage::Unsupported("virtual".into())),
        ),
    ]);
    let image = vec![0u8; 64];
    let catalog = hdf5::parse(
        &image,
        &ParseContext::default().hdf5_backend(Arc::new(fake)),
    )
    .unwrap();
    assert_eq!(catalog.format, "hdf5");
    let by_name = |n: &str| catalog.entries.iter().find(|e| e.name == n).unwrap();
    assert!(by_name("ok").info.is_ok());
    for (name, needle) in [
        ("grp.outside", "outside"),
        ("overflow", "too large"),
        ("absurd", "times the"),
        ("huge_chunk", "chunks"),
        ("strings", "strings"),
        ("virtual", "virtual"),
    ] {
        let err = by_name(name).info.as_ref().unwrap_err();
        assert!(err.message().contains(needle), "{name}: {err}");
    }
}
