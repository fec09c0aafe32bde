//! Appending to an existing file in place (docs/format.md section 15):
//! round trips, old bytes untouched, one appender at a time, torn appends
//! refused and repaired, compaction.

mod common;

use std::path::Path;

use ciborium::Value;
use common::{component, int, map, object, text, v1_file_with_manifest};
use ztensor::{
    compact, remove_tensors, repair, space_usage, Checksum, ComponentData, DType, Layout, Reader,
    Repair, WriteOptions, Writer, APPEND_MAGIC, PREVIOUS_END_KEY,
};

fn base(path: &Path) -> Vec<u8> {
    let mut w = Writer::create(path).unwrap();
    w.set_attributes(map(vec![("epoch", int(3))])).unwrap();
    w.add("w", &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    let opts = WriteOptions::zstd(5).with_checksum(Checksum::Crc32c);
    w.add_with("ids", &[4], &[9i64, 8, 7, 6], &opts).unwrap();
    w.finish().unwrap();
    std::fs::read(path).unwrap()
}

fn append_err(path: impl AsRef<Path>) -> ztensor::Error {
    match Writer::append(path) {
        Ok(_) => panic!("the append should have been refused"),
        Err(e) => e,
    }
}

fn root_manifest(bytes: &[u8]) -> Vec<(Value, Value)> {
    let n = bytes.len();
    let len = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap()) as usize;
    match ciborium::de::from_reader(&bytes[n - 16 - len..n - 16]).unwrap() {
        Value::Map(m) => m,
        _ => panic!("manifest is not a map"),
    }
}

fn root_key(bytes: &[u8], key: &str) -> Option<Value> {
    root_manifest(bytes)
        .into_iter()
        .find(|(k, _)| k == &text(key))
        .map(|(_, v)| v)
}

#[test]
fn appended_tensors_of_every_kind_read_back_and_old_bytes_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    let old = base(&path);
    let mut w = Writer::append(&path).unwrap();
    let raw = WriteOptions::raw();
    w.add("f64", &[2], &[1.5f64, -2.0]).unwrap();
    w.add("u8", &[3], &[1u8, 2, 255]).unwrap();
    w.add("bool", &[2], &[true, false]).unwrap();
    w.add_with("i16z", &[3], &[-1i16, 0, 7], &WriteOptions::zstd(3))
        .unwrap();
    let crc = raw.with_checksum(Checksum::Crc32c);
    w.add_with("u32c", &[2], &[5u32, 6], &crc).unwrap();
    let sha = WriteOptions::zstd(19).with_checksum(Checksum::Sha256);
    w.add_with("f32s", &[1000], &[0.25f32; 1000], &sha).unwrap();
    let cplx = ComponentData {
        dtype: DType::F32,
        logical_type: Some("complex64"),
        bytes: &[0, 0, 128, 63, 0, 0, 0, 64],
    };
    w.add_dense("c", &[1], cplx, &crc).unwrap();
    let vals = [1.0f32, 2.0];
    w.add_sparse_csr(
        "csr",
        [2, 3],
        ComponentData::of(&vals),
        &[0, 2],
        &[0, 1, 2],
        &sha,
    )
    .unwrap();
    w.add_sparse_coo("coo", &[4], ComponentData::of(&vals), &[1, 3], &crc)
        .unwrap();
    let size = w.finish().unwrap();

    let new = std::fs::read(&path).unwrap();
    assert_eq!(new.len() as u64, size);
    assert_eq!(&new[..old.len()], &old[..], "the old bytes changed");
    assert_eq!(
        root_key(&new, PREVIOUS_END_KEY),
        Some(int(old.len() as u64))
    );
    let r = Reader::open(&path).unwrap();
    assert!(r.verify().is_empty(), "{:?}", r.verify());
    assert_eq!(r.len(), 11);
    assert_eq!(r.attributes(), Some(&map(vec![("epoch", int(3))])));
    assert_eq!(r.view::<f32>("w").unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(r.to_vec::<i64>("ids").unwrap(), [9, 8, 7, 6]);
    assert_eq!(r.view::<f64>("f64").unwrap(), [1.5, -2.0]);
    assert_eq!(r.view::<u8>("u8").unwrap(), [1, 2, 255]);
    assert_eq!(r.view::<bool>("bool").unwrap(), [true, false]);
    assert_eq!(r.to_vec::<i16>("i16z").unwrap(), [-1, 0, 7]);
    assert_eq!(r.view::<u32>("u32c").unwrap(), [5, 6]);
    assert_eq!(r.to_vec::<f32>("f32s").unwrap(), vec![0.25; 1000]);
    assert_eq!(r.info("c").unwrap().logical_type(), Some("complex64"));
    assert_eq!(r.info("csr").unwrap().layout, Layout::SparseCsr);
    let idx = r.read_component("coo", "coords", true).unwrap();
    assert_eq!(idx.as_slice(), ztensor_bytes(&[1u64, 3]));
    for t in r.tensors() {
        for c in t.components.values() {
            assert_eq!(c.offset % 64, 0, "{} is not aligned", t.name);
            if ["w", "ids"].contains(&t.name.as_str()) {
                assert!(c.offset < old.len() as u64);
            } else {
                assert!(
                    c.offset >= old.len() as u64,
                    "{} overlaps the old file",
                    t.name
                );
            }
        }
    }
}

fn ztensor_bytes(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn names_are_checked_and_remove_then_add_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    base(&path);
    let mut w = Writer::append(&path).unwrap();
    let e = w.add("w", &[1], &[0.0f32]).unwrap_err().to_string();
    assert!(
        e.contains("'w' is already in") && e.contains("remove it first"),
        "{e}"
    );
    assert!(matches!(
        w.remove("nope"),
        Err(ztensor::Error::NotFound { .. })
    ));
    w.remove("w").unwrap();
    w.add("w", &[2], &[7.0f32, 8.0]).unwrap();
    w.add("fresh", &[1], &[1u8]).unwrap();
    w.remove("fresh").unwrap();
    w.set_attributes(map(vec![("epoch", int(4))])).unwrap();
    w.finish().unwrap();
    let r = Reader::open(&path).unwrap();
    assert_eq!(r.names().collect::<Vec<_>>(), ["ids", "w"]);
    assert_eq!(r.view::<f32>("w").unwrap(), [7.0, 8.0]);
    assert_eq!(r.attributes(), Some(&map(vec![("epoch", int(4))])));
}

#[test]
fn a_view_from_before_the_append_is_unchanged_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    base(&path);
    let before = Reader::open(&path).unwrap();
    let view: &[f32] = before.view("w").unwrap();
    let mut w = Writer::append(&path).unwrap();
    w.remove("w").unwrap();
    w.add("w", &[6], &[0.0f32; 6]).unwrap();
    w.add("big", &[1 << 20], &vec![9u8; 1 << 20]).unwrap();
    w.finish().unwrap();
    assert_eq!(view, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(
        Reader::open(&path).unwrap().view::<f32>("w").unwrap(),
        [0.0; 6]
    );
}

#[test]
fn one_appender_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    base(&path);
    let mut first = Writer::append(&path).unwrap();
    first.add("a", &[1], &[1u8]).unwrap();
    let e = append_err(&path);
    let ztensor::Error::Io { source, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock);
    assert!(e.to_string().contains("another writer is appending"), "{e}");
    assert!(repair(&path).is_err(), "repair must wait for the appender");
    first.finish().unwrap();
    let mut second = Writer::append(&path).unwrap();
    second.add("b", &[1], &[2u8]).unwrap();
    second.finish().unwrap();
    assert_eq!(Reader::open(&path).unwrap().len(), 4);
}

#[test]
fn a_save_never_replaces_a_file_under_an_appender() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    base(&path);
    let mut appender = Writer::append(&path).unwrap();
    appender.add("a", &[1], &[1u8]).unwrap();
    // Replacing the file now would make the append land in the unlinked
    // old file: the save is refused and leaves nothing behind.
    let mut save = Writer::create(&path).unwrap();
    save.add("x", &[1], &[7u8]).unwrap();
    let e = save.finish().unwrap_err();
    let ztensor::Error::Io { source, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock, "{e}");
    assert!(e.to_string().contains("appending"), "{e}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["m.zt"], "the refused save left its temporary");
    appender.finish().unwrap();
    let r = Reader::open(&path).unwrap();
    assert!(r.contains("a") && r.contains("w") && !r.contains("x"));
    drop(r);
    // Once the appender is done, the save goes through.
    let mut save = Writer::create(&path).unwrap();
    save.add("x", &[1], &[7u8]).unwrap();
    save.finish().unwrap();
    let names: Vec<String> = Reader::open(&path)
        .unwrap()
        .names()
        .map(String::from)
        .collect();
    assert_eq!(names, ["x"]);
    // An appender opening the path after the save appends to the new file.
    let mut again = Writer::append(&path).unwrap();
    again.add("y", &[1], &[8u8]).unwrap();
    again.finish().unwrap();
    assert_eq!(Reader::open(&path).unwrap().len(), 2);
}

#[test]
fn an_unfinished_append_is_refused_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    let old = base(&path);
    let mut w = Writer::append(&path).unwrap();
    w.add("big", &[100_000], &vec![5u8; 100_000]).unwrap();
    // What a kill at this point leaves on disk.
    let torn = dir.path().join("torn.zt");
    std::fs::copy(&path, &torn).unwrap();
    drop(w);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        old,
        "dropping restores the old file"
    );

    let bytes = std::fs::read(&torn).unwrap();
    assert!(bytes.ends_with(APPEND_MAGIC));
    let e = Reader::open(&torn).unwrap_err();
    assert_eq!(e.kind(), ztensor::ErrorKind::TornAppend, "{e}");
    let e = e.to_string();
    assert!(
        e.contains("torn append") && e.contains(&format!("zt repair {}", torn.display())),
        "{e}"
    );
    let e = append_err(&torn).to_string();
    assert!(e.contains("zt repair"), "{e}");
    assert_eq!(
        repair(&torn).unwrap(),
        Repair::RolledBack {
            size: old.len() as u64,
            removed: (bytes.len() - old.len()) as u64
        }
    );
    assert_eq!(std::fs::read(&torn).unwrap(), old);
    assert_eq!(repair(&torn).unwrap(), Repair::Intact);
}

#[test]
fn repair_skips_zeros_of_a_size_change_and_refuses_other_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    let old = base(&path);
    // A power cut can make a new size durable before the bytes at the end.
    let mut zeros = old.clone();
    zeros.resize(old.len() + 40, 0);
    std::fs::write(&path, &zeros).unwrap();
    assert!(Reader::open(&path).is_err());
    assert!(matches!(repair(&path).unwrap(), Repair::RolledBack { .. }));
    assert_eq!(std::fs::read(&path).unwrap(), old);
    // Plain truncation is not an append's doing: no guess at a good end.
    std::fs::write(&path, &old[..old.len() - 5]).unwrap();
    let e = repair(&path).unwrap_err().to_string();
    assert!(e.contains("cannot restore"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), &old[..old.len() - 5]);
    // A trailer naming a size where no complete file ends.
    let mut bad = old.clone();
    bad.resize(bad.len().div_ceil(16) * 16, 0);
    bad.extend_from_slice(&100u64.to_le_bytes());
    bad.extend_from_slice(APPEND_MAGIC);
    std::fs::write(&path, &bad).unwrap();
    let e = repair(&path).unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bad);
}

#[test]
fn only_complete_v1_files_can_be_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.zt");
    std::fs::write(&path, b"hello, this is not a tensor file at all").unwrap();
    let e = append_err(&path).to_string();
    assert!(e.contains("not a .zt file"), "{e}");
    let mut legacy = b"ZTEN0001".to_vec();
    legacy.resize(40, 0);
    std::fs::write(&path, &legacy).unwrap();
    let e = append_err(&path).to_string();
    assert!(e.contains("legacy") && e.contains("zt convert"), "{e}");
    let e = append_err(dir.path().join("missing.zt"));
    assert!(matches!(e, ztensor::Error::Io { .. }), "{e}");
    let old = base(&path);
    std::fs::write(&path, &old[..old.len() - 1]).unwrap();
    let e = append_err(&path);
    assert_eq!(e.kind(), ztensor::ErrorKind::Truncated, "{e}");
    let e = e.to_string();
    assert!(e.contains("truncated or damaged"), "{e}");
}

#[test]
fn unknown_root_keys_and_unreadable_objects_are_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    let mut good = component("u8", 64, 2);
    good.push(("future_key", text("kept")));
    let manifest = map(vec![
        ("version", text("1.2.0")),
        (
            "objects",
            map(vec![
                ("good", object(&[2], "dense", vec![("data", map(good))])),
                (
                    "odd",
                    object(&[2], "dense", vec![("data", map(component("q3", 64, 2)))]),
                ),
            ]),
        ),
        ("x_index", Value::Array(vec![int(1), int(2)])),
    ]);
    std::fs::write(&path, v1_file_with_manifest(&[1, 2], &manifest)).unwrap();
    let mut w = Writer::append(&path).unwrap();
    w.add("new", &[1], &[3u8]).unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        root_key(&bytes, "x_index"),
        Some(Value::Array(vec![int(1), int(2)]))
    );
    let objects = root_key(&bytes, "objects").unwrap();
    let Value::Map(objects) = objects else {
        panic!()
    };
    let names: Vec<_> = objects.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(names, [text("good"), text("new"), text("odd")]);
    let good = &objects[0].1;
    let Value::Map(g) = good else { panic!() };
    let comps = &g.iter().find(|(k, _)| k == &text("components")).unwrap().1;
    assert!(format!("{comps:?}").contains("future_key"));
    let r = Reader::open(&path).unwrap();
    let e = r.info("odd").unwrap_err().to_string();
    assert!(e.contains("q3"), "{e}");
    assert_eq!(r.view::<u8>("good").unwrap(), [1, 2]);
    assert_eq!(r.view::<u8>("new").unwrap(), [3]);
}

#[test]
fn compact_drops_dead_bytes_and_remove_tensors_writes_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    base(&path);
    assert_eq!(
        space_usage(&Reader::open(&path).unwrap())
            .unwrap()
            .unwrap()
            .dead_bytes,
        0
    );
    let first_size = std::fs::metadata(&path).unwrap().len();
    let mut w = Writer::append(&path).unwrap();
    w.remove("w").unwrap();
    w.add("w", &[2], &[1.0f32, 2.0]).unwrap();
    w.add("tied_a", &[1000], &[7u32; 1000]).unwrap();
    w.finish().unwrap();
    let usage = space_usage(&Reader::open(&path).unwrap()).unwrap().unwrap();
    assert_eq!(usage.previous_end, Some(first_size));
    assert!(usage.dead_bytes >= 24, "{usage:?}");

    let out = dir.path().join("c.zt");
    let done = compact(&path, &out, None).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(done.tensors, 3);
    let data_end = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        let n = b.len();
        n as u64 - 16 - u64::from_le_bytes(b[n - 16..n - 8].try_into().unwrap())
    };
    assert_eq!(
        data_end(&path) - data_end(&out),
        usage.dead_bytes,
        "dead bytes are the data bytes compact drops"
    );
    assert!(size > done.size + usage.dead_bytes);
    let (a, b) = (Reader::open(&path).unwrap(), Reader::open(&out).unwrap());
    assert!(b.verify().is_empty());
    for name in ["ids", "w", "tied_a"] {
        assert_eq!(
            a.info(name)
                .unwrap()
                .components
                .values()
                .map(|c| (&c.encoding, &c.digest, c.length))
                .collect::<Vec<_>>(),
            b.info(name)
                .unwrap()
                .components
                .values()
                .map(|c| (&c.encoding, &c.digest, c.length))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            a.read(name).unwrap().as_slice(),
            b.read(name).unwrap().as_slice()
        );
    }
    assert_eq!(a.attributes(), b.attributes());
    assert_eq!(space_usage(&b).unwrap().unwrap().dead_bytes, 0);
    assert_eq!(
        root_key(&std::fs::read(&out).unwrap(), PREVIOUS_END_KEY),
        None
    );

    // In place, and without some tensors.
    let e = remove_tensors(&path, &out, &["ids", "nope"]).unwrap_err();
    assert!(matches!(e, ztensor::Error::NotFound { .. }), "{e}");
    remove_tensors(&path, &path, &["ids"]).unwrap();
    let r = Reader::open(&path).unwrap();
    assert_eq!(r.names().collect::<Vec<_>>(), ["tied_a", "w"]);
    assert_eq!(r.view::<f32>("w").unwrap(), [1.0, 2.0]);
}

#[test]
fn compact_refuses_corrupt_data_instead_of_copying_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.zt");
    let mut bytes = base(&path);
    // Flip a byte of the checksummed, compressed 'ids' blob.
    let r = Reader::open(&path).unwrap();
    let at = r.info("ids").unwrap().components["data"].offset as usize;
    drop(r);
    bytes[at + 3] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let out = dir.path().join("c.zt");
    let e = compact(&path, &out, None).unwrap_err();
    assert_eq!(e.kind(), ztensor::ErrorKind::ChecksumMismatch, "{e}");
    let e = e.to_string();
    assert!(e.contains("ids") && e.contains("checksum mismatch"), "{e}");
    assert!(!out.exists());
}
