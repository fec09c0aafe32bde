//! `hdf5::parse_one` (one dataset without walking the file) gives, for every
//! name, exactly the entries the full `hdf5::parse` gives that name: on the
//! h5py fixtures (`tests/data/make_hdf5_lookup_fixtures.py`: dotted names
//! that are also group paths, nested groups, hard links, soft links, every
//! storage and type), and on their damaged copies.

use std::path::{Path, PathBuf};

use ztensor::{Catalog, Entry};
use ztensor_formats::hdf5;
use ztensor_formats::{OpenOptions, ParseContext};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// An entry as text: name, info or error (kind and message).
fn show(e: &Entry) -> String {
    match &e.info {
        Ok(info) => format!("{} {info:?}", e.name),
        Err(err) => format!("{} error {:?}: {}", e.name, err.kind(), err.message()),
    }
}

fn shown(c: &Catalog) -> Vec<String> {
    let mut v: Vec<String> = c.entries.iter().map(show).collect();
    v.sort();
    v
}

/// Compares `parse_one` with the full parse for every name the full parse
/// lists and a few it does not; returns how many names the fast lookup
/// answered (its catalogs carry no file attributes).
fn compare(bytes: &[u8], path: Option<&Path>, what: &str) -> usize {
    let options = OpenOptions::default();
    let cx = ParseContext::new(path, &options);
    let full = match hdf5::parse(bytes, &cx) {
        Ok(c) => c,
        Err(e) => {
            // Refused whole: a lookup must refuse too, or (damage off its
            // path, which it does not walk) answer without panicking.
            let one = hdf5::parse_one(bytes, &cx, "a");
            if e.kind() == ztensor::ErrorKind::Truncated {
                let err = one.expect_err(what);
                assert_eq!(err.kind(), e.kind(), "{what}");
            }
            return 0;
        }
    };
    let mut names: Vec<String> = full.entries.iter().map(|e| e.name.clone()).collect();
    names.extend(["nope", "a.", ".a", "a..b", "g.s.x.y", "grp_alias.y.z", ""].map(String::from));
    names.sort();
    names.dedup();
    let mut fast = 0;
    for name in &names {
        let one =
            hdf5::parse_one(bytes, &cx, name).unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
        let expected: Vec<String> = {
            let mut v: Vec<String> = full
                .entries
                .iter()
                .filter(|e| &e.name == name)
                .map(show)
                .collect();
            v.sort();
            v
        };
        // The one divergence allowed: a damaged name of another member
        // of a group, which the full parse (conservatively) holds against
        // every member, and which a lookup that does not read that member
        // (as libhdf5's, down the B-tree) does not see.
        let elsewhere = expected
            .iter()
            .all(|e| e.contains("outside its B-tree keys") || e.contains("not in name order"));
        if !(elsewhere && !expected.is_empty() && one.attributes.is_none()) {
            assert_eq!(shown(&one), expected, "{what}: {name:?}");
        }
        assert_eq!(one.version, full.version, "{what}: {name:?}");
        assert_eq!(one.format, "hdf5");
        if one.attributes.is_none() && full.attributes.is_some() {
            fast += 1;
        }
    }
    fast
}

#[test]
fn every_name_of_every_fixture_matches_the_full_parse() {
    for name in [
        "h5py_lookup_earliest.h5",
        "h5py_lookup_latest.h5",
        "h5py_earliest.h5",
        "h5py_latest.h5",
        "h5py_chunked.h5",
        "h5py_fill.h5",
    ] {
        let path = fixture(name);
        let bytes = std::fs::read(&path).unwrap();
        compare(&bytes, Some(&path), name);
        compare(&bytes, None, name);
    }
}

/// The fast lookup answers the plain datasets itself (not by the fallback)
/// and leaves the others to the full parse, with the same entries.
#[test]
fn plain_datasets_take_the_fast_path() {
    let path = fixture("h5py_lookup_earliest.h5");
    let bytes = std::fs::read(&path).unwrap();
    let options = OpenOptions::default();
    let cx = ParseContext::new(Some(&path), &options);
    let fast = |name: &str| {
        hdf5::parse_one(&bytes, &cx, name)
            .unwrap()
            .attributes
            .is_none()
    };
    for name in [
        "m.042", "g.s.x", "a.c.d", "bool", "half", "scalar", "complex", "nope",
    ] {
        assert!(fast(name), "{name} took the fallback");
    }
    // attributes, chunked/compact/big-endian/unwritten storage, a dataset
    // linked twice, a group linked twice: the full parse decides
    for name in [
        "attrs",
        "chunked",
        "compact",
        "g.s.be",
        "unwritten",
        "h1",
        "grp_alias.y",
    ] {
        assert!(!fast(name), "{name} took the fast path");
    }
    // `a.b` is both `/a.b` and `/a/b`: two entries, as the full parse lists them
    let both = hdf5::parse_one(&bytes, &cx, "a.b").unwrap();
    assert_eq!(both.entries.len(), 2);
    let r = ztensor::Reader::open_with_parser(&path, ztensor::ReadMode::Mmap, |b| {
        hdf5::parse_one(b, &cx, "a.b")
    })
    .unwrap();
    let err = r.read("a.b").unwrap_err().to_string();
    assert!(err.contains("more than once"), "{err}");
    // A fast entry reads the values h5py wrote.
    let r = ztensor::Reader::open_with_parser(&path, ztensor::ReadMode::Mmap, |b| {
        hdf5::parse_one(b, &cx, "m.042")
    })
    .unwrap();
    assert_eq!(r.to_vec::<i32>("m.042").unwrap(), [42, 42, 42]);
    assert_eq!(r.len(), 1);
}

/// Truncated files are refused by the lookup as by the full parse; a file
/// that is not HDF5 too.
#[test]
fn truncation_and_garbage_are_refused() {
    let bytes = std::fs::read(fixture("h5py_lookup_earliest.h5")).unwrap();
    let cx = ParseContext::default();
    for cut in [0, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = hdf5::parse_one(&bytes[..cut], &cx, "m.042").unwrap_err();
        assert!(hdf5::parse(&bytes[..cut], &cx).is_err(), "{cut}");
        if cut > 100 {
            assert_eq!(err.kind(), ztensor::ErrorKind::Truncated, "{cut}: {err}");
        }
    }
    assert!(hdf5::parse_one(b"not hdf5 at all", &cx, "a").is_err());
}

/// Damaged copies (deterministic byte flips of every fixture, and the
/// structural damage of `hdf5.rs`: a member name out of order): where the
/// full parse opens the file, every name looks up to the same entries.
#[test]
fn damaged_copies_match_the_full_parse() {
    let mut fast = 0;
    for name in [
        "h5py_lookup_earliest.h5",
        "h5py_lookup_latest.h5",
        "h5py_chunked.h5",
        "h5py_fill.h5",
    ] {
        let data = std::fs::read(fixture(name)).unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..30 {
            let mut m = data.clone();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % m.len() as u64) as usize;
            m[at] ^= 1 << (state % 8);
            fast += compare(&m, None, &format!("{name} flip {round} at {at}"));
        }
    }
    assert!(fast > 0);
    // A member name of the root group out of order (h5py_chunked.h5 holds
    // z, a, s): every member is unreadable, lazily as eagerly.
    let mut data = std::fs::read(fixture("h5py_chunked.h5")).unwrap();
    let heap_a = data
        .windows(12)
        .position(|w| w == b"\0\0z\0\0\0\0\0\0\0a\0")
        .unwrap()
        + 10;
    data[heap_a] = b'}';
    compare(&data, None, "member name out of order");
    // The symbol-table node read holds the damaged name: seen, and the full
    // parse decides, for the damaged name itself (past the last key) too.
    let cx = ParseContext::default();
    let full = hdf5::parse(&data, &cx).unwrap();
    for name in ["s", "z", "}", "a"] {
        let one = hdf5::parse_one(&data, &cx, name).unwrap();
        let want: Vec<String> = full
            .entries
            .iter()
            .filter(|e| e.name == name)
            .map(show)
            .collect();
        assert_eq!(shown(&one), want, "{name}");
        // `a` is no longer listed (its name now reads `}`)
        assert_eq!(one.entries.len(), usize::from(name != "a"), "{name}");
        assert!(one.entries.iter().all(|e| e.info.is_err()), "{name}");
    }
}
